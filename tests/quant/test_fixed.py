"""Fixed-point primitives against an independent model in Python ints and Fractions.

Every function of ``lstmfpga.quant.fixed`` is specified here by a few lines of exact
arithmetic (``_ref_*``), and hypothesis checks the NumPy implementation against them over the
whole code range: all rounding modes, both overflow modes, positive and negative shifts.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from quant_helpers import exactly

from lstmfpga.quant.fixed import (
    MAX_BITS,
    OVERFLOW_MODES,
    ROUNDING_MODES,
    FixedFormat,
    FormatError,
    bits_for_range,
    requantize,
    saturate,
    shift_round,
    wrap,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
rounding_modes = st.sampled_from(ROUNDING_MODES)
overflow_modes = st.sampled_from(OVERFLOW_MODES)


# -- the independent model ----------------------------------------------------------------------
def _ref_round(value: Fraction, rounding: str) -> int:
    if rounding == "truncate":
        return math.floor(value)
    if rounding == "half_up":
        return math.floor(value + Fraction(1, 2))
    if rounding == "half_even":
        return round(value)  # Fraction.__round__ rounds ties to even
    raise AssertionError(rounding)


def _ref_shift_round(code: int, shift: int, rounding: str) -> int:
    return _ref_round(
        Fraction(code, 2**shift) if shift > 0 else Fraction(code * 2**-shift), rounding
    )


def _ref_range(fmt: FixedFormat) -> tuple[int, int]:
    if fmt.signed:
        return -(2 ** (fmt.bits - 1)), 2 ** (fmt.bits - 1) - 1
    return 0, 2**fmt.bits - 1


def _ref_saturate(code: int, fmt: FixedFormat) -> int:
    low, high = _ref_range(fmt)
    return min(max(code, low), high)


def _ref_wrap(code: int, fmt: FixedFormat) -> int:
    low, _ = _ref_range(fmt)
    return (code - low) % 2**fmt.bits + low


def _ref_fit(code: int, fmt: FixedFormat, overflow: str) -> int:
    return _ref_saturate(code, fmt) if overflow == "saturate" else _ref_wrap(code, fmt)


def _ref_quantize(value: float, fmt: FixedFormat, rounding: str, overflow: str) -> int:
    code = _ref_round(Fraction(value) * Fraction(2) ** fmt.frac, rounding)
    code = min(max(code, -(2**MAX_BITS)), 2**MAX_BITS)  # documented clip before fitting
    return _ref_fit(code, fmt, overflow)


@st.composite
def formats(draw, min_frac: int = -MAX_BITS, max_frac: int = 2 * MAX_BITS, max_bits=MAX_BITS):
    signed = draw(st.booleans())
    bits = draw(st.integers(2 if signed else 1, max_bits))
    return FixedFormat(bits, draw(st.integers(min_frac, max_frac)), signed)


# -- shift_round ---------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(code=INT64, shift=st.integers(1, MAX_BITS), rounding=rounding_modes)
@example(code=-(2**63), shift=62, rounding="half_even")
@example(code=2**63 - 1, shift=1, rounding="half_up")
@example(code=5, shift=1, rounding="half_even")  # tie, floor even: 2
@example(code=7, shift=1, rounding="half_even")  # tie, floor odd: 4
@example(code=-5, shift=1, rounding="half_up")  # tie towards +inf: -2
def test_right_shift_rounds_like_exact_division(code, shift, rounding):
    assert int(shift_round(np.int64(code), shift, rounding)) == _ref_shift_round(
        code, shift, rounding
    )


@settings(deadline=None)
@given(data=st.data(), shift=st.integers(-MAX_BITS, 0), rounding=rounding_modes)
def test_left_shift_is_exact_multiplication(data, shift, rounding):
    limit = 2 ** (62 + shift)  # codes whose product still fits int64
    code = data.draw(st.integers(-limit, limit - 1))
    assert int(shift_round(np.int64(code), shift, rounding)) == code * 2**-shift


@settings(deadline=None)
@given(
    codes=st.lists(INT64, min_size=1, max_size=40),
    shift=st.integers(1, MAX_BITS),
    rounding=rounding_modes,
)
def test_shift_round_is_elementwise(codes, shift, rounding):
    got = shift_round(np.array(codes, dtype=np.int64), shift, rounding)
    assert got.dtype == np.int64
    assert got.tolist() == [_ref_shift_round(c, shift, rounding) for c in codes]


def test_shift_round_ties():
    codes = np.array([-7, -6, -5, -3, -1, 1, 3, 5, 6, 7], dtype=np.int64)  # x / 2
    assert shift_round(codes, 1, "half_even").tolist() == [-4, -3, -2, -2, 0, 0, 2, 2, 3, 4]
    assert shift_round(codes, 1, "half_up").tolist() == [-3, -3, -2, -1, 0, 1, 2, 3, 3, 4]
    assert shift_round(codes, 1, "truncate").tolist() == [-4, -3, -3, -2, -1, 0, 1, 2, 3, 3]


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        (63, "shift must be in -62..62, not 63"),
        (-63, "shift must be in -62..62, not -63"),
        (1.0, "shift must be an integer, not 1.0"),
        (True, "shift must be an integer, not True"),
    ],
)
def test_shift_round_rejects_bad_shifts(shift, message):
    with pytest.raises(FormatError, match=exactly(message)):
        shift_round(np.int64(1), shift)


def test_shift_round_rejects_unknown_rounding():
    with pytest.raises(
        FormatError, match=exactly(f"rounding must be one of {ROUNDING_MODES}, not 'nearest'")
    ):
        shift_round(np.int64(1), 1, "nearest")


# -- saturate / wrap / requantize --------------------------------------------------------------
@settings(deadline=None)
@given(code=INT64, fmt=formats())
def test_saturate_clamps_to_the_format_range(code, fmt):
    assert int(saturate(np.int64(code), fmt)) == _ref_saturate(code, fmt)


@settings(deadline=None)
@given(code=INT64, fmt=formats())
@example(code=2**63 - 1, fmt=FixedFormat(62, 0))
@example(code=-(2**63), fmt=FixedFormat(1, 0, signed=False))
def test_wrap_keeps_the_low_bits(code, fmt):
    assert int(wrap(np.int64(code), fmt)) == _ref_wrap(code, fmt)


@settings(deadline=None)
@given(fmt=formats())
def test_codes_in_range_are_unchanged(fmt):
    low, high = _ref_range(fmt)
    codes = np.array([low, low + 1, 0 if fmt.signed else low, high - 1, high], dtype=np.int64)
    assert saturate(codes, fmt).tolist() == codes.tolist()
    assert wrap(codes, fmt).tolist() == codes.tolist()


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    fmt=formats(),
    shift=st.integers(-20, MAX_BITS),
    rounding=rounding_modes,
    overflow=overflow_modes,
)
def test_requantize_is_shift_round_then_fit(data, fmt, shift, rounding, overflow):
    limit = 2**62 if shift > 0 else 2 ** (62 + shift)
    codes = data.draw(st.lists(st.integers(-limit, limit - 1), min_size=1, max_size=20))
    got, count = requantize(np.array(codes, dtype=np.int64), shift, fmt, rounding, overflow)
    shifted = [_ref_shift_round(c, shift, rounding) for c in codes]
    low, high = _ref_range(fmt)
    assert got.tolist() == [_ref_fit(s, fmt, overflow) for s in shifted]
    assert count == sum(not low <= s <= high for s in shifted)


def test_requantize_counts_only_codes_that_do_not_fit():
    fmt = FixedFormat(4, 0)  # -8..7
    codes = np.array([-17, -16, -15, 13, 14, 15, 16], dtype=np.int64)  # >> 1, half_even
    got, count = requantize(codes, 1, fmt, "half_even", "saturate")
    assert got.tolist() == [-8, -8, -8, 6, 7, 7, 7]
    assert count == 2  # -17/2 -> -8 fits; 15/2 -> 8 and 16/2 -> 8 do not


# -- FixedFormat.quantize / dequantize ---------------------------------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(
    value=finite,
    fmt=formats(min_frac=-40, max_frac=80),
    rounding=rounding_modes,
    overflow=overflow_modes,
)
@example(value=0.49999999999999994, fmt=FixedFormat(8, 0), rounding="half_up", overflow="wrap")
@example(value=2.5, fmt=FixedFormat(8, 0), rounding="half_even", overflow="saturate")
@example(value=-2.5, fmt=FixedFormat(8, 0), rounding="half_up", overflow="saturate")
@example(value=1e300, fmt=FixedFormat(16, 80), rounding="truncate", overflow="saturate")
@example(value=-5e-324, fmt=FixedFormat(8, -1), rounding="truncate", overflow="saturate")
def test_quantize_rounds_the_exact_scaled_value(value, fmt, rounding, overflow):
    assert int(fmt.quantize(value, rounding, overflow)) == _ref_quantize(
        value, fmt, rounding, overflow
    )


@settings(deadline=None)
@given(fmt=formats(min_frac=-20, max_frac=60, max_bits=53), data=st.data())
def test_dequantize_then_quantize_is_the_identity(fmt, data):
    # float64 holds every code of up to 53 bits exactly.
    low, high = _ref_range(fmt)
    codes = np.array(data.draw(st.lists(st.integers(low, high), min_size=1, max_size=20)))
    for rounding in ROUNDING_MODES:
        assert fmt.quantize(fmt.dequantize(codes), rounding).tolist() == codes.tolist()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_quantize_rejects_non_finite_values(bad):
    with pytest.raises(
        FormatError, match=exactly("cannot quantize non-finite values (NaN or Inf)")
    ):
        FixedFormat(16, 8).quantize([1.0, bad])


# -- FixedFormat itself --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "text", "low", "high", "lsb"),
    [
        (FixedFormat(16, 12), "s16.12", -32768, 32767, 2.0**-12),
        (FixedFormat(8, 8, signed=False), "u8.8", 0, 255, 2.0**-8),
        (FixedFormat(2, 0), "s2.0", -2, 1, 1.0),
        (FixedFormat(1, 0, signed=False), "u1.0", 0, 1, 1.0),
        (FixedFormat(62, -3), "s62.-3", -(2**61), 2**61 - 1, 8.0),
        (FixedFormat(4, 9), "s4.9", -8, 7, 2.0**-9),
    ],
)
def test_format_properties(fmt, text, low, high, lsb):
    assert str(fmt) == text
    assert FixedFormat.parse(text) == fmt
    assert FixedFormat.from_dict(fmt.to_dict()) == fmt
    assert (fmt.min_code, fmt.max_code, fmt.lsb) == (low, high, lsb)
    assert fmt.min_value == low * lsb and fmt.max_value == high * lsb
    assert fmt.int_bits == fmt.bits - fmt.frac - int(fmt.signed)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 0, "frac": 0}, "bits must be in 2..62, not 0"),
        ({"bits": 1, "frac": 0}, "bits must be in 2..62, not 1"),
        ({"bits": 0, "frac": 0, "signed": False}, "bits must be in 1..62, not 0"),
        ({"bits": 63, "frac": 0}, "bits must be in 2..62, not 63"),
        ({"bits": 16, "frac": 125}, "frac must be in -62..124, not 125"),
        ({"bits": 16, "frac": -63}, "frac must be in -62..124, not -63"),
        ({"bits": 16.0, "frac": 8}, "bits must be an integer, not 16.0"),
        ({"bits": True, "frac": 8}, "bits must be an integer, not True"),
        ({"bits": 16, "frac": "8"}, "frac must be an integer, not '8'"),
    ],
)
def test_impossible_formats_are_rejected(kwargs, message):
    with pytest.raises(FormatError, match=exactly(message)):
        FixedFormat(**kwargs)


@pytest.mark.parametrize("text", ["16.12", "x16.12", "s16", "s16.a", "", "s.12"])
def test_parse_rejects_malformed_text(text):
    with pytest.raises(
        FormatError, match=exactly("format must look like 's16.12' or 'u8.8', not ", whole=False)
    ):
        FixedFormat.parse(text)


@settings(deadline=None)
@given(low=st.integers(-(2**61), 0), high=st.integers(0, 2**61))
def test_bits_for_range_is_the_smallest_width(low, high):
    bits = bits_for_range(low, high)
    assert -(2 ** (bits - 1)) <= low and high <= 2 ** (bits - 1) - 1
    assert bits == 1 or not (-(2 ** (bits - 2)) <= low and high <= 2 ** (bits - 2) - 1)
