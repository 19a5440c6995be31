"""Quantizing a GRU spec: formats per role (``hn`` for the recurrent n sum, two bias tensors),
the LSTM presets, the qmodel artifact recording the cell, and a real task (the sklearn digits
as a GRU classifier) keeping its accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec
from quant_helpers import exactly

from lstmfpga.digits import accuracy, train_digits_model
from lstmfpga.export.reference import forward
from lstmfpga.export.spec import SpecError
from lstmfpga.export.torch_loader import from_module
from lstmfpga.quant import gru_golden
from lstmfpga.quant.calibrate import calibrate_ranges, quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.describe import describe_qmodel
from lstmfpga.quant.model import GRU_DATA_ROLES, QuantizedModel


@pytest.fixture(scope="module")
def gru():
    spec = random_gru_spec(2, input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                           head="last")  # fmt: skip
    x = np.random.default_rng(3).uniform(-1, 1, (8, 6, 3))
    return spec, x


def test_a_gru_qmodel_has_the_gru_roles_and_its_two_bias_tensors(gru):
    spec, x = gru
    model = quantize(spec, x, QuantConfig.preset("w8a8"))
    assert model.cell == "gru" and model.num_gates == 3
    assert tuple(model.formats) == GRU_DATA_ROLES
    assert set(model.tables) == {"sigmoid", "tanh_gate"}
    H = spec.hidden_size
    for layer_spec, layer in zip(spec.layers, model.layers, strict=True):
        for lw, q in zip(layer_spec, layer, strict=True):
            assert q.w_ih.codes.shape == (3 * H, lw.w_ih.shape[1]) and q.w_hr is None
            bias = np.concatenate([lw.b_ih[: 2 * H] + lw.b_hh[: 2 * H], lw.b_ih[2 * H :]])
            assert np.abs(q.bias.values - bias).max() <= q.bias.fmt.lsb / 2
            assert np.abs(q.b_hn.values - lw.b_hh[2 * H :]).max() <= q.b_hn.fmt.lsb / 2
    # hn takes preact's width, its own calibrated fraction bits.
    assert model.formats["hn"].bits == model.formats["preact"].bits == 16
    ranges = calibrate_ranges(spec, x)
    assert set(ranges) == set(GRU_DATA_ROLES)
    assert model.formats["hn"].max_value >= ranges["hn"] * 1.25 > model.formats["hn"].max_value / 2
    assert model.spec_hash == spec.content_hash()


def test_the_hn_role_can_be_configured(gru):
    spec, x = gru
    config = QuantConfig.from_dict({"preset": "w8a8", "roles": {"hn": {"bits": 12, "frac": 8}}})
    model = quantize(spec, x, config)
    assert str(model.formats["hn"]) == "s12.8"
    assert QuantConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("preset", ["q16", "w8a16", "w8a8", "w4a8"])
def test_every_lstm_preset_quantizes_a_gru_with_its_widths(gru, preset):
    spec, x = gru
    config = QuantConfig.preset(preset)
    model = quantize(spec, x, config)
    for role in ("x", "preact", "gate", "hidden", "head_out"):
        assert model.formats[role].bits == config.roles[role].bits, role
    q = model.layers[1][1]
    assert (q.w_ih.fmt.bits, q.w_hh.fmt.bits) == (config.roles["w_ih"].bits,
                                                 config.roles["w_hh"].bits)  # fmt: skip
    assert q.bias.fmt.bits == q.b_hn.fmt.bits == config.roles["bias"].bits
    # The accumulator's fraction covers every product, r * hn included: no shift is negative.
    assert min(model.gate_shifts(1, 1) + model.gru_shifts(1, 1)) >= 0


def test_gru_qmodel_saves_loads_and_records_its_cell(gru, tmp_path):
    spec, x = gru
    model = quantize(spec, x, QuantConfig.preset("w8a16"))
    model.save(tmp_path / "q")
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["cell"] == "gru" and "hn" in manifest["formats"]
    assert "b_hn_l1_reverse" in manifest["tensor_formats"]
    loaded = QuantizedModel.load(tmp_path / "q")
    assert loaded.cell == "gru"
    assert loaded.describe() == model.describe()
    assert np.array_equal(gru_golden.predict(loaded, x)[0], gru_golden.predict(model, x)[0])
    text = describe_qmodel(tmp_path / "q")
    assert text.startswith("quantized GRU (w8a16) input_size=3 hidden_size=4 num_layers=2")
    assert "b_hn=s16." in text and "tanh_cell" not in text


def test_lstm_qmodels_are_written_as_before(tmp_path):
    from lstmfpga.export.spec import LayerWeights, ModelSpec

    rng = np.random.default_rng(0)
    layer = LayerWeights(rng.uniform(-1, 1, (8, 2)), rng.uniform(-1, 1, (8, 2)))
    lstm = quantize(ModelSpec(2, 2, 1, False, 0, False, ((layer,),)), rng.uniform(-1, 1, (2, 3, 2)))
    lstm.save(tmp_path / "q")
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert "cell" not in manifest and "hn" not in manifest["formats"]
    assert QuantizedModel.load(tmp_path / "q").cell == "lstm"
    with pytest.raises(SpecError, match=exactly("x supports LSTM qmodels only, not cell 'gru'")):
        quantize(random_gru_spec(0), rng.uniform(-1, 1, (2, 3, 3))).require_lstm("x")
    lstm.require_lstm("x")


def _edit(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


BAD_GRU_MANIFESTS = {
    "unknown cell": (lambda m: m.update(cell="rnn"), "cell must be 'lstm' or 'gru', not 'rnn'"),
    "gru without hn": (lambda m: m["formats"].pop("hn"), "formats must name exactly the roles"),
    "lstm roles for a gru": (
        lambda m: m["formats"].update(cell=m["formats"].pop("hn")),
        "formats must name exactly the roles x, preact, gate, hn, hidden, head_out",
    ),
    "labelled lstm": (lambda m: m.pop("cell"), "roles x, preact, gate, cell, hidden, head_out"),
    "hn of the wrong width": (
        lambda m: m["formats"]["hn"].update(bits=12),
        "format of hn s12.",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_GRU_MANIFESTS))
def test_bad_gru_qmodel_manifests_are_refused(gru, tmp_path, name):
    spec, x = gru
    quantize(spec, x, QuantConfig.preset("w8a8")).save(tmp_path / "q")
    change, message = BAD_GRU_MANIFESTS[name]
    _edit(tmp_path / "q", change)
    with pytest.raises((SpecError, ValueError), match=message) as info:
        QuantizedModel.load(tmp_path / "q")
    assert str(info.value).startswith(str(tmp_path / "q")) and "\n" not in str(info.value)


def test_a_gru_qmodel_without_b_hn_or_with_a_cell_table_is_refused(gru, tmp_path):
    spec, x = gru
    model = quantize(spec, x, QuantConfig.preset("w8a8"))
    model.save(tmp_path / "q")
    tensors = dict(np.load(tmp_path / "q" / "tensors.npz"))
    np.savez(tmp_path / "q" / "tensors.npz", **{k: v for k, v in tensors.items()
                                                 if k != "b_hn_l0"})  # fmt: skip
    with pytest.raises(SpecError, match=r"tensors\.npz lacks tensor b_hn_l0$"):
        QuantizedModel.load(tmp_path / "q")
    np.savez(tmp_path / "q" / "tensors.npz", **tensors,
             table_tanh_cell_entries=tensors["table_sigmoid_entries"])  # fmt: skip
    with pytest.raises(SpecError, match=r"activation table\(s\) .*tanh_cell.* this gru lacks"):
        QuantizedModel.load(tmp_path / "q")


# -- a real task ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_gru():
    """``lstmfpga.digits.DigitsGRU`` (hidden 16) trained for 12 epochs (Adam, seed 0, one
    thread: about 3 s)."""
    model, (x_train, _, x_test, y_test) = train_digits_model(0, hidden=16, epochs=12, cell="gru")
    return from_module(model), (x_train, x_test, y_test)


# preset: (largest accuracy drop in points, largest abs logit error) on the 450 test digits,
# whose logits span about -10..10; 4-bit weights (LSB 1/4 to 1/2 here) move them by up to 6.
DIGITS_TOLERANCE = {"q16": (0.5, 0.02), "w8a16": (2.0, 0.5), "w8a8": (2.0, 0.6),
                    "w4a8": (5.0, 6.0)}  # fmt: skip


@pytest.mark.parametrize("preset", list(DIGITS_TOLERANCE))
def test_digits_gru_keeps_its_accuracy_when_quantized(digits_gru, preset):
    spec, (x_train, x_test, y_test) = digits_gru
    assert spec.cell == "gru"
    logits = forward(spec, x_test).head
    float_accuracy = accuracy(logits, y_test)
    assert float_accuracy >= 85.0
    model = quantize(spec, x_train[:256], QuantConfig.preset(preset))
    prediction, result = gru_golden.predict(model, x_test)
    drop, logit_error = DIGITS_TOLERANCE[preset]
    assert float_accuracy - accuracy(prediction, y_test) <= drop, preset
    assert float(np.abs(prediction - logits).max()) <= logit_error, preset
    assert result.saturation["x"] == 0  # the digits lie in [0, 1] like the calibration rows
