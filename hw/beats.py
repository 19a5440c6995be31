"""Width converters between K-element stream beats and one-element streams.

The AXI top (:mod:`.axi_top`) carries ``K`` elements per ``tdata`` beat when built with
``beat_elements=K > 1`` (the format: :class:`~.beat_format.BeatFormat`); the accelerator
takes and gives one element per transfer. :class:`BeatUnpacker` turns input beats into
elements, :class:`BeatPacker` results into beats. Both are ``lib.stream`` components:

* beats: ``stream.Signature(beat_layout(fmt))``, payload ``data`` (``beat_bits``), ``keep``
  (``beat_bytes``: AXI4-Stream ``tkeep``, one bit per byte), ``last``;
* elements: ``stream.Signature(element_layout(fmt))``, payload ``data``
  (``signed(element_bits)``), ``last``.

Reference functions: :meth:`BeatFormat.pack` (the packer) and :meth:`BeatFormat.unpack`
(the unpacker).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .beat_format import BeatFormat

__all__ = ["BeatPacker", "BeatUnpacker", "beat_layout", "element_layout"]


def beat_layout(fmt: BeatFormat, user: bool = False) -> data.StructLayout:
    """A beat's payload: ``data`` (``tdata``), ``keep`` (``tkeep``), ``last`` (``tlast``),
    with ``user`` also ``user`` (``tuser``, one bit per lane)."""
    fields = {"data": fmt.beat_bits, "keep": fmt.beat_bytes, "last": 1}
    return data.StructLayout(fields | ({"user": fmt.elements} if user else {}))


def element_layout(fmt: BeatFormat, user: bool = False) -> data.StructLayout:
    """An element's payload: its code ``data`` and ``last`` (with ``user``, its lane's
    ``user`` bit)."""
    fields = {"data": signed(fmt.element_bits), "last": 1}
    return data.StructLayout(fields | ({"user": 1} if user else {}))


class _Converter(wiring.Component):
    """A converter of :class:`BeatFormat` ``fmt``: ``i`` of ``layouts[0]``, ``o`` of
    ``layouts[1]``."""

    def __init__(self, fmt: BeatFormat, layouts, user: bool = False):
        if not isinstance(fmt, BeatFormat) or not isinstance(user, bool):
            self._MustUse__silence = True  # a rejected converter is not an unused one
            if not isinstance(fmt, BeatFormat):
                raise TypeError(f"fmt must be a BeatFormat, not {fmt!r}")
            raise TypeError(f"user must be True or False, not {user!r}")
        self._fmt, self._user = fmt, user
        i, o = (layout(fmt, user) for layout in layouts)
        super().__init__({"i": In(stream.Signature(i)), "o": Out(stream.Signature(o))})

    @property
    def fmt(self) -> BeatFormat:
        return self._fmt

    @property
    def user(self) -> bool:
        return self._user


class BeatUnpacker(_Converter):
    """Input beats → elements, lane 0 first.

    A beat's elements are its lanes up to its first null one (a lane counts when the
    ``keep`` bit of its first byte is set; what a DMA engine sends: null bytes only at the
    end of a packet's last beat); an element's code is the low ``element_bits`` of its lane
    (padding ignored); ``last`` goes with the final element of a beat with ``last``. A beat
    whose first lane is null is taken and gives nothing. With ``user``, an element's
    ``user`` is its lane's bit of the beat's ``user`` (reference: :meth:`BeatFormat.users`).

    Members
    -------
    i : In(stream.Signature(beat_layout(fmt, user)))
    o : Out(stream.Signature(element_layout(fmt, user)))

    Latency 0 (``o`` is a lane of the beat on ``i``; ``i.ready`` when its final element is
    taken); throughput one element per cycle.
    """

    latency = 0

    def __init__(self, fmt: BeatFormat, user: bool = False):
        super().__init__(fmt, (beat_layout, element_layout), user)

    def elaborate(self, platform):
        m = Module()
        fmt, i, o = self._fmt, self.i, self.o
        K, L = fmt.elements, fmt.lane_bytes
        lane = Signal(range(K))  # the lane offered on o
        kept = Signal(K + 1)  # lanes whose first byte is kept; bit K: none after the last
        m.d.comb += kept.eq(Cat(*(i.payload.keep[j * L] for j in range(K)), Const(0, 1)))
        final = Signal()  # the beat's last element is offered
        m.d.comb += [
            final.eq(~kept.bit_select(lane + 1, 1)),
            o.valid.eq(i.valid & kept.bit_select(lane, 1)),
            o.payload.data.eq(i.payload.data.word_select(lane, fmt.lane_bits)),
            o.payload.last.eq(i.payload.last & final),
            i.ready.eq((o.ready & final) | ~kept.bit_select(lane, 1)),
        ]
        if self._user:
            m.d.comb += o.payload.user.eq(i.payload.user.bit_select(lane, 1))
        with m.If(i.valid & i.ready):
            m.d.sync += lane.eq(0)
        with m.Elif(o.valid & o.ready):
            m.d.sync += lane.eq(lane + 1)
        return m


class BeatPacker(_Converter):
    """Elements → beats of ``K`` lanes, lane 0 first.

    A beat leaves when its ``K``-th element or a ``last`` element has come in: full beats
    have ``keep`` all ones; the last beat of a sequence holds its remaining ``n`` elements
    (``keep``: the bytes of lanes ``0 .. n - 1``; null lanes' data zero) and ``last``. Lanes
    are sign-extended codes.

    Members
    -------
    i : In(stream.Signature(element_layout(fmt)))
    o : Out(stream.Signature(beat_layout(fmt)))

    Latency 1 (a beat is offered the cycle after its final element is taken); throughput
    one element per cycle (``i.ready`` stays high while a finished beat is taken).
    """

    latency = 1

    def __init__(self, fmt: BeatFormat):
        super().__init__(fmt, (element_layout, beat_layout))

    def elaborate(self, platform):
        m = Module()
        fmt, i, o = self._fmt, self.i, self.o
        K, L, W = fmt.elements, fmt.lane_bytes, fmt.lane_bits
        lanes = Signal(fmt.beat_bits)
        kept = Signal(K)  # lanes filled in the beat being built (or offered)
        count = Signal(range(K))  # the lane the next element goes to
        full = Signal()  # a finished beat is offered on o
        last = Signal()
        m.d.comb += [
            i.ready.eq(~full | o.ready),
            o.valid.eq(full),
            o.payload.data.eq(lanes & Cat(kept[j].replicate(W) for j in range(K))),
            o.payload.keep.eq(Cat(kept[j].replicate(L) for j in range(K))),
            o.payload.last.eq(last),
        ]
        with m.If(o.valid & o.ready):
            m.d.sync += full.eq(0)
        with m.If(i.valid & i.ready):
            m.d.sync += lanes.word_select(count, W).eq(i.payload.data)  # sign-extended
            with m.If(count == 0):
                m.d.sync += kept.eq(1)
            with m.Else():
                m.d.sync += kept.eq(kept | (Const(1, K) << count))
            with m.If((count == K - 1) | i.payload.last):
                m.d.sync += [full.eq(1), last.eq(i.payload.last), count.eq(0)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m
