"""The GRU beside the LSTM on the same real tasks with the same training budget: parameters,
float accuracy and fixed-point accuracy per preset (post-training quantization).

    python benchmarks/bench_gru.py            # rewrites the "gru" section of RESULTS.md
    python benchmarks/bench_gru.py --smoke    # hidden 8, 1-5 epochs, prints only (CI)

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
"""

from __future__ import annotations

import platform
import sys
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
RTL = "supported (not re-run here)"


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
    return spec, float_acc, {r.preset: r.accuracy for r in results}


def _sunspots(model, data):
    return gru_sunspots.evaluate(model, data, PRESETS)


def _rows(trainers, evaluate, hidden: int, epochs: int) -> list[dict]:
    """One row per ``(cell, train)`` in ``trainers``: train, then ``evaluate(model, data)``
    -> ``(spec, float figure, {preset: fixed figure})``."""
    rows = []
    for cell, train in trainers:
        model, data, seconds = _timed(train, seed=0, hidden=hidden, epochs=epochs)
        spec, float_figure, fixed = evaluate(model, data)
        rows.append(
            {
                "cell": cell,
                "parameters": spec.parameter_count,
                "seconds": seconds,
                "float": float_figure,
                "fixed": fixed,
                "rtl": RTL,
            }
        )
        print(rows[-1], file=sys.stderr)
    return rows


def _digits_rows(hidden: int, epochs: int) -> list[dict]:
    trainers = (("LSTM", digits.train_digits_model), ("GRU", gru_digits.train_gru_digits))
    return _rows(trainers, _digits, hidden, epochs)


def _sunspots_rows(hidden: int, epochs: int) -> list[dict]:
    return _rows((("LSTM", sunspots.train), ("GRU", gru_sunspots.train)), _sunspots, hidden, epochs)


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
    _warm_up()
    if args.smoke:
        digit_rows, sun_rows = _digits_rows(hidden=8, epochs=1), _sunspots_rows(hidden=8, epochs=5)
        budget = "smoke size: hidden 8, digits 1 epoch, sunspots 5 epochs"
    else:
        digit_rows, sun_rows = _digits_rows(32, 30), _sunspots_rows(16, 150)
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
            "Training time is wall time on a shared machine."
        ),
        "",
        *_table("**digits** (test accuracy in %, 450 images):", digit_rows),
        *_table("**sunspots** (next-year RMSE in sunspot numbers, 72 test windows):", sun_rows),
        (
            "RTL: generated and simulated bit-exact against the golden model elsewhere, not "
            "here (LSTM: `lstmfpga demo` for digits, `examples/sunspots.py` for sunspots, the "
            "sim tests; GRU: `lstmfpga generate`/`simulate` take GRU qmodels since issue 15, "
            "checked by the GRU hardware tests, tests/hw/test_gru*.py)."
        ),
    ]
    body = "## GRU beside the LSTM: accuracy per preset\n\n" + "\n".join(lines)
    return publish_run(args, SECTION, body)


if __name__ == "__main__":
    sys.exit(main())
