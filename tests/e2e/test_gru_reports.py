# amaranth: UnusedElaboratable=no
"""The reporting commands understand GRUs (issue 15): ``simulate --report`` of a GRU, then
``report`` (text and ``--html``) names the cell and the GRU's figures, and ``compare`` of an
LSTM and a GRU report of the same sizes (text and ``--html``) names each one's cell and sets
the GRU's cycles beside the LSTM's, each equal to its own cycle model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec

from lstmfpga.cli import main
from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.testing import random_qmodel

B, T, I, H, LANES = 2, 2, 2, 2, 8


def cli(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """``(root, {cell: qmodel})``: an LSTM's and a GRU's report (Amaranth, same sizes)."""
    root = tmp_path_factory.mktemp("gru_reports")
    x = np.random.default_rng(8).normal(0, 1, (B, T, I))
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", np.array([0, 1]))
    gru_spec = random_gru_spec(8, input_size=I, hidden_size=H, head="last", head_out=2)
    gru_spec.save(root / "gru_spec")
    quantize(gru_spec, x, QuantConfig.preset("w8a8")).save(root / "gru")
    lstm_spec, lstm = random_qmodel(8, preset="w8a8", input_size=I, hidden_size=H,
                                    head="last", head_out=2)  # fmt: skip
    lstm_spec.save(root / "lstm_spec")
    lstm.save(root / "lstm")
    models = {}
    for cell in ("lstm", "gru"):
        assert cli("simulate", root / cell, "--inputs", root / "x.npy", "--labels",
                   root / "y.npy", "--spec", root / f"{cell}_spec", "--sim", "amaranth",
                   "--lanes", LANES, "--report", root / f"{cell}.json") == 0  # fmt: skip
        models[cell] = json.loads((root / f"{cell}.json").read_text())
    return root, models


def model_cycles_per_step(root, cell: str) -> float:
    from lstmfpga.quant.model import QuantizedModel

    acc = LSTMAccelerator(QuantizedModel.load(root / cell), lanes=LANES, max_seq_len=T)
    return CycleModel.of(acc).compute(T) / T


def test_report_names_the_gru_and_its_cycle_model(reports, capsys):
    root, loaded = reports
    assert loaded["gru"]["model"]["cell"] == "gru" and loaded["gru"]["bit_exact"]
    capsys.readouterr()
    assert cli("report", root / "gru.json", "--html", root / "gru.html") == 0
    text = capsys.readouterr().out
    assert text.startswith(f"bit-exact: yes ({B * 2} outputs of {B} sequences x {T} steps")
    assert f"model: GRU I={I} H={H} L=1 head=lastx2; preset w8a8" in text
    assert "exact), MAC efficiency" in text  # measured cycles == the cycle model's
    page = (root / "gru.html").read_text()
    assert f"model: GRU I={I} H={H} L=1 head=lastx2" in page


def test_compare_sets_the_gru_beside_the_lstm(reports, capsys):
    root, loaded = reports
    capsys.readouterr()
    assert cli("compare", root / "lstm.json", root / "gru.json", "--html", root / "c.html") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["#1", "amaranth", f"P={LANES}", "w8a8", "#2", "amaranth",
                                f"P={LANES}", "w8a8", "GRU"]  # fmt: skip
    rows = {line.split("  ")[0]: line for line in lines}
    assert rows["cell"].split() == ["cell", "lstm", "gru", "(*)"]
    lstm_model, gru_model = (model_cycles_per_step(root, c) for c in ("lstm", "gru"))
    assert loaded["lstm"]["cycles"]["model_per_timestep"] == lstm_model
    assert loaded["gru"]["cycles"]["model_per_timestep"] == gru_model
    assert gru_model != lstm_model  # the GRU's own schedule, not the LSTM's
    cycles = rows["model cycles/timestep"].split()
    assert cycles[2:4] == [f"{lstm_model:.4g}", f"{gru_model:.4g}"]
    assert rows["bit-exact"].split()[1:] == ["yes", "yes"]
    page = (root / "c.html").read_text()
    assert f"{gru_model:.4g}" in page and "GRU" in page
