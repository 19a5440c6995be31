"""The result drain: streams a sequence's results out of the accelerator's buffers.

:class:`ResultDrain` is the DRAIN phase of :class:`~.accelerator.LSTMAccelerator`: it reads
*regions* (result buffers) one after the other, each from address 0 up, through memory read
ports, and sends every word as one stream element, ``last`` on the final one.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from .layout import at_least
from .plans import addr_width

__all__ = ["Region", "ResultDrain", "drain_reference", "result_regions"]


class Region:
    """A result buffer of ``bits``-wide signed words, ``depth`` deep, of which a sequence of
    ``T`` steps drains ``per_step * T + fixed`` words (from address 0)."""

    def __init__(self, name: str, bits: int, depth: int, *, per_step: int = 0, fixed: int = 0):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be an identifier, not {name!r}")
        for what, value, low in (("bits", bits, 1), ("depth", depth, 1),
                                 ("per_step", per_step, 0), ("fixed", fixed, 0)):  # fmt: skip
            at_least(what, value, low)
        if per_step + fixed == 0:
            raise ValueError(f"region {name!r} must drain at least one word per sequence")
        self.name, self.bits, self.depth = name, bits, depth
        self.per_step, self.fixed = per_step, fixed

    def count(self, T: int) -> int:
        return self.per_step * T + self.fixed

    @property
    def addr_width(self) -> int:
        return addr_width(self.depth)


def result_regions(model, buffers: dict, *, with_states: bool) -> list[tuple[Region, str]]:
    """The regions of :class:`~.accelerator.LSTMAccelerator`'s results, in output order, each
    with the buffer it reads (``buffers``: :func:`.plans.buffer_plan`): the head output
    (``headbuf``) or, without a head, the top layer's output sequence (region ``obuf``), then
    with ``with_states`` ``h_n`` (``hnbuf``) and ``c_n`` (``cmem``)."""
    q, f = model, model.formats
    head = q.head
    if head is not None:
        per_step = head.out_features if head.mode == "all" else 0
        fixed = head.out_features - per_step
        region = Region("headbuf", f["head_out"].bits, buffers["headbuf"][1], per_step=per_step,
                        fixed=fixed)  # fmt: skip
        regions = [(region, "headbuf")]
    else:
        top = f"obuf{(q.num_layers - 1) % 2}"
        per_step = q.num_directions * q.output_size
        regions = [(Region("obuf", f["hidden"].bits, buffers[top][1], per_step=per_step), top)]
    if with_states:
        for name in ("hnbuf", "cmem") if q.cell == "lstm" else ("hnbuf",):  # GRU: no c_n
            bits, depth = buffers[name]
            regions.append((Region(name, bits, depth, fixed=depth), name))
    return regions


class ResultDrain(wiring.Component):
    """Streams the regions of one sequence's results.

    Parameters
    ----------
    regions : sequence of Region
        In output order.
    max_seq_len : int
        Longest ``T`` (width of ``T``).
    data_bits : int
        Width of the output elements (signed; every region's words are sign-extended).

    Members
    -------
    enable : ``In(1)``
        The DRAIN phase. While it is low the drain is idle and returns to the first region.
    T : ``In(range(max_seq_len + 1))``
        The sequence's length (constant while ``enable`` is high).
    <region name> : ``In(ReadPort.Signature(...))``, one per region
        A synchronous read port of that buffer: the drain drives ``addr`` (0, 1, ...) and
        ``en`` (the read advances when the output register moves).
    o : ``Out(stream.Signature(StructLayout({"data": signed(data_bits), "last": 1})))``
        Every region's ``count(T)`` words in order; ``last`` on the final word.
    done : ``Out(1)``
        Combinational: the final word is transferred in this cycle.

    Timing: ``latency`` 1 (the first word is valid in the cycle after ``enable`` rises); one
    word per cycle while ``o.ready`` is high; ``o.ready`` low holds the output register and
    the reads (``en`` low). ``o.valid`` never depends on ``o.ready`` combinationally.
    """

    #: Cycles from ``enable`` high to the first word valid.
    latency = 1

    def __init__(self, regions, *, max_seq_len: int, data_bits: int):
        regions = tuple(regions)
        if not regions or not all(isinstance(r, Region) for r in regions):
            raise TypeError(f"regions must be a non-empty sequence of Region, not {regions!r}")
        if len({r.name for r in regions}) != len(regions):
            raise ValueError("regions must have distinct names")
        at_least("max_seq_len", max_seq_len, 1)
        if not isinstance(data_bits, int) or data_bits < max(r.bits for r in regions):
            raise ValueError(
                f"data_bits must be at least the widest region "
                f"({max(r.bits for r in regions)}), not {data_bits!r}"
            )
        self._regions, self._Tmax = regions, max_seq_len
        self._element = data.StructLayout({"data": signed(data_bits), "last": 1})
        members = {
            "enable": In(1),
            "T": In(range(max_seq_len + 1)),
            "o": Out(stream.Signature(self._element)),
            "done": Out(1),
        }
        for r in regions:
            members[r.name] = In(ReadPort.Signature(addr_width=r.addr_width, shape=signed(r.bits)))
        super().__init__(members)

    @property
    def regions(self) -> tuple[Region, ...]:
        return self._regions

    def elaborate(self, platform):
        m = Module()
        regions, Tmax = self._regions, self._Tmax
        longest = max(r.count(Tmax) for r in regions)
        region = Signal(range(len(regions) + 1))
        elem = Signal(range(max(2, longest) + 1))
        count = Signal.like(elem)
        out_valid, out_last = Signal(), Signal()
        out_region = Signal.like(region)
        advance, issue, final = Signal(), Signal(), Signal()
        with m.Switch(region):
            for index, r in enumerate(regions):
                with m.Case(index):
                    m.d.comb += count.eq(r.per_step * self.T + r.fixed)
        m.d.comb += [
            advance.eq(~out_valid | self.o.ready),
            issue.eq(self.enable & (region < len(regions))),
            final.eq((region == len(regions) - 1) & (elem == count - 1)),
        ]
        with m.If(advance):
            m.d.sync += [out_valid.eq(issue), out_region.eq(region), out_last.eq(final)]
            with m.If(issue):
                with m.If(elem == count - 1):
                    m.d.sync += [elem.eq(0), region.eq(region + 1)]
                with m.Else():
                    m.d.sync += elem.eq(elem + 1)
        with m.If(~self.enable):
            m.d.sync += [region.eq(0), elem.eq(0)]
        for r in regions:
            port = getattr(self, r.name)
            m.d.comb += [port.addr.eq(elem), port.en.eq(advance)]
        with m.Switch(out_region):
            for index, r in enumerate(regions):
                with m.Case(index):
                    m.d.comb += self.o.payload.data.eq(getattr(self, r.name).data)
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.last.eq(out_last),
            self.done.eq(out_valid & self.o.ready & out_last),
        ]
        return m


def drain_reference(regions, contents: dict, T: int) -> list[tuple[int, bool]]:
    """What :class:`ResultDrain` sends for a sequence of ``T`` steps: ``(code, last)`` for
    the first ``count(T)`` words of every region's ``contents[name]``, in order."""
    words = [int(c) for r in regions for c in list(contents[r.name])[: r.count(T)]]
    return [(code, k == len(words) - 1) for k, code in enumerate(words)]
