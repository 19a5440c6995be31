# amaranth: UnusedElaboratable=no
"""``lstmfpga.pipeline.run_flow`` (the demo's flow) on a GRU (issue 15): export, quantize,
generate and simulate a live ``nn.GRU`` classifier, the report bit-exact with the GRU's cell
and the artifacts written."""

from __future__ import annotations

import numpy as np
import torch

from lstmfpga.pipeline import run_flow
from lstmfpga.quant import golden


class _GRUClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(2, 3, batch_first=True)
        self.head = torch.nn.Linear(3, 3)


def test_run_flow_takes_a_gru_and_simulates_it_bit_exact(tmp_path):
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    calib, x = rng.normal(size=(16, 4, 2)), rng.normal(size=(3, 4, 2))
    lines: list[str] = []
    result = run_flow(_GRUClassifier(), head="last", calib=calib, inputs=x,
                      labels=np.array([0, 1, 2]), out=tmp_path / "flow", lanes=3,
                      simulator="amaranth", log=lines.append)  # fmt: skip
    assert result.qmodel.cell == "gru" and result.report["model"]["cell"] == "gru"
    assert result.report["bit_exact"] is True and result.report["cycles"]["model_exact"]
    want = golden.run(result.qmodel, golden.quantize_inputs(result.qmodel, x)).prediction
    assert np.array_equal(result.qmodel.output_format.quantize(result.predictions["rtl"]), want)
    for name in ("spec", "qmodel", "verilog", "report", "html"):
        assert result.paths[name].exists(), name
    assert any(line.startswith("[generate] done") for line in lines)
