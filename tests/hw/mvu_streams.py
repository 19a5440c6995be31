"""Stream drivers and small models for the weight memory and matrix-vector unit tests.

Producers and consumers act per beat (``ctx.tick().until(...)``), inserting random idle
cycles from a seeded ``numpy`` generator; a free-running cycle counter in :class:`Harness`
time-stamps every transfer.
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator
from streams import Harness, expect_quiet, put_all  # noqa: F401 (re-exported)

from lstmfpga.export.spec import HeadSpec, LayerWeights, ModelSpec
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig


def simulate(harness, *benches, timeout: int = 100_000) -> None:
    """Run ``benches`` (async testbenches) on ``harness`` with a 10 ns clock; fail instead of
    hanging when they have not finished after ``timeout`` cycles (a lost beat)."""

    async def watchdog(ctx):
        await ctx.delay(timeout * 1e-8)
        raise AssertionError(f"simulation did not finish within {timeout} cycles")

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.add_testbench(watchdog, background=True)
    sim.run()


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
    """A ``ModelSpec`` with random weights, and calibration inputs ``(2, 5, input_size)``."""
    rng = np.random.default_rng(seed)
    H, D = hidden_size, 2 if bidirectional else 1
    H_out = proj_size or hidden_size
    layers = []
    for index in range(num_layers):
        in_l = input_size if index == 0 else D * H_out
        directions = []
        for _ in range(D):
            directions.append(
                LayerWeights(
                    rng.normal(0, 0.5, (4 * H, in_l)),
                    rng.normal(0, 0.5, (4 * H, H_out)),
                    rng.normal(0, 0.2, 4 * H) if bias else None,
                    rng.normal(0, 0.2, 4 * H) if bias else None,
                    rng.normal(0, 0.5, (H_out, H)) if proj_size else None,
                )
            )
        layers.append(tuple(directions))
    head_spec = None
    if head:
        head_spec = HeadSpec(
            rng.normal(0, 0.5, (head, D * H_out)), rng.normal(0, 0.2, head), "last"
        )
    spec = ModelSpec(input_size, H, num_layers, bidirectional, proj_size, bias, tuple(layers),
                     head_spec)  # fmt: skip
    return spec, rng.normal(0, 1.0, (2, 5, input_size))


def make_model(preset="w8a16", **kwargs):
    """A calibrated :class:`QuantizedModel` from :func:`make_spec` (and its inputs)."""
    spec, x = make_spec(**kwargs)
    return quantize(spec, x, QuantConfig.preset(preset)), x
