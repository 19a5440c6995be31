"""The weight beat stream of a quantized model for a generated design.

A weight port takes the beats of the weight memory's load port
(:class:`lstmfpga.hw.weights.WeightMemory` ``load``), one memory word per beat, in the beat
format defined once by :class:`lstmfpga.hw.weight_port.WeightPort` (which the hardware's ports
are sized from): bit 0 ``bias`` (1: bias memory, 0: weight memory), then ``addr``, then
``data`` (the word packed lane-major as :func:`lstmfpga.hw.layout.pack` does). The stream
holds every weight word (addresses ``0 .. depth - 1``) then every bias word. The words are
:class:`~lstmfpga.hw.layout.WeightLayout`'s (for the design's ``lanes`` and ``simd``);
nothing is re-derived here.

:func:`check_model` refuses a model whose geometry or formats differ from the design's, one
line naming the first mismatch (:class:`~.design.ManifestError`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hw.layout import WeightLayout
from ..hw.register_map import tables_digest
from ..hw.weight_port import WeightPort
from ..quant.given_formats import geometry, tensor_formats
from ..quant.model import QuantizedModel
from .design import HardwareDesign, ManifestError

__all__ = ["WeightStream", "check_model", "pack_weights"]


@dataclass(frozen=True, eq=False)
class WeightStream:
    """``beats`` (``(n, beat_bytes)`` ``uint8``, each beat little-endian) of ``bits``-wide
    load beats; ``fields`` maps ``bias``, ``addr``, ``data`` to ``(offset, width)``."""

    beats: np.ndarray
    bits: int
    fields: dict[str, tuple[int, int]]

    def __len__(self) -> int:
        return int(self.beats.shape[0])

    @property
    def beat_bytes(self) -> int:
        return int(self.beats.shape[1])

    def to_bytes(self) -> bytes:
        return self.beats.tobytes()

    def field(self, name: str) -> np.ndarray:
        """Field ``name`` of every beat (``uint64``; ``data`` only when it fits 64 bits)."""
        offset, width = self.fields[name]
        if width > 64:
            raise ValueError(f"field {name} is {width} bits wide; read it from the bytes")
        bits = np.unpackbits(self.beats, axis=1, bitorder="little")[:, offset : offset + width]
        return (bits.astype(np.uint64) << np.arange(width, dtype=np.uint64)).sum(axis=1)


def _mismatch(what: str, design_value, model_value) -> ManifestError:
    return ManifestError(f"qmodel {what} must be the design's {design_value}, not {model_value}")


def check_model(design: HardwareDesign, model: QuantizedModel) -> WeightLayout:
    """Check that ``model`` fits ``design`` (geometry, head, every data and weight format,
    the accumulator, the weight memories' shape); returns its :class:`WeightLayout`."""
    if not isinstance(model, QuantizedModel):
        raise TypeError(f"model must be a QuantizedModel, not {model!r}")
    cell = "lstm" if design.geometry.cell_state else "gru"  # a GRU design has no cell state
    if model.cell != cell:
        raise _mismatch("cell", repr(cell), repr(model.cell))
    head = None if design.head_mode is None else (design.head_mode, design.head_out)
    want = {"input_size": design.input_size, "hidden_size": design.hidden_size,
            "num_layers": design.num_layers, "bidirectional": design.bidirectional,
            "proj_size": design.proj_size, "bias": design.has_bias,
            "head (mode, out_features)": head}  # fmt: skip
    got = geometry(model)
    for what, value in want.items():
        if got[what] != value:
            raise _mismatch(what, value, got[what])
    formats = {**model.formats, "acc": model.acc}
    for role, fmt in design.formats.items():
        if formats[role] != fmt:
            raise _mismatch(f"format of {role}", fmt, formats[role])
    if not design.weight_formats:
        raise ManifestError(
            f"{design.where} does not record the weight formats, so new weights cannot be "
            "checked against the hardware: regenerate the design"
        )
    mine = tensor_formats(model)
    if set(mine) != set(design.weight_formats):
        raise _mismatch("weight tensors", sorted(design.weight_formats), sorted(mine))
    for name, fmt in design.weight_formats.items():
        if mine[name] != fmt:
            raise _mismatch(f"format of tensor {name}", fmt, mine[name])
    for what, want, got in (("rounding", design.rounding, model.rounding),
                            ("overflow", design.overflow, model.overflow)):  # fmt: skip
        if want is not None and want != got:
            raise _mismatch(what, want, got)
    if design.tables_sha256 is not None and tables_digest(model.tables) != design.tables_sha256:
        raise ManifestError(
            "qmodel activation tables must be the design's (its quantization config's table "
            f"rules), not those of config {model.config.name!r}"
        )
    layout = WeightLayout.of(model, design.lanes, design.simd)
    P, S = layout.lanes, layout.simd
    for name, width, depth in (("weights", P * S * layout.weight_bits, layout.depth),
                               ("biases", P * layout.acc.bits, layout.bias_depth)):  # fmt: skip
        want = design.memories.get(name)
        if want is not None and want != (width, depth):
            raise _mismatch(f"{name} memory (width, depth)", want, (width, depth))
    return layout


def pack_weights(design: HardwareDesign, model: QuantizedModel) -> WeightStream:
    """The load beats that write ``model``'s weights and biases into ``design`` (checked
    with :func:`check_model` first), in the beat format of
    :class:`lstmfpga.hw.weight_port.WeightPort` (the design's, when its manifest records a
    weight port: then the model's memories must have its shape)."""
    layout = check_model(design, model)
    port = WeightPort.of(layout)
    theirs = design.weight_port
    if theirs is not None and not theirs.same_format(port):
        raise _mismatch("weight beats (fields, beats)", (theirs.fields, theirs.beats),
                        (port.fields, port.beats))  # fmt: skip
    return WeightStream(port.pack(layout), port.bits, port.fields)
