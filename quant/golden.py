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
the step runs on float64 arrays holding the integer codes, with one BLAS product per step
and in-place element-wise passes over preallocated buffers; every product, sum,
power-of-two scaling and rounding is then exact, so the codes are those of the int64 path
(``_IntDatapath``: the primitives above, used otherwise and for ``wrap``). The tests check
that both paths agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..export.spec import SpecError
from .fixed import FixedFormat, check_codes, requantize
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
#: Each table and the role whose codes it reads.
_TABLE_INPUTS = (("sigmoid", "preact"), ("tanh_gate", "preact"), ("tanh_cell", "cell"))


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
    return check_codes(name, codes, shape, fmt, SpecError)


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
    sat = _Saturation()
    h_n = np.empty_like(h0)
    c_n = np.empty_like(c0)
    traces = {}
    # The recurrence works in (time, feature, batch) layout, so that every step reads and
    # writes contiguous (feature, batch) blocks, with the gate rows reordered to (i, f, o, g);
    # results and traces are stored as (batch, time, feature) in (i, f, g, o) order.
    # The last layer writes its output straight into the (batch, time, feature) result.
    layer_input = np.ascontiguousarray(x_codes.transpose(1, 2, 0), dtype=dp.dtype)  # (T, K, B)
    output = np.empty((B, T, D * H_out), np.int64)
    for index, directions in enumerate(model.layers):
        last = index == model.num_layers - 1
        layer_output = output if last else np.empty((T, D * H_out, B), dp.dtype)
        for d, q in enumerate(directions):
            state = index * D + d
            rows = slice(d * H_out, (d + 1) * H_out)
            out = layer_output[..., rows] if last else layer_output[:, rows]
            rec = {}
            if trace:
                rec = {k: np.empty((B, T, n), np.int64) for k, n in
                       (("preact", 4 * H), ("gates", 4 * H), ("c", H), ("m", H))}  # fmt: skip
            steps = range(T - 1, -1, -1) if d else range(T)
            h, c = dp.direction(index, d, q, layer_input, h0[state], c0[state], steps, out,
                                last, rec, sat)  # fmt: skip
            h_n[state], c_n[state] = h.T, c.T
            if trace:
                rec["h"] = out.copy() if last else _batch_major(out)
                traces[(index, d)] = rec
        layer_input = layer_output
    head = None
    if model.head is not None:
        source = output[:, -1] if model.head.mode == "last" else output
        s_w, s_b = model.head_shifts()
        acc = (
            source.reshape(-1, source.shape[-1]).astype(dp.dtype)
            @ dp.matrix(model.head.weight.codes, s_w, "head_out").T
        )
        if model.head.bias is not None:
            acc += dp.matrix(model.head.bias.codes, s_b, "head_out")
        head, n = dp.requant(acc.reshape(*source.shape[:-1], -1), "head_out")
        head = head.astype(np.int64)
        sat.add("head_out", n)
    return GoldenResult(output, h_n, c_n, head, dict(sat), traces)


def _batch_major(codes: np.ndarray) -> np.ndarray:
    """``(time, feature, batch)`` codes (int64 or float64) → ``(batch, time, feature)`` int64."""
    return np.ascontiguousarray(codes.transpose(2, 0, 1), dtype=np.int64)


def _gate_order(H: int) -> np.ndarray:
    """Row permutation (i, f, g, o) → (i, f, o, g): sigmoid rows first, then tanh rows."""
    return np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]


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

    def direction(self, index, d, q, u, h0, c0, steps, out, batch_major, rec, sat):
        """Run layer ``index``, direction ``d`` over ``u`` ``(T, K, B)``; write ``h`` to
        ``out[t]`` ``(H_out, B)``, or to ``out[:, t]`` ``(B, H_out)`` if ``batch_major``; fill
        the trace ``rec`` if any; return the final ``(h, c)`` as ``(features, B)`` arrays."""
        model, tables = self.model, self.model.tables
        H, K = model.hidden_size, u.shape[1]
        order = _gate_order(H)
        unorder = np.argsort(order)
        s_in, s_rec, s_b = model.gate_shifts(index, d)
        # One matrix [W_ih | W_hh | bias] times the column [u_t; h_prev; 1] per step.
        w = [self.matrix(q.w_ih.codes[order], s_in, "preact")]
        w.append(self.matrix(q.w_hh.codes[order], s_rec, "preact"))
        if q.bias is not None:
            w.append(self.matrix(q.bias.codes[order, None], s_b, "preact"))
        w = np.concatenate(w, axis=1)
        v = np.ones((w.shape[1], u.shape[2]), np.int64)
        w_hr = None
        if q.w_hr is not None:
            w_hr = self.matrix(q.w_hr.codes, model.proj_shift(index, d), "hidden")
        h, c = h0.T, c0.T
        for t in steps:
            v[:K], v[K : K + h.shape[0]] = u[t], h
            pre, n = self.requant(w @ v, "preact")  # rows (i, f, o, g)
            sat.add("preact", n)
            sig = tables["sigmoid"].lookup_in_range(pre[: 3 * H])
            g = tables["tanh_gate"].lookup_in_range(pre[3 * H :])
            i, f, o = sig[:H], sig[H : 2 * H], sig[2 * H :]
            c, m = self.cell.update(i, f, g, o, c, sat)
            if w_hr is not None:
                h, n = self.requant(w_hr @ m, "hidden")
                sat.add("hidden", n)
            else:
                h = m
            if batch_major:
                out[:, t] = h.T
            else:
                out[t] = h
            if rec:
                rec["preact"][:, t] = pre[unorder].T
                rec["gates"][:, t] = np.concatenate([sig, g])[unorder].T
                rec["c"][:, t], rec["m"][:, t] = c.T, m.T
        return h, c


class _CodeIndex:
    """Rounded float codes of a format → indices ``code - min_code`` into a code map.

    For ``y`` an exact float with ``|y| < 2**52``, ``y + (2**52 + A)`` (``A = 2**bits``)
    is one IEEE addition: for ``y >= -A`` the sum lies in ``[2**52, 2**53)``, where floats are
    the integers, so it is rounded half-even to ``2**52 + A + rint(y)`` (``A`` is even), whose
    bit pattern as ``int64`` is ``bits(2**52) + A + rint(y)``. Subtracting the constant
    ``bits(2**52) + A + min_code`` leaves ``rint(y) - min_code``. Rounding is monotonic, so
    ``y < -A`` (far below ``min_code``) gives a negative index and ``y + A >= 2**52`` an index
    far beyond the map: an index outside ``[0, size)`` is exactly a code outside the format.
    An integer ``y`` comes through unchanged, whatever the rounding mode.
    """

    def __init__(self, fmt: FixedFormat):
        offset = 1 << fmt.bits
        self.size = offset
        self.magic = 2.0**52 + offset
        self.key = int(np.float64(2.0**52).view(np.int64)) + offset + fmt.min_code
        self.min_code = fmt.min_code

    def __call__(self, y: np.ndarray, index: np.ndarray) -> int:
        """Add the magic to ``y`` in place and write the indices; return how many codes fall
        outside the format."""
        np.add(y, self.magic, out=y)
        np.subtract(y.view(np.int64), self.key, out=index)
        wide = index.view(np.uint64)  # negative indices are huge unsigned ones
        if wide.max() < self.size:
            return 0
        return int(np.count_nonzero(wide >= self.size))

    def codes(self, index: np.ndarray) -> np.ndarray:
        """The saturated codes of ``index`` (for traces)."""
        return np.clip(index, 0, self.size - 1) + self.min_code


class _FloatDatapath(_IntDatapath):
    """The same arithmetic on ``float64`` arrays holding the codes: faster, identical.

    Used when every intermediate is below ``2**52`` in magnitude (see :meth:`exact_for`):
    then products, sums and scalings by powers of two are exact. Requantization shifts are
    folded into the operands: ``matrix`` scales the aligned weights by ``2**-shift``; the
    table maps hold ``f * 2**(fc_shift - c_shift)``, ``g * 2**(ig_shift - c_shift)`` and
    ``tanh_cell(c) * 2**-m_shift`` (``i`` and ``o`` plain), so that ``f * c_prev + i * g`` is
    the cell sum in cell LSBs and ``o * tanh_cell(c)`` the product in hidden LSBs. Each
    requantization then only rounds ``y = x * 2**-shift`` (exact, a multiple of ``2**-shift``
    below ``2**(52 - shift)``): ``rint(y)`` is half_even, ``floor(y)`` truncate and
    ``floor(y + 0.5)`` half_up (``y + 0.5`` is exact as well). Pre-activations and cell states
    become table indices through :class:`_CodeIndex`, which rounds half-even in the same
    addition, and the maps are read with ``np.take(..., mode="clip")``, which saturates the
    index as ``saturate`` does the code.

    Each step is one BLAS product ``[W_ih | W_hh | bias] @ [u_t; h_prev; 1]`` into a
    preallocated buffer, then in-place ufuncs on preallocated ``(feature, batch)`` buffers;
    ``h`` is written straight into the rows of the column that the next product reads.
    (Computing ``W_ih @ u`` for every step ahead in one product is exact too, but slower
    here: a product with 16 columns runs far below BLAS peak and its ``T * 4H * B`` result
    must be read back from memory at every step, while the fused product costs only its
    ``K / (K + H_out + 1)`` share.)
    """

    dtype = np.float64

    def __init__(self, model: QuantizedModel):
        super().__init__(model)
        a = self.cell
        self.bounds = {r: (float(f.min_code), float(f.max_code)) for r, f in model.formats.items()}
        self.round = {
            "half_even": _round_half_even,
            "half_up": _round_half_up,
            "truncate": _round_truncate,
        }[model.rounding]
        # Table maps indexed by ``code - min_code``, with the scale of each gate's product
        # folded in: f * 2**-gate.frac, g * 2**(cell.frac - 2*gate.frac) and tanh_cell(c) *
        # 2**-m_shift (i and o are plain sigmoid codes). Traces multiply the scale back out.
        tables = model.tables
        self.f_scale, self.g_scale = -a.gate.frac, a.cell.frac - 2 * a.gate.frac
        self.f_map = _index_map(tables["sigmoid"], self.f_scale)
        self.sigmoid_map = _index_map(tables["sigmoid"], 0)
        self.g_map = _index_map(tables["tanh_gate"], self.g_scale)
        self.tanh_cell_map = _index_map(tables["tanh_cell"], -a.m_shift)
        self.preact_index = _CodeIndex(model.formats["preact"])
        self.cell_index = _CodeIndex(model.formats["cell"])
        # m = round(o * tanh_cell(c)) lies between the rounded extreme products of the maps.
        o, tc = self.sigmoid_map, self.tanh_cell_map
        corners = np.outer([o.min(), o.max()], [tc.min(), tc.max()]).ravel()
        self.round(corners)
        low, high = self.bounds["hidden"]
        self.m_may_saturate = bool(corners.min() < low or corners.max() > high)

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
            and all(
                model.tables[name].in_fmt == model.formats[role] for name, role in _TABLE_INPUTS
            )
        )

    def matrix(self, codes, shift: int, target: str) -> np.ndarray:
        aligned = super().matrix(codes, shift, target).astype(np.float64)
        return aligned * 2.0 ** -self.model.requant_shift(target)

    def requant(self, acc, target: str):
        self.round(acc)
        return acc, self._saturate(acc, target)

    def _saturate(self, y, role: str) -> int:
        """Clamp rounded ``y`` to ``role`` in place; return how many codes did not fit."""
        low, high = self.bounds[role]
        if y.size and (y.min() < low or y.max() > high):
            count = int(np.count_nonzero((y < low) | (y > high)))
            np.clip(y, low, high, out=y)
            return count
        return 0

    def direction(self, index, d, q, u, h0, c0, steps, out, batch_major, rec, sat):
        model = self.model
        H, H_out, K, B = model.hidden_size, model.output_size, u.shape[1], u.shape[2]
        # Gate rows in the order (f, i, o, g): i and o share the plain sigmoid map.
        order = np.r_[H : 2 * H, 0:H, 3 * H : 4 * H, 2 * H : 3 * H]
        unorder = np.argsort(order)
        s_in, s_rec, s_b = model.gate_shifts(index, d)
        # One matrix [W_ih | W_hh | bias] times the column [u_t; h_prev; 1] per step.
        w = [self.matrix(q.w_ih.codes[order], s_in, "preact")]
        w.append(self.matrix(q.w_hh.codes[order], s_rec, "preact"))
        if q.bias is not None:
            w.append(self.matrix(q.bias.codes[order, None], s_b, "preact"))
        w = np.ascontiguousarray(np.concatenate(w, axis=1))
        v = np.ones((w.shape[1], B))
        h = v[K : K + H_out]  # h_prev lives in the rows the matrix product reads
        h[...] = h0.T
        c = np.ascontiguousarray(c0.T, dtype=np.float64)
        w_hr = None
        if q.w_hr is not None:
            w_hr = np.ascontiguousarray(
                self.matrix(q.w_hr.codes, model.proj_shift(index, d), "hidden")
            )
        # Preallocated buffers, reused by every step.
        acc, gates = np.empty((4 * H, B)), np.empty((4 * H, B))
        pre_index = acc_bits = acc.view(np.int64)  # the indices overwrite the accumulator
        pre_wide = pre_index.view(np.uint64)  # negative indices are huge unsigned ones
        total, ig, tc = (np.empty((H, B)) for _ in range(3))
        total_bits = total.view(np.int64)
        m = h if w_hr is None else np.empty((H, B))  # without a projection, h is m
        c_index = np.empty((H, B), np.int64)
        c_wide = c_index.view(np.uint64)
        f, i, o, g = (gates[k * H : (k + 1) * H] for k in range(4))
        pre_f, pre_io, pre_g = pre_index[:H], pre_index[H : 3 * H], pre_index[3 * H :]
        gate_io = gates[H : 3 * H]
        f_map, sigmoid_map, g_map, tc_map = (
            self.f_map,
            self.sigmoid_map,
            self.g_map,
            self.tanh_cell_map,
        )
        pre_magic, pre_key, pre_size = (
            self.preact_index.magic,
            self.preact_index.key,
            self.preact_index.size,
        )
        cell_magic, cell_key, cell_size = (
            self.cell_index.magic,
            self.cell_index.key,
            self.cell_index.size,
        )
        clamp_preact = model.requant_shift("preact") < 0  # |acc * 2**-shift| may reach 2**52
        plain = model.rounding != "half_even"
        rnd = self.round
        check_m = self.m_may_saturate
        cell_low, cell_high = self.bounds["cell"]
        take, add, subtract, multiply, matmul = np.take, np.add, np.subtract, np.multiply, np.matmul
        n_pre = n_cell = 0
        for t in steps:
            v[:K] = u[t]
            matmul(w, v, out=acc)  # the exact accumulator, scaled to preact LSBs
            if clamp_preact:
                np.clip(acc, -(2.0**51), 2.0**51, out=acc)  # far outside preact either way
            if plain:
                rnd(acc)
            add(acc, pre_magic, out=acc)  # rounds half-even (_CodeIndex)
            subtract(acc_bits, pre_key, out=pre_index)
            if pre_wide.max() >= pre_size:
                n_pre += int(np.count_nonzero(pre_wide >= pre_size))
            take(f_map, pre_f, out=f, mode="clip")
            take(sigmoid_map, pre_io, out=gate_io, mode="clip")
            take(g_map, pre_g, out=g, mode="clip")
            multiply(f, c, out=total)  # (f*c << fc_shift) * 2**-c_shift
            multiply(i, g, out=ig)  # (i*g << ig_shift) * 2**-c_shift
            add(total, ig, out=total)
            if plain:
                rnd(total)
            add(total, cell_magic, out=total)
            subtract(total_bits, cell_key, out=c_index)
            subtract(total, cell_magic, out=c)  # rint(total), exact in range
            if c_wide.max() >= cell_size:
                n_cell += int(np.count_nonzero(c_wide >= cell_size))
                np.clip(c, cell_low, cell_high, out=c)
            take(tc_map, c_index, out=tc, mode="clip")
            multiply(o, tc, out=m)  # (o * tanh_cell(c)) * 2**-m_shift
            rnd(m)
            if check_m:
                sat.add("hidden", self._saturate(m, "hidden"))
            if w_hr is not None:
                matmul(w_hr, m, out=h)
                rnd(h)
                sat.add("hidden", self._saturate(h, "hidden"))
            if batch_major:
                out[:, t] = h.T
            else:
                out[t] = h
            if rec:
                rec["preact"][:, t] = self.preact_index.codes(pre_index)[unorder].T
                codes = np.concatenate([f * 2.0**-self.f_scale, i, o, g * 2.0**-self.g_scale])
                rec["gates"][:, t] = codes[unorder].T
                rec["c"][:, t], rec["m"][:, t] = c.T, m.T
        sat.add("preact", n_pre)
        sat.add("cell", n_cell)
        sat.add("hidden", 0)
        return h, c


def _index_map(table, scale: int) -> np.ndarray:
    """``table``'s output codes times ``2**scale`` (float64), indexed by ``code - min_code``."""
    code_map = table._code_map()  # negative codes at the end
    split = len(code_map) + table.in_fmt.min_code
    index_map = np.empty(len(code_map))
    index_map[: len(code_map) - split], index_map[len(code_map) - split :] = (
        code_map[split:],
        code_map[:split],
    )
    if scale:
        index_map *= 2.0**scale
    return index_map


def _round_half_even(y: np.ndarray) -> None:
    np.rint(y, out=y)


def _round_half_up(y: np.ndarray) -> None:
    y += 0.5
    np.floor(y, out=y)


def _round_truncate(y: np.ndarray) -> None:
    np.floor(y, out=y)
