"""Stream drivers and small models for the weight memory and matrix-vector unit tests.

Producers and consumers act per beat (``ctx.tick().until(...)``), inserting random idle
cycles from a seeded ``numpy`` generator; a free-running cycle counter in :class:`Harness`
time-stamps every transfer.
"""

from __future__ import annotations

import numpy as np
from helpers.streams import Harness, expect_quiet, put_all, simulate  # noqa: F401 (re-exported)

from lstmfpga.export.spec import ModelSpec
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.testing import random_inputs, random_spec


async def get_n(ctx, stream, count: int, *, rng=None, stall=0.0, cycle=None) -> list:
    """Receive ``count`` beats; ``ready`` is low in each cycle with probability ``stall``
    (drawn every cycle, independent of ``valid``, so a pending beat really is held back).

    Returns the payloads, or ``(payload, cycle)`` pairs when ``cycle`` is given.
    """
    received = []
    probes = (stream.payload,) if cycle is None else (stream.payload, cycle)
    if rng is None or stall <= 0.0:
        ctx.set(stream.ready, 1)
        for _ in range(count):
            values = await ctx.tick().sample(*probes).until(stream.valid)
            received.append(values[0] if cycle is None else tuple(values))
    else:
        while len(received) < count:
            ready = int(rng.random() >= stall)
            ctx.set(stream.ready, ready)
            _, _, valid, *values = await ctx.tick().sample(stream.valid, *probes)
            if valid and ready:
                received.append(values[0] if cycle is None else tuple(values))
    ctx.set(stream.ready, 0)
    return received


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
