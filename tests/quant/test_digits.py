"""A real task: the digits LSTM classifier keeps its accuracy when quantized.

The model is trained with PyTorch by ``lstmfpga.digits`` (seed 0, hidden 32, a few
seconds), exported with ``lstmfpga.export.torch_loader.from_module``, calibrated on 256
training images and evaluated on the 450 test images with the golden model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmfpga import digits as digits_module
from lstmfpga.export.reference import forward
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig

#: Largest accepted accuracy drop against the float model, in percentage points: after
#: post-training quantization, and (the issue's goals) after bit-exact fine-tuning.
MAX_DROP = {"q16": 0.5, "w8a16": 1.5, "w8a8": 1.5, "w4a8": 4.0}
MAX_DROP_FINETUNED = {"w8a8": 0.5, "w4a8": 1.5}


@pytest.fixture(scope="module")
def trained():
    from lstmfpga.export.torch_loader import from_module

    digits = digits_module
    model, data = digits.train_digits_model(seed=0, hidden=32)
    return digits, model, from_module(model, head="last"), data


def test_the_float_model_learned_the_task(trained):
    digits, model, spec, (_, _, x_test, y_test) = trained
    with torch.no_grad():
        torch_logits = model(torch.as_tensor(x_test, dtype=torch.float32)).numpy()
    reference = forward(spec, x_test).head
    assert np.abs(reference - torch_logits).max() < 1e-3
    assert digits.accuracy(reference, y_test) >= 90.0


@pytest.mark.parametrize("preset", sorted(MAX_DROP))
def test_quantized_accuracy_stays_close_to_float(trained, preset):
    digits, _, spec, (x_train, _, x_test, y_test) = trained
    float_accuracy = digits.accuracy(forward(spec, x_test).head, y_test)
    qmodel = quantize(spec, x_train[:256], QuantConfig.preset(preset))
    logits, result = golden.predict(qmodel, x_test)
    drop = float_accuracy - digits.accuracy(logits, y_test)
    assert drop <= MAX_DROP[preset], f"{preset}: float {float_accuracy:.2f}%, drop {drop:.2f}"
    assert result.saturation["preact"] == result.saturation["cell"] == 0


@pytest.mark.parametrize("preset", sorted(MAX_DROP_FINETUNED))
def test_fine_tuned_accuracy_stays_within_the_goal(trained, preset):
    from lstmfpga.quant.qat import finetune

    digits, _, spec, (x_train, y_train, x_test, y_test) = trained
    float_accuracy = digits.accuracy(forward(spec, x_test).head, y_test)
    n_val = len(x_train) // 5  # validation split carved from the training data
    result = finetune(
        spec,
        QuantConfig.preset(preset),
        x_train[n_val:],
        y_train[n_val:],
        epochs=10,
        val=(x_train[:n_val], y_train[:n_val]),
        seed=0,
    )
    logits, _ = golden.predict(result.qmodel, x_test)
    drop = float_accuracy - digits.accuracy(logits, y_test)
    assert drop <= MAX_DROP_FINETUNED[preset], (
        f"{preset} fine-tuned: float {float_accuracy:.2f}%, drop {drop:.2f}"
    )
