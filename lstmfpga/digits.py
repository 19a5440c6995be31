"""An LSTM classifier on scikit-learn's digits, trained with PyTorch: a small real task.

Each 8x8 image is read row by row as a sequence of 8 timesteps with 8 features (pixels
scaled to [0, 1]); an ``nn.LSTM`` runs over the rows and an ``nn.Linear`` head classifies
the last step. The data set ships with scikit-learn (nothing is downloaded).

Used by ``lstmfpga demo`` (the embedded default), the benchmarks and ``examples/digits.py``
(which trains, exports, quantizes with ``q16`` and ``w8a16`` and prints the accuracies).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from lstmfpga.demo_geometry import CLASSES, FEATURES, HIDDEN, STEPS

__all__ = [
    "CLASSES",
    "FEATURES",
    "HIDDEN",
    "STEPS",
    "DigitsGRU",
    "DigitsLSTM",
    "SequenceModel",
    "accuracy",
    "load_data",
    "train_digits_model",
]

# The demo model's geometry (``STEPS`` rows of ``FEATURES`` pixels, ``nn.LSTM(FEATURES,
# HIDDEN)``, ``nn.Linear(HIDDEN, CLASSES)``) lives in the torch-free lstmfpga.demo_geometry.


class SequenceModel(nn.Module):
    """One batch-first ``nn.LSTM`` or ``nn.GRU`` (``cell``: ``"lstm"`` or ``"gru"``, the
    module's attribute name) over ``input_size`` features, and ``nn.Linear(hidden, outputs)``
    on the last step (``head_mode="last"``: a classifier) or on every step (``"all"``: a
    per-step regressor): the models ``lstmfpga export`` reads, as the tasks here train them."""

    def __init__(self, cell: str, input_size: int, hidden: int, outputs: int, head_mode="last"):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', not {cell!r}")
        self.head_mode = head_mode  # read by lstmfpga.export.torch_loader.from_module
        self.cell = cell
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        setattr(self, cell, rnn(input_size, hidden, batch_first=True))
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = getattr(self, self.cell)(x)
        return self.head(output[:, -1] if self.head_mode == "last" else output)


class DigitsLSTM(SequenceModel):
    """``nn.LSTM(8, hidden)`` over the image rows, ``nn.Linear(hidden, 10)`` on the last step."""

    def __init__(self, hidden: int = HIDDEN):
        super().__init__("lstm", FEATURES, hidden, CLASSES)


class DigitsGRU(SequenceModel):
    """``nn.GRU(8, hidden)`` over the image rows, ``nn.Linear(hidden, 10)`` on the last step."""

    def __init__(self, hidden: int = HIDDEN):
        super().__init__("gru", FEATURES, hidden, CLASSES)


MODELS = {"lstm": DigitsLSTM, "gru": DigitsGRU}


def load_data(seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: images as ``(n, 8, 8)`` float64 in [0, 1],
    labels ``int64``; a stratified 75/25 split fixed by ``seed``."""
    digits = load_digits()
    x = digits.images.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    return x_train, y_train, x_test, y_test


def train_digits_model(
    seed: int = 0,
    hidden: int = HIDDEN,
    epochs: int = 30,
    batch_size: int = 64,
    cell: str = "lstm",
):
    """Train :class:`DigitsLSTM` (``cell="gru"``: :class:`DigitsGRU`) with Adam; returns
    ``(model, (x_train, y_train, x_test, y_test))`` with the model in eval mode.

    Trains on one CPU thread (about 2 s): the model is too small to gain from more, a busy
    machine slows multi-threaded training down by an order of magnitude, and one thread
    keeps the result reproducible for a given ``seed``.
    """
    if cell not in MODELS:
        raise ValueError(f"cell must be one of {sorted(MODELS)}, not {cell!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(seed, hidden, epochs, batch_size, MODELS[cell])
    finally:
        torch.set_num_threads(threads)


def _train(seed: int, hidden: int, epochs: int, batch_size: int, model_class: type[nn.Module]):
    torch.manual_seed(seed)
    data = load_data(seed)
    x_train, y_train = (torch.as_tensor(a) for a in data[:2])
    x_train = x_train.float()
    model = model_class(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    return model, data


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Percentage of rows whose largest logit is the label."""
    return 100.0 * float(np.mean(np.argmax(logits, axis=-1) == labels))
