"""The portable model spec: what an exported LSTM or GRU is, independent of PyTorch.

A :class:`ModelSpec` is a frozen, validated description of an ``nn.LSTM`` (optionally stacked,
bidirectional, with ``proj_size``) or an ``nn.GRU`` (``cell="gru"``: stacked, bidirectional,
no projection) and an optional ``nn.Linear`` head. It keeps PyTorch's gate order explicitly:
for an LSTM the rows of ``w_ih``/``w_hh``/biases are the four gate blocks ``(i, f, g, o)`` of
``hidden_size`` rows each, for a GRU the three blocks ``(r, z, n)``.

It saves to and loads from a directory holding ``manifest.json`` (architecture, version) and
``tensors.npz`` (float64 arrays, loaded with ``allow_pickle=False``). This module imports no
torch: everything downstream (quant/, hw/) works from the spec alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import files

__all__ = [
    "CELLS",
    "GATE_ORDER",
    "GRU_GATE_ORDER",
    "SHAPE_OPTIONS",
    "SPEC_FORMAT",
    "SPEC_VERSION",
    "HeadSpec",
    "LSTMGeometry",
    "LayerWeights",
    "ModelSpec",
    "SpecError",
    "shape_options",
]

GATE_ORDER = ("i", "f", "g", "o")
GRU_GATE_ORDER = ("r", "z", "n")
CELLS = ("lstm", "gru")
#: PyTorch's gate order of each cell type (the row blocks of the gate tensors).
GATE_ORDERS = {"lstm": GATE_ORDER, "gru": GRU_GATE_ORDER}
SPEC_FORMAT = "lstmfpga.spec"
SPEC_VERSION = 1
HEAD_MODES = ("last", "all")


class SpecError(ValueError):
    """A model or artifact that cannot be turned into a valid spec (the message says why)."""


def _as_matrix(name: str, value, shape: tuple[int, ...], note: str = "") -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype.kind not in "fiu":
        raise SpecError(f"{name} must be a real numeric array, not {value.dtype}")
    try:
        array = np.array(value, dtype=np.float64)  # copy: the spec owns its tensors
    except (TypeError, ValueError) as error:
        raise SpecError(f"{name} must be a numeric array, not {type(value).__name__}") from error
    if array.shape != shape:
        raise SpecError(f"{name} must have shape {shape}{note}, not {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise SpecError(f"{name} contains {bad} non-finite value(s) (NaN or Inf)")
    array.setflags(write=False)
    return array


def check_int(name: str, value, minimum: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise SpecError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise SpecError(f"{name} must be >= {minimum}, not {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """Weights of one (layer, direction) of the LSTM or GRU, float64, read-only.

    For an LSTM ``w_ih`` is ``(4H, I_l)``, ``w_hh`` is ``(4H, H_out)``, biases are ``(4H,)``
    or ``None`` (``bias=False``), ``w_hr`` is ``(H_out, H)`` with a projection, else ``None``;
    rows follow :data:`GATE_ORDER`. For a GRU the gate tensors have ``3H`` rows in
    :data:`GRU_GATE_ORDER` and ``w_hr`` is ``None``.
    """

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None = None
    b_hh: np.ndarray | None = None
    w_hr: np.ndarray | None = None

    @property
    def bias(self) -> np.ndarray | None:
        """The combined gate bias ``b_ih + b_hh`` (what the LSTM hardware adds), or ``None``.

        Meaningful for an LSTM only: a GRU's ``b_hn`` is added inside ``r * (W_hn h + b_hn)``,
        so a GRU keeps ``b_ih`` and ``b_hh`` apart.
        """
        if self.b_ih is None:
            return None
        return self.b_ih + self.b_hh


@dataclass(frozen=True, eq=False)
class HeadSpec:
    """An ``nn.Linear`` head: ``weight`` ``(out, D*H_out)``, ``bias`` ``(out,)`` or ``None``.

    ``mode`` is ``"last"`` (applied to the output sequence at the last timestep,
    i.e. ``output[:, -1]``) or ``"all"`` (applied at every timestep).
    """

    weight: np.ndarray
    bias: np.ndarray | None
    mode: str

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])


class LSTMGeometry:
    """Derived sizes of an LSTM, shared by :class:`ModelSpec` and the quantized model.

    Needs ``input_size``, ``hidden_size``, ``bidirectional`` and ``proj_size`` attributes
    (and ``num_layers`` and ``cell`` for :meth:`shape_text`).
    """

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Size of each direction's ``h``: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        """Input width of ``layer``: ``input_size`` for layer 0, else ``D * output_size``."""
        return self.input_size if layer == 0 else self.num_directions * self.output_size

    @property
    def sequence_output_size(self) -> int:
        """Features per timestep of the LSTM's output sequence: ``D * output_size``."""
        return self.num_directions * self.output_size

    def shape_text(self, bias: bool) -> str:
        """The shape as ``describe`` prints it: ``input_size=I hidden_size=H num_layers=L
        bidirectional=B proj_size=P bias=b`` (``proj_size`` for an LSTM only)."""
        proj = f"proj_size={self.proj_size} " if self.cell == "lstm" else ""
        return (
            f"input_size={self.input_size} hidden_size={self.hidden_size} "
            f"num_layers={self.num_layers} bidirectional={self.bidirectional} {proj}bias={bias}"
        )


@dataclass(frozen=True, eq=False)
class ModelSpec(LSTMGeometry):
    """A validated, framework-independent LSTM or GRU (+ optional head).

    Parameters mirror ``nn.LSTM``/``nn.GRU``: ``input_size``, ``hidden_size``, ``num_layers``,
    ``bias``, ``bidirectional``, ``proj_size`` (0 = none; always 0 for a GRU). ``batch_first``
    is not part of the spec: every API here takes ``(batch, seq, features)``. ``dropout`` is
    recorded for information only; it has no effect at inference. ``cell`` is ``"lstm"``
    (default) or ``"gru"``; ``gate_order`` defaults to the cell's PyTorch order
    (:data:`GATE_ORDER` or :data:`GRU_GATE_ORDER`) and must be that order.

    ``layers[l][d]`` holds the weights of layer ``l``, direction ``d`` (0 forward, 1 reverse).
    """

    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    proj_size: int
    bias: bool
    layers: tuple[tuple[LayerWeights, ...], ...]
    head: HeadSpec | None = None
    dropout: float = 0.0
    gate_order: tuple[str, ...] | None = None
    source: str = ""
    cell: str = "lstm"

    def __post_init__(self):
        if self.cell not in CELLS:
            raise SpecError(f"cell must be 'lstm' or 'gru', not {self.cell!r:.40}")
        check_int("input_size", self.input_size, 1)
        check_int("hidden_size", self.hidden_size, 1)
        check_int("num_layers", self.num_layers, 1)
        check_int("proj_size", self.proj_size, 0)
        check_no_gru_projection(self.cell, self.proj_size)
        if self.proj_size >= self.hidden_size:
            raise SpecError(
                f"proj_size must be smaller than hidden_size ({self.hidden_size}), "
                f"not {self.proj_size}"
            )
        order = GATE_ORDERS[self.cell]
        if self.gate_order is not None and tuple(self.gate_order) != order:
            raise SpecError(f"gate_order must be {order}, not {tuple(self.gate_order)}")
        if len(self.layers) != self.num_layers:
            raise SpecError(f"expected {self.num_layers} layer(s), found {len(self.layers)}")
        H, H_out, D = self.hidden_size, self.output_size, self.num_directions
        G = len(order)
        note = " for a GRU (3*hidden_size rows: gates r, z, n)" if self.cell == "gru" else ""
        layers = []
        for index, directions in enumerate(self.layers):
            if len(directions) != D:
                raise SpecError(f"layer {index} must have {D} direction(s), not {len(directions)}")
            checked = []
            for d, lw in enumerate(directions):
                if not isinstance(lw, LayerWeights):
                    raise SpecError(f"layers[{index}][{d}] must be LayerWeights, not {lw!r}")
                suffix = f"_l{index}" + ("_reverse" if d else "")
                in_l = self.layer_input_size(index)
                w_ih = _as_matrix("weight_ih" + suffix, lw.w_ih, (G * H, in_l), note)
                w_hh = _as_matrix("weight_hh" + suffix, lw.w_hh, (G * H, H_out), note)
                if self.bias:
                    if lw.b_ih is None or lw.b_hh is None:
                        raise SpecError(f"bias_ih{suffix}/bias_hh{suffix} missing (bias=True)")
                    b_ih = _as_matrix("bias_ih" + suffix, lw.b_ih, (G * H,), note)
                    b_hh = _as_matrix("bias_hh" + suffix, lw.b_hh, (G * H,), note)
                else:
                    if lw.b_ih is not None or lw.b_hh is not None:
                        raise SpecError(f"bias_ih{suffix} given although bias=False")
                    b_ih = b_hh = None
                if self.proj_size:
                    if lw.w_hr is None:
                        raise SpecError(f"weight_hr{suffix} missing (proj_size={self.proj_size})")
                    w_hr = _as_matrix("weight_hr" + suffix, lw.w_hr, (H_out, H))
                else:
                    if lw.w_hr is not None:
                        raise SpecError(f"weight_hr{suffix} given although proj_size=0")
                    w_hr = None
                checked.append(LayerWeights(w_ih, w_hh, b_ih, b_hh, w_hr))
            layers.append(tuple(checked))
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "bidirectional", bool(self.bidirectional))
        object.__setattr__(self, "bias", bool(self.bias))
        object.__setattr__(self, "gate_order", order)
        if self.head is not None:
            head = self.head
            if not isinstance(head, HeadSpec):
                raise SpecError(f"head must be a HeadSpec, not {head!r}")
            if head.mode not in HEAD_MODES:
                raise SpecError(f"head mode must be 'last' or 'all', not {head.mode!r}")
            weight = np.asarray(head.weight)
            if weight.ndim != 2:
                raise SpecError(f"head weight must be 2-D, not {weight.ndim}-D")
            out = weight.shape[0]
            weight = _as_matrix("head weight", weight, (out, D * H_out))
            bias = None if head.bias is None else _as_matrix("head bias", head.bias, (out,))
            if out < 1:
                raise SpecError("head weight must have at least one output row")
            object.__setattr__(self, "head", HeadSpec(weight, bias, head.mode))

    @property
    def num_gates(self) -> int:
        """Gate blocks per gate tensor: 4 for an LSTM, 3 for a GRU."""
        return len(self.gate_order)

    def require_lstm(self, what: str) -> None:
        """Raise :class:`SpecError` unless this is an LSTM (for stages without GRU support).

        ``what`` names the stage, e.g. ``spec.require_lstm("quantization")`` refuses a GRU
        with ``quantization supports LSTM specs only, not cell 'gru'``.
        """
        if self.cell != "lstm":
            raise SpecError(f"{what} supports LSTM specs only, not cell {self.cell!r}")

    @property
    def parameter_count(self) -> int:
        """Float parameters: the elements of every tensor (:meth:`tensors`)."""
        return sum(t.size for t in self.tensors().values())

    def describe(self) -> str:
        """A few readable lines: architecture and parameter count."""
        name = self.cell.upper()
        parts = [f"{name} {self.shape_text(self.bias)}"]
        if self.cell == "gru":
            parts.append("gates: r, z, n (PyTorch's order)")
        if self.head is None:
            parts.append(f"head: none (output = full {name} output sequence)")
        else:
            parts.append(
                f"head: Linear({self.sequence_output_size} -> {self.head.out_features}, "
                f"bias={self.head.bias is not None}) on {self.head.mode} timestep(s)"
            )
        parts.append(f"parameters: {self.parameter_count}")
        if self.dropout:
            parts.append(f"dropout={self.dropout} (ignored at inference)")
        return "\n".join(parts)

    # -- artifact ---------------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        """All tensors under PyTorch-like names (``weight_ih_l0_reverse``, ``head.weight``)."""
        out = {}
        for index, directions in enumerate(self.layers):
            for d, lw in enumerate(directions):
                suffix = f"_l{index}" + ("_reverse" if d else "")
                out["weight_ih" + suffix] = lw.w_ih
                out["weight_hh" + suffix] = lw.w_hh
                if lw.b_ih is not None:
                    out["bias_ih" + suffix] = lw.b_ih
                    out["bias_hh" + suffix] = lw.b_hh
                if lw.w_hr is not None:
                    out["weight_hr" + suffix] = lw.w_hr
        if self.head is not None:
            out["head.weight"] = self.head.weight
            if self.head.bias is not None:
                out["head.bias"] = self.head.bias
        return out

    def manifest(self) -> dict:
        return {
            "format": SPEC_FORMAT,
            "version": SPEC_VERSION,
            "cell": self.cell,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "proj_size": self.proj_size,
            "bias": self.bias,
            "dropout": self.dropout,
            "gate_order": list(self.gate_order),
            "head": None
            if self.head is None
            else {
                "mode": self.head.mode,
                "out_features": self.head.out_features,
                "bias": self.head.bias is not None,
            },
            "source": self.source,
        }

    def content_hash(self) -> str:
        """SHA-256 (hex) of what defines the model: geometry, options and every tensor.

        Independent of where the spec came from (``source``) and of how it was saved, so the
        same weights always give the same hash. A qmodel records it at quantization
        (``spec_hash``) and ``simulate --spec`` refuses a spec whose hash differs. The cell
        type is hashed for a GRU; an LSTM's hash leaves it out, so it is the same as before
        specs recorded ``cell`` (qmodels quantized then still match their specs).
        """
        digest = hashlib.sha256()
        manifest = {k: v for k, v in self.manifest().items() if k != "source"}
        if self.cell == "lstm":
            del manifest["cell"]
        digest.update(json.dumps(manifest, sort_keys=True).encode())
        for name, array in sorted(self.tensors().items()):
            array = np.ascontiguousarray(array, dtype=np.float64)
            digest.update(f"\n{name}:{array.shape}\n".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write ``path/manifest.json`` and ``path/tensors.npz`` atomically; returns ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files.save_npz(path / "tensors.npz", **self.tensors())
        files.write_json(path / "manifest.json", self.manifest())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        """Load a spec directory written by :meth:`save`; raises :class:`SpecError`."""
        from .spec_file import read_artifact  # imports this module

        manifest, tensors = read_artifact(path, SPEC_FORMAT, SPEC_VERSION)
        try:
            return cls.from_tensors(manifest, tensors)
        except SpecError as error:
            raise SpecError(f"{path}: {error}") from None

    @classmethod
    def from_tensors(cls, manifest: dict, tensors: dict[str, np.ndarray]) -> ModelSpec:
        """A spec from an artifact's manifest and tensors, every field checked
        (:mod:`lstmfpga.export.spec_file`).

        ``cell`` is ``"lstm"`` or ``"gru"``; a manifest without it (written before GRUs) is an
        LSTM. A ``gate_order`` other than PyTorch's (a permutation of ``i, f, g, o``, or of
        ``r, z, n`` for a GRU) is honoured: the gate blocks of ``w_ih``/``w_hh``/biases are
        permuted into PyTorch's order. Tensors must be floating-point arrays; missing, extra,
        complex, boolean, integer or string tensors are refused by name.
        """
        from .spec_file import spec_from_artifact  # imports this module

        return spec_from_artifact(cls, manifest, tensors)


#: The options that give a model its shape, named as :class:`ModelSpec`'s fields.
SHAPE_OPTIONS = ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size", "bias",
                 "cell")  # fmt: skip


def shape_options(model) -> dict:
    """:data:`SHAPE_OPTIONS` of ``model`` (a :class:`ModelSpec`, or anything with attributes
    of those names) as keyword arguments of :class:`ModelSpec`."""
    return {name: getattr(model, name) for name in SHAPE_OPTIONS}


def check_no_gru_projection(cell: str, proj_size: int) -> None:
    if cell == "gru" and proj_size:
        raise SpecError(f"proj_size must be 0 for a GRU (nn.GRU has none), not {proj_size}")


def __getattr__(name: str):
    """``read_artifact`` moved to :mod:`lstmfpga.export.spec_file`; old imports still work."""
    if name == "read_artifact":
        from .spec_file import read_artifact

        return read_artifact
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
