"""Stream helpers for the hardware tests (Amaranth simulator, async testbenches).

Producer and consumer are separate testbenches acting per beat (``ctx.tick().until(...)``),
with random idle/stall cycles drawn from seeded ``numpy`` generators. :class:`Harness` adds a
free-running cycle counter so that every transfer is time-stamped: a beat transferred in
cycle ``t`` is recorded as ``t``.

Typical use::

    ins, outs = run_stream(dut, payloads, seed=3, idle=0.3, stall=0.3)

or, for several streams, testbenches of :func:`put_all`/:func:`get_all` run by
:func:`simulate` (which fails instead of hanging when a beat is lost). Two consumer stall
models: :func:`get_all` drops ``ready`` for random gaps before a beat; :func:`get_n` draws
``ready`` afresh every cycle, independent of ``valid`` (so a pending beat really is held back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

__all__ = [
    "Harness",
    "StreamRun",
    "expect_quiet",
    "get_all",
    "get_n",
    "put_all",
    "run_stream",
    "serve_memory",
    "simulate",
    "stream_get",
    "stream_put",
    "to_python",
]


class Harness(Elaboratable):
    """Wraps ``dut`` with a free-running 32-bit ``cycle`` counter (0 in the first cycle);
    ``extra(m)``, when given, adds more logic around it."""

    def __init__(self, dut, extra=None):
        self.dut = dut
        self.extra = extra
        self.cycle = Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.d.sync += self.cycle.eq(self.cycle + 1)
        if self.extra is not None:
            self.extra(m)
        return m


def serve_memory(m, dut, prefix: str, shape, init: list, *, ports: int, name: str) -> None:
    """Add memory ``name`` (``shape``, holding ``init``) to ``m`` with ``ports`` combinational
    read ports, port ``k`` serving ``dut``'s ``ReadPort`` member ``<prefix><k>`` (a cell
    bank's state memory)."""
    m.submodules[name] = mem = Memory(shape=shape, depth=len(init), init=init)
    for k in range(ports):
        port, member = mem.read_port(domain="comb"), getattr(dut, f"{prefix}{k}")
        m.d.comb += [port.addr.eq(member.addr), member.data.eq(port.data)]


def to_python(value):
    """A sampled payload as plain Python: ``ArrayLayout`` → list, ``StructLayout`` → dict,
    plain shapes → int."""
    if isinstance(value, data.Const):
        layout = value.shape()
        if isinstance(layout, data.ArrayLayout):
            return [to_python(value[k]) for k in range(layout.length)]
        if isinstance(layout, data.StructLayout):
            return {name: to_python(value[name]) for name, _ in layout}
        raise TypeError(f"payload layout must be an array or a struct, not {layout!r}")
    return int(value)


def _gap(rng, probability: float) -> int:
    """Idle cycles before the next beat: geometric with mean ``p / (1 - p)``."""
    if rng is None or probability <= 0.0:
        return 0
    n = 0
    while rng.random() < probability:
        n += 1
    return n


async def stream_put(ctx, stream, payload, *, cycle=None):
    """Offer one beat and wait for its transfer; returns the transfer cycle if ``cycle``."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    if cycle is None:
        await ctx.tick().until(stream.ready)
        when = None
    else:
        (when,) = await ctx.tick().sample(cycle).until(stream.ready)
    ctx.set(stream.valid, 0)
    return when


async def stream_get(ctx, stream, *, cycle=None):
    """Accept one beat; returns its payload (plain Python), and with ``cycle`` also the
    transfer cycle as ``(payload, cycle)``."""
    ctx.set(stream.ready, 1)
    if cycle is None:
        (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
        result = to_python(payload)
    else:
        payload, when = await ctx.tick().sample(stream.payload, cycle).until(stream.valid)
        result = (to_python(payload), int(when))
    ctx.set(stream.ready, 0)
    return result


async def put_all(ctx, stream, payloads, *, rng=None, idle=0.0, cycle=None) -> list:
    """Send ``payloads`` in order, with an idle cycle before a beat with chance ``idle``
    (repeatedly). Returns the transfer cycles when ``cycle`` is given."""
    accepted = []
    for payload in payloads:
        gap = _gap(rng, idle)
        if gap:
            ctx.set(stream.valid, 0)
            await ctx.tick().repeat(gap)
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        if cycle is None:
            await ctx.tick().until(stream.ready)
        else:
            (when,) = await ctx.tick().sample(cycle).until(stream.ready)
            accepted.append(int(when))
    ctx.set(stream.valid, 0)
    return accepted


async def get_all(ctx, stream, count: int, *, rng=None, stall=0.0, cycle=None) -> list:
    """Receive ``count`` beats, dropping ``ready`` before a beat with chance ``stall``
    (repeatedly). Returns payloads, or ``(payload, cycle)`` pairs when ``cycle`` is given."""
    received = []
    for _ in range(count):
        gap = _gap(rng, stall)
        if gap:
            ctx.set(stream.ready, 0)
            await ctx.tick().repeat(gap)
        ctx.set(stream.ready, 1)
        if cycle is None:
            (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
            received.append(to_python(payload))
        else:
            payload, when = await ctx.tick().sample(stream.payload, cycle).until(stream.valid)
            received.append((to_python(payload), int(when)))
    ctx.set(stream.ready, 0)
    return received


async def get_n(ctx, stream, count: int, *, rng=None, stall=0.0, cycle=None) -> list:
    """Receive ``count`` beats; ``ready`` is low in each cycle with probability ``stall``
    (drawn every cycle, independent of ``valid``, so a pending beat really is held back).

    Returns the payloads, or ``(payload, cycle)`` pairs when ``cycle`` is given.
    """
    received = []
    probes = (stream.payload,) if cycle is None else (stream.payload, cycle)
    if rng is None or stall <= 0.0:
        ctx.set(stream.ready, 1)
        for _ in range(count):
            values = await ctx.tick().sample(*probes).until(stream.valid)
            received.append(values[0] if cycle is None else tuple(values))
    else:
        while len(received) < count:
            ready = int(rng.random() >= stall)
            ctx.set(stream.ready, ready)
            _, _, valid, *values = await ctx.tick().sample(stream.valid, *probes)
            if valid and ready:
                received.append(values[0] if cycle is None else tuple(values))
    ctx.set(stream.ready, 0)
    return received


async def expect_quiet(ctx, stream, cycles: int) -> None:
    """Hold ``ready`` high for ``cycles`` cycles and check that no further beat comes out."""
    ctx.set(stream.ready, 1)
    for _ in range(cycles):
        *_, valid = await ctx.tick().sample(stream.valid)  # (clk, rst, valid)
        assert not valid, "unexpected beat after the expected ones"
    ctx.set(stream.ready, 0)


@dataclass
class StreamRun:
    """What :func:`run_stream` saw: output payloads and the transfer cycles of both sides."""

    outputs: list
    in_cycles: list[int]
    out_cycles: list[int]

    def assert_pipelined(self, latency: int) -> None:
        """Full throughput at ``latency``: the inputs taken on consecutive cycles (one beat
        per cycle) and every output exactly ``latency`` cycles after its input."""
        first = self.in_cycles[0]
        assert self.in_cycles == list(range(first, first + len(self.in_cycles))), (
            "one beat per cycle"
        )
        delays = [o - i for i, o in zip(self.in_cycles, self.out_cycles, strict=True)]
        assert delays == [latency] * len(self.in_cycles)


def run_stream(dut, payloads, *, seed=0, idle=0.0, stall=0.0, quiet=None, vcd=None) -> StreamRun:
    """Simulate ``dut`` (ports ``i`` and ``o``) on ``payloads``: one producer testbench, one
    consumer testbench expecting exactly ``len(payloads)`` beats, then ``quiet`` cycles
    (default ``2 * latency + 4``) with ``ready`` high in which nothing more may come out.

    ``idle``/``stall`` are the producer's/consumer's per-beat gap chances; their generators
    are seeded from ``seed`` (report it in failure messages). ``vcd`` is an optional path
    for a waveform dump.
    """
    payloads = list(payloads)
    harness = Harness(dut)
    producer_rng, consumer_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    if quiet is None:
        quiet = 2 * getattr(dut, "latency", 8) + 4
    result = StreamRun([], [], [])

    async def producer(ctx):
        result.in_cycles.extend(
            await put_all(ctx, dut.i, payloads, rng=producer_rng, idle=idle, cycle=harness.cycle)
        )

    async def consumer(ctx):
        got = await get_all(
            ctx, dut.o, len(payloads), rng=consumer_rng, stall=stall, cycle=harness.cycle
        )
        result.outputs.extend(p for p, _ in got)
        result.out_cycles.extend(c for _, c in got)
        await expect_quiet(ctx, dut.o, quiet)

    simulate(harness, producer, consumer, vcd=vcd)
    return result


def simulate(harness, *benches, background=(), timeout: int = 100_000, vcd=None) -> None:
    """Run ``benches`` (async testbenches) on ``harness`` with a 10 ns clock, and the
    ``background`` ones beside them until they are done; fail instead of hanging when they
    have not finished after ``timeout`` cycles (a lost beat). ``vcd`` is an optional path for
    a waveform dump."""

    async def watchdog(ctx):
        await ctx.delay(timeout * 1e-8)
        raise AssertionError(f"simulation did not finish within {timeout} cycles")

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    for bench in (*background, watchdog):
        sim.add_testbench(bench, background=True)
    if vcd is None:
        sim.run()
    else:
        with sim.write_vcd(str(vcd)):
            sim.run()
