# amaranth: UnusedElaboratable=no
"""The cell bank computes what ``cell_bank_reference`` says (Amaranth simulator).

Beats of 1 .. V hidden units (random gate pre-activations over the whole input range, random
previous cell states in ``cmem``, some beats with ``zero_c``) go in with random idle cycles;
the consumer is first always ready, then slow. Every unit's ``c`` and ``m`` equal the
golden cell update of its looked-up gates, in order, and nothing more comes out; the
``sat_c``/``sat_m`` pulses of each transfer are the golden model's saturation counts per unit.
"""

import numpy as np
import pytest
from amaranth.hdl import signed
from helpers.streams import Harness, expect_quiet, get_all, put_all, serve_memory, simulate

from lstmfpga.hw.cellbank import CellBank, cell_bank_reference
from lstmfpga.testing import random_qmodel

# "-sat": gate pre-activations and previous cell states at the ends of their formats, so
# that c and m saturate (the random ones almost never do)
CASES = {"V1": (1, "q16"), "V2-w8a8": (2, "w8a8"), "V3": (3, "q16"), "V5-w4a8": (5, "w4a8"),
         "V2-w8a8-sat": (2, "w8a8"), "V3-q16-sat": (3, "q16")}  # fmt: skip
C_DEPTH = 12


def run(name, idle, stall):
    V, preset = CASES[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, preset=preset, input_size=2, hidden_size=6)
    in_fmt, cell = q.tables["sigmoid"].in_fmt, q.formats["cell"]
    dut = CellBank(q, cells=V, in_bits=in_fmt.bits, c_depth=C_DEPTH)
    rng = np.random.default_rng(seed)
    cmem = rng.integers(-(2 ** (cell.bits - 1)), 2 ** (cell.bits - 1), C_DEPTH).tolist()
    if name.endswith("-sat"):
        cmem = rng.choice([cell.min_code, cell.max_code], C_DEPTH).tolist()
    beats = []
    for _ in range(12):
        count = int(rng.integers(1, V + 1))
        rows = rng.integers(in_fmt.min_code, in_fmt.max_code + 1, 4 * V).tolist()
        if name.endswith("-sat"):
            rows = rng.choice([in_fmt.min_code, in_fmt.max_code], 4 * V).tolist()
        c_addr = int(rng.integers(0, C_DEPTH - count + 1))
        beats.append((rows, count, c_addr, bool(rng.random() < 0.25)))

    payloads = [{"rows": rows, "count": count, "c_addr": c_addr, "zero_c": zero}
                for rows, count, c_addr, zero in beats]  # fmt: skip
    rng_in, rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    got, pulses, done = [], [], []

    def memory(m):
        serve_memory(m, dut, "c_r", signed(cell.bits), cmem, ports=V, name="cmem")

    async def producer(ctx):
        await put_all(ctx, dut.i, payloads, rng=rng_in, idle=idle)

    async def consumer(ctx):
        for out in await get_all(ctx, dut.o, len(beats), rng=rng_out, stall=stall):
            got.append([(out["c"][k], out["m"][k]) for k in range(out["count"])])
        await expect_quiet(ctx, dut.o, 2 * dut.latency)
        done.append(True)

    async def saturation(ctx):  # the sat_c / sat_m pulses, per transfer on o
        while not done:
            _, _, valid, ready, sat_c, sat_m = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.sat_c, dut.sat_m
            )
            if valid and ready:
                pulses.append((sat_c, sat_m))
            else:
                assert (sat_c, sat_m) == (0, 0), "saturation pulse without a transfer"

    simulate(Harness(dut, memory), producer, consumer, saturation)
    bits = [[(c >> k & 1, m >> k & 1) for k in range(V)] for c, m in pulses]
    for beat, flags in zip(got, bits, strict=True):  # the pulses' unit bits past count are 0
        assert all(flag == (0, 0) for flag in flags[len(beat) :])
    got = [
        [(*unit, *flags[k]) for k, unit in enumerate(beat)]
        for beat, flags in zip(got, bits, strict=True)
    ]
    return got, cell_bank_reference(q, beats, cmem, saturation=True)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(("idle", "stall"), [(0.0, 0.0), (0.3, 0.5)], ids=["fast", "slow"])
def test_cell_bank_computes_what_the_reference_says(name, idle, stall):
    got, want = run(name, idle, stall)
    assert got == want


def test_latency_is_the_lookup_and_the_cell():
    from lstmfpga.hw.activation import lookup_latency
    from lstmfpga.hw.cell import cell_latency

    _, q = random_qmodel(1, input_size=2, hidden_size=3)
    bank = CellBank(q, cells=2, in_bits=16, c_depth=4)
    t = q.tables
    assert bank.latency == lookup_latency((t["sigmoid"], t["tanh_gate"])) + cell_latency(
        t["tanh_cell"]
    )
