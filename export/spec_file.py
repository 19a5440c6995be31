"""Reading a spec artifact (``manifest.json`` + ``tensors.npz``), every field checked: what
:meth:`lstmfpga.export.spec.ModelSpec.load` and :meth:`~lstmfpga.export.spec.ModelSpec.from_tensors`
do.

The manifest and tensors are read through :mod:`lstmfpga.export.files` (JSON size and depth
limits; ``.npz`` members, sizes and headers checked before anything is allocated, no pickle).
The manifest's fields are checked one by one, the tensor names against the geometry, the
gate blocks permuted into PyTorch's order when the artifact names another ``gate_order``;
:class:`~lstmfpga.export.spec.ModelSpec` then checks shapes and values. Errors are
:class:`~lstmfpga.export.spec.SpecError`, one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import files
from .spec import (
    CELLS,
    GATE_ORDER,
    GATE_ORDERS,
    HeadSpec,
    LayerWeights,
    SpecError,
    check_int,
    check_no_gru_projection,
)

__all__ = ["read_artifact", "spec_from_artifact"]

_GATE_TENSORS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def read_artifact(path: str | Path, kind: str, version: int) -> tuple[dict, dict]:
    """Read ``manifest.json`` + ``tensors.npz`` of a ``kind`` artifact, without pickle."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such file or directory")
    if not path.is_dir() or not (path / "manifest.json").is_file():
        raise SpecError(
            f"{path}: not an lstmfpga artifact (expected a directory with manifest.json)"
        )
    try:
        manifest = files.read_json(path / "manifest.json", f"{kind} manifest")
        if manifest.get("format") != kind:
            raise SpecError(f"{path}: expected a {kind} artifact, found {manifest.get('format')!r}")
        if manifest.get("version") != version:
            raise SpecError(
                f"{path}: {kind} version {manifest.get('version')!r} is not supported "
                f"(this lstmfpga reads version {version})"
            )
        tensors = files.load_arrays(path / "tensors.npz", f"{kind} tensors")
    except files.FileFormatError as error:
        raise SpecError(str(error)) from None
    return manifest, tensors


def spec_from_artifact(cls, manifest: dict, tensors: dict[str, np.ndarray]):
    """``cls`` (:class:`ModelSpec`) from an artifact's manifest and tensors; see
    :meth:`ModelSpec.from_tensors` for the rules."""
    if not isinstance(manifest, dict):
        raise SpecError(f"artifact manifest must be a JSON object, not {manifest!r:.40}")
    try:
        arch = _architecture(manifest)
    except KeyError as error:
        raise SpecError(f"artifact manifest is missing {error.args[0]!r}") from None
    _check_tensor_names(_expected_tensors(arch), tensors)

    def tensor(name: str) -> np.ndarray:
        array = np.asarray(tensors[name])
        if name.startswith(_GATE_TENSORS) and arch["order"] != arch["canonical"]:
            array = _permute_gates(array, arch["order"], arch["hidden"], arch["canonical"])
        return array

    def layer_weights(suffix: str) -> LayerWeights:
        bias, proj = arch["bias"], arch["proj"]
        return LayerWeights(
            w_ih=tensor("weight_ih" + suffix),
            w_hh=tensor("weight_hh" + suffix),
            b_ih=tensor("bias_ih" + suffix) if bias else None,
            b_hh=tensor("bias_hh" + suffix) if bias else None,
            w_hr=tensor("weight_hr" + suffix) if proj else None,
        )

    layers = tuple(
        tuple(layer_weights(_suffix(index, d)) for d in range(arch["directions"]))
        for index in range(arch["num_layers"])
    )
    head = None
    if arch["head"] is not None:
        head = HeadSpec(
            weight=tensor("head.weight"),
            bias=tensor("head.bias") if arch["head"]["bias"] else None,
            mode=arch["head"]["mode"],
        )
    return cls(
        input_size=arch["input_size"],
        hidden_size=arch["hidden"],
        num_layers=arch["num_layers"],
        bidirectional=arch["bidirectional"],
        proj_size=arch["proj"],
        bias=arch["bias"],
        layers=layers,
        head=head,
        dropout=float(arch["dropout"]),
        source=arch["source"],
        cell=arch["cell"],
    )


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _architecture(manifest: dict) -> dict:
    """The manifest's fields, each checked (a missing required one raises ``KeyError``)."""
    cell = manifest.get("cell", "lstm")
    if cell not in CELLS:
        raise SpecError(f"cell must be 'lstm' or 'gru', not {cell!r:.40}")
    canonical = GATE_ORDERS[cell]
    arch = {"cell": cell, "canonical": canonical}
    arch["num_layers"] = check_int("num_layers", manifest["num_layers"], 1)
    arch["hidden"] = check_int("hidden_size", manifest["hidden_size"], 1)
    arch["input_size"] = check_int("input_size", manifest["input_size"], 1)
    arch["proj"] = check_int("proj_size", manifest["proj_size"], 0)
    check_no_gru_projection(cell, arch["proj"])
    arch["bidirectional"] = _check_bool("bidirectional", manifest["bidirectional"])
    arch["directions"] = 2 if arch["bidirectional"] else 1
    arch["bias"] = _check_bool("bias", manifest["bias"])
    dropout = manifest.get("dropout", 0.0)
    if not isinstance(dropout, int | float) or isinstance(dropout, bool):
        raise SpecError(f"dropout must be a number, not {dropout!r:.40}")
    if not 0 <= dropout <= 1:
        raise SpecError(f"dropout must be between 0 and 1, not {dropout!r}")
    arch["dropout"] = dropout
    source = manifest.get("source", "")
    if not isinstance(source, str):
        raise SpecError(f"source must be a string, not {source!r:.40}")
    arch["source"] = source
    arch["order"] = _gate_order(manifest.get("gate_order", list(canonical)), canonical)
    head_info = manifest.get("head")
    if head_info is not None and not (
        isinstance(head_info, dict)
        and isinstance(head_info.get("mode"), str)
        and isinstance(head_info.get("bias"), bool)
    ):
        raise SpecError(
            f"head must be null or an object with a string 'mode' and a boolean 'bias', "
            f"not {head_info!r:.60}"
        )
    arch["head"] = head_info
    return arch


def _expected_tensors(arch: dict) -> list[str]:
    """The tensor names an artifact of this architecture holds, in order."""
    kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if arch["bias"] else [])
    kinds += ["weight_hr"] if arch["proj"] else []
    expected = [
        kind + _suffix(index, d)
        for index in range(arch["num_layers"])
        for d in range(arch["directions"])
        for kind in kinds
    ]
    if arch["head"] is not None:
        expected += ["head.weight"] + (["head.bias"] if arch["head"]["bias"] else [])
    return expected


def _check_tensor_names(expected: list[str], tensors: dict) -> None:
    """Exactly the ``expected`` tensors, each floating-point; others are refused by name."""
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise SpecError(f"artifact is missing tensor(s) {', '.join(map(repr, missing))}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise SpecError(f"artifact has unexpected tensor(s) {', '.join(map(repr, extra))}")
    for name in expected:
        kind = np.asarray(tensors[name]).dtype
        if kind.kind != "f":
            raise SpecError(f"tensor {name!r} must be floating-point, not {kind}")


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise SpecError(f"{name} must be true or false, not {value!r:.40}")
    return bool(value)


def _gate_order(value, canonical: tuple[str, ...] = GATE_ORDER) -> tuple[str, ...]:
    """A manifest's ``gate_order``: a permutation of ``canonical`` (the cell's gates)."""
    if (
        not isinstance(value, list | tuple)
        or len(value) != len(canonical)
        or not all(isinstance(g, str) for g in value)
        or sorted(value) != sorted(canonical)
    ):
        raise SpecError(f"gate_order must be a permutation of {list(canonical)}, not {value!r:.60}")
    return tuple(value)


def _permute_gates(
    array: np.ndarray, order: tuple[str, ...], hidden: int, canonical: tuple[str, ...] = GATE_ORDER
) -> np.ndarray:
    """Rows of ``array`` (gate blocks in ``order``) in ``canonical`` order."""
    G = len(canonical)
    if array.ndim < 1 or array.shape[0] != G * hidden:
        return array  # the shape check of ModelSpec reports it
    blocks = array.reshape(G, hidden, *array.shape[1:])
    return blocks[[order.index(g) for g in canonical]].reshape(array.shape)
