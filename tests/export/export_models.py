"""Seeded PyTorch models and spec comparisons shared by the tests of tests/export."""

import numpy as np
import torch
from torch import nn

from lstmfpga.export.spec import ModelSpec


class LSTMWithHead(nn.Module):
    """``lstm`` → dropout → ``fc`` on the last timestep (``"last"``) or every timestep (``"all"``).

    Scriptable and exportable; ``forward`` returns the head output only.
    """

    head_mode: str
    batch_first: bool

    def __init__(self, lstm: nn.LSTM, out_features: int, head_mode: str, head_bias: bool = True):
        super().__init__()
        self.lstm = lstm
        self.drop = nn.Dropout(0.25)
        width = (2 if lstm.bidirectional else 1) * (lstm.proj_size or lstm.hidden_size)
        self.fc = nn.Linear(width, out_features, bias=head_bias)
        self.head_mode = head_mode
        self.batch_first = lstm.batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        if not self.batch_first:
            y = y.transpose(0, 1)
        y = self.drop(y)
        if self.head_mode == "last":
            return self.fc(y[:, -1])
        return self.fc(y)


def make_lstm(seed: int, **kwargs) -> nn.LSTM:
    """An ``nn.LSTM(**kwargs)`` in eval mode, weights drawn from ``seed`` (PyTorch init)."""
    torch.manual_seed(seed)
    return nn.LSTM(**kwargs).eval()


#: Warnings PyTorch emits while the tests script, trace or export models on purpose.
TORCH_WARNINGS = [
    "ignore:`torch.jit.*` is deprecated:DeprecationWarning",
    "ignore:The tensor attributes .* were assigned during export:UserWarning",
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning",
    "ignore::torch.jit.TracerWarning",
]


def make_model(seed: int, head: str | None = None, out_features: int = 3, **kwargs) -> nn.Module:
    """A bare ``nn.LSTM`` (``head=None``) or an :class:`LSTMWithHead`, eval mode, seeded."""
    torch.manual_seed(seed)
    lstm = nn.LSTM(**kwargs)
    head_bias = kwargs.get("bias", True)
    model = lstm if head is None else LSTMWithHead(lstm, out_features, head, head_bias)
    return model.eval()


def example_input(model: nn.Module, batch: int = 2, seq: int = 5) -> torch.Tensor:
    """A seeded input of the model's dtype and layout (batch-first or time-major)."""
    lstm = model if isinstance(model, nn.LSTM) else model.lstm
    x = torch.randn(batch, seq, lstm.input_size, generator=torch.Generator().manual_seed(7))
    x = x.to(lstm.weight_ih_l0.dtype)
    return x if lstm.batch_first else x.transpose(0, 1).contiguous()


def assert_same_spec(actual: ModelSpec, expected: ModelSpec, *, context: str = "") -> None:
    """Same architecture, head and tensors (bit for bit); ``source``/``dropout`` may differ."""
    ignore = ("source", "dropout")
    a = {k: v for k, v in actual.manifest().items() if k not in ignore}
    e = {k: v for k, v in expected.manifest().items() if k not in ignore}
    assert a == e, context
    at, et = actual.tensors(), expected.tensors()
    assert at.keys() == et.keys(), context
    for name in et:
        assert at[name].dtype == np.float64, (context, name)
        assert np.array_equal(at[name], et[name]), (context, name)


class GRUWithHead(nn.Module):
    """``gru`` (initial state ``h0`` optional) → dropout → ``fc`` on the last timestep
    (``"last"``, read as ``y[:, -1]``, ``y[-1]`` time-major or ``h_n[-1]``) or on every
    timestep (``"all"``), or no head (``None``: returns ``(y, h_n)``).

    Scriptable and exportable, like :class:`LSTMWithHead`.
    """

    reads: str
    batch_first: bool
    last: str

    def __init__(self, gru: nn.GRU, out_features: int, head_mode: str | None, last: str = "y"):
        super().__init__()
        self.gru = gru
        self.drop = nn.Dropout(0.25)
        self.fc = None
        if head_mode is not None:
            width = (2 if gru.bidirectional else 1) * gru.hidden_size
            self.fc = nn.Linear(width, out_features, bias=gru.bias)
        self.reads = head_mode or "none"
        self.batch_first = gru.batch_first
        self.last = last

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        y, h_n = self.gru(x, h0)
        fc = self.fc
        if fc is None:
            return y, h_n
        if self.reads == "last":
            if self.last == "h_n":
                return fc(h_n[-1])
            return fc(self.drop(y[:, -1] if self.batch_first else y[-1]))
        return fc(self.drop(y))


def make_gru_model(
    seed: int, head: str | None = None, out_features: int = 3, last: str = "y", **kwargs
) -> GRUWithHead:
    """A seeded float64 :class:`GRUWithHead` in eval mode, weights uniform in [-1, 1] (wider
    than PyTorch's init, so that the gates leave 0.5)."""
    torch.manual_seed(seed)
    gru = nn.GRU(**kwargs).double()
    with torch.no_grad():
        for parameter in gru.parameters():
            parameter.uniform_(-1.0, 1.0)
    return GRUWithHead(gru, out_features, head, last).double().eval()


def random_reference_case(rng: np.random.Generator, kwargs: dict, seqs: tuple[int, ...]):
    """A random case of the reference-vs-torch tests, ``(kwargs, head, batch, seq, states)``:
    the module options ``kwargs`` (``dropout`` dropped for one layer: PyTorch warns that it
    only acts between layers), then a head mode, a batch size, a length from ``seqs`` and
    whether initial states are given, drawn from ``rng`` in that order."""
    if kwargs["num_layers"] == 1:
        kwargs["dropout"] = 0.0
    head = [None, "last", "all"][int(rng.integers(3))]
    batch = int(rng.choice([1, 2, 5]))
    seq = int(rng.choice(seqs))
    return kwargs, head, batch, seq, bool(rng.integers(2))
