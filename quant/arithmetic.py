"""The hardware's arithmetic primitives on ``int64`` codes: the matrix-vector unit's exact
accumulation and the LSTM cell update.

The hardware blocks are checked against these (``hw/mvu.py`` against :func:`dot_accumulate`,
``hw/cell.py`` against :class:`CellArithmetic`), and the golden model's integer datapath is
built from them. ``docs/numerics.md`` states the same rules in prose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed import FixedFormat, requantize
from .model import QuantizedModel

__all__ = ["CellArithmetic", "dot_accumulate"]


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
            saturation["cell"] = saturation.get("cell", 0) + int(n_c)
            saturation["hidden"] = saturation.get("hidden", 0) + int(n_m)
        return c, m
