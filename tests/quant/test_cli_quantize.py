"""``lstmfpga quantize`` and the helpers that predict/info use for quantized models."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from lstmfpga import cli
from lstmfpga.commands import quantize as command
from lstmfpga.export.reference import forward
from lstmfpga.quant import golden
from lstmfpga.quant.model import QuantizedModel
from lstmfpga.testing import random_inputs, random_spec


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lstmfpga")
    command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture
def main(monkeypatch):
    """``lstmfpga.cli.main`` with ``quantize`` registered (whether or not COMMANDS lists it)."""
    if "quantize" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "quantize"])
    return cli.main


@pytest.fixture
def files(tmp_path):
    spec = random_spec(3, num_layers=2, head="last")
    spec_path = spec.save(tmp_path / "spec")
    calib = random_inputs(3, 16, 10, spec.input_size)
    np.save(tmp_path / "calib.npy", calib)
    return spec, spec_path, tmp_path / "calib.npy", calib


@pytest.fixture
def qmodel_path(files, tmp_path):
    """The qmodel folder ``lstmfpga quantize SPEC --calib X -o q`` writes for ``files``."""
    _, spec_path, calib_path, _ = files
    path = tmp_path / "q"
    run = _parse(["quantize", str(spec_path), "--calib", str(calib_path), "-o", str(path)])
    run.func(run)
    return path


@pytest.mark.parametrize("preset", ["q16", "w8a16"])
def test_quantize_writes_a_model_and_reports_it(files, tmp_path, capsys, preset):
    spec, spec_path, calib_path, calib = files
    out = tmp_path / "q"
    args = _parse([
        "quantize", str(spec_path), "--calib", str(calib_path), "--preset", preset, "-o", str(out)
    ])  # fmt: skip
    assert args.func(args) == 0
    model = QuantizedModel.load(out)
    assert model.config.name == preset
    text = capsys.readouterr().out
    assert model.describe() in text
    assert "table tanh_cell: " in text and "max error " in text
    assert "saturation on the calibration data (16 sequences): x=0, preact=0, cell=0, " in text
    assert text.rstrip().endswith(f"wrote {out}")
    # The saved model is what quantize() builds from the same inputs.
    y, _ = golden.predict(model, calib)
    assert np.abs(y - forward(spec, calib).head).max() < 0.05


def test_quantize_reads_a_toml_config(files, tmp_path, capsys, main):
    _, spec_path, calib_path, _ = files
    config = tmp_path / "c.toml"
    config.write_text('preset = "w8a16"\n[roles]\nx = { bits = 8, frac = 6 }\n')  # |x| < 2
    out = tmp_path / "q"
    assert main(["quantize", str(spec_path), "--calib", str(calib_path),
                 "--config", str(config), "-o", str(out)]) == 0  # fmt: skip
    model = QuantizedModel.load(out)
    assert str(model.formats["x"]) == "s8.6"
    assert model.layers[0][0].w_ih.fmt.bits == 8
    text = capsys.readouterr().out
    assert "saturation on the calibration data (16 sequences): x=" in text
    assert "x=0," not in text
    assert "warning: " in text and " value(s) saturated on the calibration data; " in text


def test_preset_is_the_base_of_a_config_without_one(files, tmp_path, main):
    _, spec_path, calib_path, _ = files
    config = tmp_path / "c.toml"
    config.write_text("[roles]\ncell = { bits = 18 }\n")
    out = tmp_path / "q"
    argv = ["quantize", str(spec_path), "--calib", str(calib_path), "--config", str(config)]
    assert main([*argv, "--preset", "w8a16", "-o", str(out)]) == 0
    model = QuantizedModel.load(out)
    assert model.formats["cell"].bits == 18 and model.layers[0][0].w_hh.fmt.bits == 8


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing-spec", "lstmfpga: error: {tmp}/nope: no such file or directory"),
        ("missing-calib", "lstmfpga: error: --calib {tmp}/nope.npy: no such file"),
        ("wrong-shape", "lstmfpga: error: calibration data: inputs have 2 features, the model "),
        ("nan", "lstmfpga: error: calibration data: inputs contain non-finite values (NaN or Inf)"),
        ("bad-toml", "lstmfpga: error: {tmp}/c.toml: unknown role 'forget'; roles are w_ih"),
        ("frac-bits", "lstmfpga: error: {tmp}/c.toml: role x: frac must be in -62..16 (at most"),
        ("small-acc", "lstmfpga: error: accumulator of 32 bits cannot hold a dot product: "),
    ],
)
def test_errors_are_one_line_with_exit_code_2(files, tmp_path, capsys, main, setup, message):
    _spec, spec_path, calib_path, calib = files
    config = tmp_path / "c.toml"
    argv = ["quantize", str(spec_path), "--calib", str(calib_path), "-o", str(tmp_path / "q")]
    if setup == "missing-spec":
        argv[1] = str(tmp_path / "nope")
    elif setup == "missing-calib":
        argv[3] = str(tmp_path / "nope.npy")
    elif setup == "wrong-shape":
        np.save(calib_path, calib[..., :2])
    elif setup == "nan":
        calib = calib.copy()
        calib[0, 0, 0] = np.nan
        np.save(calib_path, calib)
    elif setup == "bad-toml":
        config.write_text('preset = "q16"\n[roles]\nforget = { bits = 8 }\n')
        argv += ["--config", str(config)]
    elif setup == "frac-bits":
        config.write_text('preset = "q16"\n[roles]\nx = { bits = 16, frac = 17 }\n')
        argv += ["--config", str(config)]
    elif setup == "small-acc":
        config.write_text('preset = "q16"\nacc_bits = 32\n')
        argv += ["--config", str(config)]
    else:
        raise AssertionError(setup)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(message.format(tmp=tmp_path))
    assert not (tmp_path / "q").exists()


def test_predict_qmodel_matches_the_golden_model(files, qmodel_path):
    spec, path = files[0], qmodel_path
    model = QuantizedModel.load(path)
    x = random_inputs(8, 5, 7, spec.input_size)
    LD = spec.num_layers
    rng = np.random.default_rng(0)
    h0, c0 = rng.uniform(-0.5, 0.5, (LD, 5, 4)), rng.uniform(-0.5, 0.5, (LD, 5, 4))
    y, result = golden.predict(model, x, h0, c0)
    values = command.predict_qmodel(path, x, h0, c0)
    codes = command.predict_qmodel(path, x, h0, c0, raw=True)
    ref = forward(spec, x, h0, c0)
    for got, expected in zip(values[:3], (ref.head, ref.h_n, ref.c_n), strict=True):
        assert got.shape == expected.shape and got.dtype == np.float64
        assert np.abs(got - expected).max() < 0.05
    assert np.array_equal(values.output, y)
    assert codes.output.dtype == np.int64 and np.array_equal(codes.output, result.head)
    assert np.array_equal(codes.h_n, result.h_n) and np.array_equal(codes.c_n, result.c_n)
    assert np.array_equal(model.formats["cell"].dequantize(codes.c_n), values.c_n)
    assert values.saturation == result.saturation


def test_describe_qmodel(qmodel_path):
    text = command.describe_qmodel(qmodel_path)
    model = QuantizedModel.load(qmodel_path)
    assert text.startswith(model.describe())
    assert f"weights: {model.weight_count} codes, " in text
    assert text.endswith(" ROM bits")
