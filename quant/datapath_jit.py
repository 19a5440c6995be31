"""The float datapath's step with its element-wise work compiled (numba): one pass over
``(batch, hidden)`` per step instead of about fifteen NumPy passes and four table reads.

Imported only when numba is importable (:func:`lstmfpga.quant.golden.datapath` falls back to
:class:`~lstmfpga.quant.datapath_float.FloatDatapath` otherwise, or when the environment sets
``LSTMFPGA_NO_JIT=1``). The gate product stays one exact BLAS product per step (NumPy's, or
torch's when the process has imported torch: :func:`torch_product`); the
kernel :func:`lstm_cells` then does, per cell, what ``FloatDirection`` does in passes: round
the four pre-activations (the model's rounding of an exact float ``y = acc * 2**-shift``:
``rint(y)``, ``floor(y + 1/2)`` or ``floor(y)``), count and clamp the codes outside
``preact``, read the tables' code maps (``ActivationTable._code_map``: the table rule applied
to every input code, interpolation included), compute ``f * c_prev + i * g`` in cell LSBs
(scales ``2**-gate.frac`` and ``2**(cell.frac - 2*gate.frac)``, exact), round, count and clamp
``c``, read ``tanh_cell``, round ``o * tanh_cell(c) * 2**-m_shift`` to ``hidden`` (counted and
clamped), and write ``h`` into the next product's operand and the layer output, and the next
step's input beside it. With a projection the kernel writes ``m``, NumPy multiplies by
``W_hr`` and :func:`project` rounds, clamps and writes ``h``. Every value is an integer (or an
exact multiple of a power of two) below ``2**52`` in magnitude, as in the NumPy float path
(:meth:`FloatDatapath.exact_for`), so the codes are the same; the tests compare both paths.

Layout: the product is ``v @ W.T`` into a ``(batch, 4H)`` accumulator, gates in PyTorch's
``(i, f, g, o)`` order, so that each batch row's gates, state and outputs are contiguous; the
layers' inputs and outputs are time-major ``(time, batch, feature)`` arrays of
:func:`layer_dtype` (int16 for the presets), so that each step reads and writes one contiguous
block; ``golden.run`` widens the last into the ``(batch, time, feature)`` int64 result.
"""

from __future__ import annotations

import sys
import weakref

import numpy as np
from numba import njit

from .datapath_float import FloatDatapath
from .datapath_int import fused_gate_matrix
from .model import QuantizedModel

#: Rounding kinds of :func:`_round`: ``rint`` (half_even, and any integer), ``floor(y + add)``.
_RINT, _FLOOR = 0, 1


def rounding(mode: str, shift: int) -> tuple[int, float]:
    """``(kind, add)`` rounding ``y = x * 2**-shift`` per ``mode`` in :func:`_round`; for
    ``shift <= 0`` ``y`` is an integer, which ``rint`` leaves as it is (also beyond 2**52)."""
    if shift <= 0 or mode == "half_even":
        return _RINT, 0.0
    return _FLOOR, 0.5 if mode == "half_up" else 0.0


@njit(inline="always")
def _round(y, kind, add):
    if kind == _RINT:
        return np.rint(y)
    return np.floor(y + add)


@njit(cache=True, nogil=True)
def lstm_cells(acc, c, v, u_next, feed, out_t, col, sig, tgate, tcell, m, k, kinds, rec, t, record):
    """One step's element-wise work; returns ``(preact, cell, hidden)`` saturation counts.

    ``acc`` ``(B, 4H)`` pre-activations in preact LSBs (exact, gates ``i, f, g, o``); ``c``
    ``(B, H)`` float64 cell codes, updated in place; ``v`` ``(B, K + H_out [+ 1])`` the
    product's operand: ``h`` goes to columns ``K ..`` (unless ``m`` is given, ``m.shape[0] ==
    B``: then ``m`` gets the cell output for the projection) and the next step's input
    ``u_next`` ``(B, K)`` to columns ``.. K`` when ``feed``; ``out_t[:, col ..]`` (the layer
    output at this step, time-major: a contiguous block) gets ``h``. ``sig``, ``tgate``
    (indexed by ``preact code - min``) and ``tcell`` (``cell code - min``) are the tables'
    code maps. ``k``: bounds of preact, cell and hidden, the scales of ``f * c`` and ``i * g``
    (to cell LSBs) and of ``o * tanh_cell`` (to hidden LSBs), and the rounding adds of
    preact, cell and hidden; ``kinds`` their rounding kinds. ``record``: trace codes into
    ``rec`` ``(4, B, T, 4H)``: preact, gates, ``c``, ``m`` (the last two in ``[:H]``).

    Each batch row runs simple loops that the compiler vectorizes (rounding, clamping,
    products) between the scalar table reads (unsigned indices: no wraparound check).
    """
    B, H4 = acc.shape
    H = H4 // 4
    K = u_next.shape[1]
    pre_lo, pre_hi, cell_lo, cell_hi, hid_lo, hid_hi = k[0], k[1], k[2], k[3], k[4], k[5]
    f_scale, g_scale, m_scale, pre_add, cell_add, m_add = k[6], k[7], k[8], k[9], k[10], k[11]
    pre_kind, cell_kind, m_kind = kinds[0], kinds[1], kinds[2]
    pre_min, cell_min = np.int64(pre_lo), np.int64(cell_lo)
    project = m.shape[0] == B
    n_pre = n_cell = n_hid = 0
    index = np.empty(H4, np.uint64)  # preact code - min, then cell code - min in [:H]
    gates = np.empty(H4, np.float64)  # i, f, g, o codes
    tc = np.empty(H, np.float64)
    mv = np.empty(H, np.float64)
    for b in range(B):
        a, cb = acc[b], c[b]
        if pre_kind == _RINT:  # two loops: no test of the kind per element
            for j in range(H4):
                y = np.rint(np.float64(a[j]))
                z = min(max(y, pre_lo), pre_hi)
                n_pre += z != y
                index[j] = np.uint64(np.int64(z) - pre_min)
        else:
            for j in range(H4):
                y = np.floor(np.float64(a[j]) + pre_add)
                z = min(max(y, pre_lo), pre_hi)
                n_pre += z != y
                index[j] = np.uint64(np.int64(z) - pre_min)
        for j in range(2 * H):
            gates[j] = sig[index[j]]
        for j in range(2 * H, 3 * H):
            gates[j] = tgate[index[j]]
        for j in range(3 * H, H4):
            gates[j] = sig[index[j]]
        if record:
            for j in range(H4):
                rec[0, b, t, j] = np.int64(index[j]) + pre_min
                rec[1, b, t, j] = np.int64(gates[j])
        for j in range(H):
            total = gates[H + j] * cb[j] * f_scale + gates[j] * gates[2 * H + j] * g_scale
            y = _round(total, cell_kind, cell_add)
            z = min(max(y, cell_lo), cell_hi)
            n_cell += z != y
            cb[j] = z
            index[j] = np.uint64(np.int64(z) - cell_min)
        for j in range(H):
            tc[j] = tcell[index[j]]
        for j in range(H):
            y = _round(gates[3 * H + j] * tc[j] * m_scale, m_kind, m_add)
            z = min(max(y, hid_lo), hid_hi)
            n_hid += z != y
            mv[j] = z
        if project:
            for j in range(H):
                m[b, j] = mv[j]
        else:
            vb, ob = v[b], out_t[b]
            for j in range(H):
                vb[K + j] = mv[j]
            for j in range(H):
                ob[col + j] = mv[j]
        if record:
            for j in range(H):
                rec[2, b, t, j], rec[3, b, t, j] = np.int64(cb[j]), np.int64(mv[j])
        if feed:
            vb, ub = v[b], u_next[b]
            for j in range(K):
                vb[j] = ub[j]
    return n_pre, n_cell, n_hid


@njit(cache=True, nogil=True)
def project(p, v, K, out_t, col, lo, hi, kind, add):
    """Round the projection ``p`` ``(B, H_out)`` (hidden LSBs, exact) to ``hidden``, clamp,
    write it to ``v[:, K ..]`` and ``out_t[:, col ..]``; return how many did not fit."""
    n = 0
    for b in range(p.shape[0]):
        for j in range(p.shape[1]):
            y = _round(p[b, j], kind, add)
            n += (y < lo) + (y > hi)
            y = min(max(y, lo), hi)
            v[b, K + j] = y
            out_t[b, col + j] = y
    return n


#: code_map results per table (tables are immutable).
_CODE_MAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def code_map(table) -> np.ndarray:
    """``table``'s output codes indexed by ``input code - min_code``, as the narrowest of
    int16, int32 and int64 that holds them (int16 for every preset: the smallest map in the
    cache is the fastest to read), read-only, cached per table."""
    if table not in _CODE_MAPS:
        codes = table._code_map()  # indexed by the code itself: negative codes at the end
        split = len(codes) + table.in_fmt.min_code
        values = np.concatenate([codes[split:], codes[:split]])
        for dtype in (np.int16, np.int32, np.int64):
            if np.iinfo(dtype).min <= values.min() and values.max() <= np.iinfo(dtype).max:
                break
        values = values.astype(dtype)
        values.setflags(write=False)
        _CODE_MAPS[table] = values
    return _CODE_MAPS[table]


def layer_dtype(model: QuantizedModel):
    """The narrowest of int16, int32 and int64 holding every ``x`` and ``hidden`` code: the
    dtype of the compiled path's layer buffers (int16 for every preset)."""
    bits = max(model.formats["x"].bits, model.formats["hidden"].bits)
    return np.int16 if bits <= 16 else np.int32 if bits <= 32 else np.int64


class JitDatapath(FloatDatapath):
    """:class:`FloatDatapath` whose layer directions run :class:`JitDirection`; the head and
    the rest are the float path's. Layers are time-major ``(time, batch, feature)`` arrays of
    :func:`layer_dtype` (``staged``): each step reads and writes one contiguous block, a
    quarter of the int64 result's bytes for the presets, and ``golden.run`` widens the last
    layer's buffer into the ``(batch, time, feature)`` int64 result in one copy (cheaper than
    writing the result a step at a time, a 512-byte row per batch row and step)."""

    staged = True
    uses_float_maps = False

    def __init__(self, model: QuantizedModel):
        super().__init__(model)
        a, tables = self.cell, model.tables
        self.layer_dtype = layer_dtype(model)
        self.code_maps = tuple(code_map(tables[n]) for n in ("sigmoid", "tanh_gate", "tanh_cell"))
        shifts = (model.requant_shift("preact"), a.c_shift, a.m_shift)
        kinds = [rounding(model.rounding, s) for s in shifts]
        self.kinds = np.array([kind for kind, _ in kinds], np.int64)
        bounds = [*self.bounds["preact"], *self.bounds["cell"], *self.bounds["hidden"]]
        scales = [2.0**-a.gate.frac, 2.0 ** (a.cell.frac - 2 * a.gate.frac), 2.0**-a.m_shift]
        self.constants = np.array([*bounds, *scales, *(add for _, add in kinds)])
        self.hidden_rounding = rounding(model.rounding, model.requant_shift("hidden"))

    def direction(self, index, d, q, u, h0, c0, steps, out, col, rec, sat):
        """As :meth:`FloatDatapath.direction`, with ``u`` ``(T, B, K)`` and ``out`` ``(T, B,
        F)`` arrays of :attr:`layer_dtype` and ``h`` written to ``out[:, :, col ..]``."""
        run = JitDirection(self, index, d, q, h0, c0, u, out, col, rec)
        n = np.zeros(3, np.int64)
        steps = list(steps)
        run.first(steps[0])
        for t, t_next in zip(steps, [*steps[1:], -1], strict=True):
            n += run.step(t, t_next)
        sat.add("preact", n[0])
        sat.add("cell", n[1])
        sat.add("hidden", n[2])
        if rec:
            rec.update(run.traces())
        return run.h, run.c


#: Whether a float64 gate product may run on torch's BLAS (see :func:`torch_product`).
TORCH_BLAS = True


def torch_product(v: np.ndarray, wt: np.ndarray, acc: np.ndarray):
    """A function computing ``acc = v @ wt`` (float64) with ``torch.mm`` on tensors sharing
    the arrays' memory, when the process has already imported torch (never imported here:
    that takes seconds) and :data:`TORCH_BLAS` is set; else None (NumPy's ``matmul``).

    torch's BLAS (MKL in the x86 wheels) runs this product about 20% faster than NumPy's
    OpenBLAS here, and is as exact: every partial sum of the gate product is a multiple of
    ``2**-shift`` below ``2**(acc.bits - 1 - shift)``, so float64 holds it exactly whatever
    the order of the additions or the use of fused multiply-adds. float32 products stay in
    NumPy (torch may compute float32 products in reduced precision when asked to,
    ``torch.set_float32_matmul_precision``); float64 has no such mode.
    """
    torch = sys.modules.get("torch")
    if not TORCH_BLAS or torch is None or acc.dtype != np.float64:
        return None
    tv, twt, tacc = (torch.from_numpy(a) for a in (v, wt, acc))
    mm = torch.mm
    return lambda: mm(tv, twt, out=tacc)


class JitDirection:
    """One layer direction's operands and buffers; :meth:`step` is one BLAS product and one
    kernel call (two and a product with a projection)."""

    def __init__(self, dp: JitDatapath, index: int, d: int, q, h0, c0, u, out, col, rec):
        model = dp.model
        H, H_out = model.hidden_size, model.output_size
        T, B, K = u.shape
        self.dp, self.u, self.out, self.col, self.K = dp, u, out, col, K
        w = fused_gate_matrix(dp, model, index, d, q, np.arange(4 * H))  # (i, f, g, o) rows
        product = dp.gate_product_dtype()  # float32 where exact
        self.wt = np.ascontiguousarray(w.T, dtype=product)
        self.v = np.ones((B, self.wt.shape[0]), product)
        self.h = self.v[:, K : K + H_out]
        self.h[...] = h0
        self.c = np.array(c0, dtype=np.float64, order="C")
        self.acc = np.empty((B, 4 * H), product)
        self.product = torch_product(self.v, self.wt, self.acc)
        self.w_hr, self.m = None, np.empty((0, 0))  # m of shape (B, H) asks for a projection
        if q.w_hr is not None:
            shift = model.proj_shift(index, d)
            self.w_hr = np.ascontiguousarray(dp.matrix(q.w_hr.codes, shift, "hidden").T)
            self.m, self.p = np.empty((B, H)), np.empty((B, H_out))
        self.record = bool(rec)
        shape = (4, B, T, 4 * H) if rec else (4, 0, 0, 0)
        self.rec = np.zeros(shape, np.int64)

    def first(self, t: int) -> None:
        """Copy the first step's input into the operand."""
        np.copyto(self.v[:, : self.K], self.u[t])

    def step(self, t: int, t_next: int) -> tuple[int, int, int]:
        """Step ``t`` (``t_next`` is the next step, or -1): its saturation counts."""
        dp, out_t = self.dp, self.out[t]
        if self.product is None:
            np.matmul(self.v, self.wt, out=self.acc)  # exact (gate_product_dtype)
        else:
            self.product()  # the same, on torch's BLAS
        sig, tgate, tcell = dp.code_maps
        n = lstm_cells(
            self.acc, self.c, self.v, self.u[max(t_next, 0)], t_next >= 0, out_t, self.col,
            sig, tgate, tcell, self.m, dp.constants, dp.kinds, self.rec, t, self.record,
        )  # fmt: skip
        if self.w_hr is None:
            return n
        np.matmul(self.m, self.w_hr, out=self.p)
        low, high = dp.bounds["hidden"]
        kind, add = dp.hidden_rounding
        n_h = project(self.p, self.v, self.K, out_t, self.col, low, high, kind, add)
        return n[0], n[1], n[2] + n_h

    def traces(self) -> dict:
        """The trace arrays (batch, time, feature) in (i, f, g, o) order."""
        H, rec = self.dp.model.hidden_size, self.rec
        return {"preact": rec[0], "gates": rec[1], "c": rec[2][:, :, :H], "m": rec[3][:, :, :H]}
