# amaranth: UnusedElaboratable=no
"""StreamDrain == drain_reference: every step's words as soon as the step is written, then
after a sequence's last step its final regions, ``last`` on the sequence's final word, each
word sign-extended; again with random write-back pacing and a slow consumer.

The testbench plays the write-back: it writes each step's words into the step's ring slot
(once the drain has read the step that used the slot before), after a sequence's last step
the final regions' words (once the previous sequence's are out), then advances ``written``;
``last`` follows the step the drain is at, as the loader's flags do.
"""

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from helpers.streams import Harness, get_n, simulate, to_python

from lstmfpga.hw.drain import Region
from lstmfpga.hw.stream_drain import StreamDrain

DATA_BITS = 12


def drain_reference(sequences, *, per_step: bool):
    """The words of ``sequences`` (each ``(steps, finals)``: ``steps`` a list of per-step
    word lists, ``finals`` the final regions' word lists in order) as ``(data, last)``."""
    out = []
    for steps, finals in sequences:
        words = [w for step in steps for w in step] if per_step else []
        words += [w for region in finals for w in region]
        out += [(w, int(k == len(words) - 1)) for k, w in enumerate(words)]
    return out


def make_sequences(seed, per_step, finals, lengths=(3, 1, 6, 2)):
    """Random words fitting their regions (negative ones too, to see the sign extension)."""
    rng = np.random.default_rng(seed)

    def words(region):
        half = 1 << (region.bits - 1)
        return rng.integers(-half, half, region.fixed).tolist()

    return [([words(per_step) for _ in range(T)] if per_step else [[] for _ in range(T)],
             [words(r) for r in finals]) for T in lengths]  # fmt: skip


def rtl_drain(sequences, per_step, finals, *, stride, base, slots, seed=0, pace=0.0,
              stall=0.0):  # fmt: skip
    """Run a StreamDrain over memories the testbench fills as the write-back would; returns
    the ``(data, last)`` words taken from ``o``."""
    dut = StreamDrain(per_step, stride=stride, base=base, slots=slots, final=finals,
                      data_bits=DATA_BITS)  # fmt: skip
    regions = ([("step_r", per_step)] if per_step else []) + [(r.name, r) for r in finals]
    mems = {name: Memory(shape=signed(r.bits), depth=r.depth, init=[]) for name, r in regions}
    writers = {name: mem.write_port() for name, mem in mems.items()}

    def extra(m):
        for name, mem in mems.items():
            m.submodules[f"mem_{name}"] = mem
            wiring.connect(m, getattr(dut, name), mem.read_port())

    harness = Harness(dut, extra)
    rng_wb, rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    last_flags = [t == len(steps) - 1 for steps, _ in sequences for t in range(len(steps))]
    n_words = len(drain_reference(sequences, per_step=per_step is not None))
    got, done = [], []

    async def write(ctx, name, addr, value):
        port = writers[name]
        ctx.set(port.addr, addr)
        ctx.set(port.data, value)
        ctx.set(port.en, 1)
        await ctx.tick()
        ctx.set(port.en, 0)

    async def write_back(ctx):
        n = 0
        for b, (steps, final_words) in enumerate(sequences):
            for t, words in enumerate(steps):
                while rng_wb.random() < pace or (n - ctx.get(dut.n)) % 256 >= slots:
                    await ctx.tick()
                for k, w in enumerate(words):
                    await write(ctx, "step_r", (n % slots) * stride + base + k, w)
                if t == len(steps) - 1:
                    while sum(done) < b:  # the previous sequence's final words are out
                        await ctx.tick()
                    for region, words_r in zip(finals, final_words, strict=True):
                        for k, w in enumerate(words_r):
                            await write(ctx, region.name, k, w)
                n += 1
                ctx.set(dut.written, n % 256)

    async def flags(ctx):  # ``last``: the step the drain is at carried tlast
        while True:
            n = ctx.get(dut.n)
            ctx.set(dut.last, n < len(last_flags) and last_flags[n])
            *_, seq_done = await ctx.tick().sample(dut.seq_done)
            done.append(int(seq_done))

    async def consumer(ctx):
        for payload in await get_n(ctx, dut.o, n_words, rng=rng_out, stall=stall):
            word = to_python(payload)
            got.append((word["data"], word["last"]))
        for _ in range(8):  # nothing more comes out
            ctx.set(dut.o.ready, 1)
            *_, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "a word after the last one"

    simulate(harness, write_back, consumer, background=(flags,))
    return [(int(d), int(last)) for d, last in got]


# (per-step words, final regions [(name, bits, words)], stride, base, slots)
CASES = {
    "steps-only": ((3, 8), [], 3, 0, 4),
    "steps-ring1": ((2, 8), [], 2, 0, 1),
    "steps-offset-and-states": ((2, 6), [("hnbuf", 6, 4), ("cmem", 10, 3)], 5, 2, 4),
    "head-all-and-states": ((1, 12), [("hnbuf", 5, 2)], 1, 0, 2),
    "head-last": (None, [("headbuf", 9, 3)], 0, 0, 4),
    "head-last-and-states": (None, [("headbuf", 9, 1), ("hnbuf", 4, 2), ("cmem", 7, 2)], 0, 0, 4),
}


def case(name):
    steps, finals, stride, base, slots = CASES[name]
    ring_words = max(2, slots * stride + base)
    per_step = None if steps is None else Region("step", steps[1], ring_words, fixed=steps[0])
    finals = [Region(n, bits, max(2, words), fixed=words) for n, bits, words in finals]
    return per_step, finals, stride, base, slots


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.5, 0.7)], ids=["no-stalls", "stalls"])
@pytest.mark.parametrize("name", list(CASES))
def test_rtl_equals_reference(name, stalls):
    per_step, finals, stride, base, slots = case(name)
    seed = sum(map(ord, name))
    sequences = make_sequences(seed, per_step, finals)
    pace, stall = stalls
    got = rtl_drain(sequences, per_step, finals, stride=stride, base=base, slots=slots,
                    seed=seed, pace=pace, stall=stall)  # fmt: skip
    assert got == drain_reference(sequences, per_step=per_step is not None), f"seed {seed}"
