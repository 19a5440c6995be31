"""The golden model's step on ``int64`` codes: the primitives, as ``docs/numerics.md`` writes
them (the reference datapath; :mod:`lstmfpga.quant.datapath_float` computes the same codes
faster where float64 is exact)."""

from __future__ import annotations

import numpy as np

from .arithmetic import CellArithmetic
from .fixed import requantize
from .model import QuantizedModel


class Saturation(dict):
    """Per role, how many values did not fit their format."""

    def add(self, role: str, count: int) -> None:
        self[role] = self.get(role, 0) + int(count)


def gate_order(H: int) -> np.ndarray:
    """Row permutation (i, f, g, o) → (i, f, o, g): sigmoid rows first, then tanh rows."""
    return np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]


def fused_gate_matrix(dp, model: QuantizedModel, index: int, d: int, q, order) -> np.ndarray:
    """``[W_ih | W_hh | bias]`` of layer ``index``, direction ``d`` (rows in ``order``),
    aligned to the accumulator by ``dp.matrix``: one product with ``[u_t; h_prev; 1]`` is the
    step's accumulator."""
    s_in, s_rec, s_b = model.gate_shifts(index, d)
    w = [dp.matrix(q.w_ih.codes[order], s_in, "preact")]
    w.append(dp.matrix(q.w_hh.codes[order], s_rec, "preact"))
    if q.bias is not None:
        w.append(dp.matrix(q.bias.codes[order, None], s_b, "preact"))
    return np.ascontiguousarray(np.concatenate(w, axis=1))


class IntDatapath:
    """The step arithmetic on ``int64`` codes: the primitives, as written in the docstring
    of :mod:`lstmfpga.quant.golden`."""

    dtype = np.int64
    #: Whether ``direction`` takes whole layer buffers and a column offset, and ``run`` widens
    #: the last into the result (else it takes the direction's columns and writes the result).
    staged = False

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

    def direction(self, index, d, q, u, h0, c0, steps, out, rec, sat):
        """Run layer ``index``, direction ``d`` over ``u`` ``(T, B, K)``; write ``h`` to
        ``out[t]`` ``(B, H_out)``; fill the trace ``rec`` if any; return the final
        ``(h, c)`` as ``(B, features)`` arrays."""
        model, tables = self.model, self.model.tables
        H, K = model.hidden_size, u.shape[2]
        order = gate_order(H)
        unorder = np.argsort(order)
        wt = fused_gate_matrix(self, model, index, d, q, order).T
        v = np.ones((u.shape[1], wt.shape[0]), np.int64)
        w_hr = None
        if q.w_hr is not None:
            w_hr = self.matrix(q.w_hr.codes, model.proj_shift(index, d), "hidden").T
        h, c = h0, c0
        for t in steps:
            v[:, :K], v[:, K : K + h.shape[1]] = u[t], h
            pre, n = self.requant(v @ wt, "preact")  # columns (i, f, o, g)
            sat.add("preact", n)
            sig = tables["sigmoid"].lookup_in_range(pre[:, : 3 * H])
            g = tables["tanh_gate"].lookup_in_range(pre[:, 3 * H :])
            i, f, o = sig[:, :H], sig[:, H : 2 * H], sig[:, 2 * H :]
            c, m = self.cell.update(i, f, g, o, c, sat)
            if w_hr is not None:
                h, n = self.requant(m @ w_hr, "hidden")
                sat.add("hidden", n)
            else:
                h = m
            out[t] = h
            if rec:
                rec["preact"][:, t] = pre[:, unorder]
                rec["gates"][:, t] = np.concatenate([sig, g], axis=1)[:, unorder]
                rec["c"][:, t], rec["m"][:, t] = c, m
        return h, c
