# amaranth: UnusedElaboratable=no
"""The gate regrouper passes on exactly what ``regroup_reference`` says (Amaranth simulator).

A schedule of items (gates, projection, head) streams its results as row groups of ``P``
rows, the padding rows of each item's last group filled with junk (they must be dropped),
with random idle cycles on ``i``; the unit and row consumers are first always ready, then
slow (random ``ready`` gaps). Units and rows equal the reference, in order, ``item_end``
fires once per item, and nothing more comes out. Lane counts cover divisors and multiples
of 4, groups that end inside a unit (``P = 3, 6``) and padded gate groups (``P = 5, 7``),
with ``V`` cells (units per unit beat) of 1, 2, 3 (not dividing a group's units) and ``H``.
"""

import numpy as np
import pytest
from amaranth.hdl import Signal
from amaranth.sim import Simulator
from helpers.streams import Harness, expect_quiet, get_all, put_all

from lstmfpga.hw.regroup import GateRegrouper, emitter_cycles, regroup_reference
from lstmfpga.hw.schedule import KIND_GATES, KIND_HEAD, KIND_PROJ

BITS = 10

CASES = {
    # name: (P, H, proj rows, head rows, item kinds, V)
    "P4-H3": (4, 3, 0, 0, [KIND_GATES] * 3, 1),
    "P1-H2-head": (1, 2, 0, 3, [KIND_GATES, KIND_GATES, KIND_HEAD], 1),
    "P3-H3-proj": (3, 3, 2, 0, [KIND_GATES, KIND_PROJ] * 3, 1),
    "P6-H5-proj-head": (6, 5, 4, 7, [KIND_GATES, KIND_PROJ] * 2 + [KIND_HEAD] * 2, 1),
    "P5-H3-padded": (5, 3, 0, 2, [KIND_GATES] * 3 + [KIND_HEAD], 1),
    "P7-H4-padded-proj": (7, 4, 3, 0, [KIND_GATES, KIND_PROJ] * 2, 1),
    "P8-H2-all-rows": (8, 2, 0, 5, [KIND_GATES, KIND_HEAD, KIND_GATES, KIND_HEAD], 1),
    "P8-H3-V2": (8, 3, 0, 2, [KIND_GATES, KIND_GATES, KIND_HEAD], 2),
    "P12-H5-V3-padded": (12, 5, 2, 0, [KIND_GATES, KIND_PROJ] * 2, 3),
    "P6-H5-V2-straddling": (6, 5, 0, 0, [KIND_GATES] * 3, 2),
    "P16-H4-V4=H": (16, 4, 0, 3, [KIND_GATES, KIND_HEAD, KIND_GATES], 4),
    "P20-H6-V6=H-padded": (20, 6, 0, 0, [KIND_GATES] * 2, 6),
    "P2-H3-V3-more-cells-than-units": (2, 3, 0, 0, [KIND_GATES] * 2, 3),
}


def make_items(case, rng):
    P, H, proj_rows, head_rows, kinds, _ = case
    lengths = {KIND_GATES: 4 * H, KIND_PROJ: proj_rows, KIND_HEAD: head_rows}
    items, beats = [], []
    for kind in kinds:
        rows = rng.integers(-(2 ** (BITS - 1)), 2 ** (BITS - 1), lengths[kind])
        items.append((kind, rows.tolist()))
        groups = -(-rows.size // P)
        junk = rng.integers(-(2 ** (BITS - 1)), 2 ** (BITS - 1), groups * P - rows.size)
        padded = np.concatenate([rows, junk])
        beats += padded.reshape(groups, P).tolist()
    return items, beats


def rtl_regroup(case, items, beats, *, seed, idle, stall):
    P, H, proj_rows, head_rows, kinds, V = case
    dut = GateRegrouper(lanes=P, hidden_size=H, proj_rows=proj_rows, head_rows=head_rows,
                        bits=BITS, cells=V)  # fmt: skip
    item = Signal(range(len(kinds) + 1))

    def schedule(m):  # the schedule cursor: the next item's kind after each item_end
        with m.If(dut.item_end):
            m.d.sync += item.eq(item + 1)
        with m.Switch(item):
            for index, kind in enumerate(kinds):
                with m.Case(index):
                    m.d.comb += dut.kind.eq(kind)
        m.d.comb += dut.enable.eq(1)

    harness = Harness(dut, schedule)
    rng_in, rng_unit, rng_row = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    want = regroup_reference(items, hidden_size=H, proj_rows=proj_rows, head_rows=head_rows,
                             lanes=P, cells=V)  # fmt: skip
    n_units = sum(1 for kind, *_ in want if kind == "unit")
    got = {"unit": [], "row": [], "ends": 0}
    finished = []

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, rng=rng_in, idle=idle)

    async def units(ctx):
        for u in await get_all(ctx, dut.unit, n_units, rng=rng_unit, stall=stall):
            assert 1 <= u["count"] <= V
            got["unit"].append(("unit", u["index"], tuple(u["rows"][: 4 * u["count"]])))
        await expect_quiet(ctx, dut.unit, 8)
        finished.append("unit")

    async def rows(ctx):
        for r in await get_all(ctx, dut.row, len(want) - n_units, rng=rng_row, stall=stall):
            got["row"].append(("row", r["index"], r["data"]))
        await expect_quiet(ctx, dut.row, 8)
        finished.append("row")

    async def monitor(ctx):
        while len(finished) < 2:
            *_, end = await ctx.tick().sample(dut.item_end)
            got["ends"] += int(end)

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    for bench in (producer, units, rows, monitor):
        sim.add_testbench(bench)
    sim.run()
    return got, want


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(("idle", "stall"), [(0.0, 0.0), (0.3, 0.5)], ids=["fast", "slow"])
def test_regrouper_passes_on_what_the_reference_says(name, idle, stall):
    case = CASES[name]
    seed = sum(map(ord, name))
    items, beats = make_items(case, np.random.default_rng(seed))
    got, want = rtl_regroup(case, items, beats, seed=seed, idle=idle, stall=stall)
    assert got["unit"] == [w for w in want if w[0] == "unit"], f"seed {seed}"
    assert got["row"] == [w for w in want if w[0] == "row"], f"seed {seed}"
    assert got["ends"] == len(items)


@pytest.mark.parametrize(
    ("kind", "lanes", "rows", "cycles"),
    [("gates", 8, 8, 2), ("gates", 6, 6, 2), ("gates", 7, 2, 1), ("gates", 1, 1, 1),
     ("proj", 8, 3, 3), ("head", 4, 4, 4)],
)  # fmt: skip
def test_emitter_cycles(kind, lanes, rows, cycles):
    assert emitter_cycles(kind, lanes, rows) == cycles


@pytest.mark.parametrize(
    ("lanes", "rows", "cells", "cycles"),
    [(32, 32, 2, 4), (32, 32, 3, 3), (32, 32, 8, 1), (32, 32, 9, 1), (6, 6, 2, 1),
     (7, 2, 3, 1), (12, 12, 2, 2)],
)  # fmt: skip
def test_units_leave_cells_at_a_time(lanes, rows, cells, cycles):
    # ceil(ceil(rows / 4) / cells) for gates; rows still leave one by one
    assert emitter_cycles("gates", lanes, rows, cells) == cycles
    assert emitter_cycles("proj", lanes, rows, cells) == rows


def test_the_reference_groups_the_units_of_one_row_group():
    rows = list(range(4 * 5))  # H = 5, P = 12: groups complete units 0-2 and 3-4
    want = [("unit", 0, tuple(rows[0:8])), ("unit", 2, tuple(rows[8:12])),
            ("unit", 3, tuple(rows[12:20]))]  # fmt: skip
    assert regroup_reference([(KIND_GATES, rows)], hidden_size=5, lanes=12, cells=2) == want


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"^kind must be 'gates', 'proj' or 'head', not 'x'$"):
        emitter_cycles("x", 4, 4)
    with pytest.raises(ValueError, match=r"^lanes must be in 1\.\.8 \(4\*hidden_size\), not 9$"):
        GateRegrouper(lanes=9, hidden_size=2, bits=8)
    with pytest.raises(ValueError, match=r"^hidden_size must be an integer >= 1, not 0$"):
        GateRegrouper(lanes=1, hidden_size=0, bits=8)
    with pytest.raises(ValueError, match=r"^cells must be in 1\.\.2 \(hidden_size\), not 3$"):
        GateRegrouper(lanes=1, hidden_size=2, bits=8, cells=3)
    with pytest.raises(ValueError, match=r"^cells must be an integer >= 1, not 0$"):
        emitter_cycles("gates", 4, 4, 0)
