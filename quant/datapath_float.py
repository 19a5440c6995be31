"""The golden model's step on float64 arrays holding the codes: the codes of
:mod:`lstmfpga.quant.datapath_int`, faster, where every intermediate is exact in float64."""

from __future__ import annotations

import numpy as np

from .accumulator import cell_sum_bits
from .datapath_int import IntDatapath, fused_gate_matrix
from .float_codes import EXACT_FLOAT_BITS, ROUNDERS, CodeIndex, fits_float32, index_map
from .model import QuantizedModel

#: Each table and the role whose codes it reads.
TABLE_INPUTS = (("sigmoid", "preact"), ("tanh_gate", "preact"), ("tanh_cell", "cell"))

#: Rounding folded into the bias column of the gate product (see
#: :meth:`FloatDatapath.preact_offset`): ``y + offset + 2**-(shift + 1)`` rounded half-even
#: is the mode's rounding of any ``y`` on the grid ``2**-shift``.
_ROUNDING_OFFSET = {"half_up": 0.0, "truncate": -0.5}

#: float32 holds every integer of magnitude up to 2**24: an accumulator of at most 25 bits.
EXACT_FLOAT32_ACC_BITS = 25


class FloatDatapath(IntDatapath):
    """The same arithmetic on ``float64`` arrays holding the codes: faster, identical.

    Used when every intermediate is below ``2**52`` in magnitude (see :meth:`exact_for`):
    then products, sums and scalings by powers of two are exact. Requantization shifts are
    folded into the operands: ``matrix`` scales the aligned weights by ``2**-shift``; the
    table maps hold ``f * 2**(fc_shift - c_shift)``, ``g * 2**(ig_shift - c_shift)`` and
    ``tanh_cell(c) * 2**-m_shift`` (``i`` and ``o`` plain), so that ``f * c_prev + i * g`` is
    the cell sum in cell LSBs and ``o * tanh_cell(c)`` the product in hidden LSBs. Each
    requantization then only rounds ``y = x * 2**-shift`` (exact, a multiple of ``2**-shift``
    below ``2**(52 - shift)``): see :data:`lstmfpga.quant.float_codes.ROUNDERS`.
    Pre-activations and cell states become table indices through :class:`CodeIndex`, which
    rounds half-even in the same addition, and the maps are read with ``np.take``: with
    ``mode="clip"``, which saturates the index as ``saturate`` does the code, on a step where
    some index is outside its map, else with the faster ``mode="wrap"`` (the same for indices
    in range).

    The maps are float32 when float32 holds each of their values exactly (every preset: the
    values are 16-bit or narrower codes times powers of two), which halves the cache they
    take; products of map values with each other or with states are then computed in
    float64 (``dtype=np.float64``), so they stay exact. :class:`FloatDirection` runs the
    steps of one layer direction.
    """

    dtype = np.float64
    #: Whether the step reads the float table maps built here (the compiled subclass reads
    #: integer code maps of its own, and skips building these).
    uses_float_maps = True

    def __init__(self, model: QuantizedModel):
        super().__init__(model)
        self.bounds = {r: (float(f.min_code), float(f.max_code)) for r, f in model.formats.items()}
        self.round = ROUNDERS[model.rounding]
        if self.uses_float_maps:
            self._float_maps(model)

    def _float_maps(self, model: QuantizedModel) -> None:
        a = self.cell
        # Table maps indexed by ``code - min_code``, with the scale of each gate's product
        # folded in: f * 2**-gate.frac, g * 2**(cell.frac - 2*gate.frac) and tanh_cell(c) *
        # 2**-m_shift (i and o are plain sigmoid codes). Traces multiply the scale back out.
        tables = model.tables
        self.f_scale, self.g_scale = -a.gate.frac, a.cell.frac - 2 * a.gate.frac
        scaled = (
            (tables["sigmoid"], self.f_scale),
            (tables["sigmoid"], 0),
            (tables["tanh_gate"], self.g_scale),
            (tables["tanh_cell"], -a.m_shift),
        )
        wide = [index_map(table, scale) for table, scale in scaled]
        self.map_dtype = np.float32 if all(fits_float32(m) for m in wide) else np.float64
        self.f_map, self.sigmoid_map, self.g_map, self.tanh_cell_map = (
            index_map(table, scale, self.map_dtype) for table, scale in scaled
        )
        self.preact_index = CodeIndex(model.formats["preact"])
        self.cell_index = CodeIndex(model.formats["cell"])
        # m = round(o * tanh_cell(c)) lies between the rounded extreme products of the maps.
        o, tc = wide[1], wide[3]
        corners = np.outer([o.min(), o.max()], [tc.min(), tc.max()]).ravel()
        self.round(corners)
        low, high = self.bounds["hidden"]
        self.m_may_saturate = bool(corners.min() < low or corners.max() > high)

    @staticmethod
    def exact_for(model: QuantizedModel) -> bool:
        """Whether every intermediate of ``model``'s step is exact in float64 (and its tables
        have code maps whose input formats are the roles they read)."""
        limit = EXACT_FLOAT_BITS
        gate = model.formats["gate"]
        return (
            model.overflow == "saturate"
            and model.acc.bits <= limit
            and cell_sum_bits(gate, model.formats["cell"]) <= limit
            and 2 * gate.frac + 2 <= limit  # o * tanh(c)
            and all(t._code_map() is not None for t in model.tables.values())
            and all(model.tables[name].in_fmt == model.formats[role] for name, role in TABLE_INPUTS)
        )

    def preact_offset(self) -> float | None:
        """The constant added to the bias column of the gate matrix so that rounding the
        pre-activation half-even (as :class:`CodeIndex` does) is the model's rounding, or
        None when that needs a rounding pass of its own.

        The accumulator in preact LSBs, ``y``, is a multiple of ``2**-s`` (``s`` the
        requantization shift). With ``e = 2**-(s + 1)``, ``y + e`` (``half_up``) and
        ``y + e - 1/2`` (``truncate``) are never ties, and round half-even to
        ``floor(y + 1/2)`` and ``floor(y)``. The sum stays exact: every term and partial
        sum is a multiple of ``2**-(s + 1)`` below ``2**(acc.bits - 1 - s) + 1`` in
        magnitude, below ``2**(52 - s)`` when ``acc.bits <= 52``. For ``s <= 0`` the
        accumulator is an integer and every mode leaves it as it is (offset 0).
        """
        model, shift = self.model, self.model.requant_shift("preact")
        if model.rounding == "half_even" or shift <= 0:
            return 0.0
        if model.acc.bits > EXACT_FLOAT_BITS - 1:
            return None
        return _ROUNDING_OFFSET[model.rounding] + 2.0 ** -(shift + 1)

    def gate_product_dtype(self):
        """float32 when the gate product is exact in float32, else float64.

        The product is ``sum_k w_k * v_k * 2**-s`` (plus the bias), whose terms and partial
        sums are integers in accumulator LSBs bounded by the accumulator format (it is sized
        for the sum of the terms' largest magnitudes); below ``2**24`` (``acc.bits <= 25``)
        float32 holds every one exactly, scaled by the power of two ``2**-s`` as well. A
        rounding offset in the bias column (:meth:`preact_offset`) would add a fraction
        bit, so it is not folded in then: the accumulator is rounded by a pass of its own.
        The float32 product (about twice as fast as float64 here, often more) is copied
        into the float64 accumulator, and the step goes on as for float64.
        """
        return np.float32 if self.model.acc.bits <= EXACT_FLOAT32_ACC_BITS else np.float64

    def matrix(self, codes, shift: int, target: str) -> np.ndarray:
        aligned = super().matrix(codes, shift, target).astype(np.float64)
        return aligned * 2.0 ** -self.model.requant_shift(target)

    def requant(self, acc, target: str):
        self.round(acc)
        return acc, self.saturate(acc, target)

    def saturate(self, y, role: str) -> int:
        """Clamp rounded ``y`` to ``role`` in place; return how many codes did not fit."""
        low, high = self.bounds[role]
        if y.size and (y.min() < low or y.max() > high):
            count = int(np.count_nonzero((y < low) | (y > high)))
            np.clip(y, low, high, out=y)
            return count
        return 0

    def direction(self, index, d, q, u, h0, c0, steps, out, rec, sat):
        """As :meth:`IntDatapath.direction`, on float64 codes."""
        run = FloatDirection(self, index, d, q, h0, c0, u, out)
        for t in steps:
            run.step(t)
            if rec:
                run.record(rec, t)
        sat.add("preact", run.n_pre)
        sat.add("cell", run.n_cell)
        sat.add("hidden", run.n_hidden)
        return run.h, run.c.T


class FloatDirection:
    """One layer direction's weights, state and preallocated ``(feature, batch)`` buffers,
    and its step: one BLAS product ``[W_ih | W_hh | bias] @ [u_t; h_prev; 1]`` into the
    accumulator, then in-place ufuncs. The product's right operand is the transpose of the
    batch-major ``(B, K + H_out + 1)`` buffer ``v`` (BLAS reads it as it is): the step copies
    its input ``u[t]`` ``(B, K)`` into ``v`` as it is, writes ``h`` (transposed once) into the
    columns the next product reads, and copies them to the ``(T, B, H_out)`` output.

    (Computing ``W_ih @ u`` for every step ahead in one product is exact too, but slower
    here: a product with 16 columns runs far below BLAS peak and its ``T * 4H * B`` result
    must be read back from memory at every step, while the fused product costs only its
    ``K / (K + H_out + 1)`` share.)
    """

    def __init__(self, dp: FloatDatapath, index: int, d: int, q, h0, c0, u, out):
        model = self.model = dp.model
        self.dp = dp
        H, H_out = model.hidden_size, model.output_size
        _, B, K = u.shape
        self.H, self.K, self.u, self.out = H, K, u, out
        # Gate rows in the order (f, i, o, g): i and o share the plain sigmoid map.
        self.order = np.r_[H : 2 * H, 0:H, 3 * H : 4 * H, 2 * H : 3 * H]
        w = fused_gate_matrix(dp, model, index, d, q, self.order)
        product = dp.gate_product_dtype()
        offset = dp.preact_offset()
        if offset and product == np.float32:
            offset = None  # not exact in float32: see gate_product_dtype
        self.plain = offset is None  # the rounding needs a pass of its own
        if offset:  # exact: see FloatDatapath.preact_offset
            bias = np.zeros((4 * H, 1)) if q.bias is None else w[:, K + H_out :]
            w = np.concatenate([w[:, : K + H_out], bias + offset], axis=1)
        self.w = np.ascontiguousarray(w, dtype=product)  # exact: gate_product_dtype
        self.v = np.ones((B, self.w.shape[1]), product)
        self.acc32 = np.empty((4 * H, B), np.float32) if product == np.float32 else None
        self.h = self.v[:, K : K + H_out]  # h_prev, where the matrix product reads it
        self.h[...] = h0
        self.c = np.ascontiguousarray(c0.T, dtype=np.float64)
        self.w_hr = None
        if q.w_hr is not None:
            shift = model.proj_shift(index, d)
            self.w_hr = np.ascontiguousarray(dp.matrix(q.w_hr.codes, shift, "hidden"))
        self.acc = np.empty((4 * H, B))
        self.pre_index = self.acc.view(np.int64)  # the indices overwrite the accumulator
        self.gates = np.empty((4 * H, B), dp.map_dtype)
        self.total, self.ig = np.empty((H, B)), np.empty((H, B))
        self.tc = np.empty((H, B), dp.map_dtype)
        self.c_index = np.empty((H, B), np.int64)
        self.m = np.empty((H, B))
        self.p = None if self.w_hr is None else np.empty((H_out, B))  # the projection
        self.f, self.i, self.o, self.g = (self.gates[k * H : (k + 1) * H] for k in range(4))
        self.clamp_preact = model.requant_shift("preact") < 0  # |acc * 2**-shift| may be 2**52
        self.n_pre = self.n_cell = self.n_hidden = 0

    def step(self, t: int) -> None:
        """Step ``t``: input ``u[t]``, output ``out[t]``; updates ``h`` and ``c``."""
        np.copyto(self.v[:, : self.K], self.u[t])
        if self.acc32 is None:
            np.matmul(self.w, self.v.T, out=self.acc)  # exact, preact LSBs (+ offset)
        else:
            np.matmul(self.w, self.v.T, out=self.acc32)  # exact: gate_product_dtype
            np.copyto(self.acc, self.acc32)
        self._gates(self._preact_index())
        self._hidden(self._cell())
        np.copyto(self.out[t], self.h, casting="unsafe")  # exact integers

    def _preact_index(self) -> str:
        """Round the accumulator to preact codes as map indices; return the ``np.take``
        mode the step needs ("clip" if some code is outside preact)."""
        acc, ix = self.acc, self.dp.preact_index
        if self.clamp_preact:
            np.clip(acc, -(2.0**51), 2.0**51, out=acc)  # far outside preact either way
        if self.plain:
            self.dp.round(acc)
        np.add(acc, ix.magic, out=acc)  # rounds half-even (CodeIndex)
        np.subtract(self.pre_index, ix.key, out=self.pre_index)
        outside = ix.count_outside(self.pre_index)
        self.n_pre += outside
        return "clip" if outside else "wrap"

    def _gates(self, mode: str) -> None:
        dp, H, index = self.dp, self.H, self.pre_index
        np.take(dp.f_map, index[:H], out=self.f, mode=mode)
        np.take(dp.sigmoid_map, index[H : 3 * H], out=self.gates[H : 3 * H], mode=mode)
        np.take(dp.g_map, index[3 * H :], out=self.g, mode=mode)

    def _cell(self) -> str:
        """``c = round(f * c_prev + i * g)`` (cell LSBs, scales in the maps), saturated, and
        its map indices in ``c_index``; return the ``np.take`` mode they need."""
        dp, total, c = self.dp, self.total, self.c
        np.multiply(self.f, c, out=total, dtype=np.float64)  # (f*c << fc_shift) * 2**-c_shift
        np.multiply(self.i, self.g, out=self.ig, dtype=np.float64)  # (i*g << ig_shift) ...
        np.add(total, self.ig, out=total)
        if dp.model.rounding != "half_even":
            dp.round(total)
        ix = dp.cell_index
        np.add(total, ix.magic, out=total)
        np.subtract(total.view(np.int64), ix.key, out=self.c_index)
        np.subtract(total, ix.magic, out=c)  # rint(total), exact in range
        outside = ix.count_outside(self.c_index)
        if outside:
            self.n_cell += outside
            np.clip(c, *dp.bounds["cell"], out=c)
        return "clip" if outside else "wrap"

    def _hidden(self, mode: str) -> None:
        """``m = round(o * tanh_cell(c))`` (hidden LSBs), then ``h`` (``m`` or its projection)."""
        dp = self.dp
        np.take(dp.tanh_cell_map, self.c_index, out=self.tc, mode=mode)
        np.multiply(self.o, self.tc, out=self.m, dtype=np.float64)  # (o * tanh_cell(c)) ...
        dp.round(self.m)
        if dp.m_may_saturate:
            self.n_hidden += dp.saturate(self.m, "hidden")
        h = self.m
        if self.w_hr is not None:
            h = self.p
            np.matmul(self.w_hr, self.m, out=h)
            dp.round(h)
            self.n_hidden += dp.saturate(h, "hidden")
        np.copyto(self.h, h.T)

    def record(self, rec: dict, t: int) -> None:
        """Store step ``t``'s pre-activations, gates, ``c`` and ``m`` codes in the trace
        ``rec`` ((batch, time, feature), gates in (i, f, g, o) order)."""
        dp, unorder = self.dp, np.argsort(self.order)
        rec["preact"][:, t] = dp.preact_index.codes(self.pre_index)[unorder].T
        gates = [self.f * 2.0**-dp.f_scale, self.i, self.o, self.g * 2.0**-dp.g_scale]
        rec["gates"][:, t] = np.concatenate(gates)[unorder].T
        rec["c"][:, t], rec["m"][:, t] = self.c.T, self.m.T
