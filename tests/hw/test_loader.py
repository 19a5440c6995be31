# amaranth: UnusedElaboratable=no
"""The input loader writes exactly what ``load_reference`` says (Amaranth simulator).

Several sequences, well-formed and not (cut inside the initial state, a partial vector,
longer than ``max_seq_len``, empty of ``x``), go through ``i`` with random idle cycles, and
``enable`` (the LOAD phase) drops at random: every buffer write (port, address, code) in
order, the ``T`` of every ``start`` pulse and the sticky ``error`` equal the reference.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator
from helpers.streams import Harness

from lstmfpga.hw.loader import InputLoader, load_reference

BITS = 8


def wrap(code: int, bits: int) -> int:
    """``code`` as a signed ``bits``-wide port sees it."""
    code &= (1 << bits) - 1
    return code - (1 << bits) if code >> (bits - 1) else code


def rtl_load(loader, sequences, *, seed, idle, enable_low):
    harness = Harness(loader)
    rng_in, rng_en = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    elements = [(code, k == len(seq) - 1) for seq in sequences for k, code in enumerate(seq)]
    ports = {"x": loader.x_w}
    for name in ("h0", "c"):
        if hasattr(loader, f"{name}_w"):
            ports[name] = getattr(loader, f"{name}_w")
    seen = {"writes": [], "starts": [], "done": False}

    async def producer(ctx):
        for code, last in elements:
            while rng_in.random() < idle:
                ctx.set(loader.i.valid, 0)
                await ctx.tick()
            ctx.set(loader.i.payload, {"data": code, "last": last})
            ctx.set(loader.i.valid, 1)
            await ctx.tick().until(loader.i.ready)
        ctx.set(loader.i.valid, 0)
        await ctx.tick().repeat(3)
        seen["done"] = True

    async def phase(ctx):  # the LOAD phase comes and goes
        while not seen["done"]:
            ctx.set(loader.enable, int(rng_en.random() >= enable_low))
            await ctx.tick()

    async def monitor(ctx):
        signals = [loader.start]
        for port in ports.values():
            signals += [port.en, port.addr, port.data]
        while not seen["done"]:
            values = (await ctx.tick().sample(*signals))[2:]  # (clk, rst, ...)
            if values[0]:  # T is the register written at the edge of the start pulse
                seen["starts"].append(ctx.get(loader.T))
            for index, name in enumerate(ports):
                en, addr, code = values[1 + 3 * index : 4 + 3 * index]
                if en:
                    seen["writes"].append((name, int(addr), int(code)))
        seen["error"] = bool(ctx.get(loader.error))

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(phase)
    sim.add_testbench(monitor)
    sim.run()
    return seen["writes"], seen["starts"], seen["error"]


def ref_load(sequences, *, input_size, max_seq_len, n_h0, n_c0):
    writes, starts, error = load_reference(
        sequences, input_size=input_size, max_seq_len=max_seq_len, n_h0=n_h0, n_c0=n_c0
    )
    return [(port, addr, wrap(code, BITS)) for port, addr, code in writes], starts, error


CASES = {
    # name: (I, T_max, n_h0, n_c0, sequence lengths in elements, error expected)
    "whole vectors": (3, 4, 0, 0, [12, 3, 6], False),
    "one feature": (1, 5, 0, 0, [5, 1, 2], False),
    "initial state": (2, 3, 4, 6, [10 + 6, 10 + 2], False),
    "partial vector": (3, 4, 0, 0, [6, 7, 3], True),
    "too long": (2, 3, 0, 0, [4, 10, 2], True),
    "cut in the initial state": (2, 3, 2, 3, [5 + 4, 4, 5 + 2], True),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(("idle", "enable_low"), [(0.0, 0.0), (0.4, 0.5)], ids=["fast", "slow"])
def test_loader_writes_what_the_reference_says(name, idle, enable_low):
    I, Tmax, n_h0, n_c0, lengths, error = CASES[name]
    seed = sum(map(ord, name))
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(-(2 ** (BITS - 1)), 2 ** (BITS - 1), n).tolist() for n in lengths]
    loader = InputLoader(
        input_size=I, max_seq_len=Tmax, data_bits=BITS, x_bits=BITS, n_h0=n_h0, n_c0=n_c0,
        h0_bits=BITS, c_bits=BITS, c_depth=max(2, n_c0),
    )  # fmt: skip
    want = ref_load(sequences, input_size=I, max_seq_len=Tmax, n_h0=n_h0, n_c0=n_c0)
    assert want[2] == error
    got = rtl_load(loader, sequences, seed=seed, idle=idle, enable_low=enable_low)
    assert got == want, f"seed {seed}"


def test_narrow_buffers_keep_the_low_bits():
    loader = InputLoader(input_size=2, max_seq_len=2, data_bits=8, x_bits=4)
    sequences = [[7, -8, 100, -100]]
    got = rtl_load(loader, sequences, seed=1, idle=0.0, enable_low=0.0)
    assert got == ([("x", k, wrap(c, 4)) for k, c in enumerate(sequences[0])], [2], False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(input_size=0), r"^input_size must be an integer >= 1, not 0$"),
        (dict(max_seq_len=True), r"^max_seq_len must be an integer >= 1, not True$"),
        (dict(n_h0=-1), r"^n_h0 must be an integer >= 0, not -1$"),
        (dict(n_c0=3, c_depth=2), r"^c_depth must be at least n_c0 \(3\), not 2$"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    args = dict(input_size=2, max_seq_len=2, data_bits=8, x_bits=8) | kwargs
    with pytest.raises(ValueError, match=message):
        InputLoader(**args)
