# amaranth: UnusedElaboratable=no
"""CellDatapath equals CellArithmetic.update bit for bit (c, m and the saturation flags),
under random valid/ready stalls, for several formats and every rounding/overflow mode."""

import itertools
from dataclasses import replace

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed
from amaranth.lib import data
from helpers.streams import run_stream

from lstmfpga.hw.cell import CellDatapath
from lstmfpga.quant.activation import make_table
from lstmfpga.quant.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from lstmfpga.quant.golden import CellArithmetic

GATE = FixedFormat(16, 14)
CELLS = {"s16.11": FixedFormat(16, 11), "s16.14": FixedFormat(16, 14)}
HIDDENS = {"s16.15": FixedFormat(16, 15), "s12.10": FixedFormat(12, 10)}
FIELDS = ("i", "f", "g", "o", "c_prev")


def _arith(cell, hidden, rounding="half_even", overflow="saturate", interpolate=True):
    table = make_table("tanh", cell, GATE, step_log2=-7, range_log2=3, interpolate=interpolate)
    return CellArithmetic(GATE, cell, hidden, rounding, overflow, table)


class _Counter(dict):
    def add(self, role, count):
        self[role] = self.get(role, 0) + int(count)


def _expect(arith, v: dict) -> list[dict]:
    """``arith.update`` one unit at a time, so the saturation counts become per-beat flags."""
    out = []
    for j in range(len(v["i"])):
        sat = _Counter()
        c, m = arith.update(*(v[k][j] for k in FIELDS), saturation=sat)
        out.append({"c": int(c), "m": int(m), "sat_c": sat["cell"], "sat_m": sat["hidden"]})
    return out


def _vectors(arith, count: int, seed: int) -> dict:
    """Edge cases, realistic activations and uniform codes over the whole formats."""
    rng = np.random.default_rng(seed)
    g, c = arith.gate, arith.cell
    one = 1 << g.frac
    gate_edges = [g.min_code, -one, -1, 0, 1, one - 1, one, g.max_code]
    cell_edges = [c.min_code, c.min_code + 1, -1, 0, 1, c.max_code - 1, c.max_code]
    end = arith.tanh_cell.size << arith.tanh_cell.shift  # tanh_cell's range end
    cell_edges += [
        x for d in (-1, 0, 1) for x in (end + d, -end - d) if c.min_code <= x <= c.max_code
    ]
    # Saturating combinations: gates at the extremes and ±1 against c_prev at the ends.
    edges = np.array(
        [
            (i, f, gg, o, cp)
            for i, f, gg in itertools.product((-one, 0, one, g.max_code), repeat=3)
            for o, cp in ((one, c.max_code), (-one, c.min_code), (g.min_code, c.min_code))
        ]
        + [(a, a, a, a, cp) for a in gate_edges for cp in cell_edges]
    )
    realistic = np.stack(
        [
            rng.integers(0, one + 1, count),
            rng.integers(0, one + 1, count),
            rng.integers(-one, one + 1, count),
            rng.integers(0, one + 1, count),
            rng.integers(c.min_code, c.max_code + 1, count),
        ],
        axis=1,
    )
    uniform = np.concatenate(
        [
            rng.integers(g.min_code, g.max_code + 1, (count // 2, 4)),
            rng.integers(c.min_code, c.max_code + 1, (count // 2, 1)),
        ],
        axis=1,
    )
    rows = np.concatenate([edges, realistic, uniform]).astype(np.int64)
    return {k: rows[:, n] for n, k in enumerate(FIELDS)}


def _check(arith, count: int, *, seed: int, idle=0.25, stall=0.25):
    v = _vectors(arith, count, seed)
    payloads = [{k: int(v[k][j]) for k in FIELDS} for j in range(len(v["i"]))]
    result = run_stream(CellDatapath(arith), payloads, seed=seed, idle=idle, stall=stall)
    expected = _expect(arith, v)
    assert len(result.outputs) == len(expected), f"seed={seed}"
    for j, (got, want) in enumerate(zip(result.outputs, expected, strict=True)):
        assert got == want, f"seed={seed} beat {j}: in {payloads[j]} got {got} want {want}"
    return expected


MODES = list(itertools.product(CELLS, HIDDENS, ROUNDING_MODES, OVERFLOW_MODES))


@pytest.mark.parametrize(("cell", "hidden", "rounding", "overflow"), MODES)
def test_matches_golden(cell, hidden, rounding, overflow):
    seed = MODES.index((cell, hidden, rounding, overflow))
    arith = _arith(CELLS[cell], HIDDENS[hidden], rounding, overflow)
    expected = _check(arith, 300, seed=seed)
    # The vectors reach saturation of c, and of m where the formats allow it (|o * tanh(c)|
    # stays below 2 when the cell range is ±2, which s12.10 holds).
    assert any(e["sat_c"] for e in expected)
    if hidden == "s16.15":
        assert any(e["sat_m"] for e in expected)


@pytest.mark.parametrize(("cell", "seed"), [("s16.11", 101), ("s16.14", 102)])
def test_matches_golden_many(cell, seed):
    _check(_arith(CELLS[cell], HIDDENS["s16.15"]), 3000, seed=seed)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_direct_tanh_table(rounding):
    arith = _arith(CELLS["s16.11"], HIDDENS["s12.10"], rounding, interpolate=False)
    _check(arith, 400, seed=200 + ROUNDING_MODES.index(rounding))


def test_small_formats():
    gate, cell, hidden = FixedFormat(8, 6), FixedFormat(10, 5), FixedFormat(6, 4)
    table = make_table("tanh", cell, gate, step_log2=-3, range_log2=2)
    arith = CellArithmetic(gate, cell, hidden, "half_up", "wrap", table)
    _check(arith, 1000, seed=300)


@pytest.mark.parametrize(("idle", "stall", "seed"), [(0.0, 0.8, 401), (0.8, 0.0, 402)])
def test_heavy_stalls(idle, stall, seed):
    _check(_arith(CELLS["s16.11"], HIDDENS["s16.15"]), 150, seed=seed, idle=idle, stall=stall)


@pytest.mark.parametrize(("interpolate", "latency"), [(True, 13), (False, 11)])
def test_latency_and_throughput(interpolate, latency):
    arith = _arith(CELLS["s16.11"], HIDDENS["s16.15"], interpolate=interpolate)
    dut = CellDatapath(arith)
    assert dut.latency == latency  # the documented values
    v = _vectors(arith, 20, seed=7)
    payloads = [{k: int(v[k][j]) for k in FIELDS} for j in range(len(v["i"]))]
    result = run_stream(dut, payloads)  # no idle cycles, o.ready always high
    assert result.outputs == _expect(arith, v)
    result.assert_pipelined(dut.latency)


def test_signature_and_properties():
    arith = _arith(CELLS["s16.11"], HIDDENS["s12.10"])
    dut = CellDatapath(arith)
    assert dut.arith is arith
    assert dut.i.payload.shape() == data.StructLayout(
        {"i": signed(16), "f": signed(16), "g": signed(16), "o": signed(16), "c_prev": signed(16)}
    )
    assert dut.o.payload.shape() == data.StructLayout(
        {"c": signed(16), "m": signed(12), "sat_c": 1, "sat_m": 1}
    )


def test_a_non_arith_is_refused():
    with pytest.raises(TypeError, match=r"^arith must be a CellArithmetic, not "):
        CellDatapath("cell")


@pytest.mark.parametrize(("changes", "error", "message"), [
    (dict(rounding="nearest"), ValueError, r"^arith.rounding must be one of "),
    (dict(overflow="clip"), ValueError, r"^arith.overflow must be one of "),
    (dict(cell=FixedFormat(16, 11, signed=False)), ValueError,
     r"^arith.cell must be a signed format, not u16.11"),
    (dict(tanh_cell=None), TypeError, r"^arith.tanh_cell must be an ActivationTable, not "),
    (dict(tanh_cell=make_table("sigmoid", CELLS["s16.11"], GATE)), ValueError,
     r"^arith.tanh_cell must be a tanh table, not 'sigmoid'"),
])  # fmt: skip
def test_a_bad_arith_is_refused(changes, error, message):
    arith = _arith(CELLS["s16.11"], HIDDENS["s16.15"])
    with pytest.raises(error, match=message):
        CellDatapath(replace(arith, **changes))


def test_converts_to_verilog():
    dut = CellDatapath(_arith(CELLS["s16.11"], HIDDENS["s16.15"]))
    text = verilog.convert(dut, name="cell_datapath")  # ("cell" is a Verilog keyword)
    assert "module cell_datapath" in text


def test_the_sticky_bit_of_a_sum_needs_no_carry_chain():
    # sum_low_nonzero(a, b, k) == ((a + b) mod 2**k != 0) for every pair of 5-bit codes and
    # every k up to 6 (past the operands' width: their sign extension); it is the half_even
    # sticky bit of the cell's c
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    from lstmfpga.hw.cell import sum_low_nonzero

    a, b = Signal(signed(5)), Signal(signed(5))
    outs = {k: Signal(name=f"nz{k}") for k in range(7)}
    m = Module()
    m.d.comb += [outs[k].eq(sum_low_nonzero(a, b, k)) for k in outs]
    seen = {}

    async def bench(ctx):
        for x, y in itertools.product(range(-16, 16), repeat=2):
            ctx.set(a, x)
            ctx.set(b, y)
            for k, out in outs.items():
                seen[x, y, k] = ctx.get(out)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for (x, y, k), value in seen.items():
        assert value == int((x + y) % (1 << k) != 0), (x, y, k)


def test_half_even_ties_of_c_round_to_even():
    # c = (f * c_prev + i * g) >> 14 with the dropped bits exactly one half, or one above or
    # below it: the sum's low bits decide (its sticky bit is computed from the two terms)
    arith = _arith(CELLS["s16.14"], HIDDENS["s16.15"], "half_even")
    rng = np.random.default_rng(7)
    f, cp = (rng.integers(-(1 << 13), 1 << 13, 200) for _ in range(2))
    low = (1 << 13) + rng.integers(-1, 2, 200) + (rng.integers(0, 2, 200) << 14)  # 15 bits
    g = (low - f * cp) % (1 << 15) - (1 << 14)  # with i = 1: i * g == g
    v = {
        "i": np.ones(200, dtype=np.int64),
        "f": f,
        "g": g,
        "o": rng.integers(-(1 << 14), 1 << 14, 200),
        "c_prev": cp,
    }
    ties = (f * cp + g) % (1 << 14) == 1 << 13
    assert {0, 1} <= set(((f * cp + g) >> 14)[ties] & 1)  # ties onto even and odd floors
    payloads = [{k: int(v[k][j]) for k in FIELDS} for j in range(200)]
    result = run_stream(CellDatapath(arith), payloads, seed=8, idle=0.2, stall=0.2)
    assert result.outputs == _expect(arith, v)
