"""Design-space exploration wall time on 1 vs 2 Dask workers.

    python benchmarks/bench_explore.py            # the digits-size model, lanes 2,4,8 x
                                                  # ECP5-25k x seeds 1,2 (3 designs, 6 place
                                                  # and routes); rewrites the "explore" section
                                                  # of benchmarks/RESULTS.md
    python benchmarks/bench_explore.py --smoke    # a tiny model, lanes 2, one seed, 2 workers
                                                  # only (what CI runs)

Each worker count runs the same sweep from an empty cache (``lstmfpga.explore.explore`` on a
``distributed.LocalCluster`` with that many single-threaded worker processes), one after the
other in one run, so the ratio compares like with like. The model:
``lstmfpga.testing.random_qmodel(0, input_size=8, hidden_size=32, head="last", head_out=10)``
(the demo's geometry), 8 input sequences of 8 steps simulated in Verilator.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from results_md import benchmark_parser, command_line, publish_run  # benchmarks/results_md.py

from lstmfpga.explore import Sweep, explore
from lstmfpga.export import files
from lstmfpga.testing import random_inputs, random_qmodel

SECTION = "explore"
FULL = dict(
    model=dict(input_size=8, hidden_size=32, head="last", head_out=10),
    lanes=(2, 4, 8),
    seeds=(1, 2),
    sim="verilator",
    batch=8,
    T=8,
    workers=(1, 2),
)
SMOKE = dict(
    model=dict(input_size=2, hidden_size=2, head="last", head_out=2),
    lanes=(2,),
    seeds=(1,),
    sim="icarus",
    batch=2,
    T=3,
    workers=(2,),
)


def main(argv=None) -> int:
    args = benchmark_parser(__doc__, "tiny sweep, print only").parse_args(argv)
    cfg = SMOKE if args.smoke else FULL
    command = command_line("bench_explore.py", args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _, qmodel = random_qmodel(0, **cfg["model"])
        qmodel.save(tmp / "qmodel")
        files.save_npy(
            tmp / "x.npy", random_inputs(0, cfg["batch"], cfg["T"], cfg["model"]["input_size"])
        )
        sweep = Sweep(lanes=cfg["lanes"], targets=("ecp5:25k",), seeds=cfg["seeds"])
        rows, points = [], None
        for workers in cfg["workers"]:
            load = os.getloadavg()[0]
            started = time.perf_counter()
            result = explore(
                tmp / "qmodel",
                tmp / "x.npy",
                sweep,
                tmp / f"w{workers}",
                simulator=cfg["sim"],
                workers=workers,
                progress=lambda line: print(line, file=sys.stderr),
            )
            wall = time.perf_counter() - started
            failed = [p["error"] for p in result.points if p["error"]]
            if failed:
                print(f"failed points: {failed}", file=sys.stderr)
                return 1
            rows.append((workers, wall, result.computed, load))
            points = result.points
    base = rows[0][1]
    lanes, seeds = ", ".join(map(str, cfg["lanes"])), ", ".join(map(str, cfg["seeds"]))
    lines = [
        (
            f"Command: `{command}` ({platform.machine()}, {platform.python_version()}; "
            f"{len(points)} points: lanes {lanes} x ECP5-25k x seeds {seeds}; {cfg['sim']} "
            "simulation; empty cache each; front: on the latency-vs-LUTs Pareto front)."
        ),
        "",
        "| workers | tasks computed | wall (s) | speed-up vs 1 worker | load average at start |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {w} | {n} | {s:.1f} | {base / s:.2f} | {a:.1f} |" for w, s, n, a in rows),
        "",
        (
            f"The machine has {os.cpu_count()} cores: a load average near or above that means "
            "other jobs competed with the sweep and the speed-up is understated."
        ),
        "",
        "| lanes | seed | LUTs | DSPs | Fmax (MHz) | cycles/seq | latency (us) | front |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|",
        *(
            f"| {p['lanes']} | {p['seed']} | {p['luts']} | {p['dsps']} | {p['fmax_mhz']:.1f} "
            f"| {p['cycles']:.0f} | {p['latency_us']:.2f} | "
            f"{'yes' if p['pareto']['latency_luts'] else ''} |"
            for p in points
        ),
    ]
    body = "## Design-space exploration (Dask)\n\n" + "\n".join(lines)
    return publish_run(args, SECTION, body)


if __name__ == "__main__":
    sys.exit(main())
