"""The golden model: against the float reference (within a documented tolerance), against a
step-by-step restatement of its own pipeline (exactly), and its saturation counters.

Tolerances are those of ``docs/numerics.md`` ("Golden model vs float"): over random models
(``lstmfpga.testing.random_spec``, inputs N(0, 1), calibrated on the inputs and states they
run on), ``max |golden - float| <= TOL_MAX * max(1, max |float|)`` for every model and the
median of that relative error over the set is at most ``TOL_MEDIAN``.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from golden_reference import random_states as _random_states
from golden_reference import restated_run as _restated_run
from quant_helpers import exactly, rmse, uniform_config

from lstmfpga.export.reference import forward
from lstmfpga.export.spec import HeadSpec, LayerWeights, ModelSpec, SpecError
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig, RoleRule
from lstmfpga.quant.fixed import ROUNDING_MODES, FixedFormat
from lstmfpga.testing import random_geometry, random_inputs, random_spec

# docs/numerics.md, "Golden model vs float".
TOL_MAX = {"q16": 5e-3, "w8a16": 8e-2, "w8a8": 1e-1, "w4a8": 1.0}
TOL_MEDIAN = {"q16": 2e-4, "w8a16": 6e-3, "w8a8": 1.5e-2, "w4a8": 6e-2}

# (seed, random_spec kwargs, seq, initial states): every feature and edge geometry.
MODELS = [
    (0, {}, 1, False),
    (1, {"input_size": 1, "hidden_size": 1}, 7, False),
    (2, {"hidden_size": 8, "head": "last"}, 12, False),
    (3, {"num_layers": 2, "head": "all"}, 9, True),
    (4, {"num_layers": 3, "hidden_size": 5}, 10, False),
    (5, {"bidirectional": True}, 8, True),
    (6, {"bidirectional": True, "num_layers": 2, "head": "last"}, 11, False),
    (7, {"proj_size": 2, "hidden_size": 6}, 9, True),
    (8, {"proj_size": 1, "num_layers": 2, "bidirectional": True, "head": "all"}, 6, False),
    (9, {"bias": False, "head": "last", "head_bias": False}, 12, False),
    (10, {"bias": False, "num_layers": 3, "bidirectional": True}, 5, True),
    (11, {"input_size": 16, "hidden_size": 16, "head": "last"}, 12, True),
    (12, {"input_size": 7, "hidden_size": 3, "num_layers": 2, "proj_size": 2}, 12, False),
    (13, {"hidden_size": 2, "scale": 1.5, "head": "all"}, 10, True),
]
MODEL_IDS = [f"seed{m[0]}" for m in MODELS]
PRESET_NAMES = ("q16", "w8a16")


def _states(spec: ModelSpec, seed: int, batch: int):
    rng = np.random.default_rng(seed + 500)
    LD = spec.num_layers * spec.num_directions
    h0 = np.tanh(rng.normal(0, 0.5, (LD, batch, spec.output_size)))
    c0 = rng.normal(0, 0.5, (LD, batch, spec.hidden_size))
    return h0, c0


def _case(seed, kwargs, seq, with_states, batch=6):
    spec = random_spec(seed, **kwargs)
    x = random_inputs(seed, batch, seq, spec.input_size)
    h0, c0 = _states(spec, seed, batch) if with_states else (None, None)
    return spec, x, h0, c0


def _relative_error(spec, x, h0, c0, config):
    model = quantize(spec, x, config, h0=h0, c0=c0)
    y, result = golden.predict(model, x, h0, c0)
    ref = forward(spec, x, h0, c0).prediction
    assert y.shape == ref.shape
    return float(np.abs(y - ref).max() / max(1.0, np.abs(ref).max())), result


# -- golden vs float ------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(TOL_MAX))
def test_golden_is_within_the_documented_tolerance_of_float(preset):
    errors = {}
    for seed, kwargs, seq, with_states in MODELS:
        spec, x, h0, c0 = _case(seed, kwargs, seq, with_states)
        error, result = _relative_error(spec, x, h0, c0, QuantConfig.preset(preset))
        errors[seed] = error
        assert set(result.saturation.values()) == {0}, (seed, result.saturation)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOL_MAX[preset], f"seed {worst}: {errors[worst]:.3g}"
    assert np.median(list(errors.values())) <= TOL_MEDIAN[preset], errors


@pytest.mark.parametrize(("seed", "kwargs", "seq", "with_states"), MODELS, ids=MODEL_IDS)
def test_golden_output_shapes_match_the_reference(seed, kwargs, seq, with_states):
    spec, x, h0, c0 = _case(seed, kwargs, seq, with_states)
    model = quantize(spec, x, h0=h0, c0=c0)
    _, result = golden.predict(model, x, h0, c0)
    ref = forward(spec, x, h0, c0)
    assert result.output.shape == ref.output.shape
    assert result.h_n.shape == ref.h_n.shape and result.c_n.shape == ref.c_n.shape
    assert (result.head is None) == (ref.head is None)
    if ref.head is not None:
        assert result.head.shape == ref.head.shape
    for codes in (result.output, result.h_n, result.c_n, result.prediction):
        assert codes.dtype == np.int64
        assert codes.flags.c_contiguous


def test_error_shrinks_as_bits_grow():
    for seed, kwargs, seq, with_states in MODELS[2:8]:
        spec, x, h0, c0 = _case(seed, kwargs, seq, with_states)
        ref = forward(spec, x, h0, c0).prediction
        errors = []
        for bits in (12, 16, 20):
            model = quantize(spec, x, uniform_config(bits), h0=h0, c0=c0)
            errors.append(rmse(golden.predict(model, x, h0, c0)[0], ref))
        assert errors[0] > 4 * errors[1] > 16 * errors[2], (seed, errors)


def test_w8a16_is_coarser_than_q16():
    for seed, kwargs, seq, with_states in MODELS[:6]:
        spec, x, h0, c0 = _case(seed, kwargs, seq, with_states)
        ref = forward(spec, x, h0, c0).prediction
        q16, w8 = (quantize(spec, x, QuantConfig.preset(p), h0=h0, c0=c0) for p in PRESET_NAMES)
        assert rmse(golden.predict(q16, x, h0, c0)[0], ref) < rmse(
            golden.predict(w8, x, h0, c0)[0], ref
        )


def test_presets_grow_coarser_from_w8a16_to_w8a8_to_w4a8():
    """8-bit data costs accuracy over 16-bit data, and 4-bit weights over 8-bit ones."""
    for seed, kwargs, seq, with_states in MODELS:
        spec, x, h0, c0 = _case(seed, kwargs, seq, with_states)
        ref = forward(spec, x, h0, c0).prediction
        errors = []
        for preset in ("w8a16", "w8a8", "w4a8"):
            model = quantize(spec, x, QuantConfig.preset(preset), h0=h0, c0=c0)
            errors.append(rmse(golden.predict(model, x, h0, c0)[0], ref))
        assert errors[0] < errors[1] < errors[2], (seed, errors)


# -- saturation counters --------------------------------------------------------------------------
def _with_role(config: QuantConfig, **rules) -> QuantConfig:
    return dataclasses.replace(config, roles={**config.roles, **rules})


def test_benign_data_saturates_nothing():
    spec, x, h0, c0 = _case(3, {"num_layers": 2, "head": "all", "proj_size": 2}, 10, True)
    model = quantize(spec, x, h0=h0, c0=c0)
    _, result = golden.predict(model, x, h0, c0)
    assert result.saturation == {
        "x": 0,
        "hidden": 0,
        "cell": 0,
        "preact": 0,
        "head_out": 0,
    }


def test_inputs_beyond_the_calibrated_range_count_as_x_saturation():
    spec = random_spec(1, head="last")
    calib = random_inputs(1, 8, 10, 3)
    model = quantize(spec, calib)
    fmt = model.formats["x"]
    x = random_inputs(2, 8, 10, 3) * 4
    exact = [Fraction(v) * 2**fmt.frac for v in x.ravel().tolist()]
    expected = sum(not fmt.min_code <= round(v) <= fmt.max_code for v in exact)
    _, result = golden.predict(model, x)
    assert expected > 0
    assert result.saturation["x"] == expected


def test_large_inputs_saturate_preactivations():
    spec = random_spec(4, input_size=4, hidden_size=6, scale=1.0)
    x = random_inputs(4, 8, 6, 4)
    model = quantize(spec, x)
    assert golden.predict(model, x)[1].saturation["preact"] == 0
    result = golden.predict(model, x * 5)[1]
    pre = golden.run(model, golden.quantize_inputs(model, x * 5), trace=True).trace[(0, 0)]
    fmt = model.formats["preact"]
    at_bounds = np.count_nonzero((pre["preact"] == fmt.min_code) | (pre["preact"] == fmt.max_code))
    assert 0 < result.saturation["preact"] <= at_bounds


def _integrating_cell_spec(hidden: int = 3) -> ModelSpec:
    """Forget gate ~1, input gate ~1, g ~1: c grows by about 1 per step."""
    H = hidden
    bias = np.concatenate([np.full(H, 6.0), np.full(H, 6.0), np.full(H, 3.0), np.full(H, 6.0)])
    weights = LayerWeights(
        w_ih=np.full((4 * H, 1), 0.01),
        w_hh=np.zeros((4 * H, H)),
        b_ih=bias,
        b_hh=np.zeros(4 * H),
    )
    head = HeadSpec(np.full((1, H), 30.0), np.array([1.0]), "all")
    return ModelSpec(1, H, 1, False, 0, True, ((weights,),), head)


def _recount_cell_saturation(model, trace, c0) -> int:
    """Recompute the cell requantization from traced gates with Fractions; count misfits."""
    cell = golden.CellArithmetic.of(model)
    gates, c = trace["gates"], trace["c"]
    H = model.hidden_size
    count, c_prev = 0, c0
    for t in range(c.shape[1]):
        i, f, g = (gates[:, t, k * H : (k + 1) * H] for k in (0, 1, 2))
        for i_, f_, g_, cp in zip(i.ravel(), f.ravel(), g.ravel(), c_prev.ravel(), strict=True):
            total = int(f_) * int(cp) * 2**cell.fc_shift + int(i_) * int(g_) * 2**cell.ig_shift
            code = round(Fraction(total, 2**cell.c_shift))  # half_even
            count += not cell.cell.min_code <= code <= cell.cell.max_code
        c_prev = c[:, t]
    return count


def test_cell_saturation_counts_every_clamped_cell_state():
    spec = _integrating_cell_spec()
    x = np.zeros((2, 12, 1))
    config = _with_role(QuantConfig.preset("q16"), cell=RoleRule(16, 12))  # |c| < 8
    model = quantize(spec, x, config)
    result = golden.run(model, golden.quantize_inputs(model, x), trace=True)
    c = result.trace[(0, 0)]["c"]
    assert c.max() == model.formats["cell"].max_code
    expected = _recount_cell_saturation(model, result.trace[(0, 0)], np.zeros((2, 3), np.int64))
    assert result.saturation["cell"] == expected > 0


def test_hidden_and_head_saturation_are_counted():
    spec = _integrating_cell_spec()
    x = np.zeros((2, 12, 1))
    # hidden s16.16 holds |m| < 0.5 although m = o * tanh(c) reaches ~1; head_out s16.15 < 1.
    config = _with_role(
        QuantConfig.preset("q16"), hidden=RoleRule(16, 16), head_out=RoleRule(16, 15)
    )
    model = quantize(spec, x, config)
    result = golden.run(model, golden.quantize_inputs(model, x), trace=True)
    m = result.trace[(0, 0)]["m"]
    assert result.saturation["hidden"] == np.count_nonzero(m == model.formats["hidden"].max_code)
    assert result.saturation["hidden"] > 0
    assert result.saturation["head_out"] == result.head.size  # 30 * h + 1 > 1 everywhere


def test_initial_states_outside_their_formats_count():
    spec = random_spec(0)
    x = random_inputs(0, 2, 3, 3)
    model = quantize(spec, x)
    h0 = np.full((1, 2, 4), 10.0)
    c0 = np.full((1, 2, 4), 1e3)
    _, result = golden.predict(model, x, h0, c0)
    assert result.saturation["x"] == 0
    assert result.saturation["hidden"] >= 8 and result.saturation["cell"] >= 8


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
@pytest.mark.parametrize("index", [3, 6, 8, 10, 13])
def test_run_equals_the_restated_pipeline(index, rounding, overflow):
    seed, kwargs, seq, _ = MODELS[index]
    spec = random_spec(seed, **{**kwargs, "scale": 2.0})  # saturating: exercise overflow
    x = random_inputs(seed, 4, seq, spec.input_size) * 2
    config = dataclasses.replace(QuantConfig.preset("q16"), rounding=rounding, overflow=overflow)
    config = _with_role(config, preact=RoleRule(16, 14))  # |preact| < 2: saturates
    model = quantize(spec, x * 0.5, config)
    x_codes = golden.quantize_inputs(model, x)
    LD = len(model.layers) * model.num_directions
    rng = np.random.default_rng(seed)
    h0, c0 = (
        rng.integers(fmt.min_code, fmt.max_code + 1, (LD, 4, size))
        for fmt, size in (
            (model.formats["hidden"], model.output_size),
            (model.formats["cell"], model.hidden_size),
        )
    )
    result = golden.run(model, x_codes, h0, c0, trace=True)
    output, traces, head, counts = _restated_run(model, x_codes, h0, c0)
    assert np.array_equal(result.output, output)
    assert result.saturation == counts
    assert counts["preact"] > 0
    assert (head is None and result.head is None) or np.array_equal(result.head, head)
    for key, trace in traces.items():
        for name, values in trace.items():
            assert np.array_equal(result.trace[key][name], values), (key, name)
    D, last = model.num_directions, seq - 1
    for (index_, d), trace in traces.items():
        t_final = 0 if d else last
        assert np.array_equal(result.h_n[index_ * D + d], trace["h"][:, t_final])
        assert np.array_equal(result.c_n[index_ * D + d], trace["c"][:, t_final])


def _random_geometry(rng) -> dict:
    """random_spec kwargs: 1-2 layers, uni/bidirectional, projection, bias, every head mode."""
    return random_geometry(
        rng, max_input_size=5, max_hidden_size=8, max_layers=2, scales=(1.0, 2.5)
    )


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("preset", list(TOL_MAX))
def test_run_equals_the_restated_pipeline_on_random_models_of_every_preset(preset, rounding):
    """Random geometries, random initial states and inputs beyond the calibrated range: the
    optimized run gives the restated pipeline's integers and saturation counts exactly."""
    rng = np.random.default_rng(ROUNDING_MODES.index(rounding) * 10 + list(TOL_MAX).index(preset))
    saturated = set()
    for trial in range(4):
        kwargs = _random_geometry(rng)
        seed = int(rng.integers(1000))
        spec = random_spec(seed, **kwargs)
        batch, seq = int(rng.integers(1, 5)), int(rng.integers(1, 7))
        calib = random_inputs(seed, batch, seq, spec.input_size)
        config = dataclasses.replace(QuantConfig.preset(preset), rounding=rounding)
        model = quantize(spec, calib, config)
        assert golden._FloatDatapath.exact_for(model), (preset, kwargs)
        x_codes = golden.quantize_inputs(model, calib * float(rng.choice([1.0, 4.0])))
        h0, c0 = _random_states(model, batch, rng)
        result = golden.run(model, x_codes, h0, c0)
        output, traces, head, counts = _restated_run(model, x_codes, h0, c0)
        context = (preset, rounding, trial, kwargs)
        assert np.array_equal(result.output, output), context
        assert result.saturation == counts, context
        assert (head is None and result.head is None) or np.array_equal(result.head, head)
        D = model.num_directions
        for (index, d), trace in traces.items():
            t_final = 0 if d else seq - 1
            assert np.array_equal(result.h_n[index * D + d], trace["h"][:, t_final]), context
            assert np.array_equal(result.c_n[index * D + d], trace["c"][:, t_final]), context
        saturated |= {role for role, n in counts.items() if n}
    assert saturated  # the draws exercise the saturation paths


@pytest.mark.parametrize("preset", list(TOL_MAX))
def test_presets_cannot_saturate_m_and_the_skipped_check_is_sound(preset):
    """The float path skips the hidden check of ``m = o * tanh_cell(c)`` only when the maps'
    extreme products fit ``hidden``; a hidden format too narrow for 1.0 keeps the check."""
    spec, x, h0, c0 = _case(3, {"num_layers": 2, "head": "all"}, 6, True)
    model = quantize(spec, x, QuantConfig.preset(preset), h0=h0, c0=c0)
    assert not golden._FloatDatapath(model).m_may_saturate
    m_bits = model.formats["hidden"].bits
    narrow = _with_role(QuantConfig.preset(preset), hidden=RoleRule(m_bits, m_bits))  # |m| < 0.5
    model = quantize(spec, x, narrow, h0=h0, c0=c0)
    assert golden._FloatDatapath(model).m_may_saturate


def test_trace_internals_are_consistent():
    """Gates are table lookups of preact; c and m are CellArithmetic.update of traced values."""
    spec, x, h0, c0 = _case(6, {"bidirectional": True, "num_layers": 2, "head": "last"}, 9, True)
    model = quantize(spec, x, h0=h0, c0=c0)
    hc = model.formats["hidden"].quantize(h0), model.formats["cell"].quantize(c0)
    result = golden.run(model, golden.quantize_inputs(model, x), *hc, trace=True)
    H, D = model.hidden_size, model.num_directions
    cell = golden.CellArithmetic.of(model)
    for (index, d), tr in result.trace.items():
        pre, gates = tr["preact"], tr["gates"]
        blocks = [slice(k * H, (k + 1) * H) for k in range(4)]
        for k, block in enumerate(blocks):
            table = model.tables["tanh_gate" if k == 2 else "sigmoid"]
            assert np.array_equal(gates[..., block], table.lookup(pre[..., block]))
        order = range(x.shape[1] - 1, -1, -1) if d else range(x.shape[1])
        c_prev = hc[1][index * D + d]
        for t in order:
            i, f, g, o = (gates[:, t, b] for b in blocks)
            c, m = cell.update(i, f, g, o, c_prev)
            assert np.array_equal(c, tr["c"][:, t]) and np.array_equal(m, tr["m"][:, t])
            c_prev = c
        assert np.array_equal(tr["h"], tr["m"])  # no projection
    assert np.array_equal(
        result.output, np.concatenate([result.trace[(1, 0)]["h"], result.trace[(1, 1)]["h"]], 2)
    )


# -- the two arithmetic paths --------------------------------------------------------------------
@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("index", [0, 7, 8, 11])
def test_int64_path_equals_float64_path(index, rounding):
    """acc_bits > 53 forces int64 matmuls and integer requantization; same codes."""
    seed, kwargs, seq, with_states = MODELS[index]
    spec, x, h0, c0 = _case(seed, {**kwargs, "scale": 1.5}, seq, with_states)
    base = dataclasses.replace(QuantConfig.preset("q16"), rounding=rounding)
    base = _with_role(base, preact=RoleRule(16, 14))  # |preact| < 2: some saturation
    fast = quantize(spec, x, base, h0=h0, c0=c0)
    exact = quantize(spec, x, dataclasses.replace(base, acc_bits=60), h0=h0, c0=c0)
    assert fast.acc.bits <= 53 < exact.acc.bits == 60
    assert fast.acc.frac == exact.acc.frac
    assert golden._FloatDatapath.exact_for(fast) and not golden._FloatDatapath.exact_for(exact)
    a = golden.predict(fast, x, h0, c0)[1]
    b = golden.predict(exact, x, h0, c0)[1]
    assert a.saturation == b.saturation
    assert a.saturation["preact"] > 0
    for name in ("output", "h_n", "c_n", "head"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


# (name, random_spec kwargs, batch, seq, input gain, roles that saturate): the geometries at the
# edges of the float path's buffers (one step, one sequence, hidden 1, 3 stacked bidirectional
# layers with a projection) and inputs far beyond the calibrated range.
EDGE_CASES = [
    (
        "3 bidirectional layers with projection",
        {"num_layers": 3, "bidirectional": True, "proj_size": 2, "hidden_size": 5, "head": "all"},
        3,
        6,
        1.0,
        (),
    ),
    ("one step", {"num_layers": 2, "head": "last"}, 4, 1, 1.0, ()),
    ("batch of one", {"bidirectional": True, "proj_size": 1, "hidden_size": 3}, 1, 7, 1.0, ()),
    ("one step, batch of one", {"bidirectional": True, "head": "last"}, 1, 1, 1.0, ()),
    (
        "saturating inputs",
        {"num_layers": 2, "bidirectional": True, "scale": 3.0, "head": "all"},
        4,
        8,
        8.0,
        ("preact", "cell", "hidden"),
    ),
    (
        "no bias, hidden 1",
        {"hidden_size": 1, "bias": False, "num_layers": 3},
        2,
        5,
        4.0,
        ("preact",),
    ),
]


def _assert_same_run(a, b):
    assert a.saturation == b.saturation
    for name in ("output", "h_n", "c_n", "head"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or np.array_equal(x, y), name
    assert a.trace.keys() == b.trace.keys()
    for key, trace in a.trace.items():
        assert trace.keys() == b.trace[key].keys()
        for name, values in trace.items():
            assert np.array_equal(values, b.trace[key][name]), (key, name)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize(
    ("kwargs", "batch", "seq", "gain", "saturating"),
    [c[1:] for c in EDGE_CASES],
    ids=[c[0] for c in EDGE_CASES],
)
def test_float_path_equals_int64_path_on_edge_geometries(
    kwargs, batch, seq, gain, saturating, rounding
):
    """Codes, states, saturation counts and every traced value agree, initial states included."""
    spec = random_spec(21, **kwargs)
    calib = random_inputs(21, batch, seq, spec.input_size)
    config = dataclasses.replace(QuantConfig.preset("q16"), rounding=rounding)
    # |preact| < 2, |c| < 2, |m| < 0.5: every requantization saturates at times.
    config = _with_role(
        config, preact=RoleRule(16, 14), cell=RoleRule(16, 14), hidden=RoleRule(16, 16)
    )
    fast = quantize(spec, calib, config)
    exact = quantize(spec, calib, dataclasses.replace(config, acc_bits=60))
    assert fast.formats == exact.formats and fast.acc.frac == exact.acc.frac
    assert golden._FloatDatapath.exact_for(fast) and not golden._FloatDatapath.exact_for(exact)
    x_codes = golden.quantize_inputs(fast, calib * gain)
    h0, c0 = _random_states(fast, batch, np.random.default_rng(seq))
    a = golden.run(fast, x_codes, h0, c0, trace=True)
    b = golden.run(exact, x_codes, h0, c0, trace=True)
    _assert_same_run(a, b)
    assert a.output.shape == (batch, seq, spec.num_directions * spec.output_size)
    assert all(a.saturation[role] > 0 for role in saturating), a.saturation


def test_float_path_equals_int64_path_when_preact_has_more_fraction_bits_than_acc():
    """requant_shift("preact") < 0: the accumulator is scaled up, far beyond 2**52 at times."""
    spec = random_spec(3, input_size=3, hidden_size=4, scale=20.0, head="last")
    x = random_inputs(3, 4, 5, 3) * 50
    roles = {
        r: RoleRule(16, 0) for r in ("w_ih", "w_hh", "bias", "head_w", "head_b", "x", "hidden")
    }
    config = _with_role(QuantConfig.preset("q16"), preact=RoleRule(16, 4), **roles)
    fast = quantize(spec, x, config)
    exact = quantize(spec, x, dataclasses.replace(config, acc_bits=60))
    assert fast.requant_shift("preact") < 0 and golden._FloatDatapath.exact_for(fast)
    x_codes = golden.quantize_inputs(fast, x)
    a = golden.run(fast, x_codes, trace=True)
    b = golden.run(exact, x_codes, trace=True)
    _assert_same_run(a, b)
    assert a.saturation["preact"] > 0


def test_code_index_is_the_half_even_code_and_flags_every_code_outside_the_format():
    fmt = FixedFormat(16, 13)
    index = golden._CodeIndex(fmt)
    lo, hi, wide = fmt.min_code, fmt.max_code, 2**fmt.bits
    edges = [
        0,
        0.5,
        1.5,
        2.5,
        -0.5,
        -1.5,
        -2.25,
        lo,
        lo - 0.5,
        lo - 1.5,
        lo - 0.5 - 2**-30,
        lo + 0.5,
        hi,
        hi + 0.5,
        hi - 0.5,
        hi + 1,
        -wide,
        -wide - 0.5,
        -wide + 0.5,
        -wide - 1,
        -(2.0**52) + 1,
        2.0**52 - 1,
        2.0**51 + 0.5,
        -(2.0**51) - 0.5,
        2.0**52 - wide,
    ]
    rng = np.random.default_rng(0)
    spread = rng.integers(-(2**52), 2**52, 2000) * 2.0 ** -rng.integers(0, 30, 2000)
    near = rng.integers(-3 * wide, 3 * wide, 2000) * 2.0 ** -rng.integers(0, 4, 2000)
    y = np.concatenate([edges, spread, near]).astype(np.float64)
    codes = np.rint(y)  # half-even, exact for every float
    inside = (codes >= lo) & (codes <= hi)
    result = np.empty(y.size, np.int64)
    outside = index(y.copy(), result)
    assert outside == np.count_nonzero(~inside) > 0
    assert np.array_equal(result[inside], (codes[inside] - lo).astype(np.int64))
    assert np.all((result[~inside] < 0) == (codes[~inside] < lo))
    assert np.all((result[~inside] >= wide) == (codes[~inside] > hi))
    assert np.array_equal(index.codes(result), np.clip(codes, lo, hi).astype(np.int64))


def test_dot_accumulate_is_the_exact_sum():
    rng = np.random.default_rng(0)
    w = rng.integers(-(2**15), 2**15, (5, 7))
    v = rng.integers(-(2**15), 2**15, (3, 7))
    shifts = rng.integers(0, 8, 7)
    bias = rng.integers(-(2**15), 2**15, 5)
    acc = golden.dot_accumulate(w, v, shifts, bias, 9)
    for b in range(3):
        for r in range(5):
            expected = sum(int(w[r, k]) * int(v[b, k]) << int(shifts[k]) for k in range(7))
            assert acc[b, r] == expected + (int(bias[r]) << 9)


def test_cell_arithmetic_constants():
    model = quantize(random_spec(0), random_inputs(0, 4, 5, 3))
    cell = golden.CellArithmetic.of(model)
    g, c, h = cell.gate.frac, cell.cell.frac, cell.hidden.frac
    assert cell.sum_frac == g + max(c, g)
    assert cell.fc_shift + g + c == cell.sum_frac == cell.ig_shift + 2 * g
    assert cell.c_shift == cell.sum_frac - c and cell.m_shift == 2 * g - h


# -- errors ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model():
    return quantize(random_spec(0), random_inputs(0, 4, 5, 3))


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((2, 3)), "inputs must have shape (batch, seq, 3), not (2, 3)"),
        (np.zeros((2, 3, 4)), "inputs must have shape (batch, seq, 3), not (2, 3, 4)"),
        (np.zeros((0, 3, 3)), "inputs must have shape (batch, seq, 3), not (0, 3, 3)"),
        (np.full((1, 2, 3), np.nan), "inputs contain non-finite values (NaN or Inf)"),
        (np.full((1, 2, 3), "a"), "inputs must be a float array, not dtype <U1"),
    ],
)
def test_predict_rejects_bad_inputs(small_model, x, message):
    with pytest.raises(SpecError, match=exactly(message)):
        golden.predict(small_model, x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"h0": np.zeros((1, 2, 5))}, "h0 must have shape (1, 2, 4), not (1, 2, 5)"),
        ({"c0": np.zeros((2, 2, 4))}, "c0 must have shape (1, 2, 4), not (2, 2, 4)"),
        ({"h0": np.full((1, 2, 4), np.inf)}, "h0 contains non-finite values (NaN or Inf)"),
    ],
)
def test_predict_rejects_bad_states(small_model, kwargs, message):
    with pytest.raises(SpecError, match=exactly(message)):
        golden.predict(small_model, np.zeros((2, 3, 3)), **kwargs)


def test_run_rejects_codes_outside_their_formats(small_model):
    too_big = np.full((1, 2, 3), small_model.formats["x"].max_code + 1)
    with pytest.raises(SpecError, match=exactly("input codes has codes outside s16.", whole=False)):
        golden.run(small_model, too_big)
    with pytest.raises(SpecError, match=exactly("h0 must be integer codes, not dtype float64")):
        golden.run(small_model, np.zeros((1, 2, 3), np.int64), h0=np.zeros((1, 1, 4)))


def test_run_rejects_unsigned_codes_that_would_wrap_into_the_format(small_model):
    """``2**64 - 1`` as uint64 is not the code -1: it is refused, not wrapped."""
    codes = np.zeros((1, 2, 3), np.uint64)
    codes[0, 1, 2] = np.iinfo(np.uint64).max
    with pytest.raises(SpecError, match=exactly("input codes has codes outside s16.", whole=False)):
        golden.run(small_model, codes)
    codes[0, 1, 2] = 5
    want = golden.run(small_model, codes.astype(np.int64)).output
    assert np.array_equal(golden.run(small_model, codes).output, want)


@pytest.mark.parametrize("preset", list(TOL_MAX))
def test_float_path_maps_are_exact_float32_copies_of_the_tables(preset):
    """Every preset's table maps fit float32 exactly (the float path reads them as float32),
    and each map entry is the table's output code for input ``min_code + index`` times the
    map's power-of-two scale."""
    spec, x, h0, c0 = _case(3, {"num_layers": 2, "head": "all"}, 6, True)
    model = quantize(spec, x, QuantConfig.preset(preset), h0=h0, c0=c0)
    dp = golden._FloatDatapath(model)
    assert dp.map_dtype == np.float32
    cell = golden.CellArithmetic.of(model)
    for name, scale, got in (
        ("sigmoid", -cell.gate.frac, dp.f_map),
        ("sigmoid", 0, dp.sigmoid_map),
        ("tanh_gate", cell.cell.frac - 2 * cell.gate.frac, dp.g_map),
        ("tanh_cell", -cell.m_shift, dp.tanh_cell_map),
    ):
        table = model.tables[name]
        inputs = np.arange(table.in_fmt.min_code, table.in_fmt.max_code + 1)
        want = table.lookup(inputs).astype(np.float64) * 2.0**scale
        assert got.dtype == np.float32 and np.array_equal(got.astype(np.float64), want), name
