# amaranth: UnusedElaboratable=no
"""The result drain sends exactly what ``drain_reference`` says (Amaranth simulator).

Result buffers with random contents are drained for several sequences of different ``T``
back to back (``enable`` low for a few cycles between them, as in the LOAD and COMPUTE
phases), first with a consumer that is always ready, then with a slow one (random
``ready`` gaps): the stream equals the reference, ``last`` on the final word, ``done``
with it, and nothing more comes out.
"""

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from helpers.streams import Harness, get_all

from lstmfpga.hw.drain import Region, ResultDrain, drain_reference

CASES = {
    # name: (regions, T_max, output bits, sequence lengths)
    "one region per step": ([Region("obuf", 8, 12, per_step=3)], 4, 8, [4, 1, 2]),
    "head last + states": (
        [Region("headbuf", 6, 2, fixed=2), Region("hnbuf", 8, 4, fixed=4),
         Region("cmem", 10, 3, fixed=3)],
        5, 10, [1, 5],
    ),
    "head all + states": (
        [Region("headbuf", 8, 10, per_step=2), Region("hnbuf", 8, 1, fixed=1),
         Region("cmem", 8, 1, fixed=1)],
        5, 8, [5, 3, 1],
    ),
    "a single word": ([Region("headbuf", 4, 1, fixed=1)], 3, 4, [3, 1]),
}  # fmt: skip


def rtl_drain(regions, contents, lengths, *, T_max, bits, seed, stall):
    drain = ResultDrain(regions, max_seq_len=T_max, data_bits=bits)

    def memories(m):
        for r in regions:
            mem = Memory(shape=signed(r.bits), depth=max(2, r.depth), init=contents[r.name])
            m.submodules[f"mem_{r.name}"] = mem
            wiring.connect(m, getattr(drain, r.name), mem.read_port())

    harness = Harness(drain, memories)
    rng = np.random.default_rng(seed)
    got, dones = [], []
    finished = []

    async def monitor(ctx):  # done is exactly the transfer of a last word
        while not finished:
            *_, valid, ready, last, done = await ctx.tick().sample(
                drain.o.valid, drain.o.ready, drain.o.payload.last, drain.done
            )
            assert bool(done) == bool(valid and ready and last)
            if done:
                dones.append(True)

    async def phases(ctx):
        for T in lengths:
            ctx.set(drain.T, T)
            ctx.set(drain.enable, 1)
            n = sum(r.count(T) for r in regions)
            words = await get_all(ctx, drain.o, n, rng=rng, stall=stall)
            got.append([(w["data"], bool(w["last"])) for w in words])
            ctx.set(drain.enable, 0)
            ctx.set(drain.o.ready, 0)
            for _ in range(3):  # LOAD / COMPUTE: nothing comes out
                *_, valid = await ctx.tick().sample(drain.o.valid)
                assert not valid, "a word while the drain is disabled"
        finished.append(True)

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(phases)
    sim.add_testbench(monitor)
    sim.run()
    return got, dones


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("stall", [0.0, 0.5], ids=["fast", "slow-consumer"])
def test_drain_sends_what_the_reference_says(name, stall):
    regions, T_max, bits, lengths = CASES[name]
    seed = sum(map(ord, name))
    rng = np.random.default_rng(seed)
    contents = {
        r.name: rng.integers(-(2 ** (r.bits - 1)), 2 ** (r.bits - 1), max(2, r.depth)).tolist()
        for r in regions
    }
    got, dones = rtl_drain(
        regions, contents, lengths, T_max=T_max, bits=bits, seed=seed, stall=stall
    )
    assert got == [drain_reference(regions, contents, T) for T in lengths], f"seed {seed}"
    assert len(dones) == len(lengths), "one done per sequence, with its last word"


def test_a_region_drains_per_step_times_T_plus_fixed_words():
    regions = [Region("obuf", 8, 4, per_step=2), Region("hnbuf", 8, 2, fixed=1)]
    contents = {"obuf": [1, -2, 3, -4], "hnbuf": [5, 6]}
    got, _ = rtl_drain(regions, contents, [2, 1], T_max=2, bits=8, seed=1, stall=0.0)
    assert got == [
        [(1, False), (-2, False), (3, False), (-4, False), (5, True)],
        [(1, False), (-2, False), (5, True)],
    ]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (([],), TypeError, r"^regions must be a non-empty sequence of Region"),
        (([Region("a", 8, 2, fixed=1)] * 2,), ValueError, r"^regions must have distinct names$"),
        (([Region("a", 9, 2, fixed=1)],), ValueError,
         r"^data_bits must be at least the widest region \(9\), not 8$"),
    ],
)  # fmt: skip
def test_bad_drains_are_refused(args, error, message):
    with pytest.raises(error, match=message):
        ResultDrain(*args, max_seq_len=2, data_bits=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(name="a b"), r"^name must be an identifier, not 'a b'$"),
        (dict(bits=0), r"^bits must be an integer >= 1, not 0$"),
        (dict(per_step=0, fixed=0), r"^region 'r' must drain at least one word per sequence$"),
    ],
)
def test_bad_regions_are_refused(kwargs, message):
    args = dict(name="r", bits=8, depth=4, per_step=1) | kwargs
    with pytest.raises(ValueError, match=message):
        Region(**args)
