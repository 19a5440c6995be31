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
    python benchmarks/bench_cycles.py --overlap  # back-to-back sequences, buffers 1 vs 2

``--overlap`` (section ``cycles_overlap``): B sequences sent back to back (each one's first
element right after the previous one's ``tlast``) through accelerators built with
``buffers=1`` and ``buffers=2``, measured in Verilator (``tests/sim/overlap_bench.py``, the
cocotb module of ``tests/sim/test_overlap_sim.py``: the flows of ``lstmfpga.sim`` send a
sequence only after the previous one's results) against ``CycleModel.batch``, beside
``B * compute(T)`` and the goal ``1.05 * B * compute(T) + load + drain``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

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


#: ``--overlap`` points: name, model kwargs, accelerator options, T, B.
OVERLAP = [
    ("digits P=8", dict(input_size=8, hidden_size=32, head="last", head_out=10), dict(lanes=8),
     8, 8),
    ("digits P=16 S=4", dict(input_size=8, hidden_size=32, head="last", head_out=10),
     dict(lanes=16, simd=4), 8, 8),
    ("H=32 no head P=16", dict(input_size=16, hidden_size=32), dict(lanes=16), 8, 8),
    ("2-layer bidir, head all, h0/c0, h_n/c_n, P=8 S=2",
     dict(input_size=4, hidden_size=16, num_layers=2, bidirectional=True, head="all"),
     dict(lanes=8, simd=2, with_states=True, initial_state=True), 16, 6),
    ("load-bound I=40 H=2 P=8 S=21", dict(input_size=40, hidden_size=2),
     dict(lanes=8, simd=21), 4, 8),
]  # fmt: skip


def measure_overlap(name, kwargs, options, T, B, buffers, workdir) -> dict:
    """One ``--overlap`` row: B sequences of T steps back to back in Verilator."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "sim"))
    import overlap_bench

    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.cycles import CycleModel
    from lstmfpga.quant import golden
    from lstmfpga.sim.streams import StreamGeometry, pack_inputs, pack_outputs
    from lstmfpga.testing import random_inputs, random_qmodel

    _, q = random_qmodel(T, **kwargs)
    acc = LSTMAccelerator(q, max_seq_len=T, buffers=buffers, **options)
    geom = StreamGeometry.of(q, with_states=acc.with_states, initial_state=acc.initial_state)
    x = golden.quantize_inputs(q, random_inputs(B, B, T, q.input_size))
    run = golden.run(q, x)
    inputs = [pack_inputs(geom, x, b) for b in range(B)]
    expected = [pack_outputs(geom, run.prediction, b, run.h_n, run.c_n) for b in range(B)]
    build_dir = workdir / f"{len(list(workdir.iterdir()))}"
    build_dir.mkdir()
    runner = overlap_bench.build(acc, build_dir)
    result = overlap_bench.run(runner, build_dir, "run", inputs, sum(e.size for e in expected))
    if not all(np.array_equal(o, e) for o, e in zip(result["outputs"], expected, strict=True)):
        raise SystemExit(f"{name}, buffers={buffers}: RTL differs from the golden model")
    model = CycleModel.of(acc)
    compute = model.compute(T)
    load, drain = acc.input_length(T), acc.result_length(T)
    return {"name": name, "P": acc.lanes, "S": acc.simd, "V": acc.cells, "T": T, "B": B,
            "buffers": buffers, "measured": result["cycles"], "model": model.batch([T] * B),
            "computes": B * compute, "load": load, "drain": drain,
            "goal": 1.05 * B * compute + load + drain}  # fmt: skip


def overlap_table(rows: list[dict]) -> list[str]:
    lines = [
        (
            "| model | P | S | V | T | B | buffers | load + drain per sequence | measured cycles "
            "| model (`batch`) | B * compute(T) | measured / (B * compute) "
            "| goal 1.05 B compute + load + drain |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "met" if r["measured"] <= r["goal"] else "missed"
        lines.append(
            f"| {r['name']} | {r['P']} | {r['S']} | {r['V']} | {r['T']} | {r['B']} | "
            f"{r['buffers']} | {r['load']} + {r['drain']} | {r['measured']} | {r['model']} | "
            f"{r['computes']} | {r['measured'] / r['computes']:.3f} | {r['goal']:.0f} ({met}) |"
        )
    return lines


def overlap_main(args) -> int:
    import tempfile

    started = time.perf_counter()
    points = OVERLAP[:1] if args.smoke else OVERLAP
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_overlap-") as work:
        for name, kwargs, options, T, B in points:
            for buffers in (1, 2):
                rows.append(measure_overlap(name, kwargs, options, T, B, buffers, Path(work)))
                print(f"{name}, buffers={buffers}: {rows[-1]['measured']} cycles",
                      file=sys.stderr)  # fmt: skip
    mismatched = [(r["name"], r["buffers"]) for r in rows if r["measured"] != r["model"]]
    command = command_line("bench_cycles.py", args, "--overlap")
    body = [
        "## Back-to-back sequences: buffers 1 vs 2 (Verilator)",
        "",
        (
            f"Written by `{command}` ({time.perf_counter() - started:.0f} s). B sequences of "
            "T steps, q16, random weights and inputs, each sequence's first element offered "
            "right after the previous one's `tlast`, every result taken at once; cycles from "
            "the first input transfer to the last result transfer, measured in Verilator "
            "(`tests/sim/overlap_bench.py`) and from `CycleModel.batch`. `buffers=2` "
            "overlaps the next sequence's load and the previous one's drain with the compute "
            '(`docs/accelerator.md`, "Overlapped sequences"): steady cycles per sequence '
            "`max(compute(T) - 2, load, drain + 2)` instead of `load + compute(T) + drain - 2`. "
            "The goal (issue 11): at most `1.05 * B * compute(T) + load + drain`; the "
            "load-bound point is there to show where it cannot hold (its load is longer "
            "than its compute)."
        ),
        "",
        *overlap_table(rows),
        "",
        "measured == model for every point"
        if not mismatched
        else f"MODEL MISMATCH at {mismatched}",
    ]
    publish_run(args, "cycles_overlap", "\n".join(body))
    return 1 if mismatched else 0


def main(argv=None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0], "one small point, prints only")
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="back-to-back sequences, buffers 1 vs 2 (section cycles_overlap)",
    )
    args = parser.parse_args(argv)
    if args.overlap:
        return overlap_main(args)
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
