"""The bit-exact golden model: integer NumPy, the arithmetic contract of the hardware.

Everything here takes and returns ``int64`` codes; ``docs/numerics.md`` states the same
rules in prose. The hardware blocks are checked against the primitives (:func:`dot_accumulate`,
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

How it computes (not part of the contract): when every intermediate value is an integer of
magnitude below 2**52 (accumulator at most 53 bits wide, see ``_FloatDatapath.exact_for``)
the step runs on float64 arrays holding the integer codes, with BLAS matmuls; every
product, sum, power-of-two scaling and rounding is then exact, so the codes are those of the
int64 path (``_IntDatapath``: the primitives above, used otherwise and for ``wrap``). The
tests check that both paths agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..export.spec import SpecError
from .fixed import FixedFormat, requantize
from .model import QuantizedModel, cell_sum_bits

__all__ = [
    "CellArithmetic",
    "GoldenResult",
    "dot_accumulate",
    "predict",
    "quantize_inputs",
    "run",
]

#: float64 holds every integer below 2**53; the fast datapath keeps magnitudes below 2**52.
_EXACT_FLOAT_BITS = 53


class _Saturation(dict):
    def add(self, role: str, count: int) -> None:
        self[role] = self.get(role, 0) + int(count)


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
        if self.tanh_cell.in_fmt == self.cell:  # c fits ``cell`` after requantize
            tc = self.tanh_cell.lookup_in_range(c)
        else:
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
    """Float inputs ``(batch, seq, input_size)`` → ``x`` codes.

    Rounds per the model's rounding mode, then saturates (or wraps) per its overflow mode;
    adds the number of codes that did not fit to ``saturation["x"]``.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise SpecError(f"inputs must be a float array, not dtype {x.dtype}")
    if x.ndim != 3 or x.shape[2] != model.input_size or 0 in x.shape:
        raise SpecError(f"inputs must have shape (batch, seq, {model.input_size}), not {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SpecError("inputs contain non-finite values (NaN or Inf)")
    return _quantize_data(model, "x", x, model.overflow, saturation, "x")


def _quantize_data(model, role, values, overflow, saturation, counter) -> np.ndarray:
    fmt = model.formats[role]
    codes = fmt.round_codes(values, model.rounding)
    if saturation is not None:
        saturation[counter] = saturation.get(counter, 0) + int(
            np.count_nonzero(fmt.overflows(codes))
        )
    return fmt.fit(codes, overflow)


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
    dp = _FloatDatapath(model) if _FloatDatapath.exact_for(model) else _IntDatapath(model)
    dtype = dp.dtype
    sat = _Saturation()
    h_n = np.empty_like(h0)
    c_n = np.empty_like(c0)
    traces = {}
    # The recurrence works in (feature, batch) layout with the gate rows reordered to
    # (i, f, o, g), so that the sigmoid and tanh blocks are contiguous; results and traces
    # are stored as (batch, time, feature) in (i, f, g, o) order.
    order = np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]
    unorder = np.argsort(order)
    layer_input = x_codes
    for index, directions in enumerate(model.layers):
        outputs = []
        u = layer_input.transpose(1, 2, 0).astype(dtype)  # (T, features, B)
        K = u.shape[1]
        for d, q in enumerate(directions):
            state = index * D + d
            s_in, s_rec, s_b = model.gate_shifts(index, d)
            # One matrix [W_ih | W_hh | bias] times the column [u_t; h_prev; 1] per step.
            w = [dp.matrix(q.w_ih.codes[order], s_in, "preact")]
            w.append(dp.matrix(q.w_hh.codes[order], s_rec, "preact"))
            if q.bias is not None:
                w.append(dp.matrix(q.bias.codes[order, None], s_b, "preact"))
            w = np.concatenate(w, axis=1)
            v = np.ones((w.shape[1], B), dtype)
            w_hr = None
            if q.w_hr is not None:
                w_hr = dp.matrix(q.w_hr.codes, model.proj_shift(index, d), "hidden")
            h, c = h0[state].T.astype(dtype), c0[state].T.astype(dtype)
            out = np.empty((B, T, H_out), np.int64)
            rec = {}
            if trace:
                rec = {k: np.empty((B, T, n), np.int64) for k, n in
                       (("preact", 4 * H), ("gates", 4 * H), ("c", H), ("m", H))}  # fmt: skip
            for t in range(T - 1, -1, -1) if d else range(T):
                v[:K], v[K : K + H_out] = u[t], h
                pre, (sig, g) = dp.gates(w @ v, sat)  # rows (i, f, o, g)
                i, f, o = sig[:H], sig[H : 2 * H], sig[2 * H :]
                c, m = dp.update(i, f, g, o, c, sat)
                if w_hr is not None:
                    h, n = dp.requant(w_hr @ m, "hidden")
                    sat.add("hidden", n)
                else:
                    h = m
                out[:, t] = h.T
                if trace:
                    rec["preact"][:, t] = pre[unorder].T
                    rec["gates"][:, t] = np.concatenate([sig, g])[unorder].T
                    rec["c"][:, t], rec["m"][:, t] = c.T, m.T
            h_n[state], c_n[state] = h.T, c.T
            outputs.append(out)
            if trace:
                rec["h"] = out
                traces[(index, d)] = rec
        layer_input = np.concatenate(outputs, axis=2) if D == 2 else outputs[0]
    head = None
    if model.head is not None:
        source = layer_input[:, -1] if model.head.mode == "last" else layer_input
        s_w, s_b = model.head_shifts()
        acc = (
            source.reshape(-1, source.shape[-1]).astype(dtype)
            @ dp.matrix(model.head.weight.codes, s_w, "head_out").T
        )
        if model.head.bias is not None:
            acc += dp.matrix(model.head.bias.codes, s_b, "head_out")
        head, n = dp.requant(acc.reshape(*source.shape[:-1], -1), "head_out")
        head = head.astype(np.int64)
        sat.add("head_out", n)
    return GoldenResult(layer_input, h_n, c_n, head, dict(sat), traces)


def predict(model: QuantizedModel, x, h0=None, c0=None) -> tuple[np.ndarray, GoldenResult]:
    """Float in, dequantized float out: quantize ``x`` (and states), run, dequantize.

    ``x`` is quantized with the model's rounding and overflow modes; ``h0``/``c0`` (floats,
    shapes as for :func:`run`) with its rounding, saturating. Codes that did not fit count
    under ``x``, ``hidden`` (``h0``) and ``cell`` (``c0``) in ``result.saturation``.
    Returns ``(prediction, result)``: the dequantized head output (or output sequence) and
    the :class:`GoldenResult` of codes.
    """
    sat = _Saturation()
    x_codes = quantize_inputs(model, x, sat)
    states = []
    for name, role, value in (("h0", "hidden", h0), ("c0", "cell", c0)):
        if value is not None:
            value = np.asarray(value)
            if value.dtype.kind not in "fiu" or value.dtype == np.bool_:
                raise SpecError(f"{name} must be a float array, not dtype {value.dtype}")
            if not np.all(np.isfinite(value)):
                raise SpecError(f"{name} contains non-finite values (NaN or Inf)")
            value = _quantize_data(model, role, value, "saturate", sat, role)
        states.append(value)
    result = run(model, x_codes, *states)
    for role, count in sat.items():
        result.saturation[role] = result.saturation.get(role, 0) + count
    return model.output_format.dequantize(result.prediction), result


class _IntDatapath:
    """The step arithmetic on ``int64`` codes: the primitives, as written in the docstring."""

    dtype = np.int64

    def __init__(self, model: QuantizedModel):
        self.model = model
        self.cell = CellArithmetic.of(model)

    def matrix(self, codes, shift: int, target: str) -> np.ndarray:
        """Weight (or bias) codes aligned to the accumulator: ``codes << shift``; the
        accumulator is requantized to the ``target`` role."""
        return np.asarray(codes, dtype=np.int64) << shift

    def requant(self, acc, target: str):
        m = self.model
        return requantize(acc, m.requant_shift(target), m.formats[target], m.rounding, m.overflow)

    def gates(self, acc, saturation):
        """``preact`` codes of rows ``(i, f, o, g)`` and the gates ``(sigmoid(i, f, o),
        tanh(g))``."""
        pre, n = self.requant(acc, "preact")
        saturation.add("preact", n)
        tables = self.model.tables
        H = pre.shape[0] // 4
        return pre, (
            tables["sigmoid"].lookup_in_range(pre[: 3 * H]),
            tables["tanh_gate"].lookup_in_range(pre[3 * H :]),
        )

    def update(self, i, f, g, o, c_prev, saturation):
        return self.cell.update(i, f, g, o, c_prev, saturation)


class _FloatDatapath(_IntDatapath):
    """The same arithmetic on ``float64`` arrays holding the codes: faster, identical.

    Used when every intermediate is below ``2**52`` in magnitude (see :meth:`exact_for`):
    then products, sums and scalings by powers of two are exact. Requantization shifts are
    folded into the operands (``matrix`` scales the aligned weights by ``2**-shift``, the
    cell update scales its two products, the ``tanh_cell`` map is scaled by ``2**-m_shift``),
    so each requantization only rounds ``y = x * 2**-shift`` (exact, a multiple of
    ``2**-shift`` below ``2**(52 - shift)``): ``rint(y)`` is half_even, ``floor(y)``
    truncate and ``floor(y + 0.5)`` half_up (``y + 0.5`` is exact as well).
    """

    dtype = np.float64

    def __init__(self, model: QuantizedModel):
        super().__init__(model)
        self.maps = {k: t._code_map().astype(np.float64) for k, t in model.tables.items()}
        self.maps["tanh_cell"] *= 2.0**-self.cell.m_shift
        self.bounds = {r: (float(f.min_code), float(f.max_code)) for r, f in model.formats.items()}
        self.round = {
            "half_even": _round_half_even,
            "half_up": _round_half_up,
            "truncate": _round_truncate,
        }[model.rounding]

    @staticmethod
    def exact_for(model: QuantizedModel) -> bool:
        limit = _EXACT_FLOAT_BITS
        gate = model.formats["gate"]
        return (
            model.overflow == "saturate"
            and model.acc.bits <= limit
            and cell_sum_bits(gate, model.formats["cell"]) <= limit
            and 2 * gate.frac + 2 <= limit  # o * tanh(c)
            and all(t._code_map() is not None for t in model.tables.values())
        )

    def matrix(self, codes, shift: int, target: str) -> np.ndarray:
        aligned = super().matrix(codes, shift, target).astype(np.float64)
        return aligned * 2.0 ** -self.model.requant_shift(target)

    def requant(self, acc, target: str):
        return self._round(acc, target)

    def _round(self, y, role: str):
        """Round ``y`` (already scaled) in place, then saturate to ``role``: ``(y, count)``."""
        self.round(y)
        low, high = self.bounds[role]
        count = 0
        if y.size and (y.min() < low or y.max() > high):
            count = int(np.count_nonzero((y < low) | (y > high)))
            np.clip(y, low, high, out=y)
        return y, count

    def gates(self, acc, saturation):
        pre, n = self._round(acc, "preact")
        saturation.add("preact", n)
        codes = pre.astype(np.intp)
        H = pre.shape[0] // 4
        # The maps hold negative codes at the end, where negative indices read.
        return pre, (self.maps["sigmoid"][codes[: 3 * H]], self.maps["tanh_gate"][codes[3 * H :]])

    def update(self, i, f, g, o, c_prev, saturation):
        a = self.cell
        total = f * c_prev  # (f*c << fc_shift) * 2**-c_shift, exact
        total *= 2.0 ** (a.fc_shift - a.c_shift)
        ig = i * g
        ig *= 2.0 ** (a.ig_shift - a.c_shift)
        total += ig
        c, n_c = self._round(total, "cell")
        m = self.maps["tanh_cell"][c.astype(np.intp)]  # tanh_cell(c) * 2**-m_shift
        m *= o
        m, n_m = self._round(m, "hidden")
        saturation.add("cell", n_c)
        saturation.add("hidden", n_m)
        return c, m


def _round_half_even(y: np.ndarray) -> None:
    np.rint(y, out=y)


def _round_half_up(y: np.ndarray) -> None:
    y += 0.5
    np.floor(y, out=y)


def _round_truncate(y: np.ndarray) -> None:
    np.floor(y, out=y)
