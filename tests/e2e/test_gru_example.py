"""The GRU examples work. examples/gru_digits.py: a GRU trained on the digits exports,
quantizes per preset, and the fixed-point predictions it prints come from the golden model
on the saved qmodels bit for bit. examples/gru_sunspots.py: the regressor keeps its RMSE
within stated bounds per preset.

The digits example is run once (12 epochs instead of its default 30, a few seconds) and
saves its spec and qmodels; the tests read them back as a user would.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstmfpga.digits import load_data
from lstmfpga.export.reference import forward
from lstmfpga.export.spec import ModelSpec
from lstmfpga.quant import golden
from lstmfpga.quant.qmodel_file import read_qmodel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EPOCHS = 12
FLOAT_FLOOR = 90.0  # % test accuracy in float; 93.1 measured (seed 0, 12 epochs)
# Accuracy points the golden model may lose against float, per preset (as docs/numerics.md
# states for a digits GRU).
MAX_DROP = {"q16": 0.5, "w8a16": 2.0, "w8a8": 2.0, "w4a8": 5.0}


def _load_example(stem: str = "gru_digits"):
    name = f"{stem}_example"
    if name not in sys.modules:  # a dataclass needs its module registered
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("gru_digits")
    module = _load_example()
    spec, float_accuracy, results = module.run(EPOCHS, module.PRESETS, out)
    return out, spec, float_accuracy, {r.preset: r for r in results}


def test_the_example_covers_every_preset(example):
    _, spec, _, results = example
    assert spec.cell == "gru"
    assert sorted(results) == sorted(MAX_DROP)


def test_float_accuracy_is_above_the_floor_and_matches_the_saved_spec(example):
    out, spec, float_accuracy, _ = example
    _, _, x_test, y_test = load_data(0)
    saved = ModelSpec.load(out / "spec")
    assert saved.content_hash() == spec.content_hash()
    logits = forward(saved, x_test).head
    assert 100.0 * np.mean(np.argmax(logits, axis=-1) == y_test) == float_accuracy
    assert float_accuracy > FLOAT_FLOOR


@pytest.mark.parametrize("preset", sorted(MAX_DROP))
def test_fixed_point_predictions_are_the_golden_model_on_the_saved_qmodel(example, preset):
    out, spec, float_accuracy, results = example
    r = results[preset]
    _, _, x_test, y_test = load_data(0)
    qmodel = read_qmodel(out / f"{preset}.qmodel")
    assert qmodel.cell == "gru" and qmodel.spec_hash == spec.content_hash()
    codes = golden.run(qmodel, golden.quantize_inputs(qmodel, x_test)).head
    assert codes.dtype == np.int64 and codes.shape == (len(x_test), 10)
    np.testing.assert_array_equal(r.head_codes, codes)
    np.testing.assert_array_equal(r.logits, codes * 2.0 ** -qmodel.formats["head_out"].frac)
    assert r.accuracy == 100.0 * np.mean(np.argmax(codes, axis=-1) == y_test)
    assert float_accuracy - r.accuracy <= MAX_DROP[preset]


def test_cli_predict_on_a_saved_qmodel_gives_the_same_codes(example, tmp_path):
    out, _, _, results = example
    inputs, output = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(inputs, load_data(0)[2])
    run = subprocess.run(
        [sys.executable, "-m", "lstmfpga", "predict", str(out / "w8a8.qmodel"),
         "--inputs", str(inputs), "-o", str(output), "--raw"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(np.load(output), results["w8a8"].head_codes)


def test_the_example_prints_each_figure(example, capsys):
    module = _load_example()
    module.main(["--epochs", "1", "--presets", "q16"])
    printed = capsys.readouterr().out
    assert "float64 reference:" in printed and "q16 golden model:" in printed
    assert "RTL: not run here (lstmfpga generate/simulate take the GRU qmodels" in printed


# examples/gru_sunspots.py at its default budget (150 full-batch epochs, about a second):
# next-year RMSE in sunspot numbers; 20.18 in float measured (seed 0), the LSTM's 20.64.
SUNSPOTS_FLOAT_MAX = 22.0
SUNSPOTS_MAX_RISE = {"q16": 0.05, "w8a16": 1.0, "w8a8": 1.0, "w4a8": 2.5}


def test_sunspots_regressor_keeps_its_rmse_per_preset():
    module = _load_example("gru_sunspots")
    model, data = module.train()
    spec, float_rmse, fixed = module.evaluate(model, data)
    assert spec.cell == "gru" and spec.head.mode == "all"
    assert float_rmse < SUNSPOTS_FLOAT_MAX
    assert sorted(fixed) == sorted(SUNSPOTS_MAX_RISE)
    for preset, value in fixed.items():
        assert value - float_rmse <= SUNSPOTS_MAX_RISE[preset], preset
