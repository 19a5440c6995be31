"""Accuracy per quantization preset, after post-training quantization and after bit-exact
fine-tuning (lstmfpga.quant.qat), on two real data sets that packages ship.

    python benchmarks/bench_qat.py            # rewrites the "qat" section of RESULTS.md
    python benchmarks/bench_qat.py --smoke    # one data set, 1 epoch, prints only (CI)

Data sets (nothing is downloaded):

* **digits** (scikit-learn ``load_digits``): each 8x8 image is 8 timesteps of 8 features;
  the demo's ``DigitsLSTM`` (``LSTM(8 -> 32)`` + ``Linear(32 -> 10)``), ``lstmfpga.digits``,
  seed 0; 1,347 training / 450 test images.
* **breast cancer** (scikit-learn ``load_breast_cancer``, 569 tumours, 2 classes): the 10 cell
  measurements are 10 timesteps of 3 features (mean, standard error, worst), standardized on
  the training split; ``LSTM(3 -> 16)`` + ``Linear(16 -> 2)`` trained here with Adam, seed 0;
  stratified 75/25 split.

For each preset: **PTQ** = ``quantize`` calibrated on the training inputs, then the golden
model on the test inputs; **QAT** = ``finetune`` on the training split minus a 20 % validation
split (held formats, the epoch with the best validation accuracy kept), then the golden model
on the test inputs. The golden model is what the hardware computes bit for bit.
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np
import torch
from results_md import benchmark_parser, command_line, publish_run  # benchmarks/results_md.py
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from lstmfpga import digits
from lstmfpga.export import reference
from lstmfpga.export.torch_loader import from_module
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.qat import finetune

SECTION = "qat"
PTQ_PRESETS = ("q16", "w8a16", "w8a8", "w4a8")
QAT_PRESETS = ("w8a8", "w4a8")


def _cancer(seed: int = 0, epochs: int = 80):
    data = load_breast_cancer()
    x = data.data.reshape(-1, 3, 10).transpose(0, 2, 1)  # (n, 10 measurements, 3 statistics)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    torch.manual_seed(seed)
    model = digits.SequenceModel("lstm", 3, 16, 2)  # 3 statistics -> benign/malignant
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.as_tensor(x_tr, dtype=torch.float32), torch.as_tensor(y_tr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss_fn(model(xt[batch]), yt[batch]).backward()
            optimizer.step()
    model.eval()
    return from_module(model), (x_tr, y_tr, x_te, y_te)


def _digits(seed: int = 0):
    model, data = digits.train_digits_model(seed)
    return from_module(model), data


def _accuracy(prediction, labels) -> float:
    return 100.0 * float(np.mean(np.argmax(prediction, axis=-1) == labels))


def _measure(name, spec, data, epochs: int, lr: float) -> list[dict]:
    x_tr, y_tr, x_te, y_te = data
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x_tr))
    n_val = len(x_tr) // 5
    val, fit = order[:n_val], order[n_val:]
    float_acc = _accuracy(reference.forward(spec, x_te).prediction, y_te)
    rows = []
    for preset in PTQ_PRESETS:
        config = QuantConfig.preset(preset)
        ptq = _accuracy(golden.predict(quantize(spec, x_tr, config), x_te)[0], y_te)
        row = {"data": name, "preset": preset, "float": float_acc, "ptq": ptq, "qat": None}
        if preset in QAT_PRESETS:
            started = time.perf_counter()
            result = finetune(
                spec,
                config,
                x_tr[fit],
                y_tr[fit],
                epochs=epochs,
                lr=lr,
                val=(x_tr[val], y_tr[val]),
                seed=0,
            )
            row["qat"] = _accuracy(golden.predict(result.qmodel, x_te)[0], y_te)
            row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(row, file=sys.stderr)
    return rows


def _table_row(r: dict) -> str:
    """One row of the section's table: accuracies in %, drops in points, "–" where not run."""

    def cell(v):
        return "–" if v is None else f"{v:.2f}"

    def drop(v, ref):
        return "–" if v is None else f"{ref - v:+.2f}"

    return (
        f"| {r['data']} | {r['preset']} | {r['float']:.2f} | {r['ptq']:.2f} | "
        f"{drop(r['ptq'], r['float'])} | {cell(r['qat'])} | {drop(r['qat'], r['float'])} "
        f"| {cell(r.get('seconds'))} |"
    )


def main(argv=None) -> int:
    args = benchmark_parser(__doc__, "one data set, 1 epoch").parse_args(argv)
    torch.set_num_threads(1)  # reproducible, and faster than 2 threads on a busy machine
    epochs = 1 if args.smoke else 20
    sets = (
        [("breast cancer", _cancer)]
        if args.smoke
        else [("digits", _digits), ("breast cancer", _cancer)]
    )
    rows = []
    for name, build in sets:
        spec, data = build()
        rows += _measure(name, spec, data, epochs, lr=2e-3)
    command = command_line("bench_qat.py", args)

    lines = [
        (
            f"Command: `{command}` ({platform.machine()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}; {epochs} fine-tuning epochs, lr 2e-3, batch 64, formats "
            "held, best validation epoch kept). Test accuracy in %; drop = float - quantized "
            "(points; negative: better than float)."
        ),
        "",
        "| data | preset | float | PTQ | PTQ drop | QAT | QAT drop | QAT time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *map(_table_row, rows),
    ]
    body = "## Accuracy per preset: post-training vs bit-exact fine-tuning\n\n" + "\n".join(lines)
    return publish_run(args, SECTION, body)


if __name__ == "__main__":
    sys.exit(main())
