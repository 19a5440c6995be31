"""Simulation speed: simulated clock cycles per second of the three flows on one design.

    python benchmarks/bench_sim.py            # full sizes; rewrites the "sim" section of
                                              # benchmarks/RESULTS.md
    python benchmarks/bench_sim.py --smoke    # a tiny model, seconds; prints only

Two designs (``lstmfpga.testing.random_qmodel(1, ...)``, preset q16, 8 MAC lanes): input
16, hidden 64 with a ``last`` head of 8 outputs (sequences of 32 steps, few result beats), and
the same LSTM without a head (40 steps, every step's 64 outputs streamed: the issue 12 case).
Each flow streams whole sequences back to back, checks every output against the golden
model, and is timed by the flow itself: ``wall_seconds`` of its
:class:`~lstmfpga.sim.amaranth_sim.RunResult` (the simulation: the simulator processes,
``jobs`` at a time, including their start; without elaboration, Verilog generation or
compilation: builds are cached and made before timing, their time is the "build s" column).
"end-to-end s" is the whole ``run_cocotb`` call (writing the run files, reading results).
Cycles are those the run simulated, from the end of reset to the last output. "CPU s" is the
CPU time of the simulator processes (user + system, from ``getrusage(RUSAGE_CHILDREN)``;
zero for Amaranth, which runs in this process: its row shows this process's CPU time), and
"cycles per CPU s" divides the cycles by it: on a machine shared with other jobs it varies far
less than the wall-clock rate. Each count is run ``--repeats`` times; the table shows medians.

The whole test bench is Verilog (no Python per beat, :func:`lstmfpga.sim.bench_top.wrapper`).
Verilator runs many sequences; Amaranth a few steps, Icarus a few sequences (each ~100,000
cycles: long enough for the flow to compile Icarus's build from the optimized netlist,
:mod:`lstmfpga.sim.icarus_opt`; its ~12 s of Yosys are in "build s"), with one job and with
two (``jobs`` processes sharing the sequences, as ``simulate --jobs``). The machine's load
average is recorded: other processes on the two cores slow every flow down.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
from results_md import benchmark_parser, command_line, publish_run  # benchmarks/results_md.py

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant import golden
from lstmfpga.sim import icarus_opt
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.sim.cocotb_flow import Design, prepare, run_cocotb, simulator_version
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel

SECTION = "sim"
TARGET = 5_000_000  # Verilator cycles/s on the no-head design, many sequences (issue 12)
ICARUS_TARGET = 30_600  # Icarus cycles/s, 10x the 3,060 of the per-beat bench (issue 12)
#: For reference: the cocotb bench that woke Python on every beat (before issue 12).
BEFORE = (
    "Before (cocotb bench waking Python on every beat): Verilator 1,294,500 cycles/s on the "
    "head design (2026-11-25, load 2.2), 2.9e5 on the no-head design (issue 12); Icarus "
    "3,060 on the head design. With the Verilog bench and a two-step clock (2026-12-01, "
    "load 6.0): Verilator 1,507,183 cycles/s on the no-head design, Icarus 2,905; measured "
    "the same day at load 15 by CPU time, the one-step clock of sim/bench_top.py "
    "took the no-head run from 2.0e6 to 2.4e6 simulated cycles per CPU second (3.4 s to "
    "2.8 s of simulator CPU for 6.77e6 cycles, 0.7 s of process start-up beside it). "
    "Icarus before this session's netlist rewrite (RESULTS.md at 75a08a6, load 7.5): "
    "8,211 cycles per CPU second on the head design, 8,935 without the head, one job."
)
#: Where the time went, and what was tried (issue 12: profile of the no-head case).
PROFILE = (
    "Profile of the no-head case (64 x 40 steps, `perf record`, 2026-12-01, load 10-15). "
    "Before: of the simulator process's CPU about 50% was the design's own logic "
    "(Verilator's `nba_sequent`), 6% the same model's `act` region (combinational logic "
    "evaluated again for the `--timing` processes), ~20% Verilator's `--timing` scheduler "
    "(the clock's delay coroutine) and cocotb's main loop, which runs every time step "
    "through the VPI (value-change settling, ReadWrite/ReadOnly/NextSimTime callbacks, "
    "`moveFutureCbs`), and ~10% the simulator's Python start-up (the cocotb test module was "
    "imported as `lstmfpga.sim.cocotb_tb`, which imports the `lstmfpga` package and NumPy: "
    "0.13 s). Changed (sim/verilator_main.py, sim/bench_build.py, sim/cocotb_run.py): the "
    "model is built without `--timing` and runs its own main loop, cocotb's plus the clock as "
    "the test top's input, fast-forwarded without the VPI while cocotb waits only on a timer "
    "(the falling edge through the root's eval, without the end-of-eval mutexes); only the "
    "three nets cocotb reads are public (the design's ports too cost 2%); the test module is "
    "copied into the run directory and imported from there. Median simulator CPU of 5 runs "
    "alternated in one process at load 10: 2.98 s before, 1.91 s after for 6.79e6 cycles "
    "(2.28e6 -> 3.55e6 cycles per CPU second), outputs bit-exact. Now ~85% of the CPU is the "
    "design's logic (a flat profile over the model's ~5,700 lines; the test top is ~9% of "
    "them). Tried without effect: `OPT_FAST=-O3` (1.88 s), `-march=native` (1.86 s). The "
    "design's logic alone is ~1.6 s (4.2e6 cycles per CPU second), so one process cannot "
    "reach 5e6 cycles/s; two jobs on two otherwise idle cores can (half the sequences "
    "each, 0.15 s each to start). Icarus (head design, simulator CPU, load 7-9): 0.40 ms "
    "per cycle and 1.9 s to start before; the bench's memories sized for Icarus start it "
    "in 1.3 s, and a run of at least 100,000 cycles compiled the design after Yosys's "
    "`proc; flatten; opt; wreduce; opt_clean -purge` (sim/icarus_opt.py: Amaranth's "
    "hundreds of `always @*` processes become flat continuous assignments): 0.117 ms per "
    "cycle (0.105 ms without the head). `perf record` of `vvp` on that netlist (no head, "
    "2026-12-01): ~40% of the CPU in threads, one per flip-flop (`always @(posedge clk)`), "
    "each woken on every edge, whose every read of a variable (`%load/vec4`) makes a "
    "`dynamic_cast` with a `strcmp` of type names (~20%); ~20% in copying vectors bit by "
    "bit (`vvp_vector4_t::set_bit`) in the functors of sign extensions (the `$signed` "
    "operands of the MAC lanes' multiplies and adds), concatenations (the 457-bit weight "
    "beat) and nets assigned in parts (resolved with strengths: `concat8`). Changed "
    "(sim/icarus_opt.py, sim/vvp_netlist.py): `splitnets -driver` (one driver per net), "
    "one clocked block with the flip-flops of one control structure (`if (rst) ... else "
    "if (en)`) under one copy of it, `$signed` arithmetic and concatenations of at least 16 "
    "bits as `always @*` blocks (word-wide thread code, computed once per change). "
    "Simulator CPU per cycle on the no-head design, measured alternately at load ~10: "
    "0.105 -> 0.080 ms (splitnets) -> 0.067 (grouped flip-flops) -> 0.046 (always @*); "
    "head design 0.117 -> 0.052 ms; outputs bit-exact. Tried without gain: `opt -full` "
    "(0.130 ms), `splitcells` (flip-flops cut at their readers' boundaries: 0.100), every "
    "continuous assignment as `always @*` (0.080); `iverilog -S` (flip-flops as `.dff` "
    "functors) refuses the netlist (registers with initial values are 'driven by more than "
    "one process'); `vvp` has no option that changes its speed. Now ~40% of the CPU is "
    "`%load/vec4` (its `dynamic_cast` 31%): the reads of the flip-flops and `always @*` "
    "blocks. Yosys and the rewrite take ~12 s, so a run of at least 40,000 cycles (or any "
    "run, once that build exists) uses the optimized build; two jobs share the sequences."
)

#: (name, model kwargs, lanes, T, [(flow, jobs, sequences, T)]) for the full run and --smoke.
FULL = (
    (
        "head last x 8",
        dict(input_size=16, hidden_size=64, head="last", head_out=8),
        8,
        32,
        [("verilator", 1, 64, 32), ("verilator", 2, 64, 32), ("icarus", 1, 2, 32),
         ("icarus", 2, 4, 32), ("amaranth", 1, 1, 2)],
    ),
    (
        "no head (every step's 64 outputs streamed)",
        dict(input_size=16, hidden_size=64),
        8,
        40,
        [("verilator", 1, 64, 40), ("verilator", 2, 64, 40), ("icarus", 1, 2, 40),
         ("icarus", 2, 4, 40)],
    ),
)  # fmt: skip
SMOKE = (
    (
        "head last x 3",
        dict(input_size=4, hidden_size=8, head="last", head_out=3),
        4,
        8,
        [("verilator", 1, 8, 8), ("verilator", 2, 8, 8), ("icarus", 1, 2, 8),
         ("icarus", 2, 2, 8), ("amaranth", 1, 1, 8)],
    ),
)  # fmt: skip


def _check(acc, x_codes, outputs, flow):
    result = golden.run(acc.model, x_codes)
    geom = StreamGeometry.of(acc.model)
    for b, got in enumerate(outputs):
        want = pack_outputs(geom, result.prediction, b)
        if not np.array_equal(got, want):
            raise SystemExit(f"{flow}: sequence {b} differs from the golden model")


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _run(flow, jobs, acc, x_codes, build_dir):
    if flow == "amaranth":
        return run_amaranth(acc, x_codes)
    return run_cocotb(acc, x_codes, simulator=flow, build_dir=build_dir, jobs=jobs)


def bench(smoke: bool, repeats: int, build_dir) -> tuple[list[str], dict[str, float]]:
    versions = {
        "verilator": simulator_version("verilator"),
        "icarus": simulator_version("icarus"),
        "amaranth": __import__("amaranth").__version__,
    }
    lines, best = [], {"verilator": 0.0, "icarus": 0.0}
    for name, kwargs, lanes, T_full, runs in SMOKE if smoke else FULL:
        _, q = random_qmodel(1, **kwargs)
        acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=T_full)
        cycle_model = CycleModel.of(acc)
        builds = {}
        for simulator in ("icarus", "verilator"):
            # The bench's Icarus runs are long enough for the optimized netlist (icarus_opt).
            optimize = icarus_opt.worth_it(simulator, Design.of(acc), icarus_opt.MIN_CYCLES)
            build = prepare(acc, simulator, build_dir=build_dir, optimize=optimize)
            builds[simulator] = "cached" if build.cached else f"{build.seconds:.1f}"
            print(f"{name}, {simulator}: build {builds[simulator]} ({build.directory})",
                  file=sys.stderr)  # fmt: skip
        rows = []
        for flow, jobs, B, T in runs:
            x_codes = golden.quantize_inputs(q, random_inputs(2, B, T, q.input_size))
            rates, walls, ends, cpus, cycles = [], [], [], [], 0
            who = resource.RUSAGE_SELF if flow == "amaranth" else resource.RUSAGE_CHILDREN
            for n in range(repeats):
                started, cpu_started = time.perf_counter(), _cpu(who)
                result = _run(flow, jobs, acc, x_codes, build_dir)
                ends.append(time.perf_counter() - started)
                cpus.append(_cpu(who) - cpu_started)
                _check(acc, x_codes, result.outputs, flow)
                cycles = result.total_cycles
                rates.append(cycles / result.wall_seconds)
                walls.append(result.wall_seconds)
                print(
                    f"{name}, {flow} x{jobs} run {n + 1}/{repeats}: {cycles:,} cycles in "
                    f"{result.wall_seconds:.2f} s = {rates[-1]:,.0f} cycles/s "
                    f"(load {os.getloadavg()[0]:.1f})",
                    file=sys.stderr,
                )
            rate = statistics.median(rates)
            if flow in best and (smoke or flow == "icarus" or kwargs.get("head") is None):
                best[flow] = max(best[flow], rate)
            cpu = statistics.median(cpus)
            rows.append(
                f"| {flow} {versions[flow]} | {jobs} | {B} x {T} | {cycles:,} | "
                f"{statistics.median(walls):.2f} | {rate:,.0f} | {cpu:.2f} | "
                f"{cycles / cpu:,.0f} | {builds.get(flow, '-')} | "
                f"{statistics.median(ends):.2f} |"
            )
        lines += [
            (
                f"**{name}**: input {q.input_size}, hidden {q.hidden_size}, preset "
                f"{q.config.name}, {lanes} lanes, max_seq_len {T_full}: "
                f"{cycle_model.step(0)} cycles per step, {cycle_model.compute(T_full):,} cycles "
                f"of compute per {T_full}-step sequence, {acc.result_length(T_full):,} results "
                "per sequence."
            ),
            "",
            (
                "| flow | jobs | sequences x steps | cycles per run | simulation wall s | "
                "cycles/s | CPU s | cycles per CPU s | build s | end-to-end s |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    lines.append(
        f"Medians of {repeats} runs; load average at the end {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores (shared with other engineers' jobs while measured: the "
        "figures are lower bounds, the 2-job rows especially)."
    )
    return lines, best


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "tiny model and counts (CI)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per flow (default 3)")
    parser.add_argument("--build-dir", help="simulator build cache (default ~/.cache/...)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, not {args.repeats}")
    command = command_line("bench_sim.py", args)
    if args.repeats != 3:
        command += f" --repeats {args.repeats}"
    lines, best = bench(args.smoke, args.repeats, args.build_dir)
    verdicts = {}
    for flow, target in (("verilator", TARGET), ("icarus", ICARUS_TARGET)):
        verdicts[flow] = "met" if best[flow] >= target else "missed"
        if args.smoke:
            verdicts[flow] = "not measured: smoke sizes"
    body = "\n".join(
        [
            "## Simulation speed",
            "",
            (
                f"Written by `{command}` on {time.strftime('%Y-%m-%d')} (Python "
                f"{platform.python_version()}). What is timed: see the script's docstring."
            ),
            "",
            *lines,
            "",
            BEFORE,
            "",
            PROFILE,
            "",
            (
                f"Targets (issue 12): Verilator >= {TARGET:,} cycles/s on the no-head design "
                f"({verdicts['verilator']}: best {best['verilator']:,.0f}); Icarus >= "
                f"{ICARUS_TARGET:,} cycles/s, 10x the per-beat bench's 3,060 "
                f"({verdicts['icarus']}: best {best['icarus']:,.0f})."
            ),
        ]
    )
    return publish_run(args, SECTION, body)


if __name__ == "__main__":
    sys.exit(main())
