"""Digits classifier: train an LSTM on scikit-learn's digits, quantize it, compare accuracy.

Run ``python examples/digits.py``. The model and data live in ``lstmfpga.digits`` (also
used by ``lstmfpga demo``): each 8x8 image is 8 timesteps of 8 features.
"""

from __future__ import annotations

from lstmfpga.digits import accuracy, train_digits_model


def main() -> None:
    from lstmfpga.export.reference import forward
    from lstmfpga.export.torch_loader import from_module
    from lstmfpga.quant import golden
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import QuantConfig

    model, (x_train, _, x_test, y_test) = train_digits_model()
    spec = from_module(model, head="last")
    print(spec.describe())
    print(f"float64 reference: {accuracy(forward(spec, x_test).head, y_test):.2f}% on the test set")
    for preset in ("q16", "w8a16"):
        qmodel = quantize(spec, x_train[:256], QuantConfig.preset(preset))
        logits, result = golden.predict(qmodel, x_test)
        score = accuracy(logits, y_test)
        print(f"{preset} golden model: {score:.2f}%, saturation {result.saturation}")


if __name__ == "__main__":
    main()
