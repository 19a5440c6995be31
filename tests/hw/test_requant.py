"""The requantizer circuit equals quant.fixed.requantize on every input of a small width."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from lstmfpga.hw.requant import requantize as hw_requantize
from lstmfpga.hw.requant import (
    requantize_finish,
    requantize_offset,
    requantize_parts,
    rounding_offset,
    rounding_up,
)
from lstmfpga.hw.requant import shift_round as hw_shift_round
from lstmfpga.quant.fixed import ROUNDING_MODES, FixedFormat, requantize, shift_round

CASES = list(itertools.product((-2, 0, 1, 3, 5, 10, 12), ROUNDING_MODES, ("saturate", "wrap")))


def _check_exhaustively(circuit, width: int, offset: int, shift, rounding, overflow):
    """``circuit(value, shift, fmt, rounding, overflow)`` on ``value = v + offset`` equals
    ``requantize(v)`` (code and overflow flag) for every 10-bit ``v``."""
    fmt = FixedFormat(5, 2)
    value = Signal(signed(width))
    code, over = circuit(value, shift, fmt, rounding, overflow)
    out, flag = Signal(signed(5)), Signal()
    m = Module()
    m.d.comb += [out.eq(code), flag.eq(over)]
    inputs = np.arange(-512, 512, dtype=np.int64)
    expected, _ = requantize(inputs, shift, fmt, rounding, overflow)
    expected_flags = fmt.overflows(
        requantize(inputs, shift, FixedFormat(40, 0), rounding, "saturate")[0]
    )
    got, got_flags = [], []

    async def bench(ctx):
        for v in inputs:
            ctx.set(value, int(v) + offset)
            got.append(ctx.get(out))
            got_flags.append(ctx.get(flag))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == expected.tolist()
    assert got_flags == expected_flags.astype(int).tolist()


@pytest.mark.parametrize(("shift", "rounding", "overflow"), CASES)
def test_requantize_matches_golden_exhaustively(shift, rounding, overflow):
    _check_exhaustively(hw_requantize, 10, 0, shift, rounding, overflow)


@pytest.mark.parametrize(("shift", "rounding", "overflow"), CASES)
def test_requantize_offset_of_value_plus_offset_matches_golden_exhaustively(
    shift, rounding, overflow
):
    # the MVU's form: the rounding offset is added ahead (to the bias), the circuit only
    # shifts, checks the range and selects; the value is wide enough that v + h never wraps
    h = rounding_offset(shift, rounding)
    assert h == (1 << (shift - 1) if shift > 0 and rounding != "truncate" else 0)
    _check_exhaustively(requantize_offset, max(10, shift) + 1, h, shift, rounding, overflow)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("shift", [1, 4, 8, 9, 11])  # including shifts wider than the value
def test_shift_round_matches_golden_exhaustively(shift, rounding):
    value = Signal(signed(8))
    out = Signal(signed(12))
    m = Module()
    m.d.comb += out.eq(hw_shift_round(value, shift, rounding))
    inputs = np.arange(-128, 128, dtype=np.int64)
    got = []

    async def bench(ctx):
        for v in inputs:
            ctx.set(value, int(v))
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == shift_round(inputs, shift, rounding).tolist()


@pytest.mark.parametrize(("shift", "rounding", "overflow"), CASES)
def test_two_halves_with_the_increment_computed_ahead_match_golden_exhaustively(
    shift, rounding, overflow
):
    # the pipelined form: rounding_up beside the adder, requantize_parts(up=) one stage later,
    # requantize_finish after the parts register (here all combinational)
    def halves(value, shift, fmt, rounding, overflow):
        up = rounding_up(value, shift, rounding)
        parts = requantize_parts(value, shift, fmt, rounding, up=up)
        return requantize_finish(parts, fmt, overflow)

    _check_exhaustively(halves, 10, 0, shift, rounding, overflow)
