# amaranth: UnusedElaboratable=no
"""The write-back writes what ``write_back_reference`` says (Amaranth simulator).

A sequence's results come in schedule order: every gates item's units in beats of a random
1 .. V units (never across items), every projection/head item's rows, with random idle
cycles, after a few ``c0`` writes (the LOAD phase). Every buffer's writes (address, value)
equal the reference in order, the position reaches ``done`` exactly after the last item and
never before, and nothing else is written.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator
from helpers.streams import Harness

from lstmfpga.hw.layout import WeightLayout
from lstmfpga.hw.schedule import Schedule
from lstmfpga.hw.writeback import WriteBack, write_back_reference
from lstmfpga.testing import random_qmodel

CASES = {
    # name: (model kwargs, V, with_states, T)
    "uni-V1-states": (dict(input_size=2, hidden_size=3), 1, True, 3),
    "2layer-bidir-V2-head-all": (
        dict(input_size=2, hidden_size=4, num_layers=2, bidirectional=True, head="all",
             head_out=2), 2, False, 2,
    ),
    "proj-V3-head-last-states": (
        dict(input_size=2, hidden_size=5, proj_size=2, head="last", head_out=3), 3, True, 3,
    ),
    "3layer-bidir-proj-V=H-states": (
        dict(input_size=1, hidden_size=3, num_layers=3, bidirectional=True, proj_size=2), 3,
        True, 2,
    ),
}  # fmt: skip


def run(name, idle):
    kwargs, V, with_states, T = CASES[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, **kwargs)
    schedule = Schedule.of(WeightLayout.of(q, 4, 1))
    row_bits = 20
    dut = WriteBack(q, schedule, max_seq_len=T, cells=V, row_bits=row_bits,
                    with_states=with_states)  # fmt: skip
    rng = np.random.default_rng(seed)
    f = q.formats
    items = list(schedule.items(T))
    gates = [1 for p, _, sub, _ in items if schedule.passes[p].kind == "lstm" and sub == 0]
    n_units, n_rows = len(gates) * q.hidden_size, len(items) - len(gates)

    def codes(bits, n):  # (rows are requantized to their target: they fit it)
        return rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), n).tolist()

    units = list(zip(codes(f["cell"].bits, n_units), codes(f["hidden"].bits, n_units),
                     strict=True))  # fmt: skip
    rows_per = {"proj": q.output_size, "head": q.head.out_features if q.head else 0}
    rows = codes(min(f["hidden"].bits, f["head_out"].bits), n_rows * max(rows_per.values()))
    c0 = [(a, int(rng.integers(-100, 100))) for a in range(3)]
    want = write_back_reference(q, schedule, T, units, rows, cells=V, with_states=with_states)
    want["cmem"] = c0 + want["cmem"]
    harness = Harness(dut)
    got = {name: [] for name in dut.buffers}
    state = {"ended": False, "done_early": False}

    async def producer(ctx):
        ctx.set(dut.T, T)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        for addr, value in c0:
            ctx.set(dut.c0.addr, addr)
            ctx.set(dut.c0.data, value)
            ctx.set(dut.c0.en, 1)
            await ctx.tick()
        ctx.set(dut.c0.en, 0)
        u_iter, r_iter = iter(units), iter(rows)
        for p, _, sub, _ in items:
            ps = schedule.passes[p]
            kind = "head" if ps.kind == "head" else ("gates", "proj")[sub]
            if kind == "gates":
                left = q.hidden_size
                while left:
                    count = int(rng.integers(1, min(V, left) + 1))
                    chunk = [next(u_iter) for _ in range(count)]
                    chunk += [(0, 0)] * (V - count)
                    await _gap(ctx, rng, idle)
                    assert not ctx.get(dut.done), "done before the last item"
                    payload = {"c": [c for c, _ in chunk], "m": [m for _, m in chunk],
                               "count": count}  # fmt: skip
                    ctx.set(dut.units.payload, payload)
                    ctx.set(dut.units.valid, 1)
                    await ctx.tick().until(dut.units.ready)
                    ctx.set(dut.units.valid, 0)
                    left -= count
            else:
                for _ in range(rows_per[kind]):
                    await _gap(ctx, rng, idle)
                    assert not ctx.get(dut.done), "done before the last item"
                    ctx.set(dut.rows.payload, next(r_iter))
                    ctx.set(dut.rows.valid, 1)
                    await ctx.tick().until(dut.rows.ready)
                    ctx.set(dut.rows.valid, 0)
        await ctx.tick()
        assert ctx.get(dut.done), "not done after the last item"
        state["ended"] = True

    async def monitor(ctx):
        ports = [(name, member) for name in dut.buffers for member in dut.ports(name)]
        while not state["ended"]:
            values = await ctx.tick().sample(
                *[x for _, member in ports for x in (member.en, member.addr, member.data)]
            )
            values = values[2:]  # (clk, rst, ...)
            for k, (name, _) in enumerate(ports):
                en, addr, data = values[3 * k : 3 * k + 3]
                if en:
                    got[name].append((int(addr), int(data)))

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return got, want


async def _gap(ctx, rng, idle):
    while rng.random() < idle:
        await ctx.tick()


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("idle", [0.0, 0.4])
def test_write_back_writes_what_the_reference_says(name, idle):
    got, want = run(name, idle)
    for buffer in sorted(set(got) | set(want)):
        assert got.get(buffer, []) == want.get(buffer, []), f"{buffer} (seed of {name})"


def test_bad_schedule_is_refused():
    _, q = random_qmodel(1, input_size=2, hidden_size=2)
    with pytest.raises(TypeError, match=r"^schedule must be a Schedule, not None$"):
        WriteBack(q, None, max_seq_len=2, cells=1, row_bits=8, with_states=False)
    assert WriteBack.latency == 0
