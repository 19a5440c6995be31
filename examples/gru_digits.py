"""Digits classifier as a GRU: train an ``nn.GRU`` on scikit-learn's digits, quantize it, compare.

The GRU twin of ``examples/digits.py``: the same data (``lstmfpga.digits.load_data``, each 8x8
image is 8 timesteps of 8 features, seed 0, stratified 75/25 split), the same geometry
(hidden 32, ``nn.Linear(32, 10)`` on the last step) and the same training budget (Adam, lr
1e-2, cosine schedule, 30 epochs, batch 64, one CPU thread, a few seconds) with ``nn.GRU`` in
place of ``nn.LSTM``. The model is exported, quantized per preset (calibrated on 256
training images) and run in the bit-exact golden model (``lstmfpga.quant.golden``), which
prints float and fixed-point test accuracy. It stops at the golden model: ``lstmfpga generate`` and
``simulate`` take the saved GRU qmodels like an LSTM's (no RTL figure here;
``benchmarks/bench_gru.py`` runs the q16 model's accelerator in Verilator on every test image
and synthesizes it for ECP5-25k: ``benchmarks/RESULTS.md``).

Run ``python examples/gru_digits.py [--presets q16 w8a16 w8a8 w4a8] [--out DIR]``; with
``--out`` the spec and one qmodel per preset are saved there (directories ``spec``,
``<preset>.qmodel``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from lstmfpga.digits import HIDDEN, accuracy, train_digits_model

PRESETS = ("q16", "w8a16", "w8a8", "w4a8")
CALIBRATION = 256  # training images the quantizer calibrates on, as in examples/digits.py


def train_gru_digits(seed: int = 0, hidden: int = HIDDEN, epochs: int = 30, batch_size: int = 64):
    """Train :class:`~lstmfpga.digits.DigitsGRU` exactly as the LSTM is trained
    (``lstmfpga.digits.train_digits_model(..., cell="gru")``); returns ``(model, (x_train,
    y_train, x_test, y_test))`` with the model in eval mode."""
    return train_digits_model(seed, hidden, epochs, batch_size, cell="gru")


@dataclass
class PresetResult:
    """One preset's quantized model and its golden-model run on the test images."""

    preset: str
    qmodel: object  # lstmfpga.quant.model.QuantizedModel
    logits: np.ndarray  # dequantized head output, (n_test, 10)
    head_codes: np.ndarray  # the golden model's integer head codes, (n_test, 10)
    accuracy: float
    saturation: dict


def evaluate(model: nn.Module, data, presets=PRESETS, calibration: int = CALIBRATION):
    """Export ``model``, quantize it per preset, run the golden model on the test split.

    Returns ``(spec, float_accuracy, [PresetResult, ...])``; ``float_accuracy`` is the
    float64 reference's (``lstmfpga.export.reference.forward``) on the exported spec.
    """
    from lstmfpga.export.reference import forward
    from lstmfpga.export.torch_loader import from_module
    from lstmfpga.quant import golden
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import QuantConfig

    x_train, _, x_test, y_test = data
    spec = from_module(model, head="last")
    float_accuracy = accuracy(forward(spec, x_test).head, y_test)
    results = []
    for preset in presets:
        qmodel = quantize(spec, x_train[:calibration], QuantConfig.preset(preset))
        logits, result = golden.predict(qmodel, x_test)
        results.append(
            PresetResult(
                preset,
                qmodel,
                logits,
                result.head,
                accuracy(logits, y_test),
                dict(result.saturation),
            )
        )
    return spec, float_accuracy, results


def run(epochs: int = 30, presets=PRESETS, out: Path | None = None):
    """Train, export, quantize and run the golden model, printing the figures; with ``out``
    save ``spec`` and ``<preset>.qmodel`` there. Returns :func:`evaluate`'s result."""
    model, data = train_gru_digits(epochs=epochs)
    spec, float_accuracy, results = evaluate(model, data, presets)
    print(spec.describe())
    print(f"float64 reference: {float_accuracy:.2f}% on the test set")
    for r in results:
        print(f"{r.preset} golden model: {r.accuracy:.2f}%, saturation {r.saturation}")
    print("RTL: not run here (lstmfpga generate/simulate take the GRU qmodels: --out DIR)")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        spec.save(out / "spec")
        for r in results:
            r.qmodel.save(out / f"{r.preset}.qmodel")
        print(f"saved the spec and {len(results)} qmodels in {out}")
    return spec, float_accuracy, results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--out", type=Path, help="save spec and <preset>.qmodel here")
    args = parser.parse_args(argv)
    run(args.epochs, args.presets, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
