"""The input loader: one sequence from the input stream into the accelerator's buffers.

:class:`InputLoader` is the LOAD phase of :class:`~.accelerator.LSTMAccelerator` (with
``buffers=2`` it loads the next sequence, into the other bank, while one is computed): it takes the
elements of one sequence (``s_axis``) and writes them, one per cycle, into the input buffers
through memory write ports: with an initial state, ``h0`` then ``c0`` first, then ``x``
time-major. At the sequence's ``tlast`` it reports the number of whole ``x`` vectors ``T``
and starts the computation.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from .layout import at_least

__all__ = ["InputLoader", "load_reference", "state_ports"]


def _addr_width(depth: int) -> int:
    """Address width of a buffer of ``depth`` words (buffers have at least 2 words)."""
    return max(1, (max(2, depth) - 1).bit_length())


def state_ports(n_h0: int, h0_bits: int, n_c0: int, c_depth: int, c_bits: int) -> dict:
    """The initial-state write port members of a loader: ``h0_w`` (with ``n_h0``, into a
    buffer of ``n_h0`` words) and ``c_w`` (with ``n_c0``, into ``c_depth`` words)."""
    members = {}
    if n_h0:
        members["h0_w"] = In(
            WritePort.Signature(addr_width=_addr_width(n_h0), shape=signed(h0_bits))
        )
    if n_c0:
        members["c_w"] = In(
            WritePort.Signature(addr_width=_addr_width(c_depth), shape=signed(c_bits))
        )
    return members


class InputLoader(wiring.Component):
    """Writes one input sequence into the buffers ``xbuf``, ``h0buf`` and ``cmem``.

    Parameters
    ----------
    input_size : int
        ``I``, elements per ``x`` vector.
    max_seq_len : int
        ``T_max``: ``xbuf`` holds ``T_max * I`` elements; longer sequences are cut.
    data_bits : int
        Width of the input elements (signed).
    x_bits : int
        Width of ``xbuf`` words (signed).
    n_h0, n_c0 : int
        Initial-state elements before ``x`` (``L*D*H_out`` and ``L*D*H`` with an initial
        state, else 0 and 0).
    h0_bits, c_bits : int
        Widths of ``h0buf`` and ``cmem`` words; ``c_depth`` is the depth of ``cmem``.
    overlap : bool
        Add the member ``T_now`` (for :class:`~.accelerator.LSTMAccelerator` with
        ``buffers=2``, whose loader writes the next sequence while one is computed).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"data": signed(data_bits), "last": 1})))``
        The input elements; ``last`` marks a sequence's final element (AXI4-Stream ``tlast``).
    enable : ``In(1)``
        The LOAD phase: ``i.ready`` is ``enable``.
    x_w : ``In(WritePort.Signature(...))``
        ``xbuf`` write port: element ``k`` of ``x`` (time-major) to address ``k``, while
        ``k < T_max * I``.
    h0_w : ``In(WritePort.Signature(...))``, only when ``n_h0``
        ``h0buf`` write port: initial-state element ``k < n_h0`` to address ``k``.
    c_w : ``In(WritePort.Signature(...))``, only when ``n_c0``
        ``cmem`` write port: element ``n_h0 + k`` to address ``k``.
    start : ``Out(1)``
        Combinational pulse in the cycle a sequence's ``last`` element is taken, when the
        sequence had at least one whole ``x`` vector (else it is dropped).
    T : ``Out(range(max_seq_len + 1))``
        Whole ``x`` vectors of the last sequence (register, valid from the cycle after
        ``start``; at most ``max_seq_len``).
    error : ``Out(1)``
        Sticky: a sequence ended inside the initial state, with a partial ``x`` vector, or
        was longer than ``max_seq_len`` vectors (``T`` counts the whole vectors kept).
    T_now : ``Out(range(max_seq_len + 1))``, only with ``overlap``
        Combinational: the ``T`` of the sequence whose ``last`` element is taken in this
        cycle (valid with ``start``; ``T`` holds it from the next cycle on), so that a
        double-buffered accelerator can latch it when the computation starts at once.

    Timing: each element taken is written at the clock edge of its transfer (``latency`` 0);
    one element per cycle while ``enable`` is high.
    """

    #: Cycles from an element's transfer to its buffer write (the same clock edge).
    latency = 0

    def __init__(
        self,
        *,
        input_size: int,
        max_seq_len: int,
        data_bits: int,
        x_bits: int,
        n_h0: int = 0,
        n_c0: int = 0,
        h0_bits: int = 1,
        c_bits: int = 1,
        c_depth: int = 2,
        overlap: bool = False,
    ):
        self._I = at_least("input_size", input_size, 1)
        self._Tmax = at_least("max_seq_len", max_seq_len, 1)
        for name, value in (("data_bits", data_bits), ("x_bits", x_bits), ("h0_bits", h0_bits),
                            ("c_bits", c_bits), ("c_depth", c_depth)):  # fmt: skip
            at_least(name, value, 1)
        self._n_h0 = at_least("n_h0", n_h0, 0)
        self._n_c0 = at_least("n_c0", n_c0, 0)
        if self._n_c0 > c_depth:
            raise ValueError(f"c_depth must be at least n_c0 ({n_c0}), not {c_depth!r}")
        self._element = data.StructLayout({"data": signed(data_bits), "last": 1})
        members = {
            "i": In(stream.Signature(self._element)),
            "enable": In(1),
            "x_w": In(
                WritePort.Signature(
                    addr_width=_addr_width(max_seq_len * input_size), shape=signed(x_bits)
                )
            ),
            "start": Out(1),
            "T": Out(range(max_seq_len + 1)),
            "error": Out(1),
        }
        members |= state_ports(n_h0, h0_bits, n_c0, c_depth, c_bits)
        if overlap:
            members["T_now"] = Out(range(max_seq_len + 1))
        super().__init__(members)

    @property
    def element_layout(self) -> data.StructLayout:
        """Payload layout of ``i``."""
        return self._element

    def elaborate(self, platform):
        m = Module()
        I, Tmax, n_h0, n_c0 = self._I, self._Tmax, self._n_h0, self._n_c0
        init_idx = Signal(range(max(2, n_h0 + n_c0 + 1)))
        in_init = Signal()
        feat = Signal(range(max(2, I)))
        tpos = Signal(range(Tmax + 1))
        x_addr = Signal(range(Tmax * I + 1))
        accept = Signal()
        error = Signal()
        elem = self.i.payload
        # Flags of the counters, registered with them (timing: ``start`` restarts every
        # schedule cursor, so it follows flip-flops through two LUT levels, no comparator):
        # ``feat == I - 1``, ``tpos < Tmax``, ``tpos != 0``; their next values are signals
        # (``nxt``), so that what a ``last`` element would do is registered beside them:
        # ``completes_ok`` (it completes a kept vector) and ``start_ok`` (it starts a
        # computation), and ``start`` is the transfer and these flip-flops only.
        feat_last = Signal(init=int(I == 1))
        room = Signal(init=1)
        nonempty = Signal()
        m.d.comb += [
            self.i.ready.eq(self.enable),
            accept.eq(self.i.valid & self.enable),
            self.error.eq(error),
        ]
        if n_h0 + n_c0:  # a register: init_idx < n_h0 + n_c0
            in_init = Signal(init=1)
        flags = [feat_last, room, nonempty] + ([in_init] if n_h0 + n_c0 else [])
        nxt = {id(f): Signal.like(f, name=f"{f.name}_next") for f in flags}
        m.d.comb += [nxt[id(f)].eq(f) for f in flags]
        m.d.sync += [f.eq(nxt[id(f)]) for f in flags]

        def update(flag, value):
            return nxt[id(flag)].eq(value)

        ok_init = int(n_h0 + n_c0 == 0 and I == 1)
        completes_ok = Signal(init=ok_init)  # ~in_init & feat_last & room
        start_ok = Signal(init=ok_init)  # nonempty | completes_ok
        completes_next = Signal()
        m.d.comb += completes_next.eq(nxt[id(feat_last)] & nxt[id(room)])
        if n_h0 + n_c0:
            m.d.comb += completes_next.eq(~nxt[id(in_init)] & nxt[id(feat_last)] & nxt[id(room)])
        m.d.sync += [completes_ok.eq(completes_next),
                     start_ok.eq(nxt[id(nonempty)] | completes_next)]  # fmt: skip
        with m.If(accept):
            with m.If(in_init):
                m.d.sync += init_idx.eq(init_idx + 1)
                if n_h0 + n_c0:
                    m.d.comb += update(in_init, init_idx != n_h0 + n_c0 - 1)
                if n_h0:
                    with m.If(init_idx < n_h0):
                        m.d.comb += [
                            self.h0_w.addr.eq(init_idx),
                            self.h0_w.data.eq(elem.data),
                            self.h0_w.en.eq(1),
                        ]
                if n_c0:
                    with m.If(init_idx >= n_h0):
                        m.d.comb += [
                            self.c_w.addr.eq(init_idx - n_h0),
                            self.c_w.data.eq(elem.data),
                            self.c_w.en.eq(1),
                        ]
            with m.Else():
                with m.If(room):
                    m.d.comb += [
                        self.x_w.addr.eq(x_addr),
                        self.x_w.data.eq(elem.data),
                        self.x_w.en.eq(1),
                    ]
                    m.d.sync += x_addr.eq(x_addr + 1)
                with m.If(feat_last):
                    m.d.sync += feat.eq(0)
                    m.d.comb += update(feat_last, int(I == 1))
                    with m.If(room):
                        m.d.sync += tpos.eq(tpos + 1)
                        m.d.comb += [update(room, tpos != Tmax - 1), update(nonempty, 1)]
                with m.Else():
                    m.d.sync += feat.eq(feat + 1)
                    m.d.comb += update(feat_last, feat == I - 2)
            with m.If(elem.last):
                whole = Signal.like(tpos)
                m.d.comb += whole.eq(Mux(completes_ok, tpos + 1, tpos))
                with m.If(~completes_ok):
                    m.d.sync += error.eq(1)
                m.d.sync += [
                    init_idx.eq(0),
                    feat.eq(0),
                    tpos.eq(0),
                    x_addr.eq(0),
                    self.T.eq(whole),
                ]
                m.d.comb += [update(feat_last, int(I == 1)), update(room, 1), update(nonempty, 0)]
                if n_h0 + n_c0:
                    m.d.comb += update(in_init, 1)
                m.d.comb += self.start.eq(start_ok)
                if "T_now" in self.signature.members:
                    m.d.comb += self.T_now.eq(whole)
        return m


def load_reference(sequences, *, input_size, max_seq_len, n_h0=0, n_c0=0):
    """What :class:`InputLoader` does with ``sequences`` (lists of element codes, each ending
    with ``last``): ``(writes, starts, error)`` with ``writes`` the ``(port, addr, code)``
    writes in order (``port`` in ``"h0"``, ``"c"``, ``"x"``; codes not yet truncated to the
    port width), ``starts`` the ``T`` of every sequence that starts a computation, and
    ``error`` the final state of the sticky flag."""
    I, Tmax = input_size, max_seq_len
    writes, starts, error = [], [], False
    for seq in sequences:
        init, body = list(seq[: n_h0 + n_c0]), list(seq[n_h0 + n_c0 :])
        for k, code in enumerate(init):
            writes.append(("h0", k, code) if k < n_h0 else ("c", k - n_h0, code))
        for k, code in enumerate(body[: Tmax * I]):
            writes.append(("x", k, code))
        whole = min(len(body) // I, Tmax)
        if len(init) < n_h0 + n_c0 or len(body) % I or len(body) > Tmax * I or not body:
            error = True
        if whole:
            starts.append(whole)
    return writes, starts, error
