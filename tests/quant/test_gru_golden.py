"""The GRU golden model (``lstmfpga.quant.gru_golden``): bit-exact against an independent
element-by-element integer GRU (``gru_models.reference_run``), deterministic, and within a
stated tolerance of the float64 reference; saturation is counted per role.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec, reference_run
from quant_helpers import exactly, rmse

from lstmfpga.export.reference import forward
from lstmfpga.export.spec import SpecError
from lstmfpga.quant import golden, gru_golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.golden import quantize_inputs

# name: (config dict, random_gru_spec kwargs)
EXACT_CASES = {
    "w8a8-bidir-2-layers-last": (dict(preset="w8a8"),
                                 dict(num_layers=2, bidirectional=True, head="last")),
    "w8a8-no-bias-every-step": (dict(preset="w8a8"), dict(bias=False, head="all")),
    "half_up-no-head": (dict(preset="w8a16", rounding="half_up"), dict(hidden_size=3)),
    "truncate-wrap-w4a8": (dict(preset="w4a8", rounding="truncate", overflow="wrap"),
                           dict(num_layers=2, head="last")),
    "saturating-preact": (dict(preset="w8a8", roles={"preact": {"bits": 8, "frac": 6}}),
                          dict(bidirectional=True, head="last")),
    "narrow-hn": (dict(preset="w8a8", roles={"hn": {"bits": 6, "frac": 4}}), dict(head="all")),
    "q16-1x1": (dict(preset="q16"), dict(input_size=1, hidden_size=1, head="last")),
    # a 60-bit accumulator: the products run in int64 instead of float64
    "q16-acc60-int64-products": (dict(preset="q16", acc_bits=60),
                                 dict(bidirectional=True, head="all")),
}  # fmt: skip


def _model(config: dict, spec_kwargs: dict, seed: int = 1):
    spec = random_gru_spec(seed, scale=2.0, **spec_kwargs)
    x = np.random.default_rng(seed).uniform(-1, 1, (2, 4, spec.input_size))
    return spec, quantize(spec, 0.5 * x, QuantConfig.from_dict(config)), x


@pytest.mark.parametrize("name", list(EXACT_CASES))
def test_golden_gru_equals_the_element_by_element_integer_gru(name):
    _, model, x = _model(*EXACT_CASES[name])
    x_codes = quantize_inputs(model, x)
    h0 = np.random.default_rng(2).integers(-60, 60, (model.num_layers * model.num_directions,
                                                     2, model.hidden_size))  # fmt: skip
    for state in (None, h0):
        result = gru_golden.run(model, x_codes, state)
        output, h_n, head, saturation = reference_run(model, x_codes, state)
        assert np.array_equal(result.output, output), name
        assert np.array_equal(result.h_n, h_n), name
        assert result.c_n is None
        if model.head is None:
            assert result.head is None
        else:
            assert np.array_equal(result.head, head), name
        for role in ("preact", "hn", "hidden", "head_out"):
            assert result.saturation.get(role, 0) == saturation.get(role, 0), (name, role)


def test_float64_and_int64_products_give_the_same_codes():
    spec, narrow, x = _model(dict(preset="q16"), dict(num_layers=2, head="last"))
    wide = quantize(spec, 0.5 * x, QuantConfig.from_dict({"preset": "q16", "acc_bits": 60}))
    assert narrow.acc.bits <= 53 < wide.acc.bits and narrow.acc.frac == wide.acc.frac
    a, b = (gru_golden.run(m, quantize_inputs(m, x)) for m in (narrow, wide))
    assert np.array_equal(a.output, b.output) and np.array_equal(a.head, b.head)


def test_saturation_is_counted_where_it_happens():
    _, model, x = _model(*EXACT_CASES["saturating-preact"])
    result = gru_golden.run(model, quantize_inputs(model, x))
    assert result.saturation["preact"] > 0
    assert result.saturation["hn"] == result.saturation["hidden"] == 0
    _, narrow, x = _model(*EXACT_CASES["narrow-hn"])
    assert gru_golden.run(narrow, quantize_inputs(narrow, x)).saturation["hn"] > 0


def test_golden_gru_is_deterministic_and_the_golden_entry_points_dispatch_to_it():
    _, model, x = _model(*EXACT_CASES["w8a8-bidir-2-layers-last"])
    codes = quantize_inputs(model, x)
    first, second = gru_golden.run(model, codes), golden.run(model, codes)
    assert np.array_equal(first.output, second.output)
    assert np.array_equal(first.head, second.head) and second.c_n is None
    prediction, result = golden.predict(model, x)
    assert np.array_equal(prediction, model.formats["head_out"].dequantize(first.head))
    assert result.saturation == gru_golden.predict(model, x)[1].saturation


def test_trace_holds_the_gate_codes_by_time():
    _, model, x = _model(dict(preset="w8a8"), dict(bidirectional=True))
    result = gru_golden.run(model, quantize_inputs(model, x), trace=True)
    H = model.hidden_size
    for (_, d), rec in result.trace.items():
        assert rec["preact"].shape == (2, 4, 3 * H)
        for key in ("hn", "r", "z", "n", "h"):
            assert rec[key].shape == (2, 4, H)
        assert np.array_equal(rec["h"], result.output[..., d * H : (d + 1) * H])
        one = 1 << model.formats["gate"].frac
        assert rec["r"].min() >= 0 and rec["z"].max() <= one  # sigmoid gates lie in [0, 1]
        assert np.array_equal(rec["r"], model.tables["sigmoid"].lookup(rec["preact"][..., :H]))


# preset: (max abs error of the dequantized head output, RMSE of the dequantized hidden
# sequence) vs the float64 reference, for weights in [-1, 1], 2 bidirectional layers of 8,
# inputs in [-1, 1], 20 steps, head outputs up to about 3. 4-bit weights (LSB 0.25) are coarse.
FLOAT_TOLERANCE = {"q16": (3e-3, 3e-4), "w8a16": (0.15, 0.015), "w8a8": (0.2, 0.02),
                   "w4a8": (1.5, 0.2)}  # fmt: skip


@pytest.mark.parametrize("preset", list(FLOAT_TOLERANCE))
def test_golden_gru_follows_the_float_reference_within_tolerance(preset):
    head_tolerance, hidden_rmse = FLOAT_TOLERANCE[preset]
    spec = random_gru_spec(7, input_size=4, hidden_size=8, num_layers=2, bidirectional=True,
                           head="all")  # fmt: skip
    x = np.random.default_rng(8).uniform(-1, 1, (16, 20, 4))
    model = quantize(spec, x, QuantConfig.preset(preset))
    prediction, result = gru_golden.predict(model, x)
    reference = forward(spec, x)
    error = float(np.abs(prediction - reference.head).max())
    assert error <= head_tolerance, (preset, error)
    hidden = model.formats["hidden"].dequantize(result.output)
    assert rmse(hidden, reference.output) <= hidden_rmse, preset
    assert sum(result.saturation.values()) == 0  # calibrated on these inputs


def test_h0_is_quantized_and_used():
    spec = random_gru_spec(3, hidden_size=5, head="last")
    x = np.random.default_rng(4).uniform(-1, 1, (3, 6, 3))
    h0 = np.random.default_rng(5).uniform(-0.9, 0.9, (1, 3, 5))
    model = quantize(spec, x, QuantConfig.preset("q16"), h0=h0)
    with_h0, _ = gru_golden.predict(model, x, h0)
    assert np.abs(with_h0 - forward(spec, x, h0).head).max() <= 2e-3
    assert not np.allclose(with_h0, gru_golden.predict(model, x)[0], atol=1e-3)


def test_bad_arguments_are_refused_with_one_line():
    _, model, x = _model(dict(preset="w8a8"), dict())
    codes = quantize_inputs(model, x)
    with pytest.raises(SpecError, match=exactly("c0 must be None for a GRU (it has no cell "
                                                "state), not an array")):  # fmt: skip
        gru_golden.run(model, codes, None, np.zeros((1, 2, 4), np.int64))
    with pytest.raises(SpecError, match=r"^h0 must have shape \(1, 2, 4\), not \(1, 2, 3\)$"):
        gru_golden.run(model, codes, np.zeros((1, 2, 3), np.int64))
    with pytest.raises(SpecError, match=r"^input codes has codes outside s8\.\d+$"):
        gru_golden.run(model, codes * 1000)
    with pytest.raises(SpecError, match=r"^inputs contain non-finite values"):
        gru_golden.predict(model, np.full((1, 2, 3), np.nan))
    lstm = quantize(_lstm_spec(), x, QuantConfig.preset("w8a8"))
    with pytest.raises(SpecError, match=r"runs GRU qmodels only, not cell 'lstm'$"):
        gru_golden.run(lstm, codes)


def _lstm_spec():
    from lstmfpga.export.spec import LayerWeights, ModelSpec

    rng = np.random.default_rng(0)
    layer = LayerWeights(rng.uniform(-1, 1, (16, 3)), rng.uniform(-1, 1, (16, 4)))
    return ModelSpec(3, 4, 1, False, 0, False, ((layer,),))
