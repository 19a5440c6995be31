# amaranth: UnusedElaboratable=no
"""The accelerator's ``saturation`` port, summed over a run, equals the golden model's
saturation counts per tensor (``GoldenResult.saturation``: preact, cell, hidden, hn,
head_out) bit for bit, in sequence and stream mode, for LSTMs and GRUs, with saturating and
wrapping overflow, under random stalls on both streams (a beat held by back-pressure counts
once). These are the counts the AXI top's ``SATURATION_*`` registers add up.

The models have formats narrower than their calibration would choose and weights larger
than usual, and the inputs are twice the calibration range, so that every tensor saturates.
"""

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec
from helpers.streams import Harness, simulate

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.register_map import SATURATION_ROLES
from lstmfpga.hw.saturation import saturation_layout
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.sim.streams import StreamGeometry, pack_inputs, pack_outputs
from lstmfpga.testing import random_inputs, random_spec

#: Data formats narrower than calibration picks (the rest: q16, calibrated).
NARROW = {
    "lstm": {"preact": {"bits": 8, "frac": 5}, "cell": {"bits": 4, "frac": 2},
             "hidden": {"bits": 3, "frac": 2}, "head_out": {"bits": 6, "frac": 4}},
    "gru": {"preact": {"bits": 6, "frac": 3}, "hn": {"bits": 6, "frac": 4},
            "hidden": {"bits": 3, "frac": 2}, "head_out": {"bits": 4, "frac": 3}},
}  # fmt: skip

# name: (cell, seed, overflow, spec kwargs, lanes, build options)
CASES = {
    "lstm-proj-head-all": ("lstm", 4, "saturate",
                           dict(input_size=3, hidden_size=4, proj_size=2, head="all"), 4, {}),
    "lstm-wrap-head-last": ("lstm", 25, "wrap", dict(input_size=3, hidden_size=4, head="last"),
                            3, {}),
    "lstm-2layer-bidir": ("lstm", 0, "saturate",
                          dict(input_size=2, hidden_size=3, bidirectional=True, num_layers=2,
                               head="last"), 5, {}),
    "lstm-stream-proj-head-all": ("lstm", 4, "saturate",
                                  dict(input_size=3, hidden_size=4, proj_size=2, head="all"), 3,
                                  dict(mode="stream")),
    "gru-head-all": ("gru", 0, "saturate", dict(input_size=3, hidden_size=3, head="all"), 3, {}),
    "gru-stream-wrap-head-last": ("gru", 0, "wrap",
                                  dict(input_size=2, hidden_size=3, head="last"), 4,
                                  dict(mode="stream")),
}  # fmt: skip


def saturating_model(cell, seed, overflow, **spec_kwargs):
    """``(qmodel, x_codes)``: the spec calibrated on unit-range inputs with :data:`NARROW`
    formats, and inputs twice that range as codes (batch 2, 6 steps)."""
    if cell == "gru":
        spec = random_gru_spec(seed, scale=2.0, **spec_kwargs)
        x = np.random.default_rng(seed).uniform(-1, 1, (2, 6, spec.input_size))
    else:
        spec = random_spec(seed, scale=3.0, **spec_kwargs)
        x = random_inputs(seed, 2, 6, spec.input_size)
    config = {"preset": "q16", "overflow": overflow, "roles": NARROW[cell]}
    calib = x if cell == "gru" else random_inputs(seed, 8, 6, spec.input_size)
    q = quantize(spec, calib, QuantConfig.from_dict(config))
    return q, golden.quantize_inputs(q, 2 * x)


def run_counting(acc, x_codes, seed, idle=0.3, stall=0.3):
    """The sequences of ``x_codes`` back to back through ``s_axis`` (random gaps), results
    out of ``m_axis`` (random stalls); returns ``(outputs, saturation)``: the result
    elements and, per role, the ``saturation`` port summed over every cycle."""
    geom = StreamGeometry.of(acc.model)
    B, T, _ = x_codes.shape
    elements = np.concatenate([pack_inputs(geom, x_codes, b) for b in range(B)]).tolist()
    lasts = set(np.cumsum([pack_inputs(geom, x_codes, b).size for b in range(B)]) - 1)
    n_out = B * geom.output_length(T)
    rng_in, rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    outputs, counts, done = [], dict.fromkeys(SATURATION_ROLES, 0), []

    async def producer(ctx):
        for k, value in enumerate(elements):
            ctx.set(acc.s_axis_tvalid, 0)
            while rng_in.random() < idle:
                await ctx.tick()
            ctx.set(acc.s_axis_tdata, value)
            ctx.set(acc.s_axis_tlast, k in lasts)
            ctx.set(acc.s_axis_tvalid, 1)
            await ctx.tick().until(acc.s_axis_tready)
        ctx.set(acc.s_axis_tvalid, 0)

    async def consumer(ctx):
        while len(outputs) < n_out:
            ready = rng_out.random() >= stall
            ctx.set(acc.m_axis_tready, ready)
            _, _, valid, data = await ctx.tick().sample(acc.m_axis_tvalid, acc.m_axis_tdata)
            if valid and ready:
                outputs.append(data)
        await ctx.tick().repeat(8)  # nothing counts after the last result
        done.append(True)

    async def counter(ctx):
        fields = [getattr(acc.saturation, role) for role in SATURATION_ROLES]
        while not done:
            _, _, *values = await ctx.tick().sample(*fields)
            for role, value in zip(SATURATION_ROLES, values, strict=True):
                counts[role] += value

    simulate(Harness(acc), producer, consumer, background=(counter,))
    return np.array(outputs, np.int64), counts


@pytest.mark.parametrize("name", list(CASES))
def test_saturation_port_sums_to_the_golden_models_counts(name):
    cell, seed, overflow, spec_kwargs, lanes, options = CASES[name]
    q, x_codes = saturating_model(cell, seed, overflow, **spec_kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=8, **options)
    want = golden.run(q, x_codes)
    outputs, counts = run_counting(acc, x_codes, seed=sum(map(ord, name)))
    geom = StreamGeometry.of(q)
    np.testing.assert_array_equal(
        outputs, np.concatenate([pack_outputs(geom, want.prediction, b) for b in range(2)])
    )
    assert counts == {role: want.saturation.get(role, 0) for role in SATURATION_ROLES}
    assert want.saturation["preact"] > 0 and want.saturation["hidden"] > 0
    assert want.saturation["head_out"] > 0
    assert want.saturation["cell" if cell == "lstm" else "hn"] > 0


def test_saturation_port_has_a_count_per_role_wide_enough_for_one_cycle():
    layout = saturation_layout(8, 2)  # up to 8 MVU lanes and 3 * 2 GRU pre-activations
    assert list(layout.members) == list(SATURATION_ROLES)
    assert {shape.width for shape in layout.members.values()} == {4}
    with pytest.raises(ValueError, match="lanes must be an integer >= 1, not 0"):
        saturation_layout(0, 1)
