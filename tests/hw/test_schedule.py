# amaranth: UnusedElaboratable=no
"""ScheduleCursor (a component) walks exactly ``Schedule.items(T)``, whatever the gaps
between its ``advance`` pulses, and ``restart`` brings it back to the first item."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from helpers.lstm_models import make_model

from lstmfpga.hw.layout import WeightLayout
from lstmfpga.hw.schedule import KIND_GATES, KIND_HEAD, KIND_PROJ, Schedule, ScheduleCursor

KINDS = {"gates": KIND_GATES, "proj": KIND_PROJ, "head": KIND_HEAD}
MODELS = {
    "plain": dict(input_size=2, hidden_size=2, head=0),
    "bidir-2layers-proj-head": dict(input_size=2, hidden_size=3, num_layers=2,
                                    bidirectional=True, proj_size=2, head=2),
}  # fmt: skip


def golden_walk(layout, schedule, T):
    """The outputs the cursor must show at each item, from the Python model."""
    out = []
    for index, s, sub, t in schedule.items(T):
        ps = schedule.passes[index]
        mx = layout.matrices[ps.matrices[sub]]
        steps = 1 if ps.single_step else T
        t_prev = T if ps.single_step else (t + 1 if ps.reverse else t - 1)
        out.append({"p": index, "s": s, "sub": sub, "t": t, "matrix": ps.matrices[sub],
                    "kind": KINDS[mx.kind], "layer": max(ps.layer, 0),
                    "direction": ps.direction, "first_step": int(s == 0),
                    "last_step": int(s == steps - 1),
                    "last_sub": int(sub == len(ps.matrices) - 1),
                    "t_prev": t_prev})  # fmt: skip
    return out


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("T", [1, 3])
def test_cursor_walks_the_schedule_with_random_gaps(name, T):
    model, _ = make_model(**MODELS[name], seed=2)
    layout = WeightLayout.of(model, 4)
    schedule = Schedule.of(layout)
    dut = ScheduleCursor(schedule, max_seq_len=4)
    want = golden_walk(layout, schedule, T)
    rng = np.random.default_rng(T)
    seen = []

    async def bench(ctx):
        ctx.set(dut.T, T)
        for _ in range(2):  # the second walk after a restart
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            walk = []
            while not ctx.get(dut.done):
                item = {key: ctx.get(getattr(dut, key)) for key in want[0]}
                walk.append(item)
                for _ in range(int(rng.integers(0, 3))):  # idle cycles: no move
                    await ctx.tick()
                    assert ctx.get(dut.p) == item["p"] and ctx.get(dut.sub) == item["sub"]
                ctx.set(dut.advance, 1)
                await ctx.tick()
                ctx.set(dut.advance, 0)
            ctx.set(dut.advance, 1)  # advancing when done changes nothing
            await ctx.tick()
            ctx.set(dut.advance, 0)
            assert ctx.get(dut.done) and ctx.get(dut.p) == len(schedule.passes)
            seen.append(walk)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # t_prev of the first forward step is -1: compare it modulo the port width
    for walk in seen:
        for got, expected in zip(walk, want, strict=True):
            width = len(dut.t_prev)
            assert {**got, "t_prev": got["t_prev"] % (1 << width)} == {
                **expected,
                "t_prev": expected["t_prev"] % (1 << width),
            }
        assert len(walk) == len(want)


def test_cursor_ports_and_bad_arguments():
    model, _ = make_model(input_size=2, hidden_size=2, head=0)
    schedule = Schedule.of(WeightLayout.of(model, 4))
    dut = ScheduleCursor(schedule, 5)
    assert {"T", "advance", "restart", "done", "matrix", "t", "t_prev"} <= set(
        dut.signature.members
    )
    assert (dut.max_seq_len, dut.latency, dut.schedule) == (5, 0, schedule)
    with pytest.raises(TypeError, match=r"^schedule must be a Schedule, not 3$"):
        ScheduleCursor(3, 5)
    with pytest.raises(ValueError, match=r"^max_seq_len must be a positive integer, not 0$"):
        ScheduleCursor(schedule, 0)
