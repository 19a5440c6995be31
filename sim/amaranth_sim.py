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

from ..export.files import atomic_write
from .budget import CycleBudget, SimulationError
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
    cycle_budget: int | None = None,
) -> RunResult:
    """Drive ``accelerator`` (an :class:`~lstmfpga.hw.accelerator.LSTMAccelerator`) with the
    sequences of ``x_codes`` ``(B, T, I)`` back to back and collect the ``m_axis`` elements of
    each. ``h0``/``c0``: initial-state codes for a design built with ``initial_state``
    (``(L*D, B, H_out)``, ``(L*D, B, H)``; default zeros). ``in_stall``/``out_stall`` are the
    probabilities of idling ``tvalid``/``tready`` on a cycle (random, seeded by ``seed``).

    Each sequence gets a cycle budget from the cycle model (:mod:`lstmfpga.sim.budget`;
    ``cycle_budget`` overrides it): a sequence that exceeds it stops the simulation with
    :class:`~lstmfpga.sim.budget.SimulationStuck`; a ``tlast`` at the wrong element with
    :class:`~lstmfpga.sim.budget.SimulationError`."""
    from ..hw.cycles import CycleModel

    for name, value in (("in_stall", in_stall), ("out_stall", out_stall)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), not {value!r}")
    x_codes = np.asarray(x_codes, dtype=np.int64)
    input_size = accelerator.model.input_size
    if x_codes.ndim != 3 or x_codes.shape[2] != input_size or 0 in x_codes.shape:
        raise ValueError(
            f"x_codes must have shape (batch, seq, {input_size}) with batch, seq >= 1, "
            f"not {x_codes.shape}"
        )
    B, T, _ = x_codes.shape
    geom = StreamGeometry.of(
        accelerator.model,
        with_states=accelerator.with_states,
        initial_state=accelerator.initial_state,
    )
    inputs = [pack_inputs(geom, x_codes, b, h0, c0) for b in range(B)]
    n_out = geom.output_length(T)
    budget = CycleBudget.of(
        CycleModel.of(accelerator).compute(T), inputs[0].size, n_out,
        in_stall=in_stall, out_stall=out_stall, override=cycle_budget,
    )  # fmt: skip
    rng_in = np.random.default_rng(seed)
    rng_out = np.random.default_rng(seed + 1)
    dut = accelerator
    in_marks: list[tuple[int, int]] = []
    outputs: list[list[int]] = [[] for _ in range(B)]
    out_marks: list[list[int]] = [[] for _ in range(B)]
    # "now": cycles so far; "problem": the error that ends the run early (both testbenches
    # return when it is set, so that no coroutine is left suspended).
    state: dict = {"now": 0, "problem": None}

    async def producer(ctx):
        for elems in inputs:
            first = None
            for index, value in enumerate(elems):
                while in_stall and rng_in.random() < in_stall:
                    ctx.set(dut.s_axis_tvalid, 0)
                    await ctx.tick()
                    if state["problem"] is not None:
                        return
                ctx.set(dut.s_axis_tdata, int(value))
                ctx.set(dut.s_axis_tlast, index == elems.size - 1)
                ctx.set(dut.s_axis_tvalid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(dut.s_axis_tready)
                    if ready:
                        break
                    if state["problem"] is not None:
                        return
                if first is None:
                    first = state["now"]
            in_marks.append((first, state["now"]))
            ctx.set(dut.s_axis_tvalid, 0)

    async def consumer(ctx):
        b = 0
        started = 0  # the cycle the current sequence's window opened
        while b < B:
            ready = not (out_stall and rng_out.random() < out_stall)
            ctx.set(dut.m_axis_tready, ready)
            _, _, valid, data, last = await ctx.tick().sample(
                dut.m_axis_tvalid, dut.m_axis_tdata, dut.m_axis_tlast
            )
            state["now"] += 1
            if valid and ready:
                outputs[b].append(int(data))
                out_marks[b].append(state["now"])
                if last or len(outputs[b]) == n_out:
                    if not last or len(outputs[b]) != n_out:
                        state["problem"] = SimulationError(
                            f"amaranth simulation: sequence {b} ended (tlast) after "
                            f"{len(outputs[b])} results, expected {n_out} (seed {seed})"
                        )
                        break
                    b += 1
                    started = state["now"]
                    continue
            if state["now"] - started >= budget.cycles:
                state["problem"] = budget.stuck(
                    simulator="amaranth", sequence=b, sequences=B, received=len(outputs[b]),
                    expected_outputs=n_out, waited=state["now"] - started, seed=seed,
                )  # fmt: skip
                break
        ctx.set(dut.m_axis_tready, 0)
        error["flag"] = bool(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    error = {}
    started = time.perf_counter()
    if waves:
        with atomic_write(waves, "w") as vcd, sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    wall = time.perf_counter() - started
    if state["problem"] is not None:
        raise state["problem"]
    cycles = [
        SequenceCycles(in_marks[b][0], in_marks[b][1], out_marks[b][0], out_marks[b][-1])
        for b in range(B)
    ]
    return RunResult(
        outputs=[np.array(o, dtype=np.int64) for o in outputs],
        cycles=cycles,
        total_cycles=state["now"],
        wall_seconds=wall,
        error=bool(error.get("flag")),
        meta={"cycle_budget": budget.cycles, "expected_cycles": budget.expected},
    )
