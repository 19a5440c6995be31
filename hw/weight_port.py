"""The weight port's beat format: one definition (pure Python and NumPy, no Amaranth).

:class:`WeightPort` says what a beat of the weight port carries and how a whole load is
ordered. The accelerator's ``w`` port and the AXI top's ``s_axis_w`` carry it, the design
manifest records it (``weight_port``, :class:`~.manifest.Manifest`), the host runtime
(:func:`lstmfpga.runtime.pack_weights`) and the simulation bench pack beats with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ManifestError
from .manifest_fields import (
    IDENTIFIER,
    checked,
    dict_field,
    int_field,
    is_span,
    require,
    str_field,
)

__all__ = ["WEIGHT_FIELDS", "WeightPort"]

#: The beat fields in order from bit 0 (see :class:`WeightPort`).
WEIGHT_FIELDS = ("bias", "addr", "data")


@dataclass(frozen=True)
class WeightPort:
    """The weight port: its beat format (the one definition) and its port names.

    A beat writes one word of the weight memory or the bias memory (the weight memory's load
    port, :class:`lstmfpga.hw.weights.WeightMemory` ``load``): bit 0 ``bias`` (1: the bias
    memory), then ``addr`` (``addr_bits``), then ``data`` (``data_bits``: the word, its
    ``lanes * simd`` weights or ``lanes`` biases lane-major, each in two's complement, as
    :func:`lstmfpga.hw.layout.pack` packs a memory word; narrower bias words are zero-extended).
    A whole load is every weight word (addresses ``0 .. weight_words - 1``) then every bias
    word; on a byte stream each beat is ``beat_bytes`` bytes, little-endian (bits above
    :attr:`bits` zero). ``data``, ``valid``, ``ready`` and ``last`` are the top's port names
    (``last``: ``None`` when the port has no ``tlast``).
    """

    addr_bits: int
    data_bits: int
    weight_words: int
    bias_words: int
    data: str = "w__payload"
    valid: str = "w__valid"
    ready: str = "w__ready"
    last: str | None = None

    @classmethod
    def of(cls, layout, **ports) -> WeightPort:
        """The port of a :class:`~lstmfpga.hw.layout.WeightLayout` (``ports``: names)."""
        from .layout import select_bits

        P, S = layout.lanes, layout.simd
        return cls(
            addr_bits=select_bits(max(layout.depth, layout.bias_depth)),
            data_bits=max(P * S * layout.weight_bits, P * layout.acc.bits),
            weight_words=layout.depth,
            bias_words=layout.bias_depth,
            **ports,
        )

    @property
    def bits(self) -> int:
        """Bits of a beat's payload."""
        return 1 + self.addr_bits + self.data_bits

    @property
    def beat_bytes(self) -> int:
        return -(-self.bits // 8)

    @property
    def beats(self) -> int:
        """Beats of a whole load."""
        return self.weight_words + self.bias_words

    @property
    def fields(self) -> dict[str, tuple[int, int]]:
        """``{field: (offset, width)}`` of a beat."""
        return {"bias": (0, 1), "addr": (1, self.addr_bits),
                "data": (1 + self.addr_bits, self.data_bits)}  # fmt: skip

    def same_format(self, other: WeightPort) -> bool:
        """Whether ``other`` takes the same beats (port names aside)."""
        return self.fields == other.fields and self.beats == other.beats

    def pack(self, layout) -> np.ndarray:
        """The beats writing ``layout``'s memory images: ``(beats, beat_bytes)`` ``uint8``,
        each row one beat, little-endian. ``layout`` must have this port's shape."""
        mine = WeightPort.of(layout)
        if not self.same_format(mine):
            raise ValueError(
                f"weights must have the weight port's fields {self.fields} and {self.beats} "
                f"words, not {mine.fields} and {mine.beats}"
            )
        rows = []
        for is_bias, words, width in ((0, layout.weight_words, layout.weight_bits),
                                      (1, layout.bias_words, layout.acc.bits)):  # fmt: skip
            n = words.shape[0]
            data = _bits(words, width)
            pad = np.zeros((n, self.data_bits - data.shape[1]), np.uint8)
            addr = _bits(np.arange(n)[:, None], self.addr_bits)
            rows.append(np.concatenate([np.full((n, 1), is_bias, np.uint8), addr, data, pad], 1))
        bits = np.concatenate(rows)
        bits = np.pad(bits, ((0, 0), (0, 8 * self.beat_bytes - self.bits)))
        return np.packbits(bits, axis=1, bitorder="little")

    def to_dict(self) -> dict:
        return {
            "ports": {"data": self.data, "valid": self.valid, "ready": self.ready,
                      "last": self.last},
            "beat_bits": self.bits,
            "beat_bytes": self.beat_bytes,
            "fields": {name: list(span) for name, span in self.fields.items()},
            "weight_words": self.weight_words,
            "bias_words": self.bias_words,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, info, where: str) -> WeightPort:
        where = f"{where}: weight_port"
        ports = dict_field(info, "ports", where)
        names = {key: str_field(ports, key, f"{where} ports", IDENTIFIER)
                 for key in ("data", "valid", "ready")}  # fmt: skip
        last = require(ports, "last", f"{where} ports")
        if last is not None:
            last = str_field(ports, "last", f"{where} ports", IDENTIFIER)
        fields = dict_field(info, "fields", where)
        spans = {}
        for name in WEIGHT_FIELDS:
            span = checked(fields, name, f"{where} fields", is_span, "[offset, width]")
            spans[name] = tuple(span)
        port = cls(
            addr_bits=spans["addr"][1],
            data_bits=spans["data"][1],
            weight_words=int_field(info, "weight_words", where, 1),
            bias_words=int_field(info, "bias_words", where, 1),
            last=last,
            **names,
        )
        if spans != port.fields:
            raise ManifestError(
                f"{where}: fields must be bias, addr, data from bit 0 ({port.fields}), not {spans}"
            )
        for key, want in (("beat_bits", port.bits), ("beat_bytes", port.beat_bytes)):
            if int_field(info, key, where, 1) != want:
                raise ManifestError(f"{where}: {key} must be {want}, not {info[key]!r:.40}")
        return port


def _bits(codes, width: int) -> np.ndarray:
    """``(n, k)`` signed codes → ``(n, k * width)`` bits (two's complement, LSB first)."""
    codes = np.asarray(codes, np.int64).astype(np.uint64)
    shifts = np.arange(width, dtype=np.uint64)
    bits = (codes[:, :, None] >> shifts) & np.uint64(1)
    return bits.reshape(codes.shape[0], -1).astype(np.uint8)
