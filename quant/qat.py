"""Fine-tuning that sees the hardware's arithmetic: :func:`finetune` trains a
:class:`~lstmfpga.quant.qat_lstm.QATLSTM` (the torch LSTM that computes the golden model's
integers exactly, with straight-through gradients) and returns the quantized model of the
trained weights.

Classifiers train with cross-entropy on a ``last`` head, regressors with mean squared error
on the dequantized outputs; the formats of the initial calibration are held, or recalibrated
after every epoch. :class:`QATLSTM` and :class:`QATError` are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..export.spec import ModelSpec
from .calibrate import quantize
from .config import QuantConfig
from .model import QuantizedModel
from .qat_lstm import QATLSTM, QATError

__all__ = ["FORMAT_POLICIES", "LOSSES", "QATLSTM", "FinetuneResult", "QATError", "finetune"]

#: ``hold``: keep the formats of the initial calibration; ``recalibrate``: choose them again
#: from the trained weights (and the calibration data) after every epoch.
FORMAT_POLICIES = ("hold", "recalibrate")
LOSSES = ("ce", "mse")


# -- training -------------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    """The trained ``qmodel`` and ``spec``, and one ``history`` entry per epoch."""

    qmodel: QuantizedModel
    spec: ModelSpec
    history: list[dict] = field(default_factory=list)


def _check_targets(spec: ModelSpec, x: np.ndarray, y: np.ndarray, loss: str, what: str):
    if loss == "ce":
        if spec.head is None or spec.head.mode != "last":
            raise QATError("loss 'ce' needs a classifier: a Linear head on the last step")
        y = np.asarray(y)
        if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
            raise QATError(
                f"{what} labels must be integers of shape ({x.shape[0]},), not {y.dtype} {y.shape}"
            )
        if y.size and (y.min() < 0 or y.max() >= spec.head.out_features):
            raise QATError(
                f"{what} labels must lie in 0..{spec.head.out_features - 1}, not "
                f"{int(y.min())}..{int(y.max())}"
            )
        return torch.as_tensor(y.astype(np.int64))
    y = np.asarray(y, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise QATError(f"{what} targets contain non-finite values")
    return torch.as_tensor(y)


def _accuracy(prediction: torch.Tensor, labels: torch.Tensor) -> float:
    return float((prediction.argmax(dim=1) == labels).double().mean())


def finetune(
    spec: ModelSpec,
    config: QuantConfig,
    x,
    y,
    *,
    loss: str = "ce",
    epochs: int = 10,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
    formats: str = "hold",
    calib=None,
    val: tuple | None = None,
    progress: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``spec`` under ``config``'s arithmetic on ``(x, y)``; see the module docstring.

    ``loss``: ``"ce"`` (``y`` class labels, a ``last`` head) or ``"mse"`` (``y`` in the
    prediction's shape). ``formats``: one of :data:`FORMAT_POLICIES`; calibration uses
    ``calib`` (default ``x``). ``val``: optional ``(x, y)`` evaluated after each epoch.
    With ``val``, the weights of the epoch with the best validation accuracy (``ce``) or loss
    (``mse``) are returned; without it, those of the last epoch. ``progress`` receives one
    line per epoch. Deterministic for a given ``seed``.
    """
    spec.require_lstm("fine-tuning")
    if loss not in LOSSES:
        raise QATError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    if formats not in FORMAT_POLICIES:
        raise QATError(f"formats must be one of {', '.join(FORMAT_POLICIES)}, not {formats!r}")
    for name, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise QATError(f"{name} must be an integer >= {low}, not {value!r}")
    if not (isinstance(lr, int | float) and np.isfinite(lr) and lr > 0):
        raise QATError(f"lr must be a positive number, not {lr!r}")
    x = np.asarray(x, dtype=np.float64)
    calib = x if calib is None else np.asarray(calib, dtype=np.float64)
    qmodel = quantize(spec, calib, config)
    targets = _check_targets(spec, x, y, loss, "training")
    if loss == "mse" and tuple(targets.shape) != _prediction_shape(spec, x):
        raise QATError(
            f"training targets must have shape {_prediction_shape(spec, x)}, not "
            f"{tuple(targets.shape)}"
        )
    val_t = None
    if val is not None:
        val_x = np.asarray(val[0], dtype=np.float64)
        val_t = (val_x, _check_targets(spec, val_x, val[1], loss, "validation"))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = QATLSTM(spec, qmodel)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    criterion = torch.nn.CrossEntropyLoss() if loss == "ce" else torch.nn.MSELoss()
    history, best = [], None
    for epoch in range(1, epochs + 1):
        order = rng.permutation(x.shape[0])
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            value = criterion(module(x[batch]), targets[batch])
            value.backward()
            optimizer.step()
            total += float(value.detach()) * len(batch)
        if formats == "recalibrate":
            module.set_formats(quantize(module.to_spec(), calib, config))
        entry = {"epoch": epoch, "loss": total / max(1, x.shape[0])}
        with torch.no_grad():
            if loss == "ce":
                entry["train_accuracy"] = _accuracy(module(x), targets)
            if val_t is not None:
                pred = module(val_t[0])
                entry["val_loss"] = float(criterion(pred, val_t[1]))
                if loss == "ce":
                    entry["val_accuracy"] = _accuracy(pred, val_t[1])
        history.append(entry)
        if val_t is not None:
            score = entry.get("val_accuracy", -entry["val_loss"])
            if best is None or score > best[0]:
                best = (score, epoch, module.to_spec(), module.qmodel)
                entry["best"] = True
        if progress is not None:
            progress(_epoch_line(entry, epochs))
    if best is not None:  # the epoch that did best on the validation data
        _, _, spec_best, formats_best = best
        module = QATLSTM(spec_best, formats_best)
    return FinetuneResult(module.to_qmodel(), module.to_spec(), history)


def _prediction_shape(spec: ModelSpec, x: np.ndarray) -> tuple:
    B, T = x.shape[:2]
    if spec.head is not None:
        n = spec.head.out_features
        return (B, n) if spec.head.mode == "last" else (B, T, n)
    D = 2 if spec.bidirectional else 1
    return (B, T, D * (spec.proj_size or spec.hidden_size))


def _epoch_line(entry: dict, epochs: int) -> str:
    parts = [f"epoch {entry['epoch']}/{epochs}: loss {entry['loss']:.5g}"]
    for key, label in (("train_accuracy", "train acc"), ("val_accuracy", "val acc")):
        if key in entry:
            parts.append(f"{label} {100 * entry[key]:.2f} %")
    if "val_loss" in entry:
        parts.append(f"val loss {entry['val_loss']:.5g}")
    return ", ".join(parts) + (" (best so far)" if entry.get("best") else "")
