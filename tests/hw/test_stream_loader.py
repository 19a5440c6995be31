# amaranth: UnusedElaboratable=no
"""StreamLoader == loader_reference: the steps it loads into the x ring (each step's vector
with its reset and last flags, read from its slot when the step is drained), the h0 / c0
words of every sequence, in order; again under random input gaps and a slow drain.

The testbench plays the accelerator's stream top around the loader: it keeps the ``xbuf``,
``h0buf`` and ``c0buf`` words the loader writes, drains loaded steps one at a time (``drained``,
at a random pace), and holds ``open`` low from a sequence's ``seq_end`` until its steps are
drained, as the top does until its results are out.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from helpers.streams import Harness, put_all, simulate

from lstmfpga.hw.stream_loader import StreamLoader

X_BITS, H_BITS, C_BITS = 8, 6, 10


@dataclass
class Sequence:
    """One input sequence: ``h0``, ``c0`` codes (empty without an initial state), ``x``
    ``(T, I)`` codes, ``user`` ``(T,)`` (reset the state before step t)."""

    h0: list
    c0: list
    x: np.ndarray
    user: np.ndarray

    def elements(self, rng):
        """The loader's input beats: ``h0``, ``c0``, then ``x`` time-major; ``user`` on a
        step's first element (set at random on the others, where it means nothing), ``last``
        on the final element."""
        T, I = self.x.shape
        beats = [{"data": int(c), "last": 0, "user": int(rng.integers(2))}
                 for c in self.h0 + self.c0]  # fmt: skip
        for t in range(T):
            for k in range(I):
                user = self.user[t] if k == 0 else rng.integers(2)
                beats.append({"data": int(self.x[t, k]), "last": int(t == T - 1 and k == I - 1),
                              "user": int(user)})  # fmt: skip
        return beats


def loader_reference(sequences, *, keep_state: bool):
    """What the loader loads: per step ``(vector, reset, last)`` in order (``reset``: the
    step's ``user``, or the first step of a sequence without ``keep_state``), and the
    ``h0``/``c0`` words of each sequence."""
    steps = []
    for seq in sequences:
        T = len(seq.x)
        for t in range(T):
            reset = bool(seq.user[t]) or (t == 0 and not keep_state)
            steps.append((tuple(int(v) for v in seq.x[t]), reset, t == T - 1))
    return steps, [s.h0 for s in sequences], [s.c0 for s in sequences]


def make_sequences(seed, I, n_h0, n_c0, lengths=(3, 1, 5, 2)):
    rng = np.random.default_rng(seed)

    def codes(bits, n):
        return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), n).tolist()

    return [Sequence(codes(H_BITS, n_h0), codes(C_BITS, n_c0),
                     rng.integers(-128, 128, (T, I)), rng.random(T) < 0.3)
            for T in lengths]  # fmt: skip


def rtl_loader(sequences, *, I, ring, n_h0, n_c0, keep_state, seed=0, idle=0.0, stall=0.0,
               elements=None):  # fmt: skip
    """Run a StreamLoader on ``sequences`` (or on the beats ``elements``); returns what the
    drain side saw: ``(steps, h0 words per sequence, c0 words per sequence, error)``."""
    dut = StreamLoader(input_size=I, ring=ring, data_bits=C_BITS, x_bits=X_BITS, n_h0=n_h0,
                       n_c0=n_c0, h0_bits=H_BITS, c_bits=C_BITS)  # fmt: skip
    rng_in, rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if elements is None:
        elements = [b for seq in sequences for b in seq.elements(rng_in)]
    n_steps = sum(len(seq.x) for seq in sequences)
    harness = Harness(dut)
    seen = {"steps": [], "h0": [], "c0": []}
    ports = [(name, getattr(dut, port)) for name, port in
             (("x", "x_w"), ("h0", "h0_w"), ("c0", "c_w")) if hasattr(dut, port)]  # fmt: skip

    async def producer(ctx):
        await put_all(ctx, dut.i, elements, rng=rng_in, idle=idle)

    async def drain(ctx):
        ctx.set(dut.keep_state, keep_state)
        xbuf, drained, pending_until = {}, 0, None
        while len(seen["steps"]) < n_steps:
            ctx.set(dut.drained, drained % 256)
            ctx.set(dut.open, pending_until is None)
            _, _, seq_end, *writes = await ctx.tick().sample(
                dut.seq_end, *(v for _, p in ports for v in (p.en, p.addr, p.data))
            )
            for k, (name, _) in enumerate(ports):
                en, addr, value = writes[3 * k : 3 * k + 3]
                if not en:
                    continue
                if name == "x":
                    xbuf[addr] = value
                else:
                    seen[name].append((addr, value))
            loaded = ctx.get(dut.loaded)
            if seq_end:
                pending_until = loaded
            if (loaded - drained) % 256 and rng_out.random() >= stall:
                slot = drained % ring
                vector = tuple(xbuf.get(slot * I + k) for k in range(I))  # None: not written
                flags = (ctx.get(dut.reset) >> slot & 1, ctx.get(dut.last) >> slot & 1)
                seen["steps"].append((vector, bool(flags[0]), bool(flags[1])))
                drained += 1
            if pending_until is not None and drained % 256 == pending_until:
                pending_until = None
        for _ in range(4):
            await ctx.tick()
        seen["error"] = bool(ctx.get(dut.error))

    simulate(harness, producer, drain)

    def per_sequence(writes, n):
        return [[v for _, v in writes[k : k + n]] for k in range(0, len(writes), n)] if n else []

    assert [a for a, _ in seen["h0"]] == list(range(n_h0)) * (len(seen["h0"]) // max(n_h0, 1))
    assert [a for a, _ in seen["c0"]] == list(range(n_c0)) * (len(seen["c0"]) // max(n_c0, 1))
    h0, c0 = per_sequence(seen["h0"], n_h0), per_sequence(seen["c0"], n_c0)
    return seen["steps"], h0 or [[]] * len(sequences), c0 or [[]] * len(sequences), seen["error"]


# (I, ring, n_h0, n_c0, keep_state)
CASES = {
    "I1-ring1": (1, 1, 0, 0, False),
    "I3-ring4": (3, 4, 0, 0, False),
    "I3-ring4-keep": (3, 4, 0, 0, True),
    "I2-ring2-h0c0": (2, 2, 2, 3, False),
    "I4-ring4-h0c0-keep": (4, 4, 3, 1, True),
}


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.7)], ids=["no-stalls", "stalls"])
@pytest.mark.parametrize("name", list(CASES))
def test_rtl_equals_reference(name, stalls):
    I, ring, n_h0, n_c0, keep_state = CASES[name]
    seed = sum(map(ord, name))
    sequences = make_sequences(seed, I, n_h0, n_c0)
    idle, stall = stalls
    got = rtl_loader(sequences, I=I, ring=ring, n_h0=n_h0, n_c0=n_c0, keep_state=keep_state,
                     seed=seed, idle=idle, stall=stall)  # fmt: skip
    steps, h0, c0 = loader_reference(sequences, keep_state=keep_state)
    assert got == (steps, h0, c0, False), f"seed {seed}"


def test_a_sequence_ending_inside_a_vector_or_the_initial_state_sets_error():
    # I = 3, h0 + c0 = 2 words: sequence A ends in its second vector (that vector is its last
    # step, its third element undefined), B ends inside the initial state (dropped), C is whole.
    I, n_h0, n_c0 = 3, 1, 1
    a, b, c = make_sequences(5, I, n_h0, n_c0, lengths=(2, 1, 2))
    rng = np.random.default_rng(0)
    beats_a = a.elements(rng)[:-1]
    beats_a[-1]["last"] = 1
    beats_b = b.elements(rng)[:1]
    beats_b[-1]["last"] = 1
    elements = beats_a + beats_b + c.elements(rng)
    steps, h0, c0, error = rtl_loader([a, c], I=I, ring=2, n_h0=n_h0, n_c0=n_c0,
                                      keep_state=False, elements=elements)  # fmt: skip
    want_steps, want_h0, want_c0 = loader_reference([a, c], keep_state=False)
    assert error
    assert [s[0][:2] for s in steps] == [s[0][:2] for s in want_steps]  # A's step 1: 2 words
    assert steps[0] == want_steps[0] and steps[2:] == want_steps[2:]
    assert [s[1:] for s in steps] == [s[1:] for s in want_steps]
    # B's h0 word was written (then C's overwrote it); A's and C's words as sent
    assert h0 == [want_h0[0], [beats_b[0]["data"]], want_h0[1]] and c0 == [want_c0[0], want_c0[1]]
