"""The bit-exact golden model: integer-only NumPy, the arithmetic contract of the hardware.

Everything here works on ``int64`` codes; ``docs/numerics.md`` states the same rules in
prose. The hardware blocks are checked against the primitives (:func:`dot_accumulate`,
:func:`lstmfpga.quant.fixed.requantize`, :class:`CellArithmetic`,
:meth:`ActivationTable.lookup`), and the accelerator against :func:`run`.

Per layer ``l``, direction ``d`` and step (time runs backwards for ``d = 1``)::

    acc    = (W_ih·u_t << s_in) + (W_hh·h_prev << s_rec) + (b << s_b)     exact, acc format
    pre    = requant(acc, acc.frac - preact.frac)                          → preact
    i,f,o  = sigmoid_table(pre_i, pre_f, pre_o);  g = tanh_gate_table(pre_g)   → gate
    c      = requant((f·c_prev << s_fc) + (i·g << s_ig), sum_frac - cell.frac) → cell
    m      = requant(o · tanh_cell_table(c), 2·gate.frac - hidden.frac)    → hidden
    h      = m, or with a projection requant(W_hr·m << s_hr, acc.frac - hidden.frac)

``requant`` is ``shift_round`` with the model's rounding mode, then saturate (or wrap).
The head applies ``requant((W·h << s_w) + (b << s_b), acc.frac - head_out.frac)``.

Dot products use float64 BLAS when every partial sum is an integer below 2**53 (the
accumulator is at most 53 bits wide), which is exact; otherwise int64 matmul.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..export.spec import SpecError
from .fixed import FixedFormat, requantize
from .model import QuantizedModel

__all__ = [
    "CellArithmetic",
    "GoldenResult",
    "dot_accumulate",
    "predict",
    "quantize_inputs",
    "run",
]

_EXACT_FLOAT_BITS = 53


class _Saturation(dict):
    def add(self, role: str, count: int) -> None:
        self[role] = self.get(role, 0) + int(count)


def _scaled_weights(codes: np.ndarray, shift: int, exact_float: bool) -> np.ndarray:
    scaled = codes.astype(np.int64) << shift
    return scaled.astype(np.float64) if exact_float else scaled


def _matmul(v: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """``v @ w_t`` exactly: float64 operands hold integers whose sums stay below 2**53."""
    if w_t.dtype == np.float64:
        return (v.astype(np.float64) @ w_t).astype(np.int64)
    return v.astype(np.int64) @ w_t


def dot_accumulate(
    weights,
    vector,
    shifts,
    bias=None,
    bias_shift: int = 0,
) -> np.ndarray:
    """The matrix-vector unit's exact accumulation.

    ``weights`` ``(R, K)`` codes, ``vector`` ``(..., K)`` codes, ``shifts`` ``(K,)`` left
    shift of each column's products (or a scalar), ``bias`` ``(R,)`` codes shifted left by
    ``bias_shift``. Returns ``(..., R)`` int64: ``sum_k (w[r,k] * v[k] << shifts[k]) +
    (bias[r] << bias_shift)``.
    """
    w = np.asarray(weights, dtype=np.int64)
    v = np.asarray(vector, dtype=np.int64)
    shifts = np.broadcast_to(np.asarray(shifts, dtype=np.int64), (w.shape[1],))
    acc = v @ (w << shifts[None, :]).T
    if bias is not None:
        acc = acc + (np.asarray(bias, dtype=np.int64) << bias_shift)
    return acc


@dataclass(frozen=True)
class CellArithmetic:
    """The cell update's constants and function (what the cell datapath implements).

    ``c = requant((f*c_prev << fc_shift) + (i*g << ig_shift), c_shift) → cell`` and
    ``m = requant(o * tanh_cell(c), m_shift) → hidden``, where ``requant`` rounds per
    ``rounding`` then applies ``overflow``.
    """

    gate: FixedFormat
    cell: FixedFormat
    hidden: FixedFormat
    rounding: str
    overflow: str
    tanh_cell: object  # ActivationTable

    @classmethod
    def of(cls, model: QuantizedModel) -> CellArithmetic:
        f = model.formats
        return cls(f["gate"], f["cell"], f["hidden"], model.rounding, model.overflow,
                   model.tables["tanh_cell"])  # fmt: skip

    @property
    def sum_frac(self) -> int:
        """Fraction bits of the aligned sum ``f*c_prev + i*g``."""
        return self.gate.frac + max(self.cell.frac, self.gate.frac)

    @property
    def fc_shift(self) -> int:
        return self.sum_frac - self.gate.frac - self.cell.frac

    @property
    def ig_shift(self) -> int:
        return self.sum_frac - 2 * self.gate.frac

    @property
    def c_shift(self) -> int:
        return self.sum_frac - self.cell.frac

    @property
    def m_shift(self) -> int:
        return 2 * self.gate.frac - self.hidden.frac

    def update(self, i, f, g, o, c_prev, saturation: dict | None = None):
        """Return ``(c, m)`` codes for gate activations and the previous cell state."""
        i, f, g, o, c_prev = (np.asarray(a, dtype=np.int64) for a in (i, f, g, o, c_prev))
        total = ((f * c_prev) << self.fc_shift) + ((i * g) << self.ig_shift)
        c, n_c = requantize(total, self.c_shift, self.cell, self.rounding, self.overflow)
        tc = self.tanh_cell.lookup(c)
        m, n_m = requantize(o * tc, self.m_shift, self.hidden, self.rounding, self.overflow)
        if saturation is not None:
            saturation.add("cell", n_c)
            saturation.add("hidden", n_m)
        return c, m


@dataclass
class GoldenResult:
    """Integer codes: ``output`` (B, T, D*H_out) in ``hidden``; ``h_n`` (L*D, B, H_out);
    ``c_n`` (L*D, B, H) in ``cell``; ``head`` in ``head_out`` or None; ``saturation``
    counts per role; ``trace[(l, d)]`` holds ``preact``, ``gates`` (B, T, 4H), ``c``, ``m``,
    ``h`` by time when asked."""

    output: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray
    head: np.ndarray | None
    saturation: dict[str, int]
    trace: dict = field(default_factory=dict)

    @property
    def prediction(self) -> np.ndarray:
        """What ``predict --raw`` writes: head codes, else the output sequence codes."""
        return self.output if self.head is None else self.head


def quantize_inputs(model: QuantizedModel, x, saturation: dict | None = None) -> np.ndarray:
    """Float inputs ``(batch, seq, input_size)`` → ``x`` codes (rounding, saturation)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise SpecError(f"inputs must be a float array, not dtype {x.dtype}")
    if x.ndim != 3 or x.shape[2] != model.input_size or 0 in x.shape:
        raise SpecError(f"inputs must have shape (batch, seq, {model.input_size}), not {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SpecError("inputs contain non-finite values (NaN or Inf)")
    fmt = model.formats["x"]
    scaled = np.ldexp(x.astype(np.float64), fmt.frac)
    if saturation is not None:
        over = (scaled > fmt.max_code + 0.5) | (scaled < fmt.min_code - 0.5)
        saturation["x"] = saturation.get("x", 0) + int(np.count_nonzero(over))
    return fmt.quantize(x, model.rounding, model.overflow)


def _check_codes(name: str, codes, shape: tuple, fmt: FixedFormat) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.shape != shape:
        raise SpecError(f"{name} must have shape {shape}, not {codes.shape}")
    if codes.dtype.kind not in "iu":
        raise SpecError(f"{name} must be integer codes, not dtype {codes.dtype}")
    codes = codes.astype(np.int64)
    if np.any(fmt.overflows(codes)):
        raise SpecError(f"{name} has codes outside {fmt}")
    return codes


def run(model: QuantizedModel, x_codes, h0=None, c0=None, *, trace: bool = False):
    """Run the golden model on input codes ``(batch, seq, input_size)``.

    ``h0`` ``(L*D, B, H_out)`` hidden codes and ``c0`` ``(L*D, B, H)`` cell codes default to
    zeros. Returns a :class:`GoldenResult`.
    """
    x_codes = np.asarray(x_codes)
    if x_codes.ndim != 3 or x_codes.shape[2] != model.input_size or 0 in x_codes.shape:
        raise SpecError(
            f"input codes must have shape (batch, seq, {model.input_size}), not {x_codes.shape}"
        )
    x_codes = _check_codes("input codes", x_codes, x_codes.shape, model.formats["x"])
    B, T, _ = x_codes.shape
    H, H_out, D = model.hidden_size, model.output_size, model.num_directions
    LD = model.num_layers * D
    fmts = model.formats
    h0 = np.zeros((LD, B, H_out), np.int64) if h0 is None else _check_codes(
        "h0", h0, (LD, B, H_out), fmts["hidden"])  # fmt: skip
    c0 = np.zeros((LD, B, H), np.int64) if c0 is None else _check_codes(
        "c0", c0, (LD, B, H), fmts["cell"])  # fmt: skip
    exact_float = model.acc.bits <= _EXACT_FLOAT_BITS
    rounding, overflow = model.rounding, model.overflow
    sat = _Saturation()
    cell = CellArithmetic.of(model)
    sigmoid, tanh_gate = model.tables["sigmoid"], model.tables["tanh_gate"]
    pre_shift = model.requant_shift("preact")
    h_shift = model.requant_shift("hidden")
    h_n = np.empty_like(h0)
    c_n = np.empty_like(c0)
    traces = {}
    layer_input = x_codes
    for index, directions in enumerate(model.layers):
        outputs = []
        for d, q in enumerate(directions):
            state = index * D + d
            s_in, s_rec, s_b = model.gate_shifts(index, d)
            w_in_t = _scaled_weights(q.w_ih.codes, s_in, exact_float).T
            w_rec_t = _scaled_weights(q.w_hh.codes, s_rec, exact_float).T
            acc_in = _matmul(layer_input.reshape(B * T, -1), w_in_t).reshape(B, T, 4 * H)
            if q.bias is not None:
                acc_in = acc_in + (q.bias.codes << s_b)
            w_hr_t = None
            if q.w_hr is not None:
                w_hr_t = _scaled_weights(q.w_hr.codes, model.proj_shift(index, d), exact_float).T
            h, c = h0[state], c0[state]
            out = np.empty((B, T, H_out), np.int64)
            rec = {}
            if trace:
                rec = {k: np.empty((B, T, n), np.int64) for k, n in
                       (("preact", 4 * H), ("gates", 4 * H), ("c", H), ("m", H))}  # fmt: skip
            for t in range(T - 1, -1, -1) if d else range(T):
                acc = acc_in[:, t] + _matmul(h, w_rec_t)
                pre, n = requantize(acc, pre_shift, fmts["preact"], rounding, overflow)
                sat.add("preact", n)
                gates = sigmoid.lookup(pre)
                gates[:, 2 * H : 3 * H] = tanh_gate.lookup(pre[:, 2 * H : 3 * H])
                i, f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
                c, m = cell.update(i, f, g, o, c, sat)
                if w_hr_t is not None:
                    h, n = requantize(_matmul(m, w_hr_t), h_shift, fmts["hidden"], rounding,
                                      overflow)  # fmt: skip
                    sat.add("hidden", n)
                else:
                    h = m
                out[:, t] = h
                if trace:
                    rec["preact"][:, t], rec["gates"][:, t] = pre, gates
                    rec["c"][:, t], rec["m"][:, t] = c, m
            h_n[state], c_n[state] = h, c
            outputs.append(out)
            if trace:
                rec["h"] = out
                traces[(index, d)] = rec
        layer_input = np.concatenate(outputs, axis=2) if D == 2 else outputs[0]
    head = None
    if model.head is not None:
        source = layer_input[:, -1] if model.head.mode == "last" else layer_input
        s_w, s_b = model.head_shifts()
        w_t = _scaled_weights(model.head.weight.codes, s_w, exact_float).T
        acc = _matmul(source.reshape(-1, source.shape[-1]), w_t)
        if model.head.bias is not None:
            acc = acc + (model.head.bias.codes << s_b)
        acc = acc.reshape(*source.shape[:-1], -1)
        head, n = requantize(acc, model.requant_shift("head_out"), fmts["head_out"], rounding,
                             overflow)  # fmt: skip
        sat.add("head_out", n)
    return GoldenResult(layer_input, h_n, c_n, head, dict(sat), traces)


def predict(model: QuantizedModel, x, h0=None, c0=None) -> tuple[np.ndarray, GoldenResult]:
    """Float in, dequantized float out: quantize ``x`` (and states), run, dequantize."""
    sat = _Saturation()
    x_codes = quantize_inputs(model, x, sat)
    h0c = None if h0 is None else model.formats["hidden"].quantize(h0, model.rounding)
    c0c = None if c0 is None else model.formats["cell"].quantize(c0, model.rounding)
    result = run(model, x_codes, h0c, c0c)
    for role, count in sat.items():
        result.saturation[role] = result.saturation.get(role, 0) + count
    return model.output_format.dequantize(result.prediction), result
