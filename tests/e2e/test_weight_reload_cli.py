"""New weights for generated hardware, through the real CLI: ``quantize --formats-from`` the
design's qmodel, then ``pack-weights`` against the design folder; what does not fit the
hardware is refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "robustness"))
from harness import Case, assert_refused, run_cli

from lstmfpga.cli import main
from lstmfpga.quant.model import QuantizedModel
from lstmfpga.runtime import HardwareDesign, pack_weights
from lstmfpga.testing import random_inputs, random_spec

GEOMETRY = dict(input_size=3, hidden_size=4, head="last", head_out=2)


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Hardware generated for model A, and specs B (retrained: every weight x 0.9), C
    (weights x 8: outgrew A's formats) and D (another hidden size)."""
    case = Case.make(tmp_path_factory.mktemp("reload"))
    root = case.out
    random_spec(7, scale=0.5, **GEOMETRY).save(root / "spec_a")
    random_spec(7, scale=0.45, **GEOMETRY).save(root / "spec_b")
    random_spec(7, scale=4.0, **GEOMETRY).save(root / "spec_c")
    random_spec(7, **(GEOMETRY | {"hidden_size": 5})).save(root / "spec_d")
    np.save(root / "x.npy", random_inputs(7, 8, 5, GEOMETRY["input_size"]))
    _ok(run_cli(case, "quantize", root / "spec_a", "--calib", root / "x.npy", "-o", root / "qa"))
    # (in-process: Yosys-WASM reserves more address space than the harness allows)
    assert main(["generate", str(root / "qa"), "--lanes", "3", "-o", str(root / "rtl")]) == 0
    return root


def test_retrained_weights_pack_for_the_same_hardware(tmp_path, built):
    case = Case.make(tmp_path)
    qb = case.out / "qb"
    out = _ok(run_cli(case, "quantize", built / "spec_b", "--formats-from", built / "qa",
                      "-o", qb))  # fmt: skip
    assert "no calibration" in out.stdout
    a, b = QuantizedModel.load(built / "qa"), QuantizedModel.load(qb)
    assert b.formats == a.formats and b.acc == a.acc
    weights = case.out / "weights.bin"
    out = _ok(run_cli(case, "pack-weights", qb, "--rtl", built / "rtl", "-o", weights))
    design = HardwareDesign.load(built / "rtl")
    assert weights.read_bytes() == pack_weights(design, b).to_bytes()
    assert weights.read_bytes() != pack_weights(design, a).to_bytes(), "weights changed"
    assert f"{len(pack_weights(design, b))} beats" in out.stdout


def test_formats_from_takes_the_config_of_its_qmodel(tmp_path, built):
    case = Case.make(tmp_path)
    result = run_cli(case, "quantize", built / "spec_b", "--formats-from", built / "qa",
                     "--preset", "w8a8", "-o", case.out / "q")  # fmt: skip
    assert_refused(result, case, match="--formats-from takes its qmodel's config")


def test_quantize_needs_calib_or_formats_from(tmp_path, built):
    case = Case.make(tmp_path)
    result = run_cli(case, "quantize", built / "spec_b", "-o", case.out / "q")
    assert_refused(result, case, match="--calib X.npy is required unless --formats-from")


def test_weights_that_outgrew_the_formats_are_refused_naming_the_tensor(tmp_path, built):
    case = Case.make(tmp_path)
    result = run_cli(case, "quantize", built / "spec_c", "--formats-from", built / "qa",
                     "-o", case.out / "q")  # fmt: skip
    assert_refused(result, case, match="tensor w_ih_l0 must fit s16.15")


def test_another_geometry_is_refused(tmp_path, built):
    case = Case.make(tmp_path)
    result = run_cli(case, "quantize", built / "spec_d", "--formats-from", built / "qa",
                     "-o", case.out / "q")  # fmt: skip
    assert_refused(result, case, match="hidden_size")
    qd = case.out / "qd"
    _ok(run_cli(case, "quantize", built / "spec_d", "--calib", built / "x.npy", "-o", qd))
    result = run_cli(case, "pack-weights", qd, "--rtl", built / "rtl", "-o", case.out / "w.bin")
    assert_refused(result, case, match="hidden_size")


def test_generate_axi_top_for_the_host_runtime(tmp_path, built):
    import json

    out = tmp_path / "axi"
    assert main(["generate", str(built / "qa"), "--top", "axi", "--lanes", "2",
                 "-o", str(out)]) == 0  # fmt: skip
    info = json.loads((out / "manifest.json").read_text())
    assert info["top"] == "lstm_axi" and "lstm_axi.v" in info["files"]
    assert "module lstm_axi" in (out / "lstm_axi.v").read_text()
    design = HardwareDesign.load(out)
    assert design.design_id == info["design_id"]
    case = Case.make(tmp_path)
    _ok(run_cli(case, "quantize", built / "spec_b", "--formats-from", built / "qa",
                "-o", case.out / "qb"))  # fmt: skip
    _ok(run_cli(case, "pack-weights", case.out / "qb", "--rtl", out, "-o", case.out / "w.bin"))
    model = QuantizedModel.load(case.out / "qb")
    assert (case.out / "w.bin").read_bytes() == pack_weights(design, model).to_bytes()


@pytest.fixture(scope="module")
def gru_qmodel(tmp_path_factory):
    """A quantized one-layer GRU: an LSTM spec's first three gate blocks as the GRU's r, z,
    n."""
    import dataclasses

    from lstmfpga.export.spec import LayerWeights
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import QuantConfig

    lstm = random_spec(3, input_size=3, hidden_size=4)
    w = lstm.layers[0][0]
    gates = slice(0, 3 * lstm.hidden_size)
    layer = LayerWeights(w.w_ih[gates], w.w_hh[gates], w.b_ih[gates], w.b_hh[gates])
    spec = dataclasses.replace(lstm, layers=((layer,),), cell="gru", gate_order=("r", "z", "n"))
    rng = np.random.default_rng(3)
    I = spec.input_size
    root = tmp_path_factory.mktemp("gru")
    quantize(spec, rng.uniform(-1, 1, (8, 5, I)), QuantConfig.preset("q16")).save(root / "q")
    return root


def test_a_gru_qmodel_is_refused_by_an_lstm_design(tmp_path, built, gru_qmodel):
    """pack-weights checks the qmodel's cell against the design's (GRU designs exist now:
    generating and simulating a GRU is the GRU hardware's to test)."""
    case = Case.make(tmp_path)
    argv = ("pack-weights", gru_qmodel / "q", "--rtl", built / "rtl", "-o", case.out / "w.bin")
    assert_refused(run_cli(case, *argv), case, match="cell must be the design's 'lstm', not 'gru'")
