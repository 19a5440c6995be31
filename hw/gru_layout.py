"""A GRU layer's gate matrix as the LSTM's matrix-vector unit holds it (pure NumPy).

The LSTM's gates matrix of a (layer, direction) is ``4H`` rows by ``I_l + H`` columns
(``W_ih | W_hh`` against the vector ``[u_t; h_prev]``), rows unit-major. A GRU fits the same
geometry, the same vector and the same fetch, with four row blocks per hidden unit ``j``:

==========  ========================  ======================  ================================
block       weights (``u`` | ``h``)   bias (accumulator)      leaves the MVU as
==========  ========================  ======================  ================================
``r``       ``W_ir[j] | W_hr[j]``     ``(b_ir + b_hr) << s_b``  ``preact`` code (requantized)
``z``       ``W_iz[j] | W_hz[j]``     ``(b_iz + b_hz) << s_b``  ``preact`` code (requantized)
``n_x``     ``W_in[j] | 0``           ``b_in << s_b``           the exact accumulator value
``n_h``     ``0 | W_hn[j]``           ``b_hn << s_bn``          ``hn`` code (requantized)
==========  ========================  ======================  ================================

Products enter the accumulator with the model's shifts (``s_in`` for the ``u`` columns,
``s_rec`` for the ``h`` columns, :meth:`QuantizedModel.gate_shifts`; ``s_bn``,
:meth:`QuantizedModel.gru_shifts`), so the four rows of unit ``j`` are exactly the golden
model's ``acc_r``, ``acc_z``, ``acc_nx = W_in·u << s_in + b_in << s_b`` and ``acc_hn``
(:class:`lstmfpga.quant.gru_golden.GRUStep`). ``n_x`` must stay exact because the cell adds
``r·hn << s_rn`` to it before the one requantization of ``n`` (the ``n_x`` target is the
accumulator format itself with shift 0: an identity, since the accumulator never overflows).
Rows are unit-major (``4j + q`` holds block ``q`` of unit ``j``, :func:`~.layout.unit_major`),
so a unit's four values leave the MVU together, as an LSTM unit's four gates do.

Nothing here re-derives a number: weights, biases, shifts and formats are the model's.
:func:`gru_rows_reference` is what the MVU computes for this arrangement (per row: the exact
accumulation, :func:`lstmfpga.quant.arithmetic.dot_accumulate`, then its target's
:func:`lstmfpga.quant.fixed.requantize`).

What the MVU itself does not do yet: its ``target_sel`` selects one target per row group,
while these rows need one per row (``row_targets``; with ``P = 1`` a row group is one row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..export.spec import SpecError
from ..quant.arithmetic import dot_accumulate
from ..quant.fixed import requantize, shift_round
from ..quant.model import QuantizedModel
from .layout import Segment, Target, unit_major

__all__ = ["GRU_BLOCKS", "GRUGateRows", "gru_gate_rows", "gru_rows_reference", "split_units"]

#: The row blocks of a hidden unit, in row order (``4j + q`` holds block ``q`` of unit ``j``).
GRU_BLOCKS = ("r", "z", "n_x", "n_h")
#: Target index of each block (into :attr:`GRUGateRows.targets`).
_BLOCK_TARGETS = (0, 0, 1, 2)


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
    targets : tuple of Target
        ``("preact", acc.frac - preact.frac, preact)``, ``("n_x", 0, acc)``,
        ``("hn", acc.frac - hn.frac, hn)``.
    row_targets : numpy.ndarray
        ``(4H,)`` the target index of every row (``0, 0, 1, 2`` per unit).
    """

    layer: int
    direction: int
    hidden_size: int
    input_size: int
    codes: np.ndarray
    bias: np.ndarray
    segments: tuple[Segment, ...]
    targets: tuple[Target, ...]
    row_targets: np.ndarray

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
        """Width of the MVU's results for these rows: the widest target (the accumulator)."""
        return max(t.fmt.bits for t in self.targets)


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
    row_targets = np.tile(np.array(_BLOCK_TARGETS, np.int64), H)
    f = model.formats
    targets = (
        Target("preact", model.requant_shift("preact"), f["preact"]),
        Target("n_x", 0, model.acc),
        Target("hn", model.requant_shift("hn"), f["hn"]),
    )
    segments = (Segment(0, I, s_in, 0), Segment(I, H, s_rec, 1))
    for a in (codes, bias, row_targets):
        a.setflags(write=False)
    return GRUGateRows(layer, direction, H, I, codes, bias, segments, targets, row_targets)


def gru_rows_reference(rows: GRUGateRows, u, h_prev, rounding: str, overflow: str):
    """What the MVU computes for ``rows`` on ``u`` ``(..., I_l)`` and ``h_prev`` ``(..., H)``
    codes: ``(codes, saturated)``, both ``(..., 4H)``; row ``k`` is its target's
    ``requantize`` of ``dot_accumulate`` of the row, ``saturated`` its overflow flag."""
    vector = np.concatenate([np.asarray(u, np.int64), np.asarray(h_prev, np.int64)], axis=-1)
    acc = dot_accumulate(rows.codes, vector, rows.col_shifts) + rows.bias
    codes = np.empty_like(acc)
    saturated = np.zeros(acc.shape, bool)
    for index, target in enumerate(rows.targets):
        mask = rows.row_targets == index
        part = acc[..., mask]
        codes[..., mask] = requantize(part, target.shift, target.fmt, rounding, overflow)[0]
        saturated[..., mask] = target.fmt.overflows(shift_round(part, target.shift, rounding))
    return codes, saturated


def split_units(codes) -> dict[str, np.ndarray]:
    """The MVU results ``(..., 4H)`` of :class:`GRUGateRows` as ``{"r": pre_r, "z": pre_z,
    "n_x": acc_nx, "n_h": hn}``, each ``(..., H)`` (unit ``j`` at index ``j``)."""
    codes = np.asarray(codes)
    return {name: codes[..., q::4] for q, name in enumerate(GRU_BLOCKS)}
