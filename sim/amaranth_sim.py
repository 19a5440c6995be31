"""Run the accelerator in Amaranth's simulator: sequences in through ``s_axis``, results out
of ``m_axis``, with optional random valid/ready stalls, cycle counts and VCD waves.

This is the flow for unit and small end-to-end tests (Amaranth's simulator runs a few
thousand cycles per second on the whole accelerator); bulk runs belong to the Verilator flow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from .streams import StreamGeometry, pack_inputs

__all__ = ["RunResult", "SequenceCycles", "run_amaranth"]


@dataclass(frozen=True)
class SequenceCycles:
    """Clock cycles of one sequence: first input accepted, ``tlast`` accepted, first and last
    output accepted (absolute), and the derived latency ``last_out - last_in``."""

    first_in: int
    last_in: int
    first_out: int
    last_out: int

    @property
    def latency(self) -> int:
        return self.last_out - self.last_in

    @property
    def compute(self) -> int:
        """From the input's ``tlast`` to the first result (the compute phase, plus one)."""
        return self.first_out - self.last_in


@dataclass
class RunResult:
    outputs: list[np.ndarray]
    cycles: list[SequenceCycles]
    total_cycles: int
    wall_seconds: float
    error: bool = False
    meta: dict = field(default_factory=dict)


def run_amaranth(
    accelerator,
    x_codes,
    h0=None,
    c0=None,
    *,
    in_stall: float = 0.0,
    out_stall: float = 0.0,
    seed: int = 0,
    waves: str | None = None,
    max_cycles: int | None = None,
) -> RunResult:
    """Drive ``accelerator`` (an :class:`~lstmfpga.hw.accelerator.LSTMAccelerator`) with the
    sequences of ``x_codes`` ``(B, T, I)`` back to back and collect the ``m_axis`` elements of
    each. ``in_stall``/``out_stall`` are the probabilities of idling ``tvalid``/``tready`` on a
    cycle (random, seeded by ``seed``)."""
    x_codes = np.asarray(x_codes, dtype=np.int64)
    B, T, _ = x_codes.shape
    geom = StreamGeometry.of(
        accelerator.model,
        with_states=accelerator.with_states,
        initial_state=accelerator.initial_state,
    )
    inputs = [pack_inputs(geom, x_codes, b, h0, c0) for b in range(B)]
    n_out = geom.output_length(T)
    rng_in = np.random.default_rng(seed)
    rng_out = np.random.default_rng(seed + 1)
    if max_cycles is None:
        max_cycles = 200_000 + 50 * B * (n_out + inputs[0].size) * max(1, T)
    dut = accelerator
    in_marks: list[tuple[int, int]] = []
    outputs: list[list[int]] = [[] for _ in range(B)]
    out_marks: list[list[int]] = [[] for _ in range(B)]
    clock = {"now": 0}

    async def producer(ctx):
        for elems in inputs:
            first = None
            for index, value in enumerate(elems):
                while in_stall and rng_in.random() < in_stall:
                    ctx.set(dut.s_axis_tvalid, 0)
                    await ctx.tick()
                ctx.set(dut.s_axis_tdata, int(value))
                ctx.set(dut.s_axis_tlast, index == elems.size - 1)
                ctx.set(dut.s_axis_tvalid, 1)
                await ctx.tick().until(dut.s_axis_tready)
                if first is None:
                    first = clock["now"]
            in_marks.append((first, clock["now"]))
            ctx.set(dut.s_axis_tvalid, 0)

    async def consumer(ctx):
        b = 0
        while b < B:
            ready = not (out_stall and rng_out.random() < out_stall)
            ctx.set(dut.m_axis_tready, ready)
            _, _, valid, data, last = await ctx.tick().sample(
                dut.m_axis_tvalid, dut.m_axis_tdata, dut.m_axis_tlast
            )
            clock["now"] += 1
            if clock["now"] > max_cycles:
                raise RuntimeError(
                    f"simulation exceeded {max_cycles} cycles at sequence {b} with "
                    f"{len(outputs[b])}/{n_out} outputs (seed {seed})"
                )
            if valid and ready:
                outputs[b].append(int(data))
                out_marks[b].append(clock["now"])
                if last or len(outputs[b]) == n_out:
                    if not last or len(outputs[b]) != n_out:
                        raise RuntimeError(
                            f"sequence {b}: tlast after {len(outputs[b])} outputs, "
                            f"expected {n_out} (seed {seed})"
                        )
                    b += 1
        ctx.set(dut.m_axis_tready, 0)
        error["flag"] = bool(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    error = {}
    started = time.perf_counter()
    if waves:
        with sim.write_vcd(waves):
            sim.run()
    else:
        sim.run()
    wall = time.perf_counter() - started
    cycles = [
        SequenceCycles(in_marks[b][0], in_marks[b][1], out_marks[b][0], out_marks[b][-1])
        for b in range(B)
    ]
    return RunResult(
        outputs=[np.array(o, dtype=np.int64) for o in outputs],
        cycles=cycles,
        total_cycles=clock["now"],
        wall_seconds=wall,
        error=bool(error.get("flag")),
    )
