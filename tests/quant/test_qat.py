"""Bit-exact fine-tuning (lstmfpga.quant.qat): the torch forward pass computes the golden
model's integers, and training changes the weights without leaving that arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.qat import QATLSTM, QATError, finetune
from lstmfpga.testing import random_inputs, random_qmodel, random_spec

GEOMETRIES = {
    "last head": dict(input_size=3, hidden_size=5, head="last", head_out=4),
    "2 layers bidir proj, head all": dict(
        input_size=2,
        hidden_size=3,
        num_layers=2,
        bidirectional=True,
        proj_size=2,
        head="all",
        head_out=2,
    ),
    "no bias, no head": dict(input_size=4, hidden_size=4, bias=False),
    "3 layers, head without bias": dict(
        input_size=3, hidden_size=6, num_layers=3, head="last", head_out=3, head_bias=False
    ),
}


def _config(preset: str, rounding: str = "half_even") -> QuantConfig:
    return QuantConfig.from_dict({"preset": preset, "rounding": rounding})


def _assert_equals_golden(qat: QATLSTM, x, h0=None, c0=None):
    qmodel = qat.to_qmodel()
    x_codes = golden.quantize_inputs(qmodel, x)
    with torch.no_grad():
        got = qat.codes(x_codes, h0, c0)
    want = golden.run(qmodel, x_codes, h0, c0)
    for name in ("output", "h_n", "c_n"):
        assert np.array_equal(got[name].numpy().astype(np.int64), getattr(want, name)), name
    if want.head is None:
        assert got["head"] is None
    else:
        assert np.array_equal(got["head"].numpy().astype(np.int64), want.head)
    if h0 is not None or c0 is not None:
        return
    # forward() is the dequantized prediction (from zero states)
    with torch.no_grad():
        assert np.array_equal(qat(x).numpy(), qmodel.output_format.dequantize(want.prediction))


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize(
    ("preset", "rounding"),
    [("q16", "half_even"), ("w8a16", "half_even"), ("q16", "half_up"), ("w8a16", "truncate")],
)
def test_forward_equals_golden_model_bit_for_bit(geometry, preset, rounding):
    kw = GEOMETRIES[geometry]
    spec = random_spec(7, **kw)
    x = random_inputs(7, 6, 9, kw["input_size"]) * 1.5  # some values saturate
    qmodel = quantize(spec, x[:3], _config(preset, rounding))
    qat = QATLSTM(spec, qmodel)
    _assert_equals_golden(qat, x)
    # and again after the weights moved (a few optimizer steps)
    optimizer = torch.optim.SGD(qat.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        qat(x).pow(2).sum().backward()
        optimizer.step()
    _assert_equals_golden(qat, x)
    assert not np.array_equal(
        qat.to_qmodel().layers[0][0].w_ih.codes, qmodel.layers[0][0].w_ih.codes
    )


def test_initial_states_are_honoured():
    kw = GEOMETRIES["2 layers bidir proj, head all"]
    spec, qmodel = random_qmodel(3, **kw)
    rng = np.random.default_rng(3)
    B = 4
    h0 = rng.integers(-3000, 3000, (4, B, 2))
    c0 = rng.integers(-9000, 9000, (4, B, 3))
    _assert_equals_golden(QATLSTM(spec, qmodel), random_inputs(3, B, 5, 2), h0, c0)


def test_gradients_flow_to_every_weight():
    spec, qmodel = random_qmodel(1, **GEOMETRIES["2 layers bidir proj, head all"])
    qat = QATLSTM(spec, qmodel)
    qat(random_inputs(1, 5, 6, 2)).pow(2).sum().backward()
    for name, param in qat.named_parameters():
        assert param.grad is not None and torch.count_nonzero(param.grad) > 0, name


def test_wrapping_overflow_is_refused():
    spec = random_spec(0, input_size=2, hidden_size=2)
    qmodel = quantize(
        spec,
        random_inputs(0, 4, 3, 2),
        QuantConfig.from_dict({"preset": "q16", "overflow": "wrap"}),
    )
    with pytest.raises(QATError, match="overflow 'saturate'"):
        QATLSTM(spec, qmodel)


def test_geometry_mismatch_is_refused():
    spec = random_spec(0, input_size=2, hidden_size=3)
    _, other = random_qmodel(0, input_size=2, hidden_size=4)
    with pytest.raises(QATError, match="hidden_size must equal the spec's 3, not 4"):
        QATLSTM(spec, other)


def _classification(seed=0, n=96):
    """A task the float model does not solve: the sign of the mean of the first feature."""
    spec = random_spec(seed, input_size=2, hidden_size=4, head="last", head_out=2)
    x = random_inputs(seed, n, 6, 2)
    y = (x[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    return spec, x, y


def test_finetune_learns_and_stays_bit_exact():
    spec, x, y = _classification()
    config = QuantConfig.preset("w8a16")
    before = golden.predict(quantize(spec, x, config), x)[0]
    lines: list[str] = []
    result = finetune(
        spec, config, x, y, epochs=12, lr=2e-2, batch_size=32, seed=1, progress=lines.append
    )
    after = golden.predict(result.qmodel, x)[0]
    acc_before = np.mean(before.argmax(1) == y)
    acc_after = np.mean(after.argmax(1) == y)
    assert acc_after >= acc_before + 0.2, (acc_before, acc_after)
    assert len(lines) == 12 and lines[0].startswith("epoch 1/12: loss ")
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    # the reported training accuracy is the golden model's
    assert result.history[-1]["train_accuracy"] == pytest.approx(acc_after)
    assert result.qmodel.spec_hash == result.spec.content_hash()
    _assert_equals_golden(QATLSTM(result.spec, result.qmodel), x)


def test_finetune_is_deterministic_for_a_seed():
    spec, x, y = _classification(2, 64)
    config = QuantConfig.preset("q16")
    runs = [finetune(spec, config, x, y, epochs=2, batch_size=16, seed=5).qmodel for _ in range(2)]
    (a,), (b,) = runs[0].layers[0], runs[1].layers[0]
    for name in ("w_ih", "w_hh", "bias"):
        assert np.array_equal(getattr(a, name).codes, getattr(b, name).codes), name
    assert np.array_equal(runs[0].head.weight.codes, runs[1].head.weight.codes)
    other = finetune(spec, config, x, y, epochs=2, batch_size=16, seed=6).qmodel
    assert not np.array_equal(other.layers[0][0].w_hh.codes, a.w_hh.codes)


def test_recalibrated_formats_stay_bit_exact_and_validation_picks_the_best_epoch():
    spec, x, y = _classification(4)
    result = finetune(
        spec,
        QuantConfig.preset("w8a16"),
        x[:64],
        y[:64],
        epochs=4,
        lr=5e-2,
        formats="recalibrate",
        val=(x[64:], y[64:]),
        seed=0,
    )
    best = max(result.history, key=lambda h: h["val_accuracy"])
    got = golden.predict(result.qmodel, x[64:])[0]
    assert np.mean(got.argmax(1) == y[64:]) == pytest.approx(best["val_accuracy"])
    _assert_equals_golden(QATLSTM(result.spec, result.qmodel), x)


def test_regression_with_mse_on_every_step():
    spec = random_spec(5, input_size=1, hidden_size=3, head="all", head_out=1)
    x = random_inputs(5, 32, 8, 1)
    targets = np.cumsum(x, axis=1) * 0.2  # running sum: needs the recurrence
    result = finetune(
        spec, QuantConfig.preset("q16"), x, targets, loss="mse", epochs=15, lr=2e-2, batch_size=16
    )
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(loss="hinge"), "loss must be one of ce, mse, not 'hinge'"),
        (dict(formats="adaptive"), "formats must be one of hold, recalibrate"),
        (dict(epochs=-1), "epochs must be an integer >= 0, not -1"),
        (dict(batch_size=0), "batch_size must be an integer >= 1, not 0"),
        (dict(lr=float("nan")), "lr must be a positive number"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    spec, x, y = _classification(0, 8)
    with pytest.raises(QATError, match=message):
        finetune(spec, QuantConfig.preset("q16"), x, y, **kwargs)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.full(8, 2), r"labels must lie in 0..1, not 2..2"),
        (np.zeros(7, np.int64), r"labels must be integers of shape \(8,\)"),
        (np.zeros(8), r"labels must be integers of shape \(8,\), not float64"),
    ],
)
def test_bad_labels_are_refused(labels, message):
    spec, x, _ = _classification(0, 8)
    with pytest.raises(QATError, match=message):
        finetune(spec, QuantConfig.preset("q16"), x, labels)


def test_cross_entropy_needs_a_last_step_classifier():
    spec = random_spec(0, input_size=2, hidden_size=2, head="all", head_out=2)
    with pytest.raises(QATError, match="loss 'ce' needs a classifier"):
        finetune(spec, QuantConfig.preset("q16"), random_inputs(0, 4, 3, 2), np.zeros(4, int))
