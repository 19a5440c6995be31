"""Calibration: how fraction bits are chosen, and what calibration data must look like."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quant_helpers import exactly

from lstmfpga.export.reference import forward
from lstmfpga.export.spec import SpecError
from lstmfpga.quant.calibrate import calibrate_ranges, choose_frac, quantize
from lstmfpga.quant.config import DATA_ROLES, QuantConfig, RoleRule
from lstmfpga.quant.fixed import FixedFormat, FormatError
from lstmfpga.testing import random_inputs, random_spec


@settings(deadline=None)
@given(
    max_abs=st.floats(1e-12, 1e12),
    bits=st.integers(2, 32),
    headroom=st.floats(1.0, 16.0),
)
def test_choose_frac_is_the_most_fraction_bits_that_fit(max_abs, bits, headroom):
    frac = choose_frac(max_abs, bits, headroom)
    target = max_abs * headroom
    fits = FixedFormat(bits, frac).max_value >= target
    if frac == bits:  # capped: never more fraction bits than the width
        assert fits
    else:
        assert fits
        assert FixedFormat(bits, frac + 1).max_value < target


def test_choose_frac_edge_cases():
    assert choose_frac(0.0, 16) == 15  # nothing to hold: s16.15
    assert choose_frac(1.0, 16) == 14  # 1.0 needs one integer bit
    assert choose_frac(0.999, 16) == 15
    assert choose_frac(1e-9, 16) == 16  # capped at bits
    assert choose_frac(2.0**40, 16) == -26
    with pytest.raises(
        FormatError, match=exactly("a range of 1e+30 does not fit any 16-bit format")
    ):
        choose_frac(1e30, 16)


def test_data_formats_follow_the_calibrated_ranges():
    spec = random_spec(4, num_layers=2, head="last")
    x = random_inputs(4, 8, 10, spec.input_size)
    config = QuantConfig.preset("q16")
    model = quantize(spec, x, config)
    ranges = calibrate_ranges(spec, x)
    for role in DATA_ROLES:
        note = model.calibration["roles"][role]
        assert note["format"] == str(model.formats[role])
        if role == "gate":
            assert model.formats[role] == FixedFormat(16, 14)
        else:
            assert model.formats[role].frac == choose_frac(ranges[role], 16, config.headroom)
    ref = forward(spec, x, trace=True)
    assert ranges["x"] == np.abs(x).max()
    assert ranges["preact"] == max(np.abs(t["preact"]).max() for t in ref.trace.values())
    assert ranges["cell"] == max(np.abs(t["c"]).max() for t in ref.trace.values())
    assert ranges["head_out"] == np.abs(ref.head).max()


def test_weight_formats_use_each_tensors_own_range():
    spec = random_spec(5, bidirectional=True)
    model = quantize(spec, random_inputs(5, 4, 6, spec.input_size), QuantConfig.preset("w8a16"))
    for lw, q in zip(spec.layers[0], model.layers[0], strict=True):
        for values, tensor in ((lw.w_ih, q.w_ih), (lw.w_hh, q.w_hh), (lw.bias, q.bias)):
            bits = tensor.fmt.bits
            assert tensor.fmt.frac == choose_frac(np.abs(values).max(), bits)
            error = np.abs(tensor.values - values).max()
            assert error <= tensor.fmt.lsb / 2  # round to nearest, nothing saturates
        assert q.w_ih.fmt.bits == 8 and q.bias.fmt.bits == 16


def test_fixed_fractions_are_taken_as_given():
    config = QuantConfig.preset("q16")
    roles = {**config.roles, "x": RoleRule(12, 3), "w_hh": RoleRule(10, 9), "gate": RoleRule(12, 9)}
    config = dataclasses.replace(config, roles=roles)
    model = quantize(random_spec(0), random_inputs(0, 4, 6, 3), config)
    assert model.formats["x"] == FixedFormat(12, 3)
    assert model.formats["gate"] == FixedFormat(12, 9)
    assert model.layers[0][0].w_hh.fmt == FixedFormat(10, 9)
    assert model.calibration["roles"]["x"]["why"] == "fixed by config"


def test_initial_states_widen_the_state_ranges():
    spec = random_spec(6)
    x = random_inputs(6, 4, 5, 3)
    plain = calibrate_ranges(spec, x)
    wide = calibrate_ranges(spec, x, h0=np.full((1, 4, 4), 0.9), c0=np.full((1, 4, 4), 7.0))
    assert wide["cell"] >= 7.0 > plain["cell"]
    assert wide["hidden"] >= 0.9


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((4, 5, 2)), "calibration data: inputs have 2 features, the model expects 3"),
        (np.zeros((4, 3)), "calibration data: inputs must have shape (batch, seq, features), "),
        (np.zeros((0, 5, 3)), "calibration data: inputs must have at least one sequence and "),
        (np.full((2, 2, 3), np.inf), "calibration data: inputs contain non-finite values"),
        (
            np.full((2, 2, 3), True),
            "calibration data: inputs must be a float array, not dtype bool",
        ),
    ],
)
def test_bad_calibration_data_is_refused(x, message):
    with pytest.raises(SpecError, match=exactly(message, whole=False)) as info:
        quantize(random_spec(0), x)
    assert "\n" not in str(info.value)


def test_bad_calibration_states_are_refused():
    with pytest.raises(
        SpecError, match=exactly("calibration data: c0 must have shape (1, 2, 4), not (1, 3, 4)")
    ):
        quantize(random_spec(0), np.zeros((2, 3, 3)), c0=np.zeros((1, 3, 4)))


def test_quantize_checks_argument_types():
    with pytest.raises(TypeError, match=exactly("config must be a QuantConfig, not 'q16'")):
        quantize(random_spec(0), np.zeros((1, 2, 3)), "q16")
    with pytest.raises(TypeError, match=exactly("spec must be a ModelSpec, not None")):
        quantize(None, np.zeros((1, 2, 3)))
