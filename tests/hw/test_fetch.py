# amaranth: UnusedElaboratable=no
"""The fetch stage does what ``fetch_reference`` says (Amaranth simulator).

The weight beats of a whole sequence's schedule (random weights, so that they can be traced)
come in with random idle cycles; the data buffers hold random codes; the write-back position
walks the schedule at random, never past an item the fetch stage has not passed on, and
counts the results of its item written (``wb_written``, in index order, once the item's
beats are out); the MVU side is first always ready, then slow. Every beat leaves with its
weights and the vector elements the reference reads, in order; no beat is taken before the
write-back position has reached what it depends on, or has written the results it reads of
the item it is at; the recurrent and projection beats do go early; the last beats of
consecutive row groups are taken at least ``emitter_cycles`` apart; nothing more comes out.
"""

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from helpers.streams import Harness, expect_quiet, get_all, put_all, simulate

from lstmfpga.hw.fetch import VectorFetch
from lstmfpga.hw.fetch_reference import fetch_reference
from lstmfpga.hw.layout import WeightLayout
from lstmfpga.hw.mvu import MatrixVectorUnit
from lstmfpga.hw.regroup import emitter_cycles
from lstmfpga.hw.schedule import Schedule
from lstmfpga.hw.weight_beat import column_fields
from lstmfpga.testing import random_qmodel

CASES = {
    # name: (model kwargs, P, S, V, initial_state, T)
    "uni-P4-S1": (dict(input_size=3, hidden_size=3), 4, 1, 1, False, 3),
    "2layer-bidir-proj-head-all-P6-S2-h0": (
        dict(input_size=3, hidden_size=3, num_layers=2, bidirectional=True, proj_size=2,
             head="all", head_out=2), 6, 2, 1, True, 2,
    ),
    "head-last-P5-S3-V2": (dict(input_size=4, hidden_size=5, head="last"), 5, 3, 2, False, 3),
    "3layer-P12-S1-V3-paced": (dict(input_size=1, hidden_size=3, num_layers=3), 12, 1, 3, True, 2),
    "P16-S4-V1-paced": (dict(input_size=2, hidden_size=4, head="last", head_out=5), 16, 4, 1,
                        False, 2),
}  # fmt: skip


def build(name):
    kwargs, P, S, V, initial_state, T = CASES[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, **kwargs)
    layout = WeightLayout.of(q, P, S)
    schedule = Schedule.of(layout)
    mvu = MatrixVectorUnit.of(layout, max(q.formats["x"].bits, q.formats["hidden"].bits))
    mvu._MustUse__silence = True  # only for its input layout
    dut = VectorFetch(q, layout, schedule, max_seq_len=T, initial_state=initial_state, cells=V,
                      out_layout=mvu.in_layout)  # fmt: skip
    rng = np.random.default_rng(seed)
    contents = {name: rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), depth).tolist()
                for name, (bits, depth) in dut.buffers.items()}  # fmt: skip
    want = fetch_reference(q, layout, schedule, T, contents, initial_state=initial_state)
    return q, layout, schedule, dut, contents, want, seed, T


def beats_of(layout, schedule, want, rng):
    """The weight beats of ``want``'s items, with random weights."""
    P, S, wbits = layout.lanes, layout.simd, layout.weight_bits
    sel = 0 if S == 1 else [0] * S
    beats = []
    for (p, _, sub), g, col, _, _, _ in want:
        mx = layout.matrices[schedule.passes[p].matrices[sub]]
        last = col == (mx.chunks - 1) * S
        beats.append({
            "weights": rng.integers(-(2 ** (wbits - 1)), 2 ** (wbits - 1), P * S).tolist(),
            "bias": [0] * P, "col": col, "group": g, "shift_sel": sel, "target_sel": 0,
            "first": col == 0, "last": last, "end": last and g == mx.groups - 1,
            **column_fields(layout, mx, col),
        })  # fmt: skip
    return beats


def rtl_fetch(name, *, idle, stall):
    q, layout, schedule, dut, contents, want, seed, T = build(name)
    rng_beats, rng_in, rng_out, rng_wb = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    beats = beats_of(layout, schedule, want, rng_beats)

    def buffers(m):
        for buf, (bits, depth) in dut.buffers.items():
            mem = Memory(shape=signed(bits), depth=max(2, depth), init=contents[buf])
            m.submodules[f"mem_{buf}"] = mem
            for member in dut.ports(buf):
                wiring.connect(m, member, mem.read_port())

    harness = Harness(dut, buffers)
    positions = [*sorted({w[0] for w in want}), (len(schedule.passes), 0, 0)]
    per_item = {pos: sum(1 for w in want if w[0] == pos) for pos in positions}
    results = {pos: _results(q, layout, schedule, pos) for pos in positions[:-1]}
    results[positions[-1]] = 1  # past the last item: nothing written
    seen = {"out": [], "takes": [], "wb": {}}

    async def producer(ctx):
        ctx.set(dut.T, T)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        ctx.set(dut.enable, 1)
        seen["takes"] = await put_all(ctx, dut.i, beats, rng=rng_in, idle=idle,
                                      cycle=harness.cycle)  # fmt: skip

    async def consumer(ctx):
        for _ in beats:  # one at a time: the write-back walk watches the count
            seen["out"] += await get_all(ctx, dut.o, 1, rng=rng_out, stall=stall,
                                         cycle=harness.cycle)  # fmt: skip
        await expect_quiet(ctx, dut.o, 8)

    async def write_back(ctx):  # the write-back position: never past an item not yet out
        index, written = 0, 0
        while index < len(positions) - 1:
            pos = positions[index]
            out_so_far = sum(1 for w, _ in zip(want, seen["out"], strict=False) if w[0] <= pos)
            done = out_so_far >= sum(per_item[x] for x in positions[: index + 1])
            if done and written < results[pos] and rng_wb.random() < 0.5:
                written += 1  # the item's results, in index order (never all: that is the end)
            if done and written == results[pos] and rng_wb.random() < 0.5:
                index, written = index + 1, 0
            p, s, sub = positions[index]
            ctx.set(dut.wb_p, p)
            ctx.set(dut.wb_s, s)
            ctx.set(dut.wb_sub, sub)
            shown = min(written, results[positions[index]] - 1)
            ctx.set(dut.wb_written, shown)
            *_, cycle = await ctx.tick().sample(harness.cycle)
            seen["wb"][int(cycle)] = (positions[index], shown)

    simulate(harness, producer, consumer, write_back)
    return q, layout, schedule, beats, want, seen


def _results(q, layout, schedule, pos) -> int:
    """Results the item at ``pos`` writes: units of a gates item, rows of the others."""
    p, _, sub = pos
    mx = layout.matrices[schedule.passes[p].matrices[sub]]
    return q.hidden_size if mx.kind == "gates" else mx.rows


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(("idle", "stall"), [(0.0, 0.0), (0.3, 0.5)], ids=["fast", "slow"])
def test_fetch_passes_on_what_the_reference_says(name, idle, stall):
    _, layout, schedule, beats, want, seen = rtl_fetch(name, idle=idle, stall=stall)
    S = layout.simd
    assert len(seen["out"]) == len(want)
    for k, ((payload, _), beat, ref) in enumerate(zip(seen["out"], beats, want, strict=True)):
        vector = payload["vector"] if S > 1 else [payload["vector"]]
        assert vector == ref[3], f"beat {k} {ref[:3]}: vector {vector} != {ref[3]}"
        assert payload["weights"] == beat["weights"] and payload["last"] == beat["last"]
    # no beat is taken before the write-back position reaches what it depends on, or has
    # written the results it reads of the item it is at; some do go early
    went_early = 0
    for k, (take, ref) in enumerate(zip(seen["takes"], want, strict=True)):
        needs, early = ref[4], ref[5]
        if needs is not None:
            wb, written = seen["wb"].get(take, ((0, 0, 0), 0))
            if early is not None and wb == early[0]:
                went_early += 1
                assert written >= early[1], f"beat {k} taken at {take}: {written} < {early}"
            else:
                assert wb[: len(needs)] >= needs, f"beat {k} taken at {take}: wb {wb} < {needs}"
    assert went_early > 0 or not any(ref[5] for ref in want)
    # the last beats of consecutive row groups are paced for the regrouper
    P, V = layout.lanes, CASES[name][3]
    previous = None
    for take, beat, ref in zip(seen["takes"], beats, want, strict=True):
        if not beat["last"]:
            continue
        p, _, sub = ref[0]
        mx = layout.matrices[schedule.passes[p].matrices[sub]]
        rows = mx.last_group_rows if ref[1] == mx.groups - 1 else P
        if previous is not None:
            assert take - previous[0] >= previous[1], f"group ending at {take} not paced"
        previous = (take, emitter_cycles(mx.kind, P, rows, V))


def test_the_latency_is_the_buffer_read_and_its_register():
    assert VectorFetch.latency == 2
    _, q = random_qmodel(1, input_size=2, hidden_size=2)
    layout = WeightLayout.of(q, 4, 1)
    with pytest.raises(TypeError, match=r"^schedule must be a Schedule, not 3$"):
        VectorFetch(q, layout, 3, max_seq_len=2, initial_state=False, cells=1, out_layout=None)
