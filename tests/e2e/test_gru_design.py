# amaranth: UnusedElaboratable=no
"""The notebook API with a GRU (issue 15): ``lstmfpga.convert`` of an ``nn.GRU`` with a head,
then the Design's predict (golden codes, with h0), predict_float (torch's numbers),
write_verilog (a GRU manifest), simulate (bit-exact in Amaranth, h0 in, h_n out, stalls) and
report (a text summary naming the GRU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmfpga
from lstmfpga.quant import golden


class _GRUClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(2, 3, batch_first=True)
        self.head = torch.nn.Linear(3, 2)


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(6)
    return _GRUClassifier()


@pytest.fixture(scope="module")
def design(module):
    x = np.random.default_rng(6).normal(size=(8, 4, 2))
    return lstmfpga.convert(module, calib=x, preset="w8a16", lanes=3, head="last")


def test_a_gru_design_predicts_the_golden_codes_and_torch_numbers(design, module):
    x = np.random.default_rng(7).normal(size=(3, 4, 2))
    h0 = np.random.default_rng(8).normal(0, 0.3, (1, 3, 3))
    q = design.qmodel
    assert q.cell == "gru" and design.spec.head.mode == "last"
    codes = design.predict(x, h0, raw=True)
    h0_codes = q.formats["hidden"].quantize(h0, q.rounding)
    want = golden.run(q, golden.quantize_inputs(q, x), h0_codes).prediction
    assert codes.shape == (3, 2) and np.array_equal(codes, want)
    double = _GRUClassifier().double()
    double.load_state_dict(module.state_dict())  # the same weights in float64
    with torch.no_grad():
        _, h_n = double.gru(torch.from_numpy(x), torch.from_numpy(h0))
        torch_out = double.head(h_n[-1]).numpy()
    assert np.abs(design.predict_float(x, h0) - torch_out).max() < 1e-9
    # the fixed-point model within a stated tolerance of the float one (w8a16)
    assert np.abs(design.predict(x, h0) - torch_out).max() < 0.1


def test_a_gru_design_writes_verilog_simulates_bit_exact_and_reports(design, tmp_path):
    manifest = design.write_verilog(tmp_path / "rtl", max_seq_len=4)
    assert manifest["model"]["cell"] == "gru" and manifest["lanes"] == 3
    assert (tmp_path / "rtl" / f"{manifest['top']}.v").is_file()
    x = np.random.default_rng(9).normal(size=(2, 4, 2))
    h0 = np.random.default_rng(10).normal(0, 0.3, (1, 2, 3))
    report = design.simulate(x, sim="amaranth", h0=h0, with_states=True, stall=0.2, seed=3)
    assert report["bit_exact"] is True and report["cycles"]["model_exact"]
    assert report["outputs"]["mismatched"] == 0
    assert report["fixed_vs_float"]["available"]
    text = design.report()
    assert text.startswith("bit-exact: yes") and "model: GRU I=2" in text
