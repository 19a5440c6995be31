"""The golden model's fast float datapath, pinned bit for bit to the restated integer pipeline.

``golden.run`` computes on float arrays holding the codes (``quant/datapath_float.py``): a
float32 gate product when the accumulator has at most 25 bits, the preact rounding folded
into the bias column, batch-major buffers. Every test here compares its codes, final states,
head, traces and saturation counts with ``golden_reference.restated_run`` (the pipeline of
``docs/numerics.md`` written with the public int64 primitives), on models of every preset and
rounding mode, the geometries at the edges of the buffers, and saturating inputs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from golden_reference import random_states, restated_run

from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig, RoleRule
from lstmfpga.quant.fixed import ROUNDING_MODES
from lstmfpga.testing import random_inputs, random_spec

PRESETS = ("q16", "w8a16", "w8a8", "w4a8")

# (name, random_spec kwargs, batch, seq): every feature once, and the edges of the buffers.
GEOMETRIES = [
    ("2 bidirectional layers, projection, head all",
     {"num_layers": 2, "bidirectional": True, "proj_size": 3, "hidden_size": 5, "head": "all"},
     3, 5),
    ("3 layers, head last", {"num_layers": 3, "hidden_size": 4, "head": "last"}, 4, 6),
    ("one step, batch of one, bidirectional", {"bidirectional": True, "head": "last"}, 1, 1),
    ("hidden 1, no bias", {"hidden_size": 1, "bias": False, "num_layers": 2}, 2, 7),
    ("projection to 1, no head bias", {"proj_size": 1, "hidden_size": 6, "head": "last",
                                       "head_bias": False}, 5, 4),
]  # fmt: skip


def _assert_equals_reference(model, x_codes, h0=None, c0=None) -> dict:
    """``golden.run`` (with and without traces) equals ``restated_run``; returns the counts."""
    LD, B = model.num_layers * model.num_directions, x_codes.shape[0]
    if h0 is None:
        h0 = np.zeros((LD, B, model.output_size), np.int64)
        c0 = np.zeros((LD, B, model.hidden_size), np.int64)
    output, traces, head, counts = restated_run(model, x_codes, h0, c0)
    for trace in (False, True):
        result = golden.run(model, x_codes, h0, c0, trace=trace)
        assert result.output.dtype == np.int64 and result.output.flags.c_contiguous
        assert np.array_equal(result.output, output)
        assert result.saturation == counts
        assert (head is None and result.head is None) or np.array_equal(result.head, head)
        D, T = model.num_directions, x_codes.shape[1]
        for (index, d), rec in traces.items():
            t_final = 0 if d else T - 1
            assert np.array_equal(result.h_n[index * D + d], rec["h"][:, t_final])
            assert np.array_equal(result.c_n[index * D + d], rec["c"][:, t_final])
            if trace:
                for name, values in rec.items():
                    assert np.array_equal(result.trace[(index, d)][name], values), name
    return counts


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("preset", PRESETS)
def test_fast_path_equals_the_reference_on_every_geometry(preset, rounding):
    """Saturating inputs (4x the calibration data) and random initial states: every code,
    state, traced value and saturation count is the reference's."""
    saturated = set()
    for seed, (name, kwargs, batch, seq) in enumerate(GEOMETRIES):
        spec = random_spec(seed, **kwargs)
        calib = random_inputs(seed, batch, seq, spec.input_size)
        config = dataclasses.replace(QuantConfig.preset(preset), rounding=rounding)
        model = quantize(spec, calib, config)
        assert golden._FloatDatapath.exact_for(model), name
        x_codes = golden.quantize_inputs(model, calib * 4.0)
        h0, c0 = random_states(model, batch, np.random.default_rng(seed))
        counts = _assert_equals_reference(model, x_codes, h0, c0)
        saturated |= {role for role, n in counts.items() if n}
    assert {"preact", "cell"} <= saturated


@pytest.mark.parametrize(("preset", "acc_bits", "product"), [
    ("w8a8", None, np.float32),  # the derived 24 bits
    ("w4a8", None, np.float32),  # the derived 25 bits
    ("w8a8", 25, np.float32),
    ("w8a8", 26, np.float64),
    ("q16", None, np.float64),
])  # fmt: skip
@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_float32_gate_product_only_where_the_accumulator_has_at_most_25_bits(
    preset, acc_bits, product, rounding
):
    """Inputs and initial state at full scale with the signs of one gate row's weights
    drive that row's sum towards the accumulator's bound; the codes stay the reference's."""
    spec = random_spec(4, input_size=6, hidden_size=5, bidirectional=True, head="last")
    calib = random_inputs(4, 4, 5, spec.input_size)
    config = dataclasses.replace(QuantConfig.preset(preset), rounding=rounding, acc_bits=acc_bits)
    model = quantize(spec, calib, config)
    assert model.acc.bits == (acc_bits or model.acc.bits)
    assert golden._FloatDatapath(model).gate_product_dtype() == product
    q = model.layers[0][0]
    row = int(np.argmax(np.abs(q.w_ih.codes).sum(1) + np.abs(q.w_hh.codes).sum(1)))
    x_fmt, h_fmt = model.formats["x"], model.formats["hidden"]
    x_codes = np.where(q.w_ih.codes[row] < 0, x_fmt.min_code, x_fmt.max_code)
    x_codes = np.broadcast_to(x_codes, (4, 5, spec.input_size)).copy()
    h0, c0 = random_states(model, 4, np.random.default_rng(1))
    h0[0] = np.where(q.w_hh.codes[row] < 0, h_fmt.min_code, h_fmt.max_code)
    s_in, s_rec, _ = model.gate_shifts(0, 0)
    peak = (np.abs(q.w_ih.codes[row]).sum() * abs(x_fmt.min_code) << s_in) + (
        np.abs(q.w_hh.codes[row]).sum() * abs(h_fmt.min_code) << s_rec
    )
    assert peak >= 2**19  # within a factor of 32 of float32's integers (2**24)
    _assert_equals_reference(model, x_codes, h0, c0)


def _tie_model(rounding: str, acc_bits: int | None = None):
    """A model whose preact is one bit coarser than its accumulator (shift 1): half of all
    accumulators are exact ties."""
    spec = random_spec(6, input_size=4, hidden_size=3, num_layers=2)
    fixed = {"w_ih": RoleRule(8, 4), "w_hh": RoleRule(8, 4), "bias": RoleRule(16, 8),
             "x": RoleRule(8, 4), "hidden": RoleRule(8, 4), "preact": RoleRule(16, 7)}  # fmt: skip
    config = QuantConfig.preset("q16")
    config = dataclasses.replace(config, roles={**config.roles, **fixed}, rounding=rounding,
                                 acc_bits=acc_bits)  # fmt: skip
    x = random_inputs(6, 5, 6, spec.input_size)
    model = quantize(spec, x, config)
    assert model.requant_shift("preact") == 1
    return model, golden.quantize_inputs(model, x)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_preact_rounding_folded_into_the_bias_column_rounds_ties_like_the_reference(rounding):
    """With shift 1, ``y + 2**-2`` (half_up) and ``y + 2**-2 - 1/2`` (truncate) are never
    ties and round half-even to ``floor(y + 1/2)`` and ``floor(y)``: the codes are the
    reference's on accumulators that are ties. A 53-bit accumulator leaves no room for the
    offset's fraction bit and keeps a rounding pass of its own (same codes)."""
    model, x_codes = _tie_model(rounding)
    q = model.layers[0][0]
    s_in, _, s_b = model.gate_shifts(0, 0)
    acc0 = golden.dot_accumulate(q.w_ih.codes, x_codes[:, 0], s_in, q.bias.codes, s_b)
    assert np.count_nonzero(acc0 % 2) > 0  # step 0 of layer 0 alone has ties
    offset = {"half_even": 0.0, "half_up": 0.25, "truncate": -0.25}[rounding]
    assert golden._FloatDatapath(model).preact_offset() == offset
    _assert_equals_reference(model, x_codes)
    wide, _ = _tie_model(rounding, acc_bits=53)
    assert golden._FloatDatapath.exact_for(wide)
    assert golden._FloatDatapath(wide).preact_offset() == (0.0 if rounding == "half_even" else None)
    _assert_equals_reference(wide, x_codes)
