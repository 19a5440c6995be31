"""Simulation speed: simulated clock cycles per second of the three flows on one design.

    python benchmarks/bench_sim.py            # full sizes; rewrites the "sim" section of
                                              # benchmarks/RESULTS.md
    python benchmarks/bench_sim.py --smoke    # a tiny model, seconds; prints only

The design: a random model with input 16, hidden 64, a ``last`` head of 8 outputs
(``lstmfpga.testing.random_qmodel(1, ...)``, preset q16), 8 MAC lanes, sequences of 32
steps (``max_seq_len`` 32). Each flow streams whole sequences back to back, checks every
output against the golden model, and is timed by the flow itself: ``wall_seconds`` of its
:class:`~lstmfpga.sim.amaranth_sim.RunResult` (the simulation, without elaboration, Verilog
generation or compilation: builds are cached and made before timing; a cocotb run's time
includes starting the simulator process). Cycles are those the run simulated, from the end
of reset to the last output. Each count is run ``--repeats`` times; the table shows medians.

Verilator runs many sequences (the target: >= 1M cycles/s); Icarus and Amaranth run one
short sequence each (both are some 400 times slower). The machine's load average
is recorded: other processes on the two cores slow every flow down.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from results_md import update_section  # benchmarks/results_md.py

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant import golden
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.sim.cocotb_flow import prepare, run_cocotb, simulator_version
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "sim"
TARGET = 1_000_000  # Verilator cycles/s on the full design, many sequences

#: (model kwargs, lanes, T, {flow: sequences}) for the full run and for --smoke.
FULL = (
    dict(input_size=16, hidden_size=64, head="last", head_out=8),
    8,
    32,
    {"verilator": 64, "icarus": 1, "amaranth": 1},
)
SMOKE = (
    dict(input_size=4, hidden_size=8, head="last", head_out=3),
    4,
    8,
    {"verilator": 8, "icarus": 2, "amaranth": 1},
)
#: Shorter sequences for the slow flows in the full run (cycles scale with T).
SLOW_T = {"icarus": 8, "amaranth": 2}


def _check(acc, x_codes, outputs, flow):
    result = golden.run(acc.model, x_codes)
    geom = StreamGeometry.of(acc.model)
    for b, got in enumerate(outputs):
        want = pack_outputs(geom, result.prediction, b)
        if not np.array_equal(got, want):
            raise SystemExit(f"{flow}: sequence {b} differs from the golden model")


def _run(flow, acc, x_codes, build_dir):
    if flow == "amaranth":
        return run_amaranth(acc, x_codes)
    return run_cocotb(acc, x_codes, simulator=flow, build_dir=build_dir)


def bench(smoke: bool, repeats: int, build_dir) -> tuple[list[str], float]:
    kwargs, lanes, T_full, counts = SMOKE if smoke else FULL
    _, q = random_qmodel(1, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=T_full)
    cycle_model = CycleModel.of(acc)
    for simulator in ("icarus", "verilator"):
        started = time.perf_counter()
        build = prepare(acc, simulator, build_dir=build_dir)
        what = "cached" if build.cached else f"built in {time.perf_counter() - started:.1f} s"
        print(f"{simulator}: {what} ({build.directory})", file=sys.stderr)
    rows, verilator_rate = [], 0.0
    versions = {
        "verilator": simulator_version("verilator"),
        "icarus": simulator_version("icarus"),
        "amaranth": __import__("amaranth").__version__,
    }
    for flow in ("verilator", "icarus", "amaranth"):
        B = counts[flow]
        T = T_full if smoke or flow == "verilator" else SLOW_T[flow]
        x_codes = golden.quantize_inputs(q, random_inputs(2, B, T, q.input_size))
        rates, walls, cycles = [], [], 0
        for n in range(repeats):
            result = _run(flow, acc, x_codes, build_dir)
            _check(acc, x_codes, result.outputs, flow)
            cycles = result.total_cycles
            rates.append(cycles / result.wall_seconds)
            walls.append(result.wall_seconds)
            print(
                f"{flow} run {n + 1}/{repeats}: {cycles:,} cycles in {result.wall_seconds:.2f} s "
                f"= {rates[-1]:,.0f} cycles/s (load {os.getloadavg()[0]:.1f})",
                file=sys.stderr,
            )
        rate = statistics.median(rates)
        if flow == "verilator":
            verilator_rate = rate
        rows.append(
            f"| {flow} {versions[flow]} | {B} x {T} | {cycles:,} | "
            f"{statistics.median(walls):.2f} | {rate:,.0f} |"
        )
    per_step = cycle_model.step(0)
    lines = [
        (
            f"Design: input {q.input_size}, hidden {q.hidden_size}, head last x "
            f"{q.head.out_features}, preset {q.config.name}, {lanes} lanes, max_seq_len "
            f"{T_full}: {per_step} cycles per step, {cycle_model.compute(T_full):,} cycles of "
            f"compute per {T_full}-step sequence. Medians of {repeats} runs; load average at the "
            f"end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
        ),
        "",
        "| flow | sequences x steps | cycles per run | wall s (median) | cycles/s (median) |",
        "|---|---|---|---|---|",
        *rows,
    ]
    return lines, verilator_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model and counts (CI)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per flow (default 3)")
    parser.add_argument("--build-dir", help="simulator build cache (default ~/.cache/...)")
    parser.add_argument(
        "--results",
        type=Path,
        help=f"markdown file to update (default: {RESULTS.relative_to(ROOT)}, not with --smoke)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, not {args.repeats}")
    results = args.results if args.results or args.smoke else RESULTS
    command = "python benchmarks/bench_sim.py" + (" --smoke" if args.smoke else "")
    if args.repeats != 3:
        command += f" --repeats {args.repeats}"
    lines, rate = bench(args.smoke, args.repeats, args.build_dir)
    verdict = "met" if rate >= TARGET else "missed"
    if args.smoke:
        verdict = "not measured: smoke sizes"
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
            (
                f"Target: Verilator >= {TARGET:,} cycles/s on many sequences of the full design "
                f"({verdict})."
            ),
        ]
    )
    print(body)
    if results is not None:
        update_section(results, SECTION, body)
        print(f"\nupdated the {SECTION} section of {results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
