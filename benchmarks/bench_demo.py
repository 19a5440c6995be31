"""The demo's wall time, cold (empty caches, as on a fresh machine) and warm.

    python benchmarks/bench_demo.py             # one cold run, then --warm warm runs (default
                                                # 2) with the caches the cold run filled;
                                                # rewrites the "demo" section of RESULTS.md
    python benchmarks/bench_demo.py --no-synth  # the same without ECP5 synthesis
    python benchmarks/bench_demo.py --smoke     # one --no-synth run on the usual caches,
                                                # printing only (what CI runs)

Each run is the real command, ``python -m lstmfpga demo --out DIR``, in a subprocess whose
``XDG_CACHE_HOME`` points at a fresh folder for the cold run: the YoWASP tools compile their
WebAssembly again, and lstmfpga's simulator-build and synthesis caches
(``$XDG_CACHE_HOME/lstmfpga``) start empty. The warm runs reuse that folder. Stage times are
the ones the demo prints (``seconds per stage: ...``). The issue's goal (issue 12): <= 100 s
cold and <= 60 s warm on 2 cores.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_md import benchmark_parser, command_line, publish_run  # benchmarks/results_md.py

SECTION = "demo"
STAGES = re.compile(r"^seconds per stage: (.*)$", re.MULTILINE)
STAGE = re.compile(r"(.+?) (\d+(?:\.\d+)?)(?:, |$)")


def run_demo(
    out: Path, cache: Path | None, no_synth: bool
) -> tuple[float, dict[str, float], float]:
    """One demo run with ``XDG_CACHE_HOME=cache`` (None: the caller's caches): (wall seconds,
    stage seconds, load average at start)."""
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
        env.pop("LSTMFPGA_SIM_CACHE", None)
    command = [sys.executable, "-m", "lstmfpga", "demo", "--out", str(out)]
    if no_synth:
        command.append("--no-synth")
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"demo failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    found = STAGES.search(done.stdout)
    if found is None:
        raise SystemExit("demo printed no 'seconds per stage' line")
    # "train 1.7, ..., simulate (verilator, 450 sequences) 5.7": a name may hold ", "
    stages = {name: float(s) for name, s in STAGE.findall(found.group(1))}
    return wall, stages, load


def main(argv=None) -> int:
    parser = benchmark_parser(__doc__, "one --no-synth run, print only")
    parser.add_argument("--warm", type=int, default=2, help="warm runs after the cold one")
    parser.add_argument("--no-synth", action="store_true", help="demo --no-synth")
    args = parser.parse_args(argv)
    if args.warm < 1:
        parser.error(f"--warm must be >= 1, not {args.warm}")
    if args.smoke:
        args.warm, args.no_synth = 0, True
    extra = ["--no-synth"] if args.no_synth and not args.smoke else []
    command = command_line("bench_demo.py", args, *extra)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = None if args.smoke else tmp / "cache"
        for index in range(1 + args.warm):
            kind = "cold" if index == 0 and not args.smoke else "warm"
            wall, stages, load = run_demo(tmp / f"out{index}", cache, args.no_synth)
            print(f"{kind}: {wall:.1f} s {stages}", file=sys.stderr)
            runs.append((kind, wall, stages, load))
    names = list(runs[0][2])
    warm = [wall for kind, wall, _, _ in runs if kind == "warm"]
    lines = [
        (
            f"Command: `{command}` ({platform.machine()}, {platform.python_version()}, "
            f"{os.cpu_count()} cores; cold = empty `XDG_CACHE_HOME`: YoWASP compiles its "
            "WebAssembly, no simulator build or synthesis cached; warm = the same caches again)."
        ),
        "",
        "| run | wall (s) | " + " | ".join(f"{n} (s)" for n in names) + " | load at start |",
        "|:---|---:|" + "---:|" * len(names) + "---:|",
        *(
            f"| {kind} | {wall:.1f} | "
            + " | ".join(f"{stages.get(n, 0.0):.1f}" for n in names)
            + f" | {load:.1f} |"
            for kind, wall, stages, load in runs
        ),
        "",
        (
            "; ".join(
                [
                    f"Cold {wall:.0f} s (goal <= 100 s)"
                    for kind, wall, _, _ in runs[:1]
                    if kind == "cold"
                ]
                + [f"warm median {statistics.median(warm):.0f} s (goal <= 60 s)"]
            )
            + (" with synthesis skipped (--no-synth)" if args.no_synth else "")
            + ". Stages overlap (synthesis runs beside the simulations), so they do not add up "
            "to the wall time; a load above the core count means other jobs competed with the "
            "demo."
        ),
    ]
    body = "## Demo wall time (cold and warm)\n\n" + "\n".join(lines)
    return publish_run(args, SECTION, body)


if __name__ == "__main__":
    sys.exit(main())
