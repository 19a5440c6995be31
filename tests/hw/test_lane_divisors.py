# amaranth: UnusedElaboratable=no
"""Every lane count P from 1 to ``4*hidden_size`` gives bit-exact hardware with an exact
cycle model (Amaranth simulator).

A group of P rows of the unit-major gate matrix may end inside a hidden unit (P neither a
divisor nor a multiple of 4), the last gate group of a step may be padded (P not dividing
4H: its padding rows carry zero weights and bias and are dropped with the last unit), and
projection/head items may have more lanes than rows or columns. For every H in 1..12 (and
20, 33) every divisor P of 4H, and for H in 1, 2, 3, 5 every P in 1..4H: one small model (I
of 1 or 3, T = 2; the variant rotates over no head / head ``last`` / head ``all`` /
projection with ``h_n, c_n`` / bidirectional with a head / two layers, the two-pass ones for
H <= 12 only) runs two sequences back to back with random valid/ready stalls on both
streams. Every output equals ``quant.golden.run``, and for every sequence the cycles from
its ``tlast`` accepted to its first result valid equal ``CycleModel.compute`` (stalls on
``s_axis`` only delay loading, those on ``m_axis`` only the drain).
"""

import sys

import numpy as np
import pytest
from amaranth.sim import Simulator
from helpers.streams import Harness

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant import golden
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel

HIDDEN = (*range(1, 13), 20, 33)
VARIANTS = {
    # name: (model kwargs for hidden size H, accelerator options)
    "plain": (lambda H: {}, {}),
    "head-last": (lambda H: dict(head="last", head_out=3), {}),
    "head-all": (lambda H: dict(head="all", head_out=5, head_bias=False), {}),
    "proj-states": (lambda H: dict(proj_size=max(1, H // 3)) if H > 1 else {},
                    dict(with_states=True)),
    "bidir-head": (lambda H: dict(bidirectional=True, head="last", head_out=2, bias=False), {}),
    "2layer-states": (lambda H: dict(num_layers=2), dict(with_states=True)),
}  # fmt: skip
EVERY_P = (1, 2, 3, 5)  # hidden sizes tested with every lane count, not only the divisors
T, BATCH = 2, 2


@pytest.fixture(autouse=True)
def deep_expressions():
    """Amaranth's Python simulator compiles the ``Mux`` of a whole weight beat (P weights and
    P biases: thousands of bits at P = 132) into one Python expression, which CPython's
    compiler refuses under the default recursion limit; its limit follows this one."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    yield
    sys.setrecursionlimit(limit)


def divisors(n: int) -> list[int]:
    return [p for p in range(1, n + 1) if n % p == 0]


def lane_counts(H: int) -> list[int]:
    return list(range(1, 4 * H + 1)) if H in EVERY_P else divisors(4 * H)


def grid():
    for H in HIDDEN:
        # (the two-pass variants only where a pass is short, to keep the grid fast)
        names = [name for name in VARIANTS if H <= 12 or not name.startswith(("bidir", "2layer"))]
        for index, P in enumerate(lane_counts(H)):
            variant = names[(H + index) % len(names)]
            yield pytest.param(H, P, variant, id=f"H{H}-P{P}-{variant}")


def simulate(acc, x_codes, *, seed: int, in_stall: float, out_stall: float):
    """Stream ``x_codes`` (``(B, T, I)``) through ``acc`` back to back with random gaps on
    both streams. Returns the outputs of each sequence and, per sequence, the cycles from its
    ``tlast`` transfer to its first result valid, both counted (whether or not ``m_axis`` was
    ready; ``SequenceCycles.compute`` of the flows without output stalls)."""
    harness = Harness(acc)
    geom = StreamGeometry.of(acc.model, with_states=acc.with_states)
    n_out = geom.output_length(x_codes.shape[1])
    rng_in, rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    last_in, first_valid, outputs = [], [], []

    async def producer(ctx):
        for seq in x_codes:
            elems = seq.reshape(-1)
            for index, value in enumerate(elems.tolist()):
                while rng_in.random() < in_stall:
                    ctx.set(acc.s_axis_tvalid, 0)
                    await ctx.tick()
                ctx.set(acc.s_axis_tdata, value)
                ctx.set(acc.s_axis_tlast, index == elems.size - 1)
                ctx.set(acc.s_axis_tvalid, 1)
                (when,) = await ctx.tick().sample(harness.cycle).until(acc.s_axis_tready)
            last_in.append(int(when))
            ctx.set(acc.s_axis_tvalid, 0)

    async def consumer(ctx):
        for _ in range(len(x_codes)):
            ctx.set(acc.m_axis_tready, 0)
            (when,) = await ctx.tick().sample(harness.cycle).until(acc.m_axis_tvalid)
            first_valid.append(int(when))
            got = []
            for index in range(n_out):
                gap = 0
                while rng_out.random() < out_stall:
                    gap += 1
                if gap:
                    ctx.set(acc.m_axis_tready, 0)
                    await ctx.tick().repeat(gap)
                ctx.set(acc.m_axis_tready, 1)
                data, last = (
                    await ctx.tick()
                    .sample(acc.m_axis_tdata, acc.m_axis_tlast)
                    .until(acc.m_axis_tvalid)
                )
                got.append(int(data))
                assert bool(last) == (index == n_out - 1), f"tlast at element {index}"
            outputs.append(np.array(got, dtype=np.int64))
        ctx.set(acc.m_axis_tready, 0)
        for _ in range(8):  # nothing more comes out
            *_, valid = await ctx.tick().sample(acc.m_axis_tvalid)  # (clk, rst, valid)
            assert not valid, "a result beyond the expected ones"
        assert not ctx.get(acc.error)

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return outputs, [v - i + 1 for v, i in zip(first_valid, last_in, strict=True)]


def assert_bit_and_cycle_exact(acc, x, seed: int) -> None:
    """Stream the floats ``x`` (quantized) through ``acc`` with random stalls on both streams
    (:func:`simulate`): every output equals ``quant.golden.run``'s and every sequence's
    compute cycles equal ``CycleModel.compute``."""
    q = acc.model
    x_codes = golden.quantize_inputs(q, x)
    expected = golden.run(q, x_codes)
    geom = StreamGeometry.of(q, with_states=acc.with_states)
    outputs, compute = simulate(acc, x_codes, seed=seed, in_stall=0.3, out_stall=0.4)
    for b, got in enumerate(outputs):
        want = pack_outputs(geom, expected.prediction, b, expected.h_n, expected.c_n)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (
            f"seed {seed}, sequence {b}: {bad.size} mismatches at {bad[:5]}: "
            f"rtl {got[bad[:5]]} golden {want[bad[:5]]}"
        )
    B, T, _ = x_codes.shape
    assert compute == [CycleModel.of(acc).compute(T)] * B, f"seed {seed}"


@pytest.mark.parametrize(("H", "P", "variant"), list(grid()))
def test_every_lane_count_is_bit_exact_with_an_exact_cycle_model(H, P, variant):
    model_kwargs, options = VARIANTS[variant]
    seed = 1000 * H + P
    I = 1 + 2 * (seed % 2)
    _, q = random_qmodel(seed, input_size=I, hidden_size=H, **model_kwargs(H))
    # One buffer: each sequence's compute is then CycleModel.compute (tests/hw/test_overlap.py
    # checks two buffers, back to back, against CycleModel.batch).
    acc = LSTMAccelerator(q, lanes=P, max_seq_len=T, buffers=1, **options)
    assert_bit_and_cycle_exact(acc, random_inputs(seed, BATCH, T, I), seed)


def test_the_grid_covers_odd_and_padded_lanes_with_every_variant():
    params = [p.values for p in grid()]
    odd = {variant for H, P, variant in params if 4 % P and P % 4}
    padded = {variant for H, P, variant in params if (4 * H) % P}
    assert odd == padded == set(VARIANTS)
    assert len(params) == sum(len(lane_counts(H)) for H in HIDDEN)
    assert {P for H, P, _ in params if H == 5} == set(range(1, 21))


@pytest.mark.parametrize(("H", "lanes"), [(1, 5), (3, 13), (6, 25), (2, 0), (2, -1)])
def test_lanes_outside_one_to_the_gate_rows_are_refused(H, lanes):
    _, q = random_qmodel(3, input_size=2, hidden_size=H)
    with pytest.raises(
        ValueError, match=rf"^lanes must be in 1\.\.{4 * H} \(4\*hidden_size\), not {lanes}$"
    ):
        LSTMAccelerator(q, lanes=lanes)
