"""Wide stream beats: K elements per ``tdata`` beat (pure NumPy, no Amaranth).

:class:`BeatFormat` is the one definition of how the AXI top's ``s_axis`` and ``m_axis``
carry ``K`` (``elements``) stream elements per beat: element ``j`` of a beat sits in byte
lane group ``j`` (``lane_bytes = ceil(element_bits / 8)`` bytes, bits
``j * lane_bits .. (j + 1) * lane_bits - 1`` of ``tdata``), its code in the low
``element_bits`` bits, two's complement, sign-extended over the lane. Each sequence (its
elements up to the one with ``tlast``) starts a new beat; its last beat is partial when ``K``
does not divide the sequence's length: ``tkeep`` (one bit per byte, AXI4-Stream) then holds
the bytes of its first ``n`` lanes and the null lanes' data is zero. Every other beat is
full (``tkeep`` all ones). On a byte stream (a DMA buffer) the elements are therefore
``lane_bytes`` little-endian bytes each, back to back, whatever ``K`` is.

:meth:`BeatFormat.pack` and :meth:`BeatFormat.unpack` are the reference functions of the
hardware converters :class:`lstmfpga.hw.beats.BeatPacker` and
:class:`~lstmfpga.hw.beats.BeatUnpacker`; the host runtime (:mod:`lstmfpga.runtime`) encodes
and decodes beats with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_BEAT_ELEMENTS", "BeatFormat", "Beats", "check_beat_elements"]

#: The widest beat: ``K`` at most this many elements.
MAX_BEAT_ELEMENTS = 64


def check_beat_elements(value) -> int:
    """``value`` if it is an integer in ``1 ..`` :data:`MAX_BEAT_ELEMENTS` (else a one-line
    ``TypeError``/``ValueError``)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"beat_elements must be an integer, not {value!r}")
    if not 1 <= value <= MAX_BEAT_ELEMENTS:
        raise ValueError(f"beat_elements must be in 1..{MAX_BEAT_ELEMENTS}, not {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class Beats:
    """Stream beats: ``tdata`` ``(n, beat_bytes)`` ``uint8`` (little-endian), ``tkeep``
    ``(n, beat_bytes)`` ``bool`` (one flag per byte), ``tlast`` ``(n,)`` ``bool``, and
    optionally ``tuser`` ``(n, K)`` ``bool`` (one flag per lane: stream mode's "reset the
    state before this step" on a step's first element)."""

    tdata: np.ndarray
    tkeep: np.ndarray
    tlast: np.ndarray
    tuser: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.tlast.size)

    def words(self) -> list[int]:
        """Each beat's ``tdata`` as one integer (for a simulator port)."""
        return [int.from_bytes(row.tobytes(), "little") for row in self.tdata]

    def keeps(self) -> list[int]:
        """Each beat's ``tkeep`` as one integer (bit ``b``: byte ``b``)."""
        return _ints(self.tkeep)

    def users(self) -> list[int]:
        """Each beat's ``tuser`` as one integer (bit ``j``: lane ``j``; 0 without ``tuser``)."""
        return [0] * len(self) if self.tuser is None else _ints(self.tuser)


def _ints(flags: np.ndarray) -> list[int]:
    bits = np.packbits(np.asarray(flags, bool), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in bits]


@dataclass(frozen=True)
class BeatFormat:
    """``elements`` (``K``) elements of ``element_bits`` bits per beat (see the module
    docstring)."""

    elements: int
    element_bits: int

    def __post_init__(self):
        check_beat_elements(self.elements)
        bits = self.element_bits
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 62:
            raise ValueError(f"element_bits must be an integer in 1..62, not {bits!r}")

    @property
    def lane_bytes(self) -> int:
        """Bytes of one element's lane."""
        return -(-self.element_bits // 8)

    @property
    def lane_bits(self) -> int:
        return 8 * self.lane_bytes

    @property
    def beat_bytes(self) -> int:
        """Bytes of ``tdata`` (and bits of ``tkeep``)."""
        return self.elements * self.lane_bytes

    @property
    def beat_bits(self) -> int:
        """Bits of ``tdata``."""
        return 8 * self.beat_bytes

    def lane_words(self, codes) -> np.ndarray:
        """Signed codes → their lanes as ``uint64`` words (two's complement over
        ``lane_bits``: sign-extended)."""
        codes = np.asarray(codes, np.int64)
        return codes.astype(np.uint64) & np.uint64((1 << self.lane_bits) - 1)

    def codes(self, words) -> np.ndarray:
        """Lane words → signed codes (the low ``element_bits`` bits; padding ignored)."""
        bits = self.element_bits
        low = np.asarray(words, np.uint64) & np.uint64((1 << bits) - 1)
        sign = (low >> np.uint64(bits - 1)).astype(np.int64)
        return low.astype(np.int64) - (sign << bits)

    def beat_counts(self, lengths) -> np.ndarray:
        """Beats of sequences of ``lengths`` elements."""
        return -(-np.asarray(lengths, np.int64) // self.elements)

    def pack(self, codes, last, user=None) -> Beats:
        """Elements (signed ``codes``, with ``last`` on each sequence's last one; ``user``
        flags, optional) → beats: what :class:`~lstmfpga.hw.beats.BeatPacker` sends for
        them. The stream must end with a ``last``."""
        return self.pack_words(self.lane_words(np.asarray(codes, np.int64).ravel()), last, user)

    def pack_words(self, words, last, user=None) -> Beats:
        """:meth:`pack` of lane words (``uint64``, one per element, as they go into the
        lanes: e.g. codes with zero padding)."""
        words = np.asarray(words, np.uint64).ravel()
        last = np.asarray(last, bool).ravel()
        if words.shape != last.shape or words.size == 0 or not last[-1]:
            raise ValueError(
                f"elements must be one or more whole sequences (the last one with last), not "
                f"{words.size} elements and {last.size} last flags"
            )
        if user is not None:
            user = np.asarray(user, bool).ravel()
            if user.shape != words.shape:
                raise ValueError(f"user flags must be one per element ({words.size}), not "
                                 f"{user.size}")  # fmt: skip
        ends = np.flatnonzero(last) + 1
        starts = np.r_[0, ends[:-1]]
        lengths = ends - starts
        beats = self.beat_counts(lengths)
        first_beat = np.r_[0, np.cumsum(beats)[:-1]]
        sequence = np.repeat(np.arange(lengths.size), lengths)
        position = np.arange(words.size) - starts[sequence]
        beat = first_beat[sequence] + position // self.elements
        lane = position % self.elements
        K, L = self.elements, self.lane_bytes
        lanes = np.zeros((int(beats.sum()), K), np.uint64)
        lanes[beat, lane] = words
        kept = np.zeros(lanes.shape, bool)
        kept[beat, lane] = True
        raw = lanes.astype("<u8").view(np.uint8).reshape(-1, K, 8)[:, :, :L]
        tlast = np.zeros(lanes.shape[0], bool)
        tlast[np.cumsum(beats) - 1] = True
        tuser = None
        if user is not None:
            tuser = np.zeros(lanes.shape, bool)
            tuser[beat, lane] = user
        return Beats(raw.reshape(-1, K * L).copy(), np.repeat(kept, L, axis=1), tlast, tuser)

    def unpack(self, beats: Beats) -> tuple[np.ndarray, np.ndarray]:
        """Beats → ``(codes, last)`` of their elements: what
        :class:`~lstmfpga.hw.beats.BeatUnpacker` makes of them. A beat's elements are its
        lanes up to its first null one (a lane is kept when its first byte's ``tkeep`` bit
        is set); ``last`` goes with a ``tlast`` beat's final element; a beat whose first lane
        is null gives nothing."""
        K, L = self.elements, self.lane_bytes
        tdata = np.asarray(beats.tdata, np.uint8).reshape(-1, K, L)
        kept = self._kept(beats)
        padded = np.zeros((*tdata.shape[:2], 8), np.uint8)
        padded[:, :, :L] = tdata
        words = padded.view("<u8")[:, :, 0]
        n = kept.sum(axis=1)
        last = np.zeros(kept.shape, bool)
        rows = np.flatnonzero(np.asarray(beats.tlast, bool) & (n > 0))
        last[rows, n[rows] - 1] = True
        return self.codes(words[kept]), last[kept]

    def _kept(self, beats: Beats) -> np.ndarray:
        """``(n, K)``: the lanes :meth:`unpack` takes (up to each beat's first null one)."""
        K, L = self.elements, self.lane_bytes
        first_kept = np.asarray(beats.tkeep, bool).reshape(-1, K, L)[:, :, 0]
        return np.cumprod(first_kept, axis=1).astype(bool)

    def users(self, beats: Beats) -> np.ndarray:
        """The ``tuser`` flag of each element :meth:`unpack` gives (its lane's)."""
        kept = self._kept(beats)
        if beats.tuser is None:
            return np.zeros(int(kept.sum()), bool)
        return np.asarray(beats.tuser, bool).reshape(kept.shape)[kept]
