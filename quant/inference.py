"""Running a quantized model on float inputs: the golden model, shaped like a spec's output.

:func:`predict_qmodel` is what ``lstmfpga predict QMODEL`` and
:meth:`lstmfpga.design.Design.predict` compute: the inputs are quantized with the model's
rules, the bit-exact golden model (:func:`lstmfpga.quant.golden.predict`) runs, and the
outputs come back dequantized (or as integer codes).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import golden
from .model import QuantizedModel

__all__ = ["QPrediction", "predict_qmodel"]


class QPrediction(NamedTuple):
    """A quantized model's prediction, shaped like a spec's (see ``lstmfpga predict``).

    ``output`` is the head output (else the output sequence), ``h_n`` ``(L*D, batch, H_out)``
    and ``c_n`` ``(L*D, batch, H)`` (None for a GRU): dequantized ``float64``, or ``int64``
    codes when raw.
    ``saturation`` counts the values that did not fit their format, per role.
    """

    output: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray | None
    saturation: dict[str, int]


def predict_qmodel(
    model: QuantizedModel | str | Path, x, h0=None, c0=None, raw: bool = False
) -> QPrediction:
    """Run the quantized model (or the qmodel directory ``model``) with the golden model.

    ``x`` ``(batch, seq, features)`` and the optional initial states ``h0``/``c0`` are floats
    (quantized with the model's rules). With ``raw`` the outputs are the integer codes
    (``output`` in the ``head_out`` format with a head, else ``hidden``; ``h_n`` in
    ``hidden``, ``c_n`` in ``cell``), else their dequantized values. Raises
    :class:`~lstmfpga.export.spec.SpecError` for a bad artifact, inputs or states.
    """
    if not isinstance(model, QuantizedModel):
        model = QuantizedModel.load(model)
    _, result = golden.predict(model, x, h0, c0)
    if raw:
        return QPrediction(result.prediction, result.h_n, result.c_n, result.saturation)
    return QPrediction(
        model.output_format.dequantize(result.prediction),
        model.formats["hidden"].dequantize(result.h_n),
        None if result.c_n is None else model.formats["cell"].dequantize(result.c_n),
        result.saturation,
    )
