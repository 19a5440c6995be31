"""The quantized model: integer weights, per-role formats, activation tables, alignment.

A :class:`QuantizedModel` is everything the golden model and the hardware need, and nothing
else: the geometry of the LSTM (or GRU, ``cell="gru"``), integer weight codes with one
format per tensor, one format per data role, the accumulator format, the activation tables,
and the rounding/overflow rules. It saves as a versioned directory (``manifest.json`` +
``tensors.npz``, no pickle).

Accumulator alignment (see ``docs/numerics.md`` and :mod:`lstmfpga.quant.accumulator`,
which sizes the accumulator): every dot product accumulates in one accumulator format; a
product ``w * v`` enters it shifted left by ``acc_frac - frac(w) - frac(v)``, a bias code by
``acc_frac - frac(b)`` (:meth:`QuantizedModel.gate_shifts` and the other ``*_shift(s)``
methods). No rounding happens before the accumulator is requantized. Reading and writing the
artifact: :mod:`lstmfpga.quant.qmodel_file`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..export.spec import LSTMGeometry, ModelSpec, SpecError, shape_options
from .accumulator import accumulator_format, cell_sum_bits, describe_products
from .activation import ActivationTable
from .config import QuantConfig
from .fixed import FixedFormat, FormatError

__all__ = [
    "GRU_DATA_ROLES",
    "LSTM_DATA_ROLES",
    "QMODEL_FORMAT",
    "QMODEL_VERSION",
    "QHead",
    "QLayer",
    "QuantizedModel",
    "Tensor",
]

QMODEL_FORMAT = "lstmfpga.qmodel"
QMODEL_VERSION = 1
#: The data roles (keys of ``QuantizedModel.formats``) of each cell type.
LSTM_DATA_ROLES = ("x", "preact", "gate", "cell", "hidden", "head_out")
GRU_DATA_ROLES = ("x", "preact", "gate", "hn", "hidden", "head_out")


@dataclass(frozen=True, eq=False)
class Tensor:
    """Integer codes and their format."""

    codes: np.ndarray
    fmt: FixedFormat

    def __post_init__(self):
        raw = np.asarray(self.codes)
        if raw.dtype.kind in "iu" and raw.size:
            # Check the range before the int64 cast (a uint64 code above 2**63 would wrap).
            if int(raw.min()) < self.fmt.min_code or int(raw.max()) > self.fmt.max_code:
                raise FormatError(f"tensor codes do not fit {self.fmt}")
        codes = np.array(raw, dtype=np.int64)
        if np.any(self.fmt.overflows(codes)):
            raise FormatError(f"tensor codes do not fit {self.fmt}")
        codes.setflags(write=False)
        object.__setattr__(self, "codes", codes)

    @property
    def values(self) -> np.ndarray:
        return self.fmt.dequantize(self.codes)


@dataclass(frozen=True, eq=False)
class QLayer:
    """One (layer, direction): ``w_ih`` (4H, I_l), ``w_hh`` (4H, H_out), ``bias`` (4H,)
    (``b_ih + b_hh`` quantized once) or None, ``w_hr`` (H_out, H) or None.

    For a GRU ``w_ih`` is (3H, I_l), ``w_hh`` (3H, H) in gate order (r, z, n), ``bias`` (3H,)
    holds ``b_ir + b_hr``, ``b_iz + b_hz`` and ``b_in``, and ``b_hn`` (H,) the recurrent
    bias of n, kept apart because the reset gate scales it (both None without bias)."""

    w_ih: Tensor
    w_hh: Tensor
    bias: Tensor | None
    w_hr: Tensor | None
    b_hn: Tensor | None = None


@dataclass(frozen=True, eq=False)
class QHead:
    weight: Tensor
    bias: Tensor | None
    mode: str

    @property
    def out_features(self) -> int:
        return int(self.weight.codes.shape[0])


@dataclass(frozen=True, eq=False)
class QuantizedModel(LSTMGeometry):
    """A fixed-point LSTM or GRU. ``formats`` maps each data role (``x``, ``preact``,
    ``gate``, ``cell``, ``hidden``, ``head_out``; a GRU has ``hn``, the requantized
    recurrent sum of its n gate, instead of ``cell``) to its format; ``acc`` is the
    accumulator format. ``cell`` is ``"lstm"`` or ``"gru"``."""

    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    proj_size: int
    has_bias: bool
    layers: tuple[tuple[QLayer, ...], ...]
    head: QHead | None
    formats: dict[str, FixedFormat]
    acc: FixedFormat
    config: QuantConfig
    calibration: dict = field(default_factory=dict)
    #: :meth:`ModelSpec.content_hash` of the spec this model was quantized from (None when
    #: unknown, e.g. a qmodel saved before the hash was recorded).
    spec_hash: str | None = None
    cell: str = "lstm"

    @property
    def num_gates(self) -> int:
        """Gate blocks per gate tensor: 4 for an LSTM, 3 for a GRU."""
        return 3 if self.cell == "gru" else 4

    @property
    def data_roles(self) -> tuple[str, ...]:
        """The data roles of this cell type (the keys of ``formats``)."""
        return GRU_DATA_ROLES if self.cell == "gru" else LSTM_DATA_ROLES

    def require_lstm(self, what: str) -> None:
        """Raise :class:`SpecError` unless this is an LSTM (for stages without GRU support):
        ``model.require_lstm("hardware generation")`` refuses a GRU with ``hardware
        generation supports LSTM qmodels only, not cell 'gru'``."""
        if self.cell != "lstm":
            raise SpecError(f"{what} supports LSTM qmodels only, not cell {self.cell!r}")

    @property
    def output_format(self) -> FixedFormat:
        """Format of what ``predict`` returns: ``head_out`` with a head, else ``hidden``."""
        return self.formats["head_out" if self.head is not None else "hidden"]

    rounding = property(lambda self: self.config.rounding, doc="The config's rounding mode.")
    overflow = property(lambda self: self.config.overflow, doc="The config's overflow mode.")

    # -- tables ----------------------------------------------------------------------------
    def _table(self, function: str, in_role: str) -> ActivationTable:
        rule = getattr(self.config, function)
        return rule.table(function, self.formats[in_role], self.formats["gate"])

    @property
    def tables(self) -> dict[str, ActivationTable]:
        """``sigmoid`` and ``tanh_gate`` (preact → gate) and ``tanh_cell`` (cell → gate; an
        LSTM's only: a GRU has no cell state)."""
        cached = self.__dict__.get("_tables")
        if cached is None:
            cached = {
                "sigmoid": self._table("sigmoid", "preact"),
                "tanh_gate": self._table("tanh", "preact"),
            }
            if self.cell == "lstm":
                cached["tanh_cell"] = self._table("tanh", "cell")
            object.__setattr__(self, "_tables", cached)
        return cached

    # -- alignment -------------------------------------------------------------------------
    def input_format(self, layer: int) -> FixedFormat:
        """Format of layer ``layer``'s input vector: ``x`` for layer 0, else ``hidden``."""
        return self.formats["x" if layer == 0 else "hidden"]

    def gate_shifts(self, layer: int, direction: int) -> tuple[int, int, int]:
        """Left shifts into the accumulator for ``(w_ih * u, w_hh * h, bias)``."""
        q = self.layers[layer][direction]
        h = self.formats["hidden"]
        s_in = self.acc.frac - q.w_ih.fmt.frac - self.input_format(layer).frac
        s_rec = self.acc.frac - q.w_hh.fmt.frac - h.frac
        s_b = self.acc.frac - q.bias.fmt.frac if q.bias is not None else 0
        return s_in, s_rec, s_b

    def gru_shifts(self, layer: int, direction: int) -> tuple[int, int]:
        """A GRU's left shifts into the accumulator for ``(b_hn, r * hn)``."""
        q = self.layers[layer][direction]
        s_bn = self.acc.frac - q.b_hn.fmt.frac if q.b_hn is not None else 0
        return s_bn, self.acc.frac - self.formats["gate"].frac - self.formats["hn"].frac

    def proj_shift(self, layer: int, direction: int) -> int:
        """Left shift into the accumulator for ``w_hr * m``."""
        q = self.layers[layer][direction]
        return self.acc.frac - q.w_hr.fmt.frac - self.formats["hidden"].frac

    def head_shifts(self) -> tuple[int, int]:
        """Left shifts into the accumulator for ``(head_w * h, head_b)``."""
        s_w = self.acc.frac - self.head.weight.fmt.frac - self.formats["hidden"].frac
        s_b = self.acc.frac - self.head.bias.fmt.frac if self.head.bias is not None else 0
        return s_w, s_b

    def aligned_gate_bias(self, layer: int, direction: int) -> np.ndarray:
        """The gate bias as accumulator codes (``bias << s_b``), zeros when ``bias=False``."""
        q = self.layers[layer][direction]
        if q.bias is None:
            return np.zeros(self.num_gates * self.hidden_size, np.int64)
        return q.bias.codes << self.gate_shifts(layer, direction)[2]

    def aligned_head_bias(self) -> np.ndarray:
        """The head bias as accumulator codes (``head_b << s_b``), zeros without a bias."""
        if self.head.bias is None:
            return np.zeros(self.head.out_features, np.int64)
        return self.head.bias.codes << self.head_shifts()[1]

    def requant_shift(self, role: str) -> int:
        """Right shift from the accumulator to data role ``role`` (may be negative)."""
        return self.acc.frac - self.formats[role].frac

    # -- construction helpers ----------------------------------------------------------------
    @classmethod
    def assemble(
        cls, spec, layers, head, *, formats, acc, config, calibration, spec_hash=None
    ) -> QuantizedModel:
        """The validated model of ``spec``'s geometry with these quantized ``layers``/``head``,
        formats and rules. ``spec`` is a ``ModelSpec`` (the model's ``spec_hash`` is then
        ``spec.content_hash()``) or any object with its geometry attributes (``input_size``,
        ``hidden_size``, ``num_layers``, ``bidirectional``, ``proj_size``, ``bias``, ``cell``;
        the ``spec_hash`` given is recorded)."""
        if isinstance(spec, ModelSpec):
            spec_hash = spec.content_hash()
        shape = shape_options(spec)
        shape["has_bias"] = shape.pop("bias")
        model = cls(
            **shape,
            layers=tuple(layers),
            head=head,
            formats=formats,
            acc=acc,
            config=config,
            calibration=calibration,
            spec_hash=spec_hash,
        )
        model.validate()
        return model

    # -- summary ---------------------------------------------------------------------------
    def describe(self) -> str:
        lines = [
            f"quantized {self.cell.upper()} ({self.config.name}) {self.shape_text(self.has_bias)}",
            "head: none"
            if self.head is None
            else f"head: {self.head.out_features} outputs on {self.head.mode} timestep(s)",
            f"rounding={self.rounding} overflow={self.overflow}",
            "data formats: "
            + ", ".join(f"{role}={fmt}" for role, fmt in self.formats.items())
            + f", acc={self.acc}",
        ]
        for index, directions in enumerate(self.layers):
            for d, q in enumerate(directions):
                parts = [f"w_ih={q.w_ih.fmt}", f"w_hh={q.w_hh.fmt}"]
                if q.bias is not None:
                    parts.append(f"bias={q.bias.fmt}")
                if q.b_hn is not None:
                    parts.append(f"b_hn={q.b_hn.fmt}")
                if q.w_hr is not None:
                    parts.append(f"w_hr={q.w_hr.fmt}")
                lines.append(f"layer {index}{' reverse' if d else ''}: " + ", ".join(parts))
        if self.head is not None:
            parts = [f"head_w={self.head.weight.fmt}"]
            if self.head.bias is not None:
                parts.append(f"head_b={self.head.bias.fmt}")
            lines.append("head: " + ", ".join(parts))
        for name, table in self.tables.items():
            err = table.error()
            lines.append(
                f"table {name}: {table.in_fmt} -> {table.out_fmt}, {table.size + 1} entries, "
                f"{'interpolated' if table.interpolate else 'direct'}, "
                f"max error {err.max_lsb:.3f} LSB, mean {err.mean_lsb:.3f} LSB"
                + ("" if err.exhaustive else " (sampled)")
            )
        return "\n".join(lines)

    @property
    def weight_count(self) -> int:
        """Stored weight and bias codes: the elements of every tensor (:meth:`named_tensors`)."""
        return sum(t.codes.size for _, t in self.named_tensors() if t is not None)

    def widest_weight_bits(self, head: bool = True) -> int:
        """The widest weight format (bits) over every layer's ``w_ih``, ``w_hh`` and ``w_hr``,
        and the head's weight with ``head`` (what a weight memory word must hold)."""
        bits = max(
            t.fmt.bits
            for directions in self.layers
            for q in directions
            for t in (q.w_ih, q.w_hh, q.w_hr)
            if t is not None
        )
        if head and self.head is not None:
            bits = max(bits, self.head.weight.fmt.bits)
        return bits

    def geometry_dict(self) -> dict:
        """The model's shape as JSON: ``input_size``, ``hidden_size``, ``num_layers``,
        ``bidirectional``, ``proj_size``, ``bias`` and ``head`` (``{"mode", "out_features"}``
        or ``None``), and ``cell`` for a GRU (an LSTM's dict is as before GRUs). The one
        definition behind the qmodel manifest, the hardware manifest's
        and the report's ``model`` sections."""
        head = None
        if self.head is not None:
            head = {"mode": self.head.mode, "out_features": self.head.out_features}
        geometry = {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "proj_size": self.proj_size,
            "bias": self.has_bias,
            "head": head,
        }
        if self.cell != "lstm":
            geometry["cell"] = self.cell
        return geometry

    # -- artifact ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path/manifest.json`` and ``path/tensors.npz`` (each to a temporary name,
        then renamed: an interrupted save never leaves a half-written file). An earlier
        manifest is removed first and the new one written last, so a folder with a manifest
        always holds that manifest's tensors (an interrupted save leaves no artifact)."""
        from .qmodel_file import write_qmodel

        return write_qmodel(self, path)

    def named_tensors(self):
        """``(artifact name, Tensor or None)`` of every weight slot, in artifact order."""
        for index, directions in enumerate(self.layers):
            for d, q in enumerate(directions):
                suffix = f"_l{index}" + ("_reverse" if d else "")
                for name in ("w_ih", "w_hh", "bias", "w_hr", "b_hn"):
                    yield name + suffix, getattr(q, name)
        if self.head is not None:
            yield "head_w", self.head.weight
            yield "head_b", self.head.bias

    @classmethod
    def load(cls, path: str | Path) -> QuantizedModel:
        """Load a directory written by :meth:`save`, checking every field.

        The manifest is read within :mod:`lstmfpga.export.files`' size and depth limits, the
        tensors without pickle and with their headers checked first. Every field must have
        its type and a value that fits the rest: sizes, formats (each the width its role has
        in the config, ``frac`` at most ``bits``), one tensor per weight of the geometry and
        no other, codes that fit their format, the activation tables equal to their rules.
        Anything else raises :class:`SpecError` (or :class:`FormatError`) with a one-line
        message starting with ``path``.
        """
        from .qmodel_file import read_qmodel

        return read_qmodel(path)

    def validate(self) -> None:
        """Check shapes, roles and that the accumulator holds every dot product."""
        if self.cell not in ("lstm", "gru"):
            raise SpecError(f"cell must be 'lstm' or 'gru', not {self.cell!r:.40}")
        gru = self.cell == "gru"
        if gru and self.proj_size:
            raise SpecError(f"proj_size must be 0 for a GRU, not {self.proj_size}")
        missing = set(self.data_roles) - set(self.formats)
        if missing:
            raise SpecError(f"quantized model lacks formats for {', '.join(sorted(missing))}")
        H, H_out, G = self.hidden_size, self.output_size, self.num_gates
        for index, directions in enumerate(self.layers):
            if len(directions) != self.num_directions:
                raise SpecError(f"layer {index} has {len(directions)} directions")
            for q in directions:
                if q.w_ih.codes.shape != (G * H, self.layer_input_size(index)):
                    raise SpecError(f"layer {index} w_ih has shape {q.w_ih.codes.shape}")
                if q.w_hh.codes.shape != (G * H, H_out):
                    raise SpecError(f"layer {index} w_hh has shape {q.w_hh.codes.shape}")
                if (q.bias is not None) != self.has_bias:
                    raise SpecError(f"layer {index} bias presence does not match bias flag")
                if (q.b_hn is not None) != (gru and self.has_bias):
                    raise SpecError(f"layer {index} b_hn presence does not match the cell/bias")
                if (q.w_hr is not None) != bool(self.proj_size):
                    raise SpecError(f"layer {index} w_hr presence does not match proj_size")
                if q.bias is not None and q.bias.codes.shape != (G * H,):
                    raise SpecError(f"layer {index} bias has shape {q.bias.codes.shape}")
                if q.b_hn is not None and q.b_hn.codes.shape != (H,):
                    raise SpecError(f"layer {index} b_hn has shape {q.b_hn.codes.shape}")
                if q.w_hr is not None and q.w_hr.codes.shape != (H_out, H):
                    raise SpecError(f"layer {index} w_hr has shape {q.w_hr.codes.shape}")
        if self.head is not None:
            shape = self.head.weight.codes.shape
            if len(shape) != 2 or shape[1] != self.sequence_output_size or shape[0] < 1:
                raise SpecError(f"head weight has shape {shape}")
            if self.head.bias is not None and self.head.bias.codes.shape != shape[:1]:
                raise SpecError(f"head bias has shape {self.head.bias.codes.shape}")
            if self.head.mode not in ("last", "all"):
                raise SpecError(f"head mode must be 'last' or 'all', not {self.head.mode!r}")
        needed = accumulator_format(describe_products(self))
        if needed.frac != self.acc.frac or needed.bits > self.acc.bits:
            raise SpecError(f"accumulator {self.acc} cannot hold the dot products (needs {needed})")
        gate = self.formats["gate"]
        if gate.frac < 0 or gate.max_code < (1 << gate.frac):
            raise FormatError(f"gate format {gate} cannot hold 1.0 (frac must be in 0..bits - 2)")
        if gru:
            sum_bits = cell_sum_bits(gate, self.formats["hidden"])
            if sum_bits > 62:
                raise FormatError(
                    f"the GRU update (1 - z)*n + z*h would need {sum_bits} bits (> 62) with "
                    f"gate={gate} and hidden={self.formats['hidden']}: use narrower formats"
                )
            return
        sum_bits = cell_sum_bits(gate, self.formats["cell"])
        if sum_bits > 62:
            raise FormatError(
                f"the cell update f*c + i*g would need {sum_bits} bits (> 62) with "
                f"gate={gate} and cell={self.formats['cell']}: use narrower formats"
            )
