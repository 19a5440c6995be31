"""The GRU beside the LSTM on the same real tasks with the same training budget: parameters,
float accuracy, fixed-point accuracy per preset (post-training quantization), the generated
hardware's accuracy in Verilator (digits) and its synthesis on ECP5-25k (digits).

    python benchmarks/bench_gru.py            # rewrites the "gru" section of RESULTS.md
    python benchmarks/bench_gru.py --smoke    # hidden 8, 1-5 epochs, no RTL: prints only (CI)

Tasks (nothing is downloaded), each trained twice, once with ``nn.LSTM`` and once with
``nn.GRU`` in its place, everything else equal (seed 0, one CPU thread):

* **digits** (scikit-learn ``load_digits``, ``lstmfpga.digits.load_data``: each 8x8 image is
  8 timesteps of 8 features, 1,347 training / 450 test images): the demo's ``DigitsLSTM``
  (``lstmfpga.digits.train_digits_model``) vs ``lstmfpga.digits.DigitsGRU`` (``cell="gru"``);
  hidden 32, ``Linear(32 -> 10)`` on the last step, Adam lr 1e-2, cosine, 30 epochs, batch 64.
  Test accuracy in %.
* **sunspots** (statsmodels' yearly sunspot numbers, ``examples/sunspots.py``'s windows of 24
  years, the last 25 % of years for testing): ``SunspotLSTM`` vs ``examples/gru_sunspots.py``'s
  ``SunspotGRU``; hidden 16, ``Linear(16 -> 1)`` on every step, full-batch Adam lr 1e-2, 150
  epochs. Next-year RMSE in sunspot numbers.

Float = the float64 reference (``lstmfpga.export.reference``) on the exported spec; per preset
= ``quantize`` calibrated on the whole training split (as ``bench_qat.py``), then the golden
model (``lstmfpga.quant.golden``, what the hardware computes bit for bit) on the test split.
RTL (digits) = the q16 model's accelerator (``lstmfpga.simulation.simulate_model``: P = 8
lanes, S = 1, max_seq_len 8) run in Verilator on all 450 test images, every output compared
with the golden model (bit-exact or not) and the argmax accuracy of the RTL's outputs; cycles
per sequence are the measured first-input to last-output cycles. Synthesis (digits) = the same
design written with ``$readmemh`` memories, ``lstmfpga.synth.synthesize`` on ECP5-25k (Yosys,
nextpnr seed 1, 150 MHz constraint): LUTs, FFs, DSPs, BRAMs and the routed Fmax.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from results_md import benchmark_parser, command_line, publish_run  # benchmarks/results_md.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import gru_digits  # noqa: E402  (examples/gru_digits.py)
import gru_sunspots  # noqa: E402  (examples/gru_sunspots.py)
import sunspots  # noqa: E402  (examples/sunspots.py)

from lstmfpga import digits  # noqa: E402

SECTION = "gru"
PRESETS = ("q16", "w8a16", "w8a8", "w4a8")
LANES, RTL_PRESET, SEED, FREQ_MHZ = 8, "q16", 1, 150
NOT_RUN = "not run here"


SOURCES = ("export", "quant", "hw", "sim", "lstmfpga")


def _provenance() -> str:
    """The commit measured, and the files of the package with uncommitted edits (the working
    tree is shared with work in flight)."""

    def git(*argv):
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", *SOURCES).splitlines()]
    edits = f"uncommitted edits in {', '.join(dirty)}" if dirty else "no uncommitted edits"
    return f"at commit {commit} ({edits} of {', '.join(SOURCES)})"


def _warm_up() -> None:
    """Train every model once at a tiny size, so that no row's training time includes loading
    the data or torch's first optimizer step (about 2 s)."""
    for train in (digits.train_digits_model, gru_digits.train_gru_digits, sunspots.train,
                  gru_sunspots.train):  # fmt: skip
        train(seed=0, hidden=2, epochs=1)


def _timed(train, **kwargs):
    started = time.perf_counter()
    model, data = train(**kwargs)
    return model, data, time.perf_counter() - started


def _digits(model, data):
    spec, float_acc, results = gru_digits.evaluate(model, data, PRESETS, len(data[0]))
    qmodels = {r.preset: r.qmodel for r in results}
    return spec, float_acc, {r.preset: r.accuracy for r in results}, qmodels


def _sunspots(model, data):
    return (*gru_sunspots.evaluate(model, data, PRESETS), None)


def _rows(trainers, evaluate, hidden: int, epochs: int, hardware=None) -> list[dict]:
    """One row per ``(cell, train)`` in ``trainers``: train, then ``evaluate(model, data)``
    -> ``(spec, float figure, {preset: fixed figure}, {preset: qmodel} or None)``, then
    ``hardware(spec, qmodel, data)`` -> ``{"rtl": text, "synthesis": dict}`` (None: neither)."""
    rows = []
    for cell, train in trainers:
        model, data, seconds = _timed(train, seed=0, hidden=hidden, epochs=epochs)
        spec, float_figure, fixed, qmodels = evaluate(model, data)
        row = {
            "cell": cell,
            "parameters": spec.parameter_count,
            "seconds": seconds,
            "float": float_figure,
            "fixed": fixed,
            "rtl": NOT_RUN,
            "synthesis": None,
        }
        if hardware is not None:
            row |= hardware(spec, qmodels[RTL_PRESET], data)
        rows.append(row)
        print(rows[-1], file=sys.stderr)
    return rows


def _hardware(spec, qmodel, data) -> dict:
    """The digits model's accelerator (P = LANES, q16) in Verilator on the test split, and its
    synthesis on ECP5-25k."""
    from lstmfpga.hw.verilog import generate
    from lstmfpga.simulation import simulate_model
    from lstmfpga.synth import synthesize

    _, _, x_test, y_test = data
    with tempfile.TemporaryDirectory(prefix="bench_gru_") as tmp:
        report, _ = simulate_model(
            qmodel,
            x_test,
            simulator="verilator",
            lanes=LANES,
            max_seq_len=x_test.shape[1],
            spec=spec,
            labels=y_test,
            build_dir=Path(tmp) / "build",
        )
        exact = "bit-exact" if report["bit_exact"] else "MISMATCH"
        rtl = (
            f"{100 * report['accuracy']['rtl']:.2f} ({RTL_PRESET}, {exact}, "
            f"{report['cycles']['per_sequence']:.0f} cycles/seq)"
        )
        design = Path(tmp) / "rtl"
        generate(qmodel, design, lanes=LANES, max_seq_len=x_test.shape[1], memories="readmemh")
        started = time.perf_counter()
        synthesis = synthesize(design, "ecp5", device="25k", freq_mhz=FREQ_MHZ, seed=SEED)
        synthesis["bench_seconds"] = time.perf_counter() - started
    return {"rtl": rtl, "synthesis": synthesis}


def _digits_rows(hidden: int, epochs: int, hardware: bool) -> list[dict]:
    trainers = (("LSTM", digits.train_digits_model), ("GRU", gru_digits.train_gru_digits))
    return _rows(trainers, _digits, hidden, epochs, _hardware if hardware else None)


def _sunspots_rows(hidden: int, epochs: int) -> list[dict]:
    return _rows((("LSTM", sunspots.train), ("GRU", gru_sunspots.train)), _sunspots, hidden, epochs)


def _synthesis_table(rows: list[dict]) -> list[str]:
    done = [r for r in rows if r["synthesis"] is not None]
    if not done:
        return []
    return [
        (
            f"**digits on ECP5-25k** ({RTL_PRESET}, P = {LANES}, S = 1, max_seq_len 8; Yosys + "
            f"nextpnr seed {SEED}, {FREQ_MHZ} MHz constraint):"
        ),
        "",
        "| cell | LUTs | FFs | DSPs | BRAMs | Fmax (MHz) | flow time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['cell']} | {s['luts']} | {s['ffs']} | {s['dsps']} | {s['brams']} | "
            f"{s['fmax_mhz']:.1f} | {s['bench_seconds']:.0f} |"
            for r in done
            for s in (r["synthesis"],)
        ),
        "",
    ]


def _table(title: str, rows: list[dict]) -> list[str]:
    return [
        title,
        "",
        "| cell | parameters | training (s) | float | " + " | ".join(PRESETS) + " | RTL |",
        "|---|---:|---:|---:|" + "---:|" * len(PRESETS) + "---|",
        *(
            f"| {r['cell']} | {r['parameters']} | {r['seconds']:.1f} | {r['float']:.2f} | "
            + " | ".join(f"{r['fixed'][p]:.2f}" for p in PRESETS)
            + f" | {r['rtl']} |"
            for r in rows
        ),
        "",
    ]


def main(argv=None) -> int:
    args = benchmark_parser(__doc__, "hidden 8, 1-5 epochs").parse_args(argv)
    torch.set_num_threads(1)  # reproducible, and faster than 2 threads on a busy machine
    provenance = _provenance()  # the hardware code is imported from this tree later
    _warm_up()
    if args.smoke:
        digit_rows = _digits_rows(hidden=8, epochs=1, hardware=False)
        sun_rows = _sunspots_rows(hidden=8, epochs=5)
        budget = "smoke size: hidden 8, digits 1 epoch, sunspots 5 epochs; no RTL, no synthesis"
    else:
        digit_rows, sun_rows = _digits_rows(32, 30, hardware=True), _sunspots_rows(16, 150)
        budget = (
            "digits: hidden 32, 30 epochs, batch 64; sunspots: hidden 16, 150 full-batch epochs"
        )
    command = command_line("bench_gru.py", args)
    lines = [
        (
            f"Command: `{command}` ({platform.machine()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}, one thread; {budget}; seed 0, Adam lr 1e-2, the same "
            "budget for both cells). Float = float64 reference; per preset = post-training "
            "quantization calibrated on the training split, then the bit-exact golden model. "
            f"Training time is wall time on a shared machine. Measured {provenance}."
        ),
        "",
        *_table("**digits** (test accuracy in %, 450 images):", digit_rows),
        *_table("**sunspots** (next-year RMSE in sunspot numbers, 72 test windows):", sun_rows),
        *_synthesis_table(digit_rows),
        (
            f"RTL (digits): the {RTL_PRESET} model's accelerator (P = {LANES}) in Verilator on "
            "the 450 test images, every output compared with the golden model; accuracy of the "
            "RTL's outputs in %, cycles per sequence measured. Sunspots: not run here (LSTM: "
            "`examples/sunspots.py`; GRU: `lstmfpga generate`/`simulate` take its qmodels, "
            "checked by the GRU hardware tests, tests/hw/test_gru*.py, tests/sim/test_gru_*.py)."
        ),
    ]
    body = "## GRU beside the LSTM: accuracy per preset, RTL and synthesis\n\n" + "\n".join(lines)
    return publish_run(args, SECTION, body)


if __name__ == "__main__":
    sys.exit(main())
