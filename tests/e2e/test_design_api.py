"""The notebook API (lstmfpga.convert / Design): its docstring example runs, and each method
gives what the matching CLI command gives."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import lstmfpga
from lstmfpga import design as design_module
from lstmfpga.digits import SequenceModel
from lstmfpga.errors import CLIError
from lstmfpga.quant import golden


def test_docstring_example_runs(tmp_path):
    result = doctest.testmod(design_module, extraglobs={"tmp": tmp_path}, verbose=False)
    assert result.attempted >= 6 and result.failed == 0
    assert (tmp_path / "rtl" / "lstm_accel.v").is_file()


def test_convert_predict_and_simulate_agree_with_the_golden_model(tmp_path):
    torch.manual_seed(1)
    x = np.random.default_rng(1).normal(size=(3, 5, 2))
    design = lstmfpga.convert(SequenceModel("lstm", 2, 3, 4), calib=x, preset="w8a8", lanes=2)
    assert design.qmodel.config.name == "w8a8" and design.qmodel.head.mode == "last"
    codes = design.predict(x, raw=True)
    assert np.array_equal(
        codes, golden.run(design.qmodel, golden.quantize_inputs(design.qmodel, x)).prediction
    )
    assert np.array_equal(design.predict(x), design.qmodel.output_format.dequantize(codes))
    float_pred = design.predict_float(x)
    assert float_pred.shape == (3, 4)
    assert np.max(np.abs(float_pred - design.predict(x))) < 0.1  # w8a8 vs float, stated bound
    report = design.simulate(x, sim="amaranth", labels=np.array([0, 1, 2]))
    assert report["bit_exact"] is True and report["accuracy"]["available"]
    assert "bit-exact" in design.report()
    # the saved artifacts are what the CLI reads
    design.save(tmp_path / "d")
    from lstmfpga.quant.model import QuantizedModel

    again = QuantizedModel.load(tmp_path / "d" / "qmodel")
    assert np.array_equal(golden.predict(again, x)[0], design.predict(x))


def test_a_gru_converts_predicts_and_simulates_bit_exact():
    """GRU hardware exists (issue 15): convert takes an nn.GRU like an nn.LSTM."""
    torch.manual_seed(2)
    x = np.random.default_rng(2).normal(size=(3, 4, 2))
    design = lstmfpga.convert(torch.nn.GRU(2, 3, batch_first=True), calib=x, preset="w8a8", lanes=3)
    assert design.qmodel.cell == "gru"
    codes = design.predict(x, raw=True)
    assert np.array_equal(
        codes, golden.run(design.qmodel, golden.quantize_inputs(design.qmodel, x)).prediction
    )
    assert design.simulate(x, sim="amaranth")["bit_exact"] is True


def test_bad_lanes_and_models_are_refused_up_front():
    x = np.zeros((2, 3, 2))
    # 13 lanes for 4*hidden_size = 12 rows: refused whether lanes must divide the rows or
    # only be at most their number (the lane-divisor work changes the rule, not the refusal)
    with pytest.raises(ValueError, match=r"lanes must (divide|be in 1\.\.12)"):
        lstmfpga.convert(torch.nn.LSTM(2, 3), calib=x, lanes=13)
    with pytest.raises(CLIError, match="call simulate"):
        lstmfpga.convert(torch.nn.LSTM(2, 3), calib=x, lanes=4).report()
