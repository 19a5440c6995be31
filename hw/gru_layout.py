"""A GRU layer's gate matrix as the LSTM's matrix-vector unit holds it (pure NumPy).

The LSTM's gates matrix of a (layer, direction) is ``4H`` rows by ``I_l + H`` columns
(``W_ih | W_hh`` against the vector ``[u_t; h_prev]``), rows unit-major, one requantization
target. A GRU fits the same geometry, the same vector and the same fetch, with four row blocks
per hidden unit ``j``:

==========  ========================  ==========================  ==========================
block       weights (``u`` | ``h``)   bias (accumulator codes)    golden model's sum
==========  ========================  ==========================  ==========================
``r``       ``W_ir[j] | W_hr[j]``     ``(b_ir + b_hr) << s_b``    ``acc_r``
``z``       ``W_iz[j] | W_hz[j]``     ``(b_iz + b_hz) << s_b``    ``acc_z``
``n_x``     ``W_in[j] | 0``           ``b_in << s_b``             ``acc_nx``
``n_h``     ``0 | W_hn[j]``           ``b_hn << s_bn``            ``acc_hn``
==========  ========================  ==========================  ==========================

Products enter the accumulator with the model's shifts (``s_in`` for the ``u`` columns,
``s_rec`` for the ``h`` columns, :meth:`QuantizedModel.gate_shifts`; ``s_bn``,
:meth:`QuantizedModel.gru_shifts`), so the four rows of unit ``j`` are exactly the sums of
:meth:`lstmfpga.quant.gru_golden.GRUCellArithmetic.update_sums`. All four leave the MVU
**exact**, through one target for the whole matrix: the accumulator format itself with shift
0 (an identity, since the accumulator never overflows). ``n_x`` must be exact because the
cell adds ``r·hn << s_rn`` to it before the one requantization of ``n``; r, z and ``n_h``
could be requantized in the MVU (to ``preact``, ``preact``, ``hn``), but their rows share
row groups (``P`` lanes, one target per group), so the GRU cell requantizes them instead.
The rows need no wider a word: the regrouper's rows are the MVU's widest target, ``n_x``'s,
anyway. Rows are unit-major (``4j + q`` holds block ``q`` of unit ``j``,
:func:`~.layout.unit_major`), so a unit's four sums leave the MVU together, as an LSTM
unit's four gates do.

Nothing here re-derives a number: weights, biases, shifts and formats are the model's.
:func:`gru_rows_reference` is what the MVU computes for this arrangement
(:func:`lstmfpga.quant.arithmetic.dot_accumulate`, then the identity requantization).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..export.spec import SpecError
from ..quant.arithmetic import dot_accumulate
from ..quant.model import QuantizedModel
from .layout import GRU_SUMS, Segment, Target, unit_major

__all__ = ["GRU_BLOCKS", "GRUGateRows", "gru_gate_rows", "gru_rows_reference", "split_units"]

#: The row blocks of a hidden unit, in row order (``4j + q`` holds block ``q`` of unit ``j``).
GRU_BLOCKS = ("r", "z", "n_x", "n_h")


@dataclass(frozen=True, eq=False)
class GRUGateRows:
    """One (layer, direction)'s GRU gate matrix in the MVU's geometry.

    Members
    -------
    layer, direction : int
    hidden_size : int
        ``H``: the matrix has ``4H`` rows.
    input_size : int
        ``I_l``, the layer input's width: columns ``0 .. I_l - 1`` multiply ``u_t``, columns
        ``I_l .. I_l + H - 1`` multiply ``h_prev``.
    codes : numpy.ndarray
        ``(4H, I_l + H)`` int64 weight codes, unit-major rows (blocks :data:`GRU_BLOCKS`).
    bias : numpy.ndarray
        ``(4H,)`` int64 accumulator codes (aligned biases; zeros without a bias).
    segments : tuple of Segment
        The ``u`` columns (shift ``s_in``) and the ``h`` columns (shift ``s_rec``);
        ``shift_index`` indexes :attr:`product_shifts`.
    target : Target
        ``("gru_sums", 0, acc)``: every row leaves the MVU as its exact accumulator value.
    """

    layer: int
    direction: int
    hidden_size: int
    input_size: int
    codes: np.ndarray
    bias: np.ndarray
    segments: tuple[Segment, ...]
    target: Target

    @property
    def rows(self) -> int:
        """``4H``."""
        return 4 * self.hidden_size

    @property
    def cols(self) -> int:
        """``I_l + H``."""
        return self.input_size + self.hidden_size

    @property
    def product_shifts(self) -> tuple[int, ...]:
        """``(s_in, s_rec)``, indexed by the segments' ``shift_index``."""
        return tuple(seg.shift for seg in self.segments)

    @property
    def col_shifts(self) -> np.ndarray:
        """``(I_l + H,)`` the left shift of each column's products into the accumulator."""
        return np.concatenate([np.full(seg.length, seg.shift, np.int64) for seg in self.segments])

    @property
    def out_bits(self) -> int:
        """Width of the MVU's results for these rows: the accumulator's."""
        return self.target.fmt.bits


def _check(model, layer, direction) -> None:
    if not isinstance(model, QuantizedModel):
        raise TypeError(f"model must be a QuantizedModel, not {model!r:.60}")
    if model.cell != "gru":
        raise SpecError(f"the GRU gate rows need a GRU qmodel, not cell {model.cell!r}")
    for name, value, count in (("layer", layer, model.num_layers),
                               ("direction", direction, model.num_directions)):  # fmt: skip
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 0 <= value < count:
            raise ValueError(f"{name} must be in 0..{count - 1}, not {value!r}")


def gru_gate_rows(model: QuantizedModel, layer: int, direction: int) -> GRUGateRows:
    """The gate rows of ``model``'s ``(layer, direction)`` (see the module docstring)."""
    _check(model, layer, direction)
    q = model.layers[layer][direction]
    H = model.hidden_size
    I = q.w_ih.codes.shape[1]  # the layer input's width, as in the docs
    s_in, s_rec, _ = model.gate_shifts(layer, direction)
    s_bn, _ = model.gru_shifts(layer, direction)
    w_i, w_h = q.w_ih.codes, q.w_hh.codes  # (3H, I), (3H, H), rows r, z, n
    zeros_i, zeros_h = np.zeros((H, I), np.int64), np.zeros((H, H), np.int64)
    blocks = np.concatenate([
        np.concatenate([w_i[: 2 * H], w_h[: 2 * H]], axis=1),   # r, z
        np.concatenate([w_i[2 * H :], zeros_h], axis=1),        # n_x
        np.concatenate([zeros_i, w_h[2 * H :]], axis=1),        # n_h
    ])  # fmt: skip
    b_hn = np.zeros(H, np.int64) if q.b_hn is None else q.b_hn.codes << s_bn
    bias = np.concatenate([model.aligned_gate_bias(layer, direction), b_hn])
    codes, bias = unit_major(blocks, H), unit_major(bias, H)
    segments = (Segment(0, I, s_in, 0), Segment(I, H, s_rec, 1))
    for a in (codes, bias):
        a.setflags(write=False)
    return GRUGateRows(layer, direction, H, I, codes, bias, segments,
                       Target(GRU_SUMS, 0, model.acc))  # fmt: skip


def gru_rows_reference(rows: GRUGateRows, u, h_prev) -> np.ndarray:
    """What the MVU computes for ``rows`` on ``u`` ``(..., I_l)`` and ``h_prev`` ``(..., H)``
    codes: ``(..., 4H)`` int64, row ``k`` the exact ``dot_accumulate`` of row ``k`` plus its
    bias (the identity target leaves it as it is)."""
    vector = np.concatenate([np.asarray(u, np.int64), np.asarray(h_prev, np.int64)], axis=-1)
    return dot_accumulate(rows.codes, vector, rows.col_shifts) + rows.bias


def split_units(sums) -> dict[str, np.ndarray]:
    """The MVU results ``(..., 4H)`` of :class:`GRUGateRows` as ``{"r": acc_r, "z": acc_z,
    "n_x": acc_nx, "n_h": acc_hn}``, each ``(..., H)`` (unit ``j`` at index ``j``)."""
    sums = np.asarray(sums)
    return {name: sums[..., q::4] for q, name in enumerate(GRU_BLOCKS)}
