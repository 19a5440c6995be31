"""Per-timestep regressor on yearly sunspot numbers (shipped by statsmodels), as a GRU.

The GRU twin of ``examples/sunspots.py``: the same windows (``load_windows``: 24 years of
scaled sunspot numbers, the next year's value as the target at every step, the last 25% of
years for testing), the same geometry (hidden 16, ``nn.Linear(16, 1)`` on every step) and the
same training (full-batch Adam, lr 1e-2, 150 epochs, seed 0, one CPU thread) with ``nn.GRU``
in place of ``nn.LSTM``. The model is exported, quantized per preset (calibrated on the
training windows) and run in the bit-exact golden model; it prints the RMSE of float and
fixed point against the true series. It stops at the golden model (``lstmfpga generate`` and
``simulate`` take GRU qmodels too: no RTL figure here; ``benchmarks/bench_gru.py`` has the
digits GRU's, in Verilator).

Run: ``python examples/gru_sunspots.py [--presets q16 w8a16 w8a8 w4a8]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sunspots import rmse
from sunspots import train as sunspots_train

from lstmfpga.digits import SequenceModel

PRESETS = ("q16", "w8a16", "w8a8", "w4a8")


class SunspotGRU(SequenceModel):
    """GRU over the window and a Linear head on every step: a per-timestep regressor."""

    def __init__(self, hidden: int = 16):
        super().__init__("gru", 1, hidden, 1, head_mode="all")


def train(seed: int = 0, hidden: int = 16, epochs: int = 150):
    """Train :class:`SunspotGRU` exactly as ``examples/sunspots.py`` trains the LSTM."""
    return sunspots_train(seed, hidden, epochs, model_class=SunspotGRU)


def evaluate(model: nn.Module, data, presets=PRESETS):
    """Export ``model`` (head on every step), quantize per preset on the training windows,
    run the golden model on the test windows. Returns ``(spec, float_rmse, {preset: rmse})``
    (RMSE in sunspot numbers against the true next-year series)."""
    from lstmfpga.export.reference import forward
    from lstmfpga.export.torch_loader import from_module
    from lstmfpga.quant import golden
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import QuantConfig

    x_train, _, x_test, y_test = data
    spec = from_module(model, head="all")
    fixed = {}
    for preset in presets:
        qmodel = quantize(spec, x_train, QuantConfig.preset(preset))
        fixed[preset] = rmse(golden.predict(qmodel, x_test)[0], y_test)
    return spec, rmse(forward(spec, x_test).head, y_test), fixed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    args = parser.parse_args(argv)

    model, data = train()
    spec, float_rmse, fixed = evaluate(model, data, args.presets)
    print(spec.describe())
    print(f"next-year RMSE (sunspot number) on {len(data[2])} test windows:")
    print(f"  float {float_rmse:.2f}")
    for preset, value in fixed.items():
        print(f"  {preset:5s} {value:.2f}")
    print("  rtl   not run here (lstmfpga generate/simulate take GRU qmodels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
