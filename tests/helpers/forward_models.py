"""Small PyTorch modules whose ``forward`` is or is not what lstmfpga models.

Each class takes the ``nn.LSTM`` keyword arguments; ``SUPPORTED`` and ``UNSUPPORTED`` (in
tests/export/test_forward_check.py) say what export must do with them. Scriptable, traceable
and exportable.
"""

from __future__ import annotations

import torch
from torch import nn


def seeded_lstm(seed: int = 0, **kwargs) -> nn.LSTM:
    torch.manual_seed(seed)
    return nn.LSTM(**kwargs)


class _Base(nn.Module):
    """``self.lstm`` and ``self.fc`` (width matching the LSTM output)."""

    def __init__(self, out_features: int = 3, **kwargs):
        super().__init__()
        self.lstm = seeded_lstm(**kwargs)
        lstm = self.lstm
        width = (2 if lstm.bidirectional else 1) * (lstm.proj_size or lstm.hidden_size)
        self.fc = nn.Linear(width, out_features)


# -- supported ---------------------------------------------------------------------------------
class LastStep(_Base):
    """``fc(y[:, -1])`` (batch-first LSTM)."""

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


class LastStepTimeMajor(_Base):
    """``fc(y[-1])`` (time-major LSTM)."""

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[-1])


class LastStepFullSlice(_Base):
    """``fc(y[:, -1, :])``."""

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1, :])


class FinalHidden(_Base):
    """``fc(h_n[-1])`` (unidirectional: the last layer's final state, = ``y[:, -1]``)."""

    def forward(self, x):
        _, (h_n, _) = self.lstm(x)
        return self.fc(h_n[-1])


class EveryStep(_Base):
    """``fc(y)`` in the LSTM's own layout."""

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y)


class EveryStepTransposed(_Base):
    """Time-major LSTM, ``fc(y.transpose(0, 1))`` (batch-first output)."""

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y.transpose(0, 1).contiguous())


class SequenceOnly(_Base):
    """No head: returns the output sequence (the Linear is not a member)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        del self.fc

    def forward(self, x):
        y, _ = self.lstm(x)
        return y


class LSTMTuple(_Base):
    """No head: returns ``(y, (h_n, c_n))`` like ``nn.LSTM``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        del self.fc

    def forward(self, x):
        return self.lstm(x)


class SequentialHead(nn.Module):
    """``head = Sequential(Dropout, Linear)`` on the last step, inside a nested encoder."""

    def __init__(self, **kwargs):
        super().__init__()
        self.encoder = _Encoder(**kwargs)
        lstm = self.encoder.rnn
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Identity(), nn.Linear(lstm.hidden_size, 2))

    def forward(self, x):
        y = self.encoder(x)
        return self.head(y[:, -1])


class _Encoder(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.rnn = seeded_lstm(**kwargs)

    def forward(self, x):
        y, _ = self.rnn(x)
        return y


# -- unsupported -------------------------------------------------------------------------------
class ReluTimesThree(_Base):
    """The issue's example: ``fc(relu(y[:, 0]) * 3)`` used to export as ``fc(y[:, -1])``."""

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(torch.relu(y[:, 0]) * 3)


class Relu(_Base):
    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(torch.relu(y[:, -1]))


class Scaled(_Base):
    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1] * 3)


class LinearFirst(_Base):
    """A Linear *before* the LSTM used to export as an LSTM plus a head."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = nn.Linear(kwargs["input_size"], kwargs["input_size"])  # = hidden_size in tests

    def forward(self, x):
        y, _ = self.lstm(self.fc(x))
        return y


class FirstStep(_Base):
    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, 0])


class MeanOverTime(_Base):
    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y.mean(1))


class TanhEveryStep(_Base):
    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(torch.tanh(y))


class PlusOne(_Base):
    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1]) + 1.0


class ScaledInput(_Base):
    def forward(self, x):
        y, _ = self.lstm(x * 2.0)
        return self.fc(y[:, -1])


class Softmax(_Base):
    def forward(self, x):
        y, _ = self.lstm(x)
        return torch.softmax(self.fc(y[:, -1]), dim=-1)


class CellState(_Base):
    def forward(self, x):
        _, (_, c_n) = self.lstm(x)
        return self.fc(c_n[-1])


class BatchNotTime(_Base):
    """``y[:, -1]`` on a time-major LSTM selects the last *sequence of the batch*."""

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


class LastStepNoHead(_Base):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        del self.fc

    def forward(self, x):
        y, _ = self.lstm(x)
        return y[:, -1]


class Reversed(_Base):
    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y.flip(1)[:, -1])


class WithStates(_Base):
    """``fc(y[:, -1])`` of ``lstm(x, (h0, c0))``: initial states straight from the inputs."""

    def forward(self, x, h0, c0):
        y, _ = self.lstm(x, (h0, c0))
        return self.fc(y[:, -1])
