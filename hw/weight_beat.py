"""The weight beat: the payload layout of :class:`~.weights.WeightMemory`'s ``o`` and the
column fields each beat carries (registered with it, so its consumers compare no column).
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from .layout import WeightLayout, select_bits

__all__ = ["beat_layout", "column_fields", "slot_width"]


def slot_width(beat: data.StructLayout, name: str, S: int) -> int:
    """Width of one slot of field ``name`` of ``beat``."""
    shape = beat[name].shape
    return (shape.elem_shape if S > 1 else shape).width


def beat_layout(layout: WeightLayout) -> data.StructLayout:
    """The payload layout of :class:`~.weights.WeightMemory`'s ``o`` for ``layout``
    (:attr:`~.weights.WeightMemory.beat_layout`)."""
    P, S = layout.lanes, layout.simd
    matrices = layout.matrices
    in_col = unsigned(select_bits(max(m.in_cols for m in matrices)))
    rec_col = unsigned(select_bits(max(m.cols - m.in_cols for m in matrices)))

    def per_slot(shape):
        return shape if S == 1 else data.ArrayLayout(shape, S)

    return data.StructLayout(
        {
            "weights": data.ArrayLayout(signed(layout.weight_bits), P * S),
            "bias": data.ArrayLayout(signed(layout.acc.bits), P),
            "col": unsigned(select_bits(max(m.cols for m in matrices))),
            "group": unsigned(select_bits(max(m.groups for m in matrices))),
            "shift_sel": per_slot(unsigned(select_bits(len(layout.product_shifts)))),
            "target_sel": unsigned(select_bits(len(layout.targets))),
            "first": 1,
            "last": 1,
            "end": 1,
            "rec": S,
            "in_col": per_slot(in_col),
            "rec_col": per_slot(rec_col),
            **({"pad": S} if S > 1 else {}),
        }
    )


def column_fields(layout: WeightLayout, matrix, col: int) -> dict:
    """The column fields of the beat at column ``col`` of ``matrix`` (a
    :class:`~.layout.Matrix` of ``layout``) as :class:`~.weights.WeightMemory` emits them:
    ``{"rec", "in_col", "rec_col"}`` and,
    with ``S > 1``, ``"pad"`` (``rec``/``pad`` as ``S``-bit integers, the others one value
    per slot, a list with ``S > 1``; see the class docstring). For testbenches that feed
    a consumer of the beats."""
    S, beat = layout.simd, beat_layout(layout)
    cols = [col + slot for slot in range(S)]
    in_mask = (1 << slot_width(beat, "in_col", S)) - 1
    rec_mask = (1 << slot_width(beat, "rec_col", S)) - 1
    fields = {
        "rec": sum(int(c >= matrix.in_cols) << slot for slot, c in enumerate(cols)),
        "in_col": [c & in_mask for c in cols],
        "rec_col": [(c - matrix.in_cols) & rec_mask for c in cols],
    }
    if S == 1:
        fields["in_col"], fields["rec_col"] = fields["in_col"][0], fields["rec_col"][0]
    else:
        fields["pad"] = sum(int(c >= matrix.cols) << slot for slot, c in enumerate(cols))
    return fields
