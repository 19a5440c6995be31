"""Synthesis benchmarks: ECP5 resources, Fmax and latency of the digits model over (P, S).

    python benchmarks/bench_synth.py                    # the (P, S) table below, nextpnr
                                                        # seeds 1 2 3; rewrites the "synth"
                                                        # section of benchmarks/RESULTS.md
    python benchmarks/bench_synth.py --configs 8x1 32x4 --seeds 1 2 3 --workdir W
    python benchmarks/bench_synth.py --cached-only --workdir W   # tabulate the finished runs
                                                        # in W only (nothing runs; the rest
                                                        # is listed as not run)
    python benchmarks/bench_synth.py --smoke            # one tiny model, P = 2, one seed,
                                                        # prints only (what CI runs)

The model has the digits demo's geometry (``lstmfpga.digits``: ``LSTM(8 -> 32)`` and
``Linear(32 -> 10)`` on the last of 8 steps): ``lstmfpga.testing.random_qmodel(0,
input_size=8, hidden_size=32, head="last", head_out=10)``, ``q16`` preset (random weights:
the hardware is the same as for the trained model but for the memory contents). Each
configuration is generated with ``max_seq_len=16`` and ``$readmemh`` memories, then
``lstmfpga.synth.synthesize_seeds`` on ECP5 (Yosys ``synth_ecp5`` once per design,
nextpnr-ecp5 once per seed, ``--jobs N`` of them at once, on the smallest fitting device, a
150 MHz constraint). With ``--workdir`` every finished run is kept as
``W/PxS/HASH/seedN.json``, ``HASH`` the first 16 hex digits of the SHA-256 of the generated
design's Verilog and memory files (``design_hash``), and reused by a later call only for
that same design: every call generates the design again (``--cached-only`` too), so a run
of older code is never tabulated as the current one, and the table can be filled by
several processes (one per configuration) and assembled at the end.

Default configurations (``DEFAULT_CONFIGS``): (8, 1), (16, 1), (16, 4), (32, 4), (64, 2) and
(16, 8) (128 MVU multipliers like (32, 4), with fewer lanes; with the activation and cell units'
8 multipliers, ``P * S`` up to 148 fits an ECP5-85's 156). ``--note TEXT`` adds a paragraph to
the section (e.g. which configurations were not run).

Definitions:

* resources: Yosys' mapped cells (LUTs = nextpnr's LUT4 count: ``LUT4 + 2*CCU2C + 6*DPR16X4``;
  FFs ``TRELLIS_FF``; multipliers ``MULT18X18D``, the MVU's ``P * S`` plus the activation and
  cell units'; BRAMs ``DP16KD``);
* Fmax: nextpnr's achieved clock after routing for each seed; median and worst over the seeds;
* cycles/seq: the manifest's exact cycle model for one sequence of ``T = 8`` steps (load,
  compute and drain, no back-pressure; tests compare the model with simulation);
* µs/seq: cycles/seq at the median (and the worst) Fmax;
* DSP bound: ``ceil(MACs / (P * S))`` cycles, ``MACs = T * 4H * (I + H) + out * H`` per
  sequence (gates and head); the ratio is cycles/seq over that bound (load and drain included).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results_md import benchmark_parser, command_line, publish_run  # benchmarks/results_md.py

from lstmfpga.hw.verilog import generate
from lstmfpga.synth import synthesize_seeds
from lstmfpga.testing import random_qmodel

SECTION = "synth"
DEMO = dict(input_size=8, hidden_size=32, head="last", head_out=10)
SMOKE = dict(input_size=2, hidden_size=4, head="last", head_out=3)
T = 8
MAX_SEQ_LEN = 16
FREQ_MHZ = 150
DEFAULT_CONFIGS = ((8, 1), (16, 1), (16, 4), (32, 4), (64, 2), (16, 8))


def macs_per_sequence(model: dict, steps: int) -> int:
    """Multiply-accumulates of one sequence of ``steps`` steps (from the manifest's "model")."""
    H, Ho = model["hidden_size"], model["proj_size"] or model["hidden_size"]
    D = 2 if model["bidirectional"] else 1
    total = 0
    for layer in range(model["num_layers"]):
        width = model["input_size"] if layer == 0 else D * Ho
        total += steps * D * 4 * H * (width + Ho)
        if model["proj_size"]:
            total += steps * D * Ho * H
    head = model["head"]
    if head is not None:
        total += (steps if head["mode"] == "all" else 1) * head["out_features"] * D * Ho
    return total


def parse_config(text: str) -> tuple[int, int]:
    """``"PxS"`` -> ``(P, S)``."""
    try:
        lanes, simd = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"config must be PxS (e.g. 32x4), not {text!r}") from None
    if lanes < 1 or simd < 1:
        raise argparse.ArgumentTypeError(f"config must have P, S >= 1, not {text!r}")
    return lanes, simd


def design_hash(outdir: Path, info: dict) -> str:
    """16 hex digits of the SHA-256 over the names and contents of the design's files that
    synthesis reads (``info["files"]`` but the manifests)."""
    digest = hashlib.sha256()
    for name in sorted(info["files"]):
        if not name.startswith("manifest."):
            digest.update(f"{name}\0{(outdir / name).stat().st_size}\0".encode())
            digest.update((outdir / name).read_bytes())
    return digest.hexdigest()[:16]


def design_dir(workdir: Path, config: tuple[int, int], model_kwargs: dict) -> Path:
    """Generate the configuration's design and return its folder ``W/PxS/HASH`` (a new one
    moved there, an existing one for the same design kept with its finished runs)."""
    lanes, simd = config
    parent = workdir / f"{lanes}x{simd}"
    parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".new-", dir=parent))
    _, qmodel = random_qmodel(0, **model_kwargs)
    info = generate(
        qmodel, fresh, lanes=lanes, simd=simd, max_seq_len=MAX_SEQ_LEN, memories="readmemh"
    )
    outdir = parent / design_hash(fresh, info)
    if not (outdir / "manifest.json").is_file():
        shutil.rmtree(outdir, ignore_errors=True)  # an unfinished folder of this design
        try:
            fresh.rename(outdir)
        except OSError:  # another process moved the same design there first
            pass
    shutil.rmtree(fresh, ignore_errors=True)
    return outdir


def run_one(
    workdir: Path,
    config: tuple[int, int],
    model_kwargs: dict,
    seeds: list[int],
    cached_only=False,
    jobs: int = 1,
) -> dict | None:
    """One configuration's row; with ``cached_only`` only the seeds already finished in
    ``workdir`` for the design the current code generates (None when there is none)."""
    lanes, simd = config
    outdir = design_dir(workdir, config, model_kwargs)
    if cached_only:
        seeds = [s for s in seeds if (outdir / f"seed{s}.json").is_file()]
        if not seeds:
            return None
    info = json.loads((outdir / "manifest.json").read_text())
    missing = [s for s in seeds if not (outdir / f"seed{s}.json").is_file()]
    if missing:
        print(f"  P={lanes} S={simd} seeds {missing} ({outdir}) ...", file=sys.stderr, flush=True)
        results = synthesize_seeds(outdir, missing, "ecp5", freq_mhz=FREQ_MHZ, jobs=jobs)
        for seed, result in zip(missing, results, strict=True):
            partial = outdir / f".seed{seed}.json.{os.getpid()}"
            partial.write_text(json.dumps(result))
            partial.replace(outdir / f"seed{seed}.json")
    runs = [json.loads((outdir / f"seed{s}.json").read_text()) for s in seeds]
    fmaxes = [r["fmax_mhz"] for r in runs]
    cycles = info["cycles"]["per_sequence"][str(T)]
    macs = macs_per_sequence(info["model"], T)
    bound = math.ceil(macs / (lanes * simd))
    median, worst = statistics.median(fmaxes), min(fmaxes)
    first = runs[0]
    return {
        "lanes": lanes,
        "simd": simd,
        "design": outdir.name,
        "seeds": seeds,
        "device": first["device"],
        "resources": {k: first[k] for k in ("luts", "ffs", "dsps", "brams")},
        "fmax": fmaxes,
        "fmax_median": median,
        "fmax_min": worst,
        "cycles": cycles,
        "tail_gates": info["cycles"].get("tail_gates"),
        "bound": bound,
        "latency_us": cycles / median,
        "latency_worst_us": cycles / worst,
        "critical": [r["critical_path"] for r in runs],
        "seconds": statistics.mean(r["wall_seconds"] for r in runs),
        "tools": first["tools"],
    }


def table(rows: list[dict]) -> list[str]:
    lines = [
        (
            f"| P | S | device | cycles/seq (T={T}) | tail_gates | Fmax per seed (MHz) | median "
            "| worst | µs/seq (median / worst) | multipliers (MVU P·S) | LUTs | FFs | BRAMs "
            "| DSP bound | ratio | flow time |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        res = r["resources"]
        lines.append(
            f"| {r['lanes']} | {r['simd']} | {r['device']} | {r['cycles']} | {r['tail_gates']} "
            f"| {', '.join(f's{s} {f:.1f}' for s, f in zip(r['seeds'], r['fmax'], strict=True))} "
            f"| {r['fmax_median']:.1f} "
            f"| {r['fmax_min']:.1f} | {r['latency_us']:.2f} / {r['latency_worst_us']:.2f} "
            f"| {res['dsps']} ({r['lanes'] * r['simd']}) | {res['luts']} | {res['ffs']} "
            f"| {res['brams']} | {r['bound']} | {r['cycles'] / r['bound']:.2f} "
            f"| {r['seconds']:.0f} s |"
        )
    return lines


def _path(cp: dict | None) -> str:
    if cp is None:
        return "(none reported)"
    return (
        f"{cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, {cp['routing_ns']:.2f} routing), "
        f"`{cp['from']}` → `{cp['to']}`"
    )


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "one tiny model, P=2 (CI)")
    parser.add_argument(
        "--configs", type=parse_config, nargs="+", help="PxS values (default: the table)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="nextpnr seeds (default 1 2 3)")
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the designs and runs here")
    parser.add_argument("--note", help="a paragraph added to the section")
    parser.add_argument(
        "--jobs", type=int, default=1, help="nextpnr runs at once (Yosys runs once per design)"
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="run nothing: tabulate the seeds already finished in --workdir (others listed)",
    )
    args = parser.parse_args(argv)
    configs = args.configs or ([(2, 1)] if args.smoke else list(DEFAULT_CONFIGS))
    seeds = args.seeds or ([1] if args.smoke else [1, 2, 3])
    model_kwargs = SMOKE if args.smoke else DEMO
    command = command_line("bench_synth.py", args)
    if args.configs:
        command += " --configs " + " ".join(f"{p}x{s}" for p, s in args.configs)
    if args.seeds:
        command += " --seeds " + " ".join(map(str, args.seeds))
    if args.jobs != 1:
        command += f" --jobs {args.jobs}"
    if args.cached_only:
        command += " --cached-only --workdir W"
    if args.cached_only and args.workdir is None:
        parser.error("--cached-only needs --workdir")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        workdir = args.workdir or Path(tmp)
        found = {
            c: run_one(workdir, c, model_kwargs, seeds, args.cached_only, args.jobs)
            for c in configs
        }
    total = time.perf_counter() - started
    rows = [r for r in found.values() if r is not None]
    missing = [f"{p}x{s}" for (p, s), r in found.items() if r is None]
    if not rows:
        parser.error(f"no finished runs in {workdir} for {' '.join(missing)}")

    m = model_kwargs
    tools = rows[0]["tools"]
    body = [
        "## Synthesis (ECP5, open-source flow)",
        "",
        (
            f"Written by `{command}` on {time.strftime('%Y-%m-%d')} (Python "
            f"{platform.python_version()}; {tools['yosys']}, {tools['nextpnr']}; "
            f"{total:.0f} s in this call, cached runs reused"
            f"{'; --cached-only: finished runs only' if args.cached_only else ''}). "
            f"Model: I={m['input_size']}, "
            f"H={m['hidden_size']}, 1 layer, Linear head ({m['head_out']} outputs, last step), "
            f"q16 preset, max_seq_len {MAX_SEQ_LEN}; {FREQ_MHZ} MHz constraint, nextpnr seeds "
            f"{' '.join(map(str, seeds))}, on a machine shared with other jobs (flow times are "
            "wall clock under that load). Definitions: the docstring of "
            "benchmarks/bench_synth.py."
        ),
        "",
        *table(rows),
        "",
        "Critical path per configuration and seed:",
        "",
    ]
    for r in rows:
        for seed, cp in zip(r["seeds"], r["critical"], strict=True):
            body.append(
                f"- P={r['lanes']}, S={r['simd']} (design {r['design']}), seed {seed}: {_path(cp)}"
            )
    if not args.smoke:
        body += ["", f"Target (issue 16): >= {FREQ_MHZ} MHz on every seed at (8, 1) and (32, 4):"]
        for r in rows:
            if (r["lanes"], r["simd"]) in ((8, 1), (32, 4)):
                met = "met" if r["fmax_min"] >= FREQ_MHZ else "missed"
                body.append(
                    f"P={r['lanes']}, S={r['simd']}: worst seed {r['fmax_min']:.1f} MHz, {met}."
                )
    if missing:
        body += ["", f"Not in the table (no finished run): {', '.join(missing)}."]
    if args.note:
        body += ["", args.note]
    return publish_run(args, SECTION, "\n".join(body))


if __name__ == "__main__":
    sys.exit(main())
