"""The text ``lstmfpga info`` prints for a quantized model: formats, tables and sizes."""

from __future__ import annotations

from pathlib import Path

from .model import QuantizedModel

__all__ = ["describe_qmodel", "weight_bits"]


def weight_bits(model: QuantizedModel) -> int:
    """Bits of every stored weight and bias code (LSTM or GRU layers, projections, head)."""
    tensors = [
        t
        for directions in model.layers
        for q in directions
        for t in (q.w_ih, q.w_hh, q.bias, q.w_hr, q.b_hn)
        if t is not None
    ]
    if model.head is not None:
        tensors += [t for t in (model.head.weight, model.head.bias) if t is not None]
    return sum(t.codes.size * t.fmt.bits for t in tensors)


def describe_qmodel(model: QuantizedModel | str | Path) -> str:
    """:meth:`QuantizedModel.describe`, then the weight and activation-table sizes in bits
    (``model`` is a quantized model or a qmodel directory)."""
    if not isinstance(model, QuantizedModel):
        model = QuantizedModel.load(model)
    rom = sum(table.rom_bits for table in model.tables.values())
    return "\n".join(
        [
            model.describe(),
            (
                f"weights: {model.weight_count} codes, {weight_bits(model)} bits; "
                f"activation tables: {rom} ROM bits"
            ),
        ]
    )
