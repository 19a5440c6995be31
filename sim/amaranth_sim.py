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
from .stalls import StallPattern
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
    #: per sequence, the cycle each output element was accepted
    output_cycles: list = field(default_factory=list)


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
    stalls: StallPattern | None = None,
    resets=None,
    keep_state: bool = False,
) -> RunResult:
    """Drive ``accelerator`` (an :class:`~lstmfpga.hw.accelerator.LSTMAccelerator`) with the
    sequences of ``x_codes`` ``(B, T, I)`` back to back and collect the ``m_axis`` elements of
    each. ``h0``/``c0``: initial-state codes for a design built with ``initial_state``
    (``(L*D, B, H_out)``, ``(L*D, B, H)``; default zeros). ``in_stall``/``out_stall`` are the
    probabilities of idling ``tvalid``/``tready`` on a cycle: the pattern of
    :class:`~lstmfpga.sim.stalls.StallPattern` drawn from ``seed`` (``stalls`` gives one
    directly), the same in every flow.

    Each sequence gets a cycle budget from the cycle model (:mod:`lstmfpga.sim.budget`;
    ``cycle_budget`` overrides it): a sequence that exceeds it stops the simulation with
    :class:`~lstmfpga.sim.budget.SimulationStuck`; a ``tlast`` at the wrong element with
    :class:`~lstmfpga.sim.budget.SimulationError`.

    Stream mode (``accelerator.mode == "stream"``): ``keep_state`` drives the design's
    input of that name (carry the state from each sequence to the next), and ``resets``
    ``(B, T)`` (booleans, default none) sets ``s_axis_tuser`` on the first element of step
    ``t`` of sequence ``b`` (reset the state before that step); the budget comes from
    :class:`~lstmfpga.hw.stream_cycles.StreamCycleModel`."""
    x_codes, resets = _check_run(accelerator, x_codes, in_stall, out_stall, resets)
    B, T, _ = x_codes.shape
    geom = StreamGeometry.of(
        accelerator.model,
        with_states=accelerator.with_states,
        initial_state=accelerator.initial_state,
    )
    inputs = [pack_inputs(geom, x_codes, b, h0, c0) for b in range(B)]
    n_out = geom.output_length(T)
    compute, users = _compute_and_users(accelerator, T, inputs[0].size, B, resets)
    budget = CycleBudget.of(
        compute, inputs[0].size, n_out,
        in_stall=in_stall, out_stall=out_stall, override=cycle_budget,
    )  # fmt: skip
    if stalls is None:
        stalls = StallPattern.draw(
            B, inputs[0].size, n_out, in_stall=in_stall, out_stall=out_stall, seed=seed
        )
    bench = _StreamBench(accelerator, inputs, n_out, stalls, budget, seed, users=users,
                         keep_state=keep_state)  # fmt: skip
    wall = _simulate(accelerator, bench, waves)
    if bench.problem is not None:
        raise bench.problem
    return RunResult(
        outputs=[np.array(o, dtype=np.int64) for o in bench.outputs],
        cycles=[
            SequenceCycles(*i, *o) for i, o in zip(bench.in_marks, bench.out_marks, strict=True)
        ],
        total_cycles=bench.now,
        wall_seconds=wall,
        error=bench.error,
        meta={"cycle_budget": budget.cycles, "expected_cycles": budget.expected},
        output_cycles=[np.array(c, dtype=np.int64) for c in bench.out_times],
    )


def _check_run(accelerator, x_codes, in_stall, out_stall, resets):
    """``(x_codes, resets)`` as arrays, once the stall probabilities, the input shape and
    the resets (stream mode only, ``(B, T)``) are checked."""
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
    if resets is not None:
        resets = np.asarray(resets, dtype=bool)
        mode = getattr(accelerator, "mode", "sequence")
        if mode != "stream" or resets.shape != (B, T):
            raise ValueError(
                f"resets must be a (batch, seq) = ({B}, {T}) array for a stream-mode design, "
                f"not {resets.shape} for mode {mode!r}"
            )
    return x_codes, resets


def _compute_and_users(accelerator, T: int, in_length: int, B: int, resets):
    """The compute cycles of a ``T``-step sequence (the cycle model of the design's mode)
    and, in stream mode, the ``s_axis_tuser`` bits of each sequence's ``in_length``
    elements (``resets`` on the first element of each step's x vector; ``None`` in sequence
    mode)."""
    if getattr(accelerator, "mode", "sequence") != "stream":
        from ..hw.cycles import CycleModel

        return CycleModel.of(accelerator).compute(T), None
    from ..hw.stream_cycles import StreamCycleModel

    input_size = accelerator.model.input_size
    users = np.zeros((B, in_length), dtype=bool)
    if resets is not None:
        first = in_length - T * input_size + np.arange(T) * input_size
        users[:, first] = resets
    return StreamCycleModel.of(accelerator).sequence(T), users


def _simulate(accelerator, bench, waves) -> float:
    """Run ``bench`` against ``accelerator`` in Amaranth's simulator (a VCD to ``waves`` when
    given); returns the wall time in seconds."""
    sim = Simulator(accelerator)
    sim.add_clock(1e-8)
    sim.add_testbench(bench.run)
    started = time.perf_counter()
    if waves:
        with atomic_write(waves, "w") as vcd, sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return time.perf_counter() - started


class _StreamBench:
    """The clocked logic of the Verilog test top (``bench_top.wrapper``), cycle by cycle, as
    one Amaranth testbench: the sequences in through ``s_axis`` one after the other (the next
    one once the previous one's results are out), the results out of ``m_axis``, both paced by
    the stall pattern (its semantics are in :mod:`lstmfpga.sim.stalls`).

    After :meth:`run`: ``outputs`` (the elements of each sequence), ``in_marks``/``out_marks``
    (the cycles of each sequence's first and last input/output), ``now`` (cycles run),
    ``error`` (the design's error flag) and ``problem`` (the :class:`SimulationError` that
    stopped the run, or None)."""

    def __init__(self, dut, inputs, n_out: int, stalls: StallPattern, budget, seed: int, *,
                 users=None, keep_state: bool = False):  # fmt: skip
        self.dut, self.n_out, self.budget, self.seed = dut, n_out, budget, seed
        self.elements = [e.tolist() for e in inputs]
        self.users = None if users is None else [u.tolist() for u in users]
        self.keep_state = keep_state
        self.in_gaps, self.out_gaps = stalls.in_gaps.tolist(), stalls.out_gaps.tolist()
        B = len(inputs)
        self.in_marks = [[-1, -1] for _ in range(B)]
        self.out_marks = [[-1, -1] for _ in range(B)]
        self.outputs: list[list[int]] = [[] for _ in range(B)]
        self.out_times: list[list[int]] = [[] for _ in range(B)]
        self.now, self.error, self.problem = 0, False, None

    async def run(self, ctx):
        dut, n_out, budget, seed = self.dut, self.n_out, self.budget, self.seed
        elements, in_gaps, out_gaps = self.elements, self.in_gaps, self.out_gaps
        in_marks, out_marks, outputs = self.in_marks, self.out_marks, self.outputs
        B, n_in = len(elements), len(elements[0])
        users, out_times = self.users, self.out_times
        if users is not None:
            ctx.set(dut.keep_state, self.keep_state)
        b_in = k_in = b_out = k_out = now = window = 0
        in_wait, out_wait = in_gaps[0][0], out_gaps[0][0]
        while b_out < B:
            in_open = b_in < B and b_in == b_out
            offer = in_open and in_wait == 0
            ctx.set(dut.s_axis_tvalid, offer)
            if offer:
                ctx.set(dut.s_axis_tdata, elements[b_in][k_in])
                ctx.set(dut.s_axis_tlast, k_in == n_in - 1)
                if users is not None:
                    ctx.set(dut.s_axis_tuser, users[b_in][k_in])
            ready = out_wait == 0
            ctx.set(dut.m_axis_tready, ready)
            _, _, s_ready, valid, data, last = await ctx.tick().sample(
                dut.s_axis_tready, dut.m_axis_tvalid, dut.m_axis_tdata, dut.m_axis_tlast
            )
            now += 1
            if in_open:
                if in_wait:
                    in_wait -= 1
                elif s_ready:
                    if k_in == 0:
                        in_marks[b_in][0] = now - 1
                    k_in += 1
                    if k_in == n_in:
                        in_marks[b_in][1] = now - 1
                        b_in, k_in = b_in + 1, 0
                    if b_in < B:
                        in_wait = in_gaps[b_in][k_in]
            if out_wait:
                out_wait -= 1
            elif valid:
                got = outputs[b_out]
                got.append(int(data))
                out_times[b_out].append(now)
                if k_out == 0:
                    out_marks[b_out][0] = now
                k_out += 1
                if bool(last) != (k_out == n_out):
                    self.problem = SimulationError(
                        f"amaranth simulation: sequence {b_out}: tlast={int(bool(last))} at "
                        f"output element {k_out} of {n_out} (seed {seed})"
                    )
                    break
                if k_out == n_out:
                    out_marks[b_out][1] = now
                    b_out, k_out, window = b_out + 1, 0, now
                    if b_out < B:
                        out_wait = out_gaps[b_out][0]
                    continue
                out_wait = out_gaps[b_out][k_out]
            if now - window >= budget.cycles:
                self.problem = budget.stuck(
                    simulator="amaranth", sequence=b_out, sequences=B,
                    received=len(outputs[b_out]), expected_outputs=n_out,
                    waited=now - window, seed=seed,
                )  # fmt: skip
                break
        self.now = now
        ctx.set(dut.m_axis_tready, 0)
        ctx.set(dut.s_axis_tvalid, 0)
        self.error = bool(ctx.get(dut.error))
