"""The quantized-model artifact (``manifest.json`` + ``tensors.npz``): writing it
(:meth:`~lstmfpga.quant.model.QuantizedModel.save`) and reading it back with every field
checked (:meth:`~lstmfpga.quant.model.QuantizedModel.load`).

The manifest is read within :mod:`lstmfpga.export.files`' size and depth limits, the tensors
without pickle and with their headers checked first. Errors are :class:`SpecError` or
:class:`FormatError`, one line starting with the path.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..export import files
from ..export.spec import SpecError
from .accumulator import accumulator_format, describe_products
from .config import QuantConfig
from .fixed import FixedFormat, FormatError
from .model import (
    GRU_DATA_ROLES,
    LSTM_DATA_ROLES,
    QMODEL_FORMAT,
    QMODEL_VERSION,
    QHead,
    QLayer,
    QuantizedModel,
    Tensor,
)

__all__ = ["read_qmodel", "write_qmodel"]


def write_qmodel(model: QuantizedModel, path: str | Path) -> Path:
    """Write ``model`` to the directory ``path`` (:meth:`QuantizedModel.save`): the tensors,
    then the manifest, each to a temporary name and renamed; an earlier manifest is removed
    first, so a folder with a manifest always holds that manifest's tensors."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SpecError(f"{path}: exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    tensors, tensor_formats = {}, {}
    for name, t in model.named_tensors():
        if t is not None:
            tensors[name] = t.codes
            tensor_formats[name] = t.fmt.to_dict()
    for name, table in model.tables.items():
        tensors[f"table_{name}_entries"] = table.entries
        tensors[f"table_{name}_slopes"] = table.slopes
    manifest = {
        "format": QMODEL_FORMAT,
        "version": QMODEL_VERSION,
        **model.geometry_dict(),
        "formats": {k: v.to_dict() for k, v in model.formats.items()},
        "acc": model.acc.to_dict(),
        "tensor_formats": tensor_formats,
        "tables": {k: t.to_dict() for k, t in model.tables.items()},
        "config": model.config.to_dict(),
        "calibration": model.calibration,
        "spec_hash": model.spec_hash,
    }
    (path / "manifest.json").unlink(missing_ok=True)
    files.save_npz(path / "tensors.npz", **tensors)
    files.write_json(path / "manifest.json", manifest)
    return path


def read_qmodel(path: str | Path) -> QuantizedModel:
    """The quantized model in the directory ``path`` (:meth:`QuantizedModel.load`)."""
    path = Path(path)
    manifest, tensors = _read_qmodel(path)
    try:
        model = _parse_qmodel(path, manifest, tensors)
    except (SpecError, FormatError) as error:
        message = str(error)
        if not message.startswith(f"{path}"):
            message = f"{path}: {message}"
        raise type(error)(message) from None
    # The tables are regenerated from the rules; they must equal the stored arrays and
    # the manifest's description.
    for name, table in model.tables.items():
        for part in ("entries", "slopes"):
            stored = tensors.get(f"table_{name}_{part}")
            if stored is None or not np.array_equal(stored, getattr(table, part)):
                raise SpecError(f"{path}: activation table {name} ({part}) does not match its rule")
        if manifest["tables"].get(name) != table.to_dict():
            raise SpecError(f"{path}: activation table {name} (manifest) does not match its rule")
    expected = {f"table_{name}_{part}" for name in model.tables for part in ("entries", "slopes")}
    extra = sorted(k for k in tensors if k.startswith("table_") and k not in expected)
    if extra or set(manifest["tables"]) - set(model.tables):
        found = extra or sorted(set(manifest["tables"]) - set(model.tables))
        raise SpecError(f"{path}: activation table(s) {_short(found)} this {model.cell} lacks")
    return model


# -- the manifest --------------------------------------------------------------------------
_MANIFEST_KEYS = frozenset(
    ("format", "version", "input_size", "hidden_size", "num_layers", "bidirectional",
     "proj_size", "bias", "head", "formats", "acc", "tensor_formats", "tables", "config",
     "calibration", "spec_hash", "cell")
)  # fmt: skip
_OPTIONAL_KEYS = frozenset(("calibration", "spec_hash", "cell"))  # no "cell": an LSTM
_TABLE_NAMES = ("sigmoid", "tanh_gate", "tanh_cell")


def _read_qmodel(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest (format and version checked) and the tensors of the artifact ``path``."""
    if not path.exists():
        raise SpecError(f"{path}: no such file or directory")
    if not path.is_dir() or not (path / "manifest.json").is_file():
        raise SpecError(
            f"{path}: not an lstmfpga artifact (expected a directory with manifest.json)"
        )
    manifest = files.read_json(path / "manifest.json", "qmodel manifest")
    if manifest.get("format") != QMODEL_FORMAT:
        raise SpecError(
            f"{path}: expected a {QMODEL_FORMAT} artifact, found {_short(manifest.get('format'))}"
        )
    version = manifest.get("version")
    if version != QMODEL_VERSION or isinstance(version, bool):
        raise SpecError(
            f"{path}: {QMODEL_FORMAT} version {_short(version)} is not supported "
            f"(this lstmfpga reads version {QMODEL_VERSION})"
        )
    tensors = files.load_arrays(path / "tensors.npz", "qmodel tensors")
    return manifest, tensors


def _field(manifest: dict, key: str):
    if key not in manifest:
        raise SpecError(f"quantized model manifest lacks the field {key!r}")
    return manifest[key]


def _int_field(manifest: dict, key: str, minimum: int) -> int:
    value = _field(manifest, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"{key} must be an integer >= {minimum}, not {_short(value)}")
    return value


def _bool_field(manifest: dict, key: str) -> bool:
    value = _field(manifest, key)
    if not isinstance(value, bool):
        raise SpecError(f"{key} must be true or false, not {_short(value)}")
    return value


def _object_field(manifest: dict, key: str) -> dict:
    value = _field(manifest, key)
    if not isinstance(value, dict):
        raise SpecError(f"{key} must be a JSON object, not {_short(value)}")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format(value, what: str) -> FixedFormat:
    """A ``{"bits", "frac", "signed"}`` object as a signed :class:`FixedFormat`."""
    if (
        not isinstance(value, dict)
        or set(value) - {"bits", "frac", "signed"}
        or not ({"bits", "frac"} <= set(value))
    ):
        raise FormatError(
            f"{what} must be an object with 'bits', 'frac' (and 'signed'), not {_short(value)}"
        )
    for key in ("bits", "frac"):
        if not isinstance(value[key], int) or isinstance(value[key], bool):
            raise FormatError(f"{what} {key} must be an integer, not {_short(value[key])}")
    if value.get("signed", True) is not True:
        raise FormatError(f"{what} must be signed, not {_short(value.get('signed'))}")
    try:
        return FixedFormat(value["bits"], value["frac"])
    except FormatError as error:
        raise FormatError(f"{what}: {error}") from None


def _parse_qmodel(path: Path, manifest: dict, tensors: dict[str, np.ndarray]) -> QuantizedModel:
    unknown = sorted(set(manifest) - _MANIFEST_KEYS)
    if unknown:
        raise SpecError(f"quantized model manifest has unknown field(s) {', '.join(unknown)}")
    geometry = _parse_geometry(manifest)
    num_layers, head_info = geometry["num_layers"], geometry["head"]
    _object_field(manifest, "tables")
    config_data = _object_field(manifest, "config")
    config = QuantConfig.from_dict(config_data, source="config")
    calibration = manifest.get("calibration", {})
    if not isinstance(calibration, dict):
        raise SpecError(f"calibration must be a JSON object, not {_short(calibration)}")
    formats, acc = _parse_formats(manifest, config, geometry["cell"])
    D = 2 if geometry["bidirectional"] else 1
    get = _tensor_reader(manifest, tensors, config, geometry)
    layers = []
    for index in range(num_layers):
        directions = []
        for d in range(D):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            names = ("w_ih", "w_hh", "bias", "w_hr", "b_hn")
            directions.append(QLayer(*(get(n + suffix) for n in names)))
        layers.append(tuple(directions))
    head = None
    if head_info is not None:
        head = QHead(get("head_w"), get("head_b"), head_info["mode"])
        if head.out_features != head_info["out_features"]:
            raise SpecError(
                f"head out_features {head_info['out_features']!r} does not match head_w "
                f"{head.weight.codes.shape}"
            )
    model = QuantizedModel.assemble(
        SimpleNamespace(**geometry),
        layers,
        head,
        formats=formats,
        acc=acc,
        config=config,
        calibration=calibration,
        spec_hash=_optional_hash(manifest.get("spec_hash")),
    )
    # The accumulator is the one quantization derives (or the config's wider acc_bits).
    expected = accumulator_format(describe_products(model), config.acc_bits)
    if acc != expected:
        raise SpecError(f"accumulator {acc} is not the one the formats derive ({expected})")
    return model


def _parse_geometry(manifest: dict) -> dict:
    """The manifest's geometry fields, checked (:meth:`QuantizedModel.geometry_dict`'s keys)."""
    input_size = _int_field(manifest, "input_size", 1)
    hidden_size = _int_field(manifest, "hidden_size", 1)
    num_layers = _int_field(manifest, "num_layers", 1)
    bidirectional = _bool_field(manifest, "bidirectional")
    proj_size = _int_field(manifest, "proj_size", 0)
    if proj_size >= hidden_size:
        raise SpecError(
            f"proj_size must be smaller than hidden_size ({hidden_size}), not {proj_size}"
        )
    has_bias = _bool_field(manifest, "bias")
    cell = manifest.get("cell", "lstm")
    if cell not in ("lstm", "gru"):
        raise SpecError(f"cell must be 'lstm' or 'gru', not {_short(cell)}")
    if cell == "gru" and proj_size:
        raise SpecError(f"proj_size must be 0 for a GRU, not {proj_size}")
    head_info = _field(manifest, "head")
    if head_info is not None:
        if not isinstance(head_info, dict) or set(head_info) != {"mode", "out_features"}:
            raise SpecError(
                f"head must be null or an object with 'mode' and 'out_features', "
                f"not {_short(head_info)}"
            )
        if head_info["mode"] not in ("last", "all"):
            raise SpecError(f"head mode must be 'last' or 'all', not {_short(head_info['mode'])}")
    return {"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers,
            "bidirectional": bidirectional, "proj_size": proj_size, "bias": has_bias,
            "head": head_info, "cell": cell}  # fmt: skip


def _parse_formats(manifest: dict, config: QuantConfig, cell: str) -> tuple[dict, FixedFormat]:
    """The data formats by role (each the width its role has in ``config``) and ``acc``."""
    formats_data = _object_field(manifest, "formats")
    roles = GRU_DATA_ROLES if cell == "gru" else LSTM_DATA_ROLES
    if sorted(formats_data) != sorted(roles):
        raise SpecError(
            f"formats must name exactly the roles {', '.join(roles)}, "
            f"not {_short(sorted(formats_data))}"
        )
    formats = {}
    for role in roles:
        fmt = _format(formats_data[role], f"format of {role}")
        config.rule(role).check(fmt, f"format of {role}")
        formats[role] = fmt
    return formats, _format(_field(manifest, "acc"), "acc")


def _tensor_reader(manifest: dict, tensors: dict, config: QuantConfig, geometry: dict):
    """``get(name)``: the checked :class:`Tensor` of a weight slot of this geometry, or None
    where the geometry has none; exactly these tensors (and the tables) may exist."""
    D = 2 if geometry["bidirectional"] else 1
    num_layers = geometry["num_layers"]
    if 2 * num_layers * D > len(tensors):  # before iterating over a forged layer count
        raise SpecError(
            f"num_layers {num_layers} needs at least {2 * num_layers * D} weight tensors, "
            f"tensors.npz holds {len(tensors)} arrays"
        )
    slots = {}
    for index in range(num_layers):
        for d in range(D):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            slots["w_ih" + suffix] = ("w_ih", True)
            slots["w_hh" + suffix] = ("w_hh", True)
            slots["bias" + suffix] = ("bias", geometry["bias"])
            slots["w_hr" + suffix] = ("w_hr", bool(geometry["proj_size"]))
            slots["b_hn" + suffix] = ("bias", geometry["bias"] and geometry["cell"] == "gru")
    if geometry["head"] is not None:
        slots["head_w"] = ("head_w", True)
        slots["head_b"] = ("head_b", None)  # optional: a head may have no bias
    tensor_formats = _object_field(manifest, "tensor_formats")
    tables = {f"table_{name}_{part}" for name in _TABLE_NAMES for part in ("entries", "slopes")}
    extra = sorted(set(tensor_formats) - set(slots))
    if extra:
        raise SpecError(f"tensor_formats names tensor(s) this geometry lacks: {_short(extra)}")
    extra = sorted(set(tensors) - set(slots) - tables)
    if extra:
        raise SpecError(f"tensors.npz holds unexpected array(s) {_short(extra)}")

    def get(name):
        role, required = slots[name]
        if required is None:
            required = name in tensor_formats or name in tensors
        if not required:
            if name in tensor_formats or name in tensors:
                raise SpecError(f"tensor {name} must not exist in this geometry")
            return None
        if name not in tensor_formats:
            raise SpecError(f"tensor_formats lacks tensor {name}")
        if name not in tensors:
            raise SpecError(f"tensors.npz lacks tensor {name}")
        fmt = _format(tensor_formats[name], f"tensor {name} format")
        config.roles[role].check(fmt, f"tensor {name} format")
        codes = tensors[name]
        if codes.dtype.kind not in "iu":
            raise SpecError(f"tensor {name} must hold integer codes, not {codes.dtype}")
        if codes.ndim != (1 if role in ("bias", "head_b") else 2):
            raise SpecError(f"tensor {name} must be {'1' if role in ('bias', 'head_b') else '2'}"
                            f"-dimensional, not of shape {codes.shape}")  # fmt: skip
        try:
            return Tensor(codes, fmt)
        except FormatError as error:
            raise SpecError(f"tensor {name}: {error}") from None

    return get


def _optional_hash(value) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or len(value) != 64
        or any(c not in "0123456789abcdef" for c in value)
    ):
        raise SpecError(f"spec_hash must be a 64-digit hex SHA-256, not {_short(value)}")
    return value
