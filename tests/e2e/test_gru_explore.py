# amaranth: UnusedElaboratable=no
"""``lstmfpga explore`` of a GRU (issue 15): a tiny sweep on a real two-worker
``distributed.LocalCluster``; each point is generated, simulated bit-exact in Icarus and
synthesized with Yosys and nextpnr, and explore.json names the cell of every row."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec

from lstmfpga.explore import POINT_FIELDS, Sweep, explore
from lstmfpga.export import files
from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig

B, T = 4, 3


def test_a_gru_sweep_is_bit_exact_and_names_the_cell(tmp_path):
    spec = random_gru_spec(21, input_size=2, hidden_size=2, head="last", head_out=3)
    x = np.random.default_rng(21).normal(0, 1, (B, T, 2))
    qmodel = quantize(spec, x, QuantConfig.preset("w8a16"))
    qmodel.save(tmp_path / "qmodel")
    files.save_npy(tmp_path / "x.npy", x)
    files.save_npy(tmp_path / "y.npy", np.array([0, 1, 2, 1]))
    lines: list[str] = []
    result = explore(
        tmp_path / "qmodel",
        tmp_path / "x.npy",
        Sweep(lanes=(3, 9), targets=("ecp5:25k",)),
        tmp_path / "sweep",
        labels=tmp_path / "y.npy",
        simulator="icarus",
        workers=2,
        progress=lines.append,
    )
    doc = files.read_json(tmp_path / "sweep" / "explore.json", "explore")
    assert doc["points"] == result.points
    by_lanes = {p["lanes"]: p for p in doc["points"]}
    assert sorted(by_lanes) == [3, 9] and all(p["cell"] == "gru" for p in doc["points"])
    # 9 lanes is more than the layout's 4 * hidden_size = 8: that point fails alone
    assert "lanes must be in 1..8 (4*hidden_size), not 9" in by_lanes[9]["error"]
    point = by_lanes[3]
    assert set(point) == set(POINT_FIELDS) and point["error"] is None, point
    assert point["bit_exact"] is True and point["preset"] == "w8a16"
    assert point["luts"] > 0 and point["ffs"] > 0 and point["fmax_mhz"] > 0
    assert point["dsps"] >= 3  # the MVU's 3 lanes x 1 multiplier
    assert 0 <= point["accuracy"] <= 1
    acc = LSTMAccelerator(qmodel, lanes=3, simd=1, cells=point["cells"], max_seq_len=T)
    # cycles per sequence = load + compute + drain (the GRU cycle model), no back-pressure
    want = acc.input_length(T) + CycleModel.of(acc).compute(T) + acc.result_length(T) - 1
    assert point["cycles"] == want
    assert point["latency_us"] == pytest.approx(point["cycles"] / point["fmax_mhz"], abs=1e-4)
    assert result.computed == 2 and result.cached == 0  # 1 design + 1 synthesis
    # one line per task: the failed design, its synthesis (failed with it), the others
    assert len(lines) == 4 and sum("FAILED: " in line and "lanes 9" in line for line in lines) == 2
