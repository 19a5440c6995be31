"""Sigmoid/tanh tables: the documented lookup rule, symmetry, and error bounds.

``_ref_lookup`` restates the rule of ``docs/numerics.md`` (fold, bit-slice index,
interpolate with half-up rounding, unfold) for one code with Python ints and Fractions; the
table's vectorized ``lookup`` must agree on every code we try.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from quant_helpers import exactly

from lstmfpga.quant.activation import ActivationTable, exact_activation, make_table
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.fixed import FixedFormat, FormatError

GATE = FixedFormat(16, 14)


def _f(function: str, x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if function == "sigmoid" else math.tanh(x)


def _ref_lookup(table: ActivationTable, p: int) -> int:
    a = abs(p)  # fold
    k, r = a >> table.shift, a % 2**table.shift  # bit-slice index
    if k >= table.size:  # beyond the range: the last entry
        k, r = table.size, 0
    entry, slope = int(table.entries[k]), int(table.slopes[k])
    if table.interpolate:
        exact = Fraction(entry * 2**table.shift + slope * r, 2 ** (table.shift + table.guard))
    else:
        exact = Fraction(entry, 2**table.guard)
    y = math.floor(exact + Fraction(1, 2))  # half_up
    if p < 0:  # unfold
        y = table.one - y if table.function == "sigmoid" else -y
    return y


def _all_codes(fmt: FixedFormat) -> np.ndarray:
    return np.arange(fmt.min_code, fmt.max_code + 1, dtype=np.int64)


def _exact_error_lsb(table: ActivationTable) -> np.ndarray:
    """|lookup - f| over every input code, in output LSBs (float64 ``f``)."""
    p = _all_codes(table.in_fmt)
    x = table.in_fmt.dequantize(p)
    f = 0.5 * (1.0 + np.tanh(0.5 * x)) if table.function == "sigmoid" else np.tanh(x)
    return np.abs(table.lookup(p) - f * 2.0**table.out_fmt.frac)


def _preset_table(function: str, in_fmt: FixedFormat, preset: str = "q16") -> ActivationTable:
    return getattr(QuantConfig.preset(preset), function).table(function, in_fmt, GATE)


TABLES = [
    pytest.param(("sigmoid", FixedFormat(16, 12), {}), id="sigmoid-s16.12-default"),
    pytest.param(("tanh", FixedFormat(16, 12), {"step_log2": -7}), id="tanh-s16.12-step-7"),
    pytest.param(("tanh", FixedFormat(16, 14), {"range_log2": 3}), id="tanh-s16.14-range8"),
    pytest.param(("sigmoid", FixedFormat(12, 8), {"interpolate": False}), id="sigmoid-direct"),
    pytest.param(("tanh", FixedFormat(10, 9), {"guard": 0}), id="tanh-guard0"),
    pytest.param(("sigmoid", FixedFormat(8, 2), {"step_log2": -5}), id="sigmoid-one-per-code"),
    pytest.param(("tanh", FixedFormat(20, 15), {"range_log2": 2}), id="tanh-20bit-input"),
    pytest.param(("sigmoid", FixedFormat(16, -2), {}), id="sigmoid-coarse-input"),
]


@pytest.mark.parametrize("case", TABLES)
def test_lookup_follows_the_documented_rule(case):
    function, in_fmt, kwargs = case
    table = make_table(function, in_fmt, GATE, **kwargs)
    rng = np.random.default_rng(7)
    codes = rng.integers(in_fmt.min_code, in_fmt.max_code + 1, 3000)
    edges = [in_fmt.min_code, in_fmt.min_code + 1, -1, 0, 1, in_fmt.max_code]
    boundary = (np.arange(table.size + 1) << table.shift).clip(max=in_fmt.max_code)
    codes = np.concatenate([codes, edges, boundary, -boundary, boundary - 1])
    codes = codes[(codes >= in_fmt.min_code) & (codes <= in_fmt.max_code)]
    got = table.lookup(codes)
    assert got.dtype == np.int64
    assert got.tolist() == [_ref_lookup(table, int(p)) for p in codes]
    # The cached code map (or not, for wide inputs) and the rule give the same codes.
    assert np.array_equal(table.lookup_in_range(codes), got)
    assert int(table.lookup(np.int64(codes[0]))) == got[0]


@pytest.mark.parametrize("case", TABLES)
def test_entries_sample_the_function(case):
    """Entries are ``f`` at the documented points, rounded to ``out.frac + guard`` bits."""
    function, in_fmt, kwargs = case
    t = make_table(function, in_fmt, GATE, **kwargs)
    step = 2.0 ** (t.shift - in_fmt.frac)
    k = np.arange(t.size + 1)
    if t.interpolate or t.shift == 0:
        points = k * step
    else:
        points = np.append((k[:-1] + 0.5) * step, t.size * step)
    scale = 2.0 ** (GATE.frac + t.guard)
    exact = np.array([_f(function, x) for x in points]) * scale
    assert np.all(np.abs(t.entries - exact) <= 0.5 + 1e-6)
    assert t.slopes[-1] == 0
    if t.interpolate:
        assert np.array_equal(t.slopes[:-1], np.diff(t.entries))
    else:
        assert not t.slopes.any() and t.guard == 0


@pytest.mark.parametrize("case", TABLES)
def test_tables_are_symmetric_and_monotonic(case):
    function, in_fmt, kwargs = case
    table = make_table(function, in_fmt, GATE, **kwargs)
    p = np.arange(-in_fmt.max_code, in_fmt.max_code + 1, dtype=np.int64)
    if not table.interpolate and table.shift > 0:
        # A direct table's first entry is f(step / 2), which p = 0 reads unfolded: the only
        # code where a direct table is not symmetric (documented; presets interpolate).
        p = p[p != 0]
    y, y_neg = table.lookup(p), table.lookup(-p)
    if function == "sigmoid":
        assert np.array_equal(y_neg, table.one - y)  # sigmoid(-x) = 1 - sigmoid(x)
        assert y.min() >= 0 and y.max() <= table.one
    else:
        assert np.array_equal(y_neg, -y)  # tanh is odd
        assert np.abs(y).max() <= table.one
    assert np.all(np.diff(table.lookup(_all_codes(in_fmt))) >= 0)


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
@pytest.mark.parametrize("frac", [0, 4, 8, 10, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("preset", ["q16", "w8a16"])
def test_preset_tables_are_within_one_lsb_on_every_code(function, frac, preset):
    """Every preact/cell format calibration can choose (s16.0 .. s16.15) stays within 1 LSB."""
    table = _preset_table(function, FixedFormat(16, frac), preset)
    error = _exact_error_lsb(table)
    assert error.max() <= 1.0
    assert table.error().max_lsb == pytest.approx(error.max())
    assert table.error().mean_lsb == pytest.approx(error.mean())
    assert table.error().exhaustive


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_interpolation_beats_direct_lookup(function):
    in_fmt = FixedFormat(16, 12)
    for step_log2 in (-3, -5, -7):
        interpolated = make_table(function, in_fmt, GATE, step_log2=step_log2)
        direct = make_table(function, in_fmt, GATE, step_log2=step_log2, interpolate=False)
        assert interpolated.size == direct.size
        assert _exact_error_lsb(interpolated).max() < _exact_error_lsb(direct).max()


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
@pytest.mark.parametrize("interpolate", [True, False])
def test_errors_shrink_as_tables_grow(function, interpolate):
    in_fmt = FixedFormat(16, 12)
    sizes, maxima, means = [], [], []
    for step_log2 in (-1, -2, -3, -4, -5, -6):
        table = make_table(function, in_fmt, GATE, step_log2=step_log2, interpolate=interpolate)
        error = _exact_error_lsb(table)
        sizes.append(table.size)
        maxima.append(error.max())
        means.append(error.mean())
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert all(a > b for a, b in itertools.pairwise(maxima))
    assert all(a > b for a, b in itertools.pairwise(means))


def test_range_limit_uses_the_last_entry_beyond_it():
    table = make_table("tanh", FixedFormat(16, 12), GATE, step_log2=-6, range_log2=2)
    beyond = np.array([4 << 12, (4 << 12) + 1, 32767], dtype=np.int64)  # |x| >= 4
    expected = (int(table.entries[-1]) + 2 ** (table.guard - 1)) >> table.guard
    assert table.lookup(beyond).tolist() == [expected] * 3
    assert table.lookup(-beyond).tolist() == [-expected] * 3
    assert table.size == (4 << 12) >> table.shift


def test_derived_widths():
    table = make_table("sigmoid", FixedFormat(16, 12), GATE, step_log2=-5, range_log2=4)
    # |p| has 15 magnitude bits (the range 2**4 covers s16.12); 2**-5 steps drop 7 of them.
    assert (table.shift, table.size) == (7, 256)
    assert table.magnitude_bits == 16
    assert table.index_bits == 9  # 0..256
    assert table.one == 1 << 14
    for width, values in ((table.entry_bits, table.entries), (table.slope_bits, table.slopes)):
        assert -(2 ** (width - 1)) <= values.min() and values.max() < 2 ** (width - 1)
        assert not (-(2 ** (width - 2)) <= values.min() and values.max() < 2 ** (width - 2))
    assert table.rom_bits == 257 * (table.entry_bits + table.slope_bits)
    assert not table.entries.flags.writeable and not table.slopes.flags.writeable


def test_wide_inputs_report_a_sampled_error():
    table = make_table("tanh", FixedFormat(28, 20), GATE, step_log2=-7, range_log2=3)
    error = table.error()
    assert not error.exhaustive
    assert 0.0 < error.max_lsb <= 1.0


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("relu", FixedFormat(16, 12), GATE), {}, "function must be one of"),
        (("tanh", FixedFormat(16, 12, False), GATE), {}, "activation input format must be signed"),
        (("tanh", FixedFormat(16, 12), FixedFormat(16, 15)), {}, "activation output format must"),
        (("tanh", FixedFormat(16, 12), GATE), {"guard": 17}, "guard must be in 0..16, not 17"),
        (("tanh", FixedFormat(16, 12), GATE), {"range_log2": -13}, "range_log2 -13 is below"),
        (("tanh", FixedFormat(40, 30), GATE), {"step_log2": -30}, "tanh table would need"),
    ],
)
def test_impossible_tables_are_rejected(args, kwargs, message):
    with pytest.raises(FormatError, match=exactly(message, whole=False)):
        make_table(*args, **kwargs)


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_exact_activation_is_the_float64_function(function):
    x = np.array([-40.0, -3.5, -0.25, 0.0, 0.25, 3.5, 40.0])
    expected = [_f(function, v) for v in x]
    table = make_table(function, FixedFormat(12, 8), GATE)
    assert np.allclose(exact_activation(function, x), expected, rtol=0, atol=1e-15)
    assert np.array_equal(table.exact(x), exact_activation(function, x))


@pytest.mark.parametrize(
    ("kwargs", "interpolates"),
    [({}, True), ({"interpolate": False}, False), ({"step_log2": -8}, False)],
)
def test_rom_word_holds_an_entry_and_its_slope_when_interpolating(kwargs, interpolates):
    # FixedFormat(12, 8) with step 2**-8 is one entry per code: shift 0, nothing to interpolate
    table = make_table("tanh", FixedFormat(12, 8), GATE, **kwargs)
    assert table.interpolates is interpolates
    assert table.rom_word_bits == table.entry_bits + (table.slope_bits if interpolates else 0)
    assert table.rom_bits == (table.size + 1) * table.rom_word_bits
