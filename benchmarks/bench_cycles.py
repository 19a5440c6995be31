"""Cycles per timestep: measured in Verilator vs the analytic cycle model, and MAC efficiency.

For H in {16, 32, 64, 128} and P in {1, 4, 16}, plus lane counts that are not powers of two
(H = 24 with P = 3 and 6, H = 48 with P = 6 and 12: row groups that end inside a hidden unit
when 4 does not divide P), lane counts that do not divide 4H (H = 20 with P = 7, H = 32 with
P = 24 and 40: the last row group is padded), plus ``simd`` S > 1 points (S columns per beat, P x S
multipliers; S = 3 and 5 do not divide I + H), plus ``cells`` V points (V parallel activation +
cell units; the default V is ``hw.accelerator.default_cells``) (I = 16, one layer, no head), the
step cost is
measured as the difference of the compute cycles of sequences of 2 and 1 timesteps (each the
median over a few sequences), and compared with ``CycleModel.step`` and with the bound
``1.10 * ceil(4H/P) * ceil((I + H)/S)``. MAC efficiency = useful MACs / (P x S x cycles).

    python benchmarks/bench_cycles.py            # full sweep, updates its section of RESULTS.md
    python benchmarks/bench_cycles.py --smoke    # one small point, prints only (what CI runs)
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from results_md import benchmark_parser, command_line, publish_run  # benchmarks/results_md.py

SECTION = "cycles"
INPUT = 16


def measure(hidden: int, lanes: int, simd: int = 1, cells: int | None = None,
            simulator: str = "verilator") -> dict:  # fmt: skip
    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.cycles import CycleModel
    from lstmfpga.quant import golden
    from lstmfpga.sim.cocotb_flow import run_cocotb
    from lstmfpga.testing import random_inputs, random_qmodel

    _, q = random_qmodel(hidden, input_size=INPUT, hidden_size=hidden)
    acc = LSTMAccelerator(q, lanes=lanes, simd=simd, cells=cells, max_seq_len=2)
    model = CycleModel.of(acc)
    compute = {}
    for T in (1, 2):
        x = golden.quantize_inputs(q, random_inputs(T, 3, T, INPUT))
        run = run_cocotb(acc, x, simulator=simulator)
        expected = golden.run(q, x).output.reshape(3, -1)
        if not all(np.array_equal(o, e) for o, e in zip(run.outputs, expected, strict=True)):
            raise SystemExit(
                f"H={hidden} P={lanes} S={simd} V={acc.cells}: RTL differs from the golden model"
            )
        compute[T] = int(np.median([c.compute for c in run.cycles]))
    step = compute[2] - compute[1]
    ideal = math.ceil(4 * hidden / lanes) * math.ceil((INPUT + hidden) / simd)
    macs = 4 * hidden * (INPUT + hidden)
    return {
        "H": hidden,
        "P": lanes,
        "S": simd,
        "V": acc.cells,
        "measured": step,
        "model": model.step(0),
        "ideal": ideal,
        "ratio": step / ideal,
        "efficiency": macs / (lanes * simd * step),
    }


def table(rows: list[dict]) -> list[str]:
    lines = [
        (
            "| H | P | S | V | measured cycles/step | model | ideal ceil(4H/P)*ceil((I+H)/S) "
            "| measured/ideal | MAC efficiency |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "" if r["H"] < 32 or r["ratio"] <= 1.10 else " (above 1.10)"
        lines.append(
            f"| {r['H']} | {r['P']} | {r['S']} | {r['V']} | {r['measured']} | {r['model']} | "
            f"{r['ideal']} | "
            f"{r['ratio']:.3f}{ok} | {100 * r['efficiency']:.1f}% |"
        )
    return lines


def main(argv=None) -> int:
    args = benchmark_parser(__doc__.splitlines()[0], "one small point, prints only").parse_args(
        argv
    )
    points = [(h, p, 1, None) for h in (16, 32, 64, 128) for p in (1, 4, 16)]
    points += [(24, 3, 1, None), (24, 6, 1, None), (48, 6, 1, None), (48, 12, 1, None)]
    points += [(20, 7, 1, None), (32, 24, 1, None), (32, 40, 2, None)]  # padded last group
    points += [(32, 8, 2, None), (32, 16, 4, None), (32, 32, 4, None), (64, 16, 3, None),
               (32, 32, 5, None)]  # simd S  # fmt: skip
    points += [(32, 128, 4, 1), (32, 128, 4, None), (32, 128, 4, 8), (16, 64, 4, 3)]  # cells V
    if args.smoke:
        points = [(16, 4, 2, None)]
    started = time.perf_counter()
    rows = []
    for hidden, lanes, simd, cells in points:
        rows.append(measure(hidden, lanes, simd, cells))
        print(
            f"H={hidden:3d} P={lanes:3d} S={simd} V={rows[-1]['V']}: "
            f"{rows[-1]['measured']} cycles/step",
            file=sys.stderr,
        )
    mismatched = [r for r in rows if r["measured"] != r["model"]]
    command = command_line("bench_cycles.py", args)
    body = [
        "## Cycles per timestep (Verilator)",
        "",
        (
            f"Written by `{command}` ({time.perf_counter() - started:.0f} s). One layer, "
            f"I = {INPUT}, no head, q16; a step measured as compute(T=2) - compute(T=1), each "
            "the median of 3 sequences; `model` is `CycleModel.step`. The goal (H >= 32): "
            "measured/ideal <= 1.10. Then lane counts that are not powers of two, lane "
            "counts that do not divide 4H (padded last row group), then simd S > 1 "
            "(P x S multipliers), then cells V (parallel activation + cell units; the "
            "others use the default V)."
        ),
        "",
        *table(rows),
        "",
        "measured == model for every point"
        if not mismatched
        else f"MODEL MISMATCH at {[(r['H'], r['P'], r['S']) for r in mismatched]}",
    ]
    publish_run(args, SECTION, "\n".join(body))
    return 1 if mismatched else 0


if __name__ == "__main__":
    raise SystemExit(main())
