"""Small calibrated LSTM models for the hardware block tests (weight memory, MVU, schedule,
layout): :func:`lstmfpga.testing.random_spec` geometries with a last-step head."""

from __future__ import annotations

import numpy as np

from lstmfpga.export.spec import ModelSpec
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.testing import random_inputs, random_spec


def array(const, n: int) -> list[int]:
    """The elements of an ``ArrayLayout`` constant as a list of ints."""
    return [int(const[p]) for p in range(n)]


def make_spec(
    input_size=3,
    hidden_size=4,
    num_layers=1,
    bidirectional=False,
    proj_size=0,
    bias=True,
    head=3,
    seed=0,
) -> tuple[ModelSpec, np.ndarray]:
    """:func:`lstmfpga.testing.random_spec` with a ``head``-output Linear head on the last
    step (none when ``head`` is 0), and calibration inputs ``(2, 5, input_size)``."""
    spec = random_spec(
        seed, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
        bidirectional=bidirectional, proj_size=proj_size, bias=bias,
        head="last" if head else None, head_out=head or 3,
    )  # fmt: skip
    return spec, random_inputs(seed, 2, 5, input_size)


def make_model(preset="w8a16", **kwargs):
    """A calibrated :class:`QuantizedModel` from :func:`make_spec` (and its inputs)."""
    spec, x = make_spec(**kwargs)
    return quantize(spec, x, QuantConfig.preset(preset)), x
