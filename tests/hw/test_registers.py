# amaranth: UnusedElaboratable=no
"""The AXI4-Lite register block answers as docs/registers.md says, under any handshake timing.

Each AXI channel is driven or collected by its own testbench (valid held until taken, ready
random), so writes and reads overlap and back-to-back transactions are exercised.
"""

from pathlib import Path

import numpy as np
import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from lstmfpga.hw.register_map import (
    ADDR_WIDTH,
    MAP_VERSION,
    REGISTERS,
    SATURATION_ROLES,
    design_id,
    field_mask,
    register,
    render_markdown,
)
from lstmfpga.hw.registers import OKAY, SLVERR, RegisterBlock
from lstmfpga.hw.saturation import saturation_layout

DOCS = Path(__file__).resolve().parents[2] / "docs" / "registers.md"
ID = 0xC0FFEE42
OFF = {reg.name: reg.offset for reg in REGISTERS}
#: The values given when a sequence-mode block is built (reset ``None`` in the table).
BUILT = {"ID": ID, "MODE": 0}
UNMAPPED = [a for a in range(0, 1 << ADDR_WIDTH, 4) if a not in OFF.values()]


class Bus:
    """AXI4-Lite manager testbenches for one :class:`RegisterBlock`; ``rate`` is the
    probability that a valid is raised / a ready is high in a cycle (1: no stalls)."""

    def __init__(self, dut, rng, rate=1.0):
        self.dut, self.rng, self.rate = dut, rng, rate
        self.cycle = 0

    def sig(self, name):
        return getattr(self.dut, f"s_axil_{name}")

    def go(self):
        return self.rate >= 1 or self.rng.random() < self.rate

    async def send(self, ctx, channel, items):
        """Drive ``channel`` (``aw``, ``w``, ``ar``) with ``items`` (dicts of its signals):
        each valid waits a random number of cycles, then stays high until taken."""
        valid, ready = self.sig(f"{channel}valid"), self.sig(f"{channel}ready")
        for item in items:
            while not self.go():
                await ctx.tick()
            for name, value in item.items():
                ctx.set(self.sig(name), value)
            ctx.set(valid, 1)
            while True:
                taken = ctx.get(ready)
                await ctx.tick()
                if taken:
                    break
            ctx.set(valid, 0)

    async def receive(self, ctx, channel, fields, n, out):
        """Take ``n`` responses from ``channel`` (``b``, ``r``) with a random ready; append
        ``(cycle taken, {field: value})``."""
        valid, ready = self.sig(f"{channel}valid"), self.sig(f"{channel}ready")
        while len(out) < n:
            on = self.go()
            ctx.set(ready, on)
            if on and ctx.get(valid):
                out.append((self.cycle, {f: ctx.get(self.sig(f)) for f in fields}))
            await ctx.tick()
        ctx.set(ready, 0)

    async def clock(self, ctx):
        while True:
            await ctx.tick()
            self.cycle += 1


async def wait(ctx, cycles):
    for _ in range(cycles):
        await ctx.tick()


def run(dut, *testbenches, deadline=20_000):
    """Simulate until every foreground testbench returns (at most ``deadline`` cycles)."""

    async def watchdog(ctx):
        await wait(ctx, deadline)
        raise AssertionError(f"testbenches still running after {deadline} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(watchdog, background=True)
    for tb in testbenches:
        sim.add_testbench(tb, background=getattr(tb, "background", False))
    sim.run()


def transact(dut, writes=(), reads=(), *, rate=1.0, seed=0, side=None, write_at=0, read_at=0):
    """Issue ``writes`` (``(addr, data, strb)``) from cycle ``write_at`` and ``reads``
    (addresses) from cycle ``read_at``, concurrently; returns ``(write responses, read
    responses)`` as lists of ``(cycle taken, fields)``. ``side(ctx, bus)`` runs beside them
    (drives the block's status inputs)."""
    bus = Bus(dut, np.random.default_rng(seed), rate)
    b_out, r_out = [], []
    done = []

    async def writer_aw(ctx):
        await wait(ctx, write_at)
        await bus.send(ctx, "aw", [{"awaddr": a} for a, _, _ in writes])

    async def writer_w(ctx):
        await wait(ctx, write_at)
        await bus.send(ctx, "w", [{"wdata": d, "wstrb": s} for _, d, s in writes])

    async def reader_ar(ctx):
        await wait(ctx, read_at)
        await bus.send(ctx, "ar", [{"araddr": a} for a in reads])

    async def collect_b(ctx):
        await bus.receive(ctx, "b", ["bresp"], len(writes), b_out)
        done.append("b")

    async def collect_r(ctx):
        await bus.receive(ctx, "r", ["rresp", "rdata"], len(reads), r_out)
        done.append("r")

    async def clock(ctx):
        await bus.clock(ctx)

    clock.background = True
    tbs = [writer_aw, writer_w, reader_ar, collect_b, collect_r, clock]
    if side is not None:

        async def side_tb(ctx):
            await side(ctx, bus)

        side_tb.background = True
        tbs.append(side_tb)
    run(dut, *tbs)
    assert sorted(done) == ["b", "r"], "responses missing at the deadline"
    return b_out, r_out


def read(dut, *addrs, **kw):
    _, r = transact(dut, reads=list(addrs), **kw)
    return [(f["rresp"], f["rdata"]) for _, f in r]


# -- the table and its documentation ---------------------------------------------------------
def test_docs_registers_md_is_the_rendering_of_the_table():
    assert DOCS.read_text() == render_markdown()


def test_table_offsets_are_unique_and_fields_fit_their_register():
    offsets = [reg.offset for reg in REGISTERS]
    assert len(set(offsets)) == len(offsets)
    for reg in REGISTERS:
        bits = [b for f in reg.fields for b in range(f.bit, f.bit + f.width)]
        assert len(set(bits)) == len(bits) and all(0 <= b < 32 for b in bits), reg.name


def test_table_lookups_name_the_problem():
    assert field_mask("ERRORS", "stream") == 1 and register("ID").offset == 0
    with pytest.raises(KeyError, match="register must be one of ID, VERSION"):
        register("SATURATION")
    with pytest.raises(KeyError, match="register STATUS has no field 'ready'"):
        field_mask("STATUS", "ready")


def test_design_id_is_a_32_bit_hash_that_ignores_the_file_list():
    info = {"top": "t", "lanes": 2, "files": ["t.v"]}
    assert design_id(info) == design_id({**info, "files": ["other.v"], "memory_files": "x"})
    assert design_id(info) != design_id({**info, "lanes": 4})
    assert 0 <= design_id(info) < 1 << 32


# -- construction ------------------------------------------------------------------------------
def test_design_id_and_mode_are_checked_and_kept():
    assert RegisterBlock(ID).design_id == ID
    assert RegisterBlock(ID).stream is False and RegisterBlock(ID, stream=True).stream is True
    with pytest.raises(TypeError, match="stream must be True or False, not 'yes'"):
        RegisterBlock(ID, stream="yes")
    with pytest.raises(TypeError, match="design_id must be an integer, not '1'"):
        RegisterBlock("1")
    with pytest.raises(ValueError, match="design_id must fit 32 unsigned bits, not 4294967296"):
        RegisterBlock(1 << 32)


# -- reads ---------------------------------------------------------------------------------------
def test_reads_after_reset_give_the_reset_values():
    got = read(RegisterBlock(ID), *(reg.offset for reg in REGISTERS if reg.name != "CYCLES"))
    want = [(OKAY, BUILT.get(reg.name, reg.reset)) for reg in REGISTERS
            if reg.name != "CYCLES"]  # fmt: skip
    assert got == want


def test_unmapped_addresses_answer_slverr_with_zero_data():
    dut = RegisterBlock(ID)
    assert read(dut, *UNMAPPED) == [(SLVERR, 0)] * len(UNMAPPED)
    b, _ = transact(dut, writes=[(a, 0xFFFFFFFF, 0xF) for a in UNMAPPED[:4]])
    assert [f["bresp"] for _, f in b] == [SLVERR] * 4


def test_writes_to_read_only_registers_answer_slverr_and_change_nothing():
    dut = RegisterBlock(ID)
    ro = [reg for reg in REGISTERS if reg.access == "ro" and reg.name != "CYCLES"]
    b, _r = transact(dut, writes=[(reg.offset, 0x5A5A5A5A, 0xF) for reg in ro],
                    reads=[OFF["ID"], OFF["VERSION"]])  # fmt: skip
    assert [f["bresp"] for _, f in b] == [SLVERR] * len(ro)
    _, after = transact(dut, reads=[reg.offset for reg in ro])
    assert [f["rdata"] for _, f in after] == [BUILT.get(g.name, g.reset) for g in ro]


def test_low_address_bits_are_ignored():
    assert read(RegisterBlock(ID), OFF["VERSION"] + 3, OFF["ID"] + 1) == [
        (OKAY, MAP_VERSION), (OKAY, ID)]  # fmt: skip


def test_cycle_counter_advances_one_per_clock():
    # Back-to-back reads with ready always high: the values differ by the cycles between them.
    _, r = transact(RegisterBlock(ID), reads=[OFF["CYCLES"]] * 6)
    cycles = [c for c, _ in r]
    values = [f["rdata"] for _, f in r]
    assert np.diff(values).tolist() == np.diff(cycles).tolist()
    assert all(d == 2 for d in np.diff(cycles)), "a read every other cycle when nothing stalls"


# -- status inputs -------------------------------------------------------------------------------
def test_busy_cycles_and_sequences_count_their_inputs():
    dut = RegisterBlock(ID)

    async def side(ctx, bus):
        for k in range(7):  # 7 busy cycles, 3 results done, then quiet
            ctx.set(dut.busy, 1)
            ctx.set(dut.result_done, k % 3 == 0)
            await ctx.tick()
        ctx.set(dut.busy, 0)
        ctx.set(dut.result_done, 0)

    _, r = transact(dut, reads=[OFF["BUSY_CYCLES"], OFF["SEQUENCES"], OFF["STATUS"]],
                    side=side, read_at=10, rate=0.5, seed=3)  # fmt: skip
    assert [f["rdata"] for _, f in r] == [7, 3, 0]


def test_status_shows_busy_and_error_live():
    dut = RegisterBlock(ID)

    async def side(ctx, bus):
        ctx.set(dut.busy, 1)
        ctx.set(dut.error, 1)

    assert read(dut, OFF["STATUS"], side=side) == [
        (OKAY, field_mask("STATUS", "busy") | field_mask("STATUS", "error"))]  # fmt: skip


async def write1(ctx, bus, addr, data, strb=0xF):
    """One write, address then data, in one testbench; returns ``bresp``."""
    await bus.send(ctx, "aw", [{"awaddr": addr}])
    await bus.send(ctx, "w", [{"wdata": data, "wstrb": strb}])
    out = []
    await bus.receive(ctx, "b", ["bresp"], 1, out)
    return out[0][1]["bresp"]


async def read1(ctx, bus, addr):
    """One read; returns ``rdata`` (checks ``OKAY``)."""
    await bus.send(ctx, "ar", [{"araddr": addr}])
    out = []
    await bus.receive(ctx, "r", ["rresp", "rdata"], 1, out)
    assert out[0][1]["rresp"] == OKAY
    return out[0][1]["rdata"]


def script(dut, body, rate=0.5, seed=0):
    """Run ``body(ctx, bus)`` as the only manager testbench (random stalls at ``rate``)."""
    bus = Bus(dut, np.random.default_rng(seed), rate)
    finished = []

    async def tb(ctx):
        await body(ctx, bus)
        finished.append(True)

    async def clock(ctx):
        await bus.clock(ctx)

    clock.background = True
    run(dut, tb, clock)
    assert finished, "the script did not finish"


def test_error_flag_is_sticky_and_clears_on_writing_one_with_its_byte_strobe():
    dut = RegisterBlock(ID)
    stream, E = field_mask("ERRORS", "stream"), OFF["ERRORS"]
    seen = []

    async def body(ctx, bus):
        seen.append(await read1(ctx, bus, E))  # 0: no error yet
        ctx.set(dut.error, 1)  # the accelerator's error is sticky: it stays high
        await wait(ctx, 3)
        seen.append(await read1(ctx, bus, E))  # set
        assert await write1(ctx, bus, E, 0) == OKAY  # writing 0 leaves it
        seen.append(await read1(ctx, bus, E))
        assert await write1(ctx, bus, E, stream, strb=0b1110) == OKAY  # not byte 0's strobe
        seen.append(await read1(ctx, bus, E))
        assert await write1(ctx, bus, E, stream, strb=0b0001) == OKAY  # cleared
        seen.append(await read1(ctx, bus, E))
        await wait(ctx, 10)  # error still high, no new rising edge: stays clear
        seen.append(await read1(ctx, bus, E))
        ctx.set(dut.error, 0)
        await wait(ctx, 2)
        ctx.set(dut.error, 1)  # a new rising edge sets it again
        await wait(ctx, 2)
        seen.append(await read1(ctx, bus, E))

    script(dut, body, seed=1)
    assert seen == [0, stream, stream, stream, 0, 0, stream]


def test_soft_reset_pulses_once_and_clears_counters_and_flags():
    names = ["SEQUENCES", "ERRORS", "CONTROL", "CYCLES"]

    def run_once(reset: bool):
        dut = RegisterBlock(ID)
        pulses = []

        async def side(ctx, bus):  # error and 5 results in cycles 0..4, then quiet
            ctx.set(dut.error, 1)
            ctx.set(dut.result_done, 1)
            await wait(ctx, 5)
            ctx.set(dut.error, 0)
            ctx.set(dut.result_done, 0)
            while True:
                if ctx.get(dut.soft_reset):
                    pulses.append(bus.cycle)
                await ctx.tick()

        soft = [(OFF["CONTROL"], field_mask("CONTROL", "soft_reset"), 0xF)] if reset else []
        b, r = transact(dut, writes=soft, reads=[OFF[n] for n in names], side=side,
                        write_at=10, read_at=30, rate=0.5, seed=2)  # fmt: skip
        return pulses, b, {n: (c, f["rdata"]) for n, (c, f) in zip(names, r, strict=True)}

    pulses, _, before = run_once(False)
    assert pulses == []
    assert {n: v for n, (_, v) in before.items() if n != "CYCLES"} == {
        "SEQUENCES": 5, "ERRORS": 1, "CONTROL": 0}  # fmt: skip
    assert before["CYCLES"][1] >= 30
    pulses, b, after = run_once(True)
    assert len(pulses) == 1 and 10 < pulses[0] < 30, pulses
    assert [f["bresp"] for _, f in b] == [OKAY]
    assert {n: v for n, (_, v) in after.items() if n != "CYCLES"} == {
        "SEQUENCES": 0, "ERRORS": 0, "CONTROL": 0}  # fmt: skip
    cycle, value = after["CYCLES"]
    assert 0 < value < cycle - pulses[0], "counting again from 0 after the reset"


def test_weight_loads_count_loads_and_survive_a_soft_reset():
    dut = RegisterBlock(ID)
    seen = []

    async def body(ctx, bus):
        for _ in range(3):  # three loads end (their last weight beat taken)
            ctx.set(dut.weights_loaded, 1)
            await ctx.tick()
            ctx.set(dut.weights_loaded, 0)
            await wait(ctx, 2)
        ctx.set(dut.result_done, 1)  # and one sequence
        await ctx.tick()
        ctx.set(dut.result_done, 0)
        seen.append(await read1(ctx, bus, OFF["WEIGHT_LOADS"]))
        seen.append(await read1(ctx, bus, OFF["SEQUENCES"]))
        soft = field_mask("CONTROL", "soft_reset")
        assert await write1(ctx, bus, OFF["CONTROL"], soft) == OKAY
        seen.append(await read1(ctx, bus, OFF["WEIGHT_LOADS"]))  # the weights are kept
        seen.append(await read1(ctx, bus, OFF["SEQUENCES"]))

    script(dut, body, seed=4)
    assert seen == [3, 1, 3, 0]


# -- random handshakes ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("rate", [1.0, 0.5, 0.15])
def test_random_transactions_with_random_stalls_get_the_right_responses(seed, rate):
    rng = np.random.default_rng(seed)
    stateless = {OFF["ID"]: ID, OFF["VERSION"]: MAP_VERSION, OFF["CONTROL"]: 0,
                 OFF["ERRORS"]: 0, OFF["SEQUENCES"]: 0}  # fmt: skip
    addrs = list(stateless) + UNMAPPED[:6]
    reads = [int(a) for a in rng.choice(addrs, 40)]
    w_addrs = [OFF["ID"], OFF["ERRORS"], *UNMAPPED[:4]]
    writes = [(int(a), int(rng.integers(0, 1 << 32)) & ~1, int(rng.integers(0, 16)))
              for a in rng.choice(w_addrs, 30)]  # fmt: skip
    # (never the soft-reset bit: CONTROL is not written; ERRORS has nothing to clear)
    b, r = transact(RegisterBlock(ID), writes=writes, reads=reads, rate=rate, seed=seed)
    want_r = [(OKAY, stateless[a]) if a in stateless else (SLVERR, 0) for a in reads]
    assert [(f["rresp"], f["rdata"]) for _, f in r] == want_r, f"seed {seed}"
    want_b = [OKAY if a == OFF["ERRORS"] else SLVERR for a, _, _ in writes]
    assert [f["bresp"] for _, f in b] == want_b, f"seed {seed}"


# -- stream mode: MODE and STATE_CONTROL ------------------------------------------------------
def test_every_built_value_is_documented():
    assert {reg.name: reg.built for reg in REGISTERS if reg.reset is None} == {
        "ID": "design ID", "MODE": "the mode"}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["sequence", "stream"])
def test_mode_reads_the_mode_the_block_was_built_for(stream):
    want = field_mask("MODE", "stream") if stream else 0
    assert read(RegisterBlock(ID, stream=stream), OFF["MODE"]) == [(OKAY, want)]


def test_keep_state_is_written_with_its_byte_strobe_drives_the_output_and_soft_reset_clears_it():
    dut = RegisterBlock(ID, stream=True)
    keep, S = field_mask("STATE_CONTROL", "keep_state"), OFF["STATE_CONTROL"]
    seen = []

    async def body(ctx, bus):
        seen.append((await read1(ctx, bus, S), ctx.get(dut.keep_state)))  # reset: 0
        assert await write1(ctx, bus, S, 0xFFFFFFFF, strb=0b1110) == OKAY  # not byte 0
        seen.append((await read1(ctx, bus, S), ctx.get(dut.keep_state)))
        assert await write1(ctx, bus, S, 0xFFFFFFFF) == OKAY  # only the field is kept
        seen.append((await read1(ctx, bus, S), ctx.get(dut.keep_state)))
        assert await write1(ctx, bus, S, 0, strb=0b0001) == OKAY
        seen.append((await read1(ctx, bus, S), ctx.get(dut.keep_state)))
        assert await write1(ctx, bus, S, keep) == OKAY
        assert await write1(ctx, bus, OFF["CONTROL"], field_mask("CONTROL", "soft_reset")) == OKAY
        seen.append((await read1(ctx, bus, S), ctx.get(dut.keep_state)))

    script(dut, body, seed=5)
    assert seen == [(0, 0), (0, 0), (keep, 1), (0, 0), (0, 0)]


def test_in_sequence_mode_state_control_is_refused_and_reads_zero():
    dut = RegisterBlock(ID)
    seen = []

    async def body(ctx, bus):
        seen.append(await write1(ctx, bus, OFF["STATE_CONTROL"], 0xFFFFFFFF))
        seen.append(await read1(ctx, bus, OFF["STATE_CONTROL"]))
        seen.append(ctx.get(dut.keep_state))

    script(dut, body, seed=6)
    assert seen == [SLVERR, 0, 0]


# -- saturation counters -------------------------------------------------------------------------
SATURATION = [f"SATURATION_{role.upper()}" for role in SATURATION_ROLES]


def test_saturation_registers_are_the_golden_models_roles_read_only_from_zero():
    assert SATURATION_ROLES == ("preact", "cell", "hidden", "hn", "head_out")
    assert [reg.name for reg in REGISTERS if reg.name.startswith("SATURATION_")] == SATURATION
    assert {(register(n).access, register(n).reset) for n in SATURATION} == {("ro", 0)}


def test_saturation_layout_is_checked_and_kept():
    layout = saturation_layout(8, 2)
    assert RegisterBlock(ID, saturation=layout).saturation_layout == layout
    assert RegisterBlock(ID).saturation_layout == saturation_layout(1, 1)
    with pytest.raises(TypeError, match=r"saturation must be a StructLayout of \('preact'"):
        RegisterBlock(ID, saturation=data.StructLayout({"x": 4}))


def test_saturation_counters_add_each_cycles_counts_and_clear_on_clear_saturation_or_soft_reset():
    layout = saturation_layout(8, 2)  # 4-bit counts
    dut = RegisterBlock(ID, saturation=layout)
    pulses = np.random.default_rng(7).integers(0, 16, (25, len(SATURATION_ROLES)))
    seen = []

    async def pulse(ctx, rows):
        for row in rows:
            for role, count in zip(SATURATION_ROLES, row, strict=True):
                ctx.set(getattr(dut.saturation, role), int(count))
            ctx.set(dut.result_done, 1)
            await ctx.tick()
        ctx.set(dut.saturation.as_value(), 0)
        ctx.set(dut.result_done, 0)

    async def counters(ctx, bus):
        return [await read1(ctx, bus, OFF[n]) for n in (*SATURATION, "SEQUENCES")]

    async def body(ctx, bus):
        await pulse(ctx, pulses)
        seen.append(await counters(ctx, bus))
        clear = field_mask("CONTROL", "clear_saturation")
        assert await write1(ctx, bus, OFF["CONTROL"], clear, strb=0b1110) == OKAY  # no strobe
        seen.append(await counters(ctx, bus))
        assert await write1(ctx, bus, OFF["CONTROL"], clear) == OKAY
        assert not ctx.get(dut.soft_reset)
        seen.append(await counters(ctx, bus))  # SEQUENCES kept
        await pulse(ctx, pulses[:5])
        seen.append(await counters(ctx, bus))
        assert await write1(ctx, bus, OFF["CONTROL"], field_mask("CONTROL", "soft_reset")) == OKAY
        seen.append(await counters(ctx, bus))

    script(dut, body, seed=8)
    total, first = pulses.sum(axis=0).tolist(), pulses[:5].sum(axis=0).tolist()
    assert seen == [[*total, 25], [*total, 25], [0] * 5 + [25], [*first, 30], [0] * 6]
