"""The stream-mode input loader: input vectors into a ring of steps, as they arrive.

:class:`StreamLoader` is the input side of :class:`~.accelerator.LSTMAccelerator` in stream
mode (:mod:`.stream_schedule`). It writes each step's ``x`` vector into slot ``n mod RING``
of ``xbuf`` and counts the loaded steps ``n``; with an initial state, each sequence's ``h0``
and ``c0`` come first (into ``h0buf`` and ``c0buf``, which a reset restores). For every step
it records two flags the compute stages read: ``reset`` (restore the initial state, or
zeros, before the step) and ``last`` (the step's input carried ``tlast``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from .layout import at_least
from .loader import state_ports
from .plans import addr_width
from .stream_schedule import STEP_BITS, step_lead

__all__ = ["StreamLoader"]


class StreamLoader(wiring.Component):
    """Writes the steps of a continuous input stream into the ``x`` ring.

    Parameters
    ----------
    input_size : int
        ``I``, elements per ``x`` vector (one step).
    ring : int
        Steps ``xbuf`` holds (a power of two); ``xbuf`` has ``ring * I`` words.
    data_bits, x_bits : int
        Widths of the input elements and of ``xbuf`` words (signed).
    n_h0, n_c0 : int
        Initial-state elements at the start of every sequence (``L*H_out`` and ``L*H``
        with an initial state, else 0 and 0); ``h0_bits``, ``c_bits`` their widths.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"data": signed(data_bits), "last": 1, "user": 1})))``
        The input elements: ``last`` ends a sequence (``tlast``); ``user`` on the first
        element of a step's ``x`` vector requests a state reset before that step.
    keep_state : ``In(1)``
        0: reset the state before the first step of every sequence; 1: carry it over.
    open : ``In(1)``
        A new sequence may start (the previous one is drained): the first element of a
        sequence waits for it.
    drained : ``In(STEP_BITS)``
        Steps whose results have left (the drain's count): the first element of step ``n``
        waits while ``n - drained >= ring`` (its slot is still needed).
    x_w, h0_w (with ``n_h0``), c_w (with ``n_c0``) : ``In(WritePort.Signature(...))``
        Element ``k`` of step ``n``'s vector to ``xbuf[(n mod ring) * I + k]``; the initial
        state to ``h0buf[k]`` and ``c0buf[k]``.
    loaded : ``Out(STEP_BITS)``
        Steps loaded (modulo ``2**STEP_BITS``); a step counts from the cycle after its last
        element was taken.
    reset, last : ``Out(ring)``
        Bit ``s`` describes the step in slot ``s`` (valid while it is loaded and not drained).
    idle : ``Out(1)``
        No sequence is partly taken (the next element is a sequence's first).
    seq_end : ``Out(1)``
        Pulse: a sequence with at least one step ended (its ``tlast`` is taken).
    error : ``Out(1)``
        Sticky: a sequence ended inside the initial state (dropped) or inside an ``x``
        vector (that vector becomes the sequence's last step, its missing elements
        undefined).

    Timing: one element per cycle while ready; each is written at its transfer's clock edge
    (``latency`` 0).
    """

    #: Cycles from an element's transfer to its buffer write (the same clock edge).
    latency = 0

    def __init__(self, *, input_size: int, ring: int, data_bits: int, x_bits: int,
                 n_h0: int = 0, n_c0: int = 0, h0_bits: int = 1, c_bits: int = 1):  # fmt: skip
        self._I = at_least("input_size", input_size, 1)
        self._ring = at_least("ring", ring, 1)
        if ring & (ring - 1):
            raise ValueError(f"ring must be a power of two, not {ring!r}")
        for name, value in (("data_bits", data_bits), ("x_bits", x_bits), ("h0_bits", h0_bits),
                            ("c_bits", c_bits)):  # fmt: skip
            at_least(name, value, 1)
        self._n_h0, self._n_c0 = at_least("n_h0", n_h0, 0), at_least("n_c0", n_c0, 0)
        self._element = data.StructLayout({"data": signed(data_bits), "last": 1, "user": 1})
        members = {
            "i": In(stream.Signature(self._element)),
            "keep_state": In(1),
            "open": In(1),
            "drained": In(STEP_BITS),
            "x_w": In(WritePort.Signature(addr_width=addr_width(ring * input_size),
                                          shape=signed(x_bits))),
            "loaded": Out(STEP_BITS),
            "reset": Out(ring),
            "last": Out(ring),
            "idle": Out(1),
            "seq_end": Out(1),
            "error": Out(1),
        }  # fmt: skip
        members |= state_ports(n_h0, h0_bits, n_c0, n_c0, c_bits)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        I, ring, n_h0, n_c0 = self._I, self._ring, self._n_h0, self._n_c0
        n_init = n_h0 + n_c0
        elem = self.i.payload
        loaded = Signal(STEP_BITS)
        in_seq = Signal()  # elements of the current sequence were taken
        first_step = Signal(init=1)  # no step of the current sequence completed yet
        init_idx = Signal(range(max(2, n_init + 1)))
        feat = Signal(range(max(2, I)))
        step_reset = Signal()  # the current vector's reset flag (from its first element)
        error = Signal()
        in_init = Signal()
        if n_init:
            m.d.comb += in_init.eq(init_idx < n_init)
        full = Signal()
        m.d.comb += full.eq(step_lead(m, loaded, self.drained, name="ahead") >= ring)
        slot = loaded[: max(1, (ring - 1).bit_length())] if ring > 1 else 0
        blocked = (~in_seq & ~self.open) | (~in_init & (feat == 0) & full)
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(~blocked),
            accept.eq(self.i.valid & ~blocked),
            self.loaded.eq(loaded),
            self.idle.eq(~in_seq),
            self.error.eq(error),
        ]
        with m.If(accept):
            m.d.sync += in_seq.eq(~elem.last)
            with m.If(in_init):
                m.d.sync += init_idx.eq(init_idx + 1)
                if n_h0:
                    m.d.comb += [self.h0_w.addr.eq(init_idx), self.h0_w.data.eq(elem.data),
                                 self.h0_w.en.eq(init_idx < n_h0)]  # fmt: skip
                if n_c0:
                    m.d.comb += [self.c_w.addr.eq(init_idx - n_h0), self.c_w.data.eq(elem.data),
                                 self.c_w.en.eq(init_idx >= n_h0)]  # fmt: skip
                with m.If(elem.last):
                    m.d.sync += [error.eq(1), init_idx.eq(0)]  # no step: dropped
            with m.Else():
                reset_now = Signal()
                m.d.comb += reset_now.eq(
                    Mux(feat == 0, elem.user | (first_step & ~self.keep_state), step_reset)
                )
                m.d.comb += [self.x_w.addr.eq(slot * I + feat), self.x_w.data.eq(elem.data),
                             self.x_w.en.eq(1)]  # fmt: skip
                m.d.sync += step_reset.eq(reset_now)
                with m.If((feat == I - 1) | elem.last):
                    m.d.sync += [
                        feat.eq(0),
                        loaded.eq(loaded + 1),
                        self.reset.bit_select(slot, 1).eq(reset_now),
                        self.last.bit_select(slot, 1).eq(elem.last),
                        first_step.eq(elem.last),
                    ]
                with m.Else():
                    m.d.sync += feat.eq(feat + 1)
                with m.If(elem.last):
                    m.d.comb += self.seq_end.eq(1)
                    m.d.sync += init_idx.eq(0)
                    with m.If(feat != I - 1):
                        m.d.sync += error.eq(1)
        return m
