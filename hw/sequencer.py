"""The sequence pipeline of a double-buffered accelerator (``buffers=2``): which sequence
loads, computes and drains, and in which bank.

:class:`OverlapControl` replaces the LOAD / COMPUTE / DRAIN phase register of a
single-buffered :class:`~.accelerator.LSTMAccelerator`: the loader takes sequence ``k + 1``
while ``k`` is computed and ``k - 1`` drained, each in bank ``index mod 2`` of its buffers
(:mod:`.banks`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layout import at_least

__all__ = ["OverlapControl"]


class OverlapControl(wiring.Component):
    """Starts computations and drains as soon as their banks are free.

    Parameters
    ----------
    max_seq_len : int
        Longest ``T`` (the width of the ``T`` signals).

    Members
    -------
    start : ``In(1)``
        The loader took a sequence's last element, with at least one whole vector
        (:attr:`.loader.InputLoader.start`).
    T_now, T_loaded : ``In(range(max_seq_len + 1))``
        That sequence's ``T`` in the cycle of ``start`` (``InputLoader.T_now``) and later
        (``InputLoader.T``).
    done : ``In(1)``
        The computation wrote its last result (the write-back's ``done``).
    drain_done : ``In(1)``
        The drain sent the last result of its sequence (``ResultDrain.done``).
    load_enable : ``Out(1)``
        The loader may take elements: no loaded sequence is waiting for the computation.
    compute_start : ``Out(1)``
        Combinational: a computation starts (the schedule cursors restart) in this cycle,
        when a sequence is waiting or its last element is taken now, and no computation
        holds the datapath.
    computing, draining : ``Out(1)``
        A computation holds the datapath (from ``compute_start`` until its results are
        handed to the drain: ``done`` while nothing drains); the drain runs (from the
        hand-off until ``drain_done``).
    T, T_drain : ``Out(range(max_seq_len + 1))``
        The ``T`` of the sequence computed, and of the one drained (registers).
    load_bank, compute_bank, drain_bank : ``Out(1)``
        The bank of the sequence loaded, computed, drained: each stage's count of the
        sequences it finished, modulo 2 (a sequence that is dropped, with no whole vector,
        leaves the loader's bank as it is).
    busy : ``Out(1)``
        A sequence waits for the computation, is computed or drained (a register).

    Timing: for a sequence that finds the pipeline idle, the same cycles as the phase
    register (computation from the ``start`` cycle on, the drain from the cycle after
    ``done``). A loaded sequence waits for the computation before it, a finished
    computation for the drain before it (one cycle passes between a drain's last result
    and the next hand-off, and between a hand-off and the next ``compute_start``).
    """

    def __init__(self, *, max_seq_len: int):
        at_least("max_seq_len", max_seq_len, 1)
        T = range(max_seq_len + 1)
        super().__init__({
            "start": In(1), "T_now": In(T), "T_loaded": In(T), "done": In(1),
            "drain_done": In(1), "load_enable": Out(1), "compute_start": Out(1),
            "computing": Out(1), "draining": Out(1), "T": Out(T), "T_drain": Out(T),
            "load_bank": Out(1), "compute_bank": Out(1), "drain_bank": Out(1), "busy": Out(1),
        })  # fmt: skip

    def elaborate(self, platform):
        m = Module()
        pending = Signal()  # a loaded sequence waits for the computation
        handoff = Signal()
        # the next values of the state bits, so that ``busy`` is a register of its own
        # (timing: it gates the weight port's writes, a wide fan-out)
        pending_n, computing_n, draining_n, busy = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            self.load_enable.eq(~pending),
            self.compute_start.eq(~self.computing & (pending | self.start)),
            handoff.eq(self.computing & self.done & ~self.draining),
            self.busy.eq(busy),
            pending_n.eq(pending),
            computing_n.eq(self.computing),
            draining_n.eq(self.draining),
        ]
        with m.If(self.compute_start):
            m.d.sync += self.T.eq(Mux(pending, self.T_loaded, self.T_now))
            m.d.comb += [pending_n.eq(0), computing_n.eq(1)]
        with m.Elif(self.start):
            m.d.comb += pending_n.eq(1)
        with m.If(handoff):
            m.d.sync += [self.T_drain.eq(self.T), self.compute_bank.eq(~self.compute_bank)]
            m.d.comb += [computing_n.eq(0), draining_n.eq(1)]
        with m.If(self.drain_done):
            m.d.sync += self.drain_bank.eq(~self.drain_bank)
            m.d.comb += draining_n.eq(0)
        with m.If(self.start):
            m.d.sync += self.load_bank.eq(~self.load_bank)
        m.d.sync += [
            pending.eq(pending_n),
            self.computing.eq(computing_n),
            self.draining.eq(draining_n),
            busy.eq(pending_n | computing_n | draining_n),
        ]
        return m
