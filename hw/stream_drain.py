"""The stream-mode result drain: each step's output as soon as it is written.

:class:`StreamDrain` is the output side of :class:`~.accelerator.LSTMAccelerator` in stream
mode (:mod:`.stream_schedule`). For every step it reads the step's output words from their
slot of a ring buffer (the top layer's outputs, or an every-step head's) once the write-back
has finished the step, and after a sequence's last step the words that exist once per
sequence (a ``last`` head's output, ``h_n``, ``c_n``), ``last`` on the sequence's final word.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from .drain import Region
from .layout import at_least
from .stream_schedule import STEP_BITS, step_lead

__all__ = ["StreamDrain"]


class StreamDrain(wiring.Component):
    """Streams every step's output words, then each sequence's final words.

    Parameters
    ----------
    per_step : Region or None
        The every-step output: ``per_step.fixed`` words per step, step ``n`` at word
        ``(n mod slots) * stride + base`` of its buffer (``None``: no every-step output).
    stride, base, slots : int
        The ring's geometry (``slots`` a power of two).
    final : sequence of Region
        The once-per-sequence regions, in output order, each ``fixed`` words from address 0.
    data_bits : int
        Width of the output elements (every region sign-extended).

    Members
    -------
    written : ``In(STEP_BITS)``
        Steps the write-back has finished (a step's outputs, and after a sequence's last
        step its final words, are all written).
    last : ``In(1)``
        The current step (``n``) carried ``tlast``.
    n : ``Out(STEP_BITS)``
        Steps whose every-step words have been read.
    step_r (with ``per_step``), <final region name> : ``In(ReadPort.Signature(...))``
        Synchronous read ports (``en`` follows the output register).
    o : ``Out(stream.Signature(StructLayout({"data": signed(data_bits), "last": 1})))``
    seq_done : ``Out(1)``
        The final word of a sequence is transferred in this cycle.

    Timing: ``latency`` 1 (a word is valid the cycle after it is read); one word per cycle
    while ``o.ready``; a step is read from the cycle after ``written`` passes it.
    """

    #: Cycles from a word's read to it being valid on ``o``.
    latency = 1

    def __init__(self, per_step, *, stride: int, base: int, slots: int, final, data_bits: int):
        final = tuple(final)
        if per_step is not None and not isinstance(per_step, Region):
            raise TypeError(f"per_step must be a Region or None, not {per_step!r}")
        if not all(isinstance(r, Region) for r in final):
            raise TypeError(f"final must be a sequence of Region, not {final!r}")
        if per_step is None and not final:
            raise ValueError("a stream drain needs an every-step region or a final region")
        at_least("stride", stride, 0)
        at_least("base", base, 0)
        at_least("slots", slots, 1)
        self._per_step, self._final = per_step, final
        self._stride, self._base, self._slots = stride, base, slots
        self._element = data.StructLayout({"data": signed(data_bits), "last": 1})
        members = {
            "written": In(STEP_BITS),
            "last": In(1),
            "n": Out(STEP_BITS),
            "o": Out(stream.Signature(self._element)),
            "seq_done": Out(1),
        }
        regions = ([("step_r", per_step)] if per_step is not None else []) + [
            (r.name, r) for r in final
        ]
        for name, r in regions:
            members[name] = In(ReadPort.Signature(addr_width=r.addr_width, shape=signed(r.bits)))
        self._regions = regions
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        regions, n_final = self._regions, len(self._final)
        has_step = self._per_step is not None
        # section 0: the every-step words (if any); 1..: the final regions
        first_final = 1 if has_step else 0
        n = Signal(STEP_BITS)
        WAIT = len(regions)  # (no every-step words) waiting for a step to be written
        section = Signal(range(len(regions) + 1), init=0 if has_step else WAIT)
        elem = Signal(range(max(2, max(r.fixed for _, r in regions) + 1)))
        count = Signal.like(elem)
        available = Signal()
        m.d.comb += [available.eq(step_lead(m, self.written, n, name="ready_steps") != 0),
                     self.n.eq(n)]  # fmt: skip
        out_valid, out_last = Signal(), Signal()
        out_section = Signal.like(section)
        advance, issue, final_word, section_end = Signal(), Signal(), Signal(), Signal()
        with m.Switch(section):
            for index, (_, r) in enumerate(regions):
                with m.Case(index):
                    m.d.comb += count.eq(r.fixed)
        m.d.comb += [
            advance.eq(~out_valid | self.o.ready),
            section_end.eq(elem == count - 1),
        ]
        at_final = section == len(regions) - 1
        if has_step:  # the every-step words end the sequence only without final regions
            step_final = self.last if n_final == 0 else 0
            m.d.comb += final_word.eq(section_end & Mux(section == 0, step_final, at_final))
        else:
            m.d.comb += final_word.eq(section_end & at_final)
        if not has_step:  # no every-step words: a step passes once written
            m.d.comb += issue.eq(section != WAIT)
            with m.If(section == WAIT):
                with m.If(available):
                    m.d.sync += n.eq(n + 1)
                    with m.If(self.last):
                        m.d.sync += [section.eq(first_final), elem.eq(0)]
        else:
            m.d.comb += issue.eq((section != WAIT) & ((section != 0) | available))
        with m.If(advance & issue):
            with m.If(section_end):
                m.d.sync += elem.eq(0)
                if has_step:
                    with m.If(section == 0):
                        m.d.sync += n.eq(n + 1)
                        with m.If(~self.last | (n_final == 0)):
                            m.d.sync += section.eq(0)
                        with m.Else():
                            m.d.sync += section.eq(first_final)
                    with m.Elif(section == len(regions) - 1):
                        m.d.sync += section.eq(0)
                    with m.Else():
                        m.d.sync += section.eq(section + 1)
                else:
                    with m.If(section == len(regions) - 1):
                        m.d.sync += section.eq(WAIT)
                    with m.Else():
                        m.d.sync += section.eq(section + 1)
            with m.Else():
                m.d.sync += elem.eq(elem + 1)
        if has_step:
            slot_bits = max(1, (self._slots - 1).bit_length())
            slot = n[:slot_bits] if self._slots > 1 else 0
            m.d.comb += self.step_r.addr.eq(slot * self._stride + self._base + elem)
        for name, _ in regions:
            port = getattr(self, name)
            m.d.comb += port.en.eq(advance)
            if name != "step_r":
                m.d.comb += port.addr.eq(elem)
        with m.If(advance):
            m.d.sync += [out_valid.eq(issue), out_section.eq(section),
                         out_last.eq(final_word)]  # fmt: skip
        with m.Switch(out_section):
            for index, (name, _) in enumerate(regions):
                with m.Case(index):
                    m.d.comb += self.o.payload.data.eq(getattr(self, name).data)
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.last.eq(out_last),
            self.seq_done.eq(out_valid & self.o.ready & out_last),
        ]
        return m
