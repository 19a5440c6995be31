"""Synthesis benchmarks: ECP5 resources, Fmax and throughput of the demo-size accelerator.

    python benchmarks/bench_synth.py            # P = 4, 8, 16, nextpnr seeds 1 2 3; rewrites
                                                # the "synth" section of benchmarks/RESULTS.md
    python benchmarks/bench_synth.py --smoke    # one tiny model, P = 2, one seed, prints only
                                                # (what CI runs)

The demo model: ``lstmfpga.testing.random_qmodel(0, input_size=8, hidden_size=32,
head="last", head_out=10)`` (1 layer, Linear head on the last step, ``q16`` preset), generated
with ``max_seq_len=16`` and ``$readmemh`` memories, then ``lstmfpga.synth.synthesize`` on
ECP5 (Yosys ``synth_ecp5``, nextpnr-ecp5, smallest fitting device, 100 MHz constraint).

Definitions:

* resources: Yosys' mapped cells (LUTs = nextpnr's LUT4 count: ``LUT4 + 2*CCU2C + 6*DPR16X4``;
  FFs ``TRELLIS_FF``; DSPs ``MULT18X18D``; BRAMs ``DP16KD``);
* Fmax: nextpnr's achieved clock after routing, for each placement seed, and their median;
* cycles/seq: the manifest's cycle model for one sequence of ``T = 16`` steps (load, compute
  and drain, no back-pressure; the model is exact, tests compare it with simulation);
* GOPS: useful operations at the median Fmax: ``2 * MACs / cycles_per_sequence * Fmax``, with
  ``MACs = T * 4H * (I + H) + head_out * H`` per sequence (gates and head; activations, cell
  update and requantization not counted); peak = ``2 * P * Fmax``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results_md import update_section  # benchmarks/results_md.py

from lstmfpga.hw.verilog import generate
from lstmfpga.synth import synthesize
from lstmfpga.testing import random_qmodel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "synth"
DEMO = dict(input_size=8, hidden_size=32, head="last", head_out=10)
SMOKE = dict(input_size=2, hidden_size=4, head="last", head_out=3)
T = 16


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


def run_one(workdir: Path, lanes: int, model_kwargs: dict, seeds: list[int]) -> dict:
    outdir = workdir / f"p{lanes}"
    _, qmodel = random_qmodel(0, **model_kwargs)
    info = generate(qmodel, outdir, lanes=lanes, max_seq_len=T, memories="readmemh")
    runs = []
    for seed in seeds:
        print(f"  P={lanes} seed {seed} ...", file=sys.stderr, flush=True)
        runs.append(synthesize(outdir, "ecp5", seed=seed))
    fmaxes = [r["fmax_mhz"] for r in runs]
    cycles = info["cycles"]["per_sequence"][str(T)]
    macs = macs_per_sequence(info["model"], T)
    fmax = statistics.median(fmaxes)
    first = runs[0]
    return {
        "lanes": lanes,
        "device": first["device"],
        "resources": {k: first[k] for k in ("luts", "ffs", "dsps", "brams")},
        "fmax": fmaxes,
        "fmax_min": min(fmaxes),
        "fmax_median": fmax,
        "cycles": cycles,
        "macs": macs,
        "gops": 2 * macs / cycles * fmax * 1e6 / 1e9,
        "peak_gops": 2 * lanes * fmax * 1e6 / 1e9,
        "latency_us": cycles / fmax,
        "critical": first["critical_path"],
        "seconds": statistics.mean(r["wall_seconds"] for r in runs),
        "tools": first["tools"],
    }


def table(rows: list[dict]) -> list[str]:
    lines = [
        (
            "| P | device | LUTs | FFs | DSPs | BRAMs | Fmax per seed (MHz) | median "
            f"| cycles/seq (T={T}) | µs/seq | GOPS | peak GOPS | flow time |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        res = r["resources"]
        lines.append(
            f"| {r['lanes']} | {r['device']} | {res['luts']} | {res['ffs']} | {res['dsps']} "
            f"| {res['brams']} | {', '.join(f'{f:.1f}' for f in r['fmax'])} "
            f"| {r['fmax_median']:.1f} | {r['cycles']} "
            f"| {r['latency_us']:.1f} | {r['gops']:.2f} | {r['peak_gops']:.2f} "
            f"| {r['seconds']:.0f} s |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one tiny model, P=2 (CI)")
    parser.add_argument("--lanes", type=int, nargs="+", help="P values (default 4 8 16)")
    parser.add_argument("--seeds", type=int, nargs="+", help="nextpnr seeds (default 1 2 3)")
    parser.add_argument(
        "--results",
        type=Path,
        help=f"markdown file to update (default: {RESULTS.relative_to(ROOT)}, not with --smoke)",
    )
    parser.add_argument("--workdir", type=Path, help="keep the designs and logs here")
    args = parser.parse_args(argv)
    lanes = args.lanes or ([2] if args.smoke else [4, 8, 16])
    seeds = args.seeds or ([1] if args.smoke else [1, 2, 3])
    model_kwargs = SMOKE if args.smoke else DEMO
    results = args.results if args.results or args.smoke else RESULTS
    command = "python benchmarks/bench_synth.py" + (" --smoke" if args.smoke else "")
    if args.lanes:
        command += " --lanes " + " ".join(map(str, args.lanes))
    if args.seeds:
        command += " --seeds " + " ".join(map(str, args.seeds))

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        workdir = args.workdir or Path(tmp)
        rows = [run_one(workdir, p, model_kwargs, seeds) for p in lanes]
    total = time.perf_counter() - started

    m = model_kwargs
    tools = rows[0]["tools"]
    body = [
        "## Synthesis (ECP5, open-source flow)",
        "",
        (
            f"Written by `{command}` on {time.strftime('%Y-%m-%d')} (Python "
            f"{platform.python_version()}; {tools['yosys']}, {tools['nextpnr']}; "
            f"{total:.0f} s in all). Model: I={m['input_size']}, H={m['hidden_size']}, "
            f"1 layer, Linear head ({m['head_out']} outputs, last step), q16 preset, "
            f"max_seq_len {T}; 100 MHz constraint, nextpnr seeds {' '.join(map(str, seeds))}. "
            "Definitions: the docstring of benchmarks/bench_synth.py."
        ),
        "",
        *table(rows),
        "",
        "Critical path (first seed) per P:",
        "",
    ]
    for r in rows:
        cp = r["critical"]
        if cp is None:
            continue
        body.append(
            f"- P={r['lanes']}: {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
            f"{cp['routing_ns']:.2f} routing), `{cp['from']}` → `{cp['to']}`"
        )
    target = next((r for r in rows if r["lanes"] == 8), None)
    if target is not None and not args.smoke:
        median = "met" if target["fmax_median"] >= 100 else "missed"
        every = "met" if target["fmax_min"] >= 100 else "missed"
        body += [
            "",
            f"Target: P=8 at >= 100 MHz: median over the seeds {median}, every seed {every}.",
        ]
    text = "\n".join(body)
    print(text)
    if results is not None:
        update_section(results, SECTION, text)
        print(f"\nupdated the {SECTION} section of {results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
