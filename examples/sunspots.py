"""Per-timestep regressor on a real series: yearly sunspot numbers (shipped by statsmodels).

An ``nn.LSTM(1, 16)`` reads windows of 24 years of (scaled) sunspot numbers and a
``nn.Linear(16, 1)`` head on *every* timestep predicts the next year's value. The same flow as
``lstmfpga demo``: train (fixed seed, a few seconds), export, quantize (``q16``), generate
Verilog, simulate the test windows in Verilator bit-exact against the golden model, and print
the report (RMSE of float, fixed point and RTL against the true series).

Run: ``python examples/sunspots.py [--out DIR] [--sim verilator|icarus|amaranth]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import statsmodels.api as sm
import torch
from torch import nn

from lstmfpga.digits import SequenceModel

WINDOW = 24
SCALE = 100.0  # sunspot numbers / 100: inputs of order 1


class SunspotLSTM(SequenceModel):
    """LSTM over the window and a Linear head on every step: a per-timestep regressor."""

    def __init__(self, hidden: int = 16):
        super().__init__("lstm", 1, hidden, 1, head_mode="all")


def load_windows():
    """``(x_train, y_train, x_test, y_test)``: windows ``(n, WINDOW, 1)`` of scaled yearly
    sunspot numbers, targets the next year at every step; the last 25% of years are test."""
    series = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy() / SCALE
    starts = np.arange(len(series) - WINDOW)
    x = np.stack([series[s : s + WINDOW] for s in starts])[..., None]
    y = np.stack([series[s + 1 : s + WINDOW + 1] for s in starts])[..., None]
    split = int(0.75 * len(starts))
    return x[:split], y[:split], x[split:], y[split:]


def train(seed: int = 0, hidden: int = 16, epochs: int = 150, model_class=SunspotLSTM):
    """Train ``model_class(hidden)`` (full-batch Adam, lr 1e-2, one CPU thread); returns
    ``(model, (x_train, y_train, x_test, y_test))`` with the model in eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        x_train, y_train, x_test, y_test = load_windows()
        xt = torch.tensor(x_train, dtype=torch.float32)
        yt = torch.tensor(y_train, dtype=torch.float32)
        model = model_class(hidden)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(epochs):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(xt), yt).backward()
            optimizer.step()
        return model.eval(), (x_train, y_train, x_test, y_test)
    finally:
        torch.set_num_threads(threads)


def rmse(prediction, target) -> float:
    return float(np.sqrt(np.mean((np.asarray(prediction) - np.asarray(target)) ** 2)) * SCALE)


def main(argv=None) -> int:
    from lstmfpga.pipeline import run_flow

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/sunspots"))
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus", "amaranth"))
    parser.add_argument("--lanes", type=int, default=8)
    args = parser.parse_args(argv)

    model, (x_train, _, x_test, y_test) = train()
    result = run_flow(
        model,
        head="all",
        calib=x_train,
        inputs=x_test,
        out=args.out,
        lanes=args.lanes,
        simulator=args.sim,
        synthesize=False,
    )
    print(f"next-year RMSE (sunspot number) on {len(x_test)} test windows:")
    for name in ("float", "fixed", "rtl"):
        print(f"  {name:5s} {rmse(result.predictions[name], y_test):.2f}")
    print(f"bit-exact: {result.report['bit_exact']}; report: {result.paths['report']}")
    return 0 if result.report["bit_exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
