"""The 8-bit presets run bit-exact on the hardware: 8-bit data (w8a8) and 4-bit weights
(w4a8) change the widths of every buffer, multiplier and requantizer (q16 and w8a16 are
covered by every other simulation test)."""

from __future__ import annotations

import numpy as np
import pytest
from sim_flow_cases import cache_root

from lstmfpga.pipeline import simulate_model
from lstmfpga.testing import random_inputs, random_qmodel

MODEL = dict(input_size=3, hidden_size=4, num_layers=2, head="all", head_out=2)


@pytest.mark.parametrize(
    ("preset", "simulator", "lanes"),
    [("w8a8", "verilator", 4), ("w4a8", "icarus", 2), ("w4a8", "amaranth", 16)],
)
def test_preset_is_bit_exact_on_hardware(preset, simulator, lanes, tmp_path_factory):
    _, qmodel = random_qmodel(11, preset=preset, **MODEL)
    x = random_inputs(11, 3, 5, MODEL["input_size"]) * 2  # some inputs saturate
    report, arrays = simulate_model(
        qmodel,
        x,
        simulator=simulator,
        lanes=lanes,
        stall=0.3,
        seed=2,
        build_dir=cache_root(tmp_path_factory),
    )
    assert report["bit_exact"] is True, report["outputs"]
    assert np.array_equal(arrays["rtl"], arrays["golden"])
    assert arrays["rtl"].shape == (3, 5, 2)
    bits = {"w8a8": 8, "w4a8": 8}.get(preset, 16)
    assert qmodel.formats["x"].bits == bits and qmodel.formats["hidden"].bits == bits
