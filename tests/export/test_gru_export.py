"""Exporting ``nn.GRU`` models: live modules, state_dicts, TorchScript and ``torch.export``
archives all give the GRU's spec, whose float64 reference equals PyTorch within 1e-9.

Each case is a seeded float64 :class:`GRUWithHead` (weights uniform in [-1, 1]): one
``nn.GRU`` with any of its inference options (``input_size``, ``hidden_size``, ``num_layers``
1-4, ``bias``, ``batch_first``, ``bidirectional``, ``dropout``, which is ignored) and an
optional ``nn.Linear`` head on the last timestep or on every timestep; the initial state
``h0`` is given or not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_models import TORCH_WARNINGS, assert_same_spec, make_gru_model
from torch import nn

from lstmfpga.export import reference
from lstmfpga.export.model_files import load_model
from lstmfpga.export.spec import SpecError
from lstmfpga.export.torch_loader import from_module, from_state_dict

pytestmark = [pytest.mark.filterwarnings(w) for w in TORCH_WARNINGS]

TOLERANCE = 1e-9
RANDOM_SEED = 15


def _random_cases(count: int) -> dict:
    rng = np.random.default_rng(RANDOM_SEED)
    cases = {}
    for index in range(count):
        layers = int(rng.integers(1, 5))
        kwargs = dict(
            input_size=int(rng.integers(1, 9)),
            hidden_size=int(rng.integers(1, 9)),
            num_layers=layers,
            bias=bool(rng.integers(2)),
            batch_first=bool(rng.integers(2)),
            bidirectional=bool(rng.integers(2)),
            dropout=0.3 if layers > 1 and rng.integers(2) else 0.0,
        )
        head = [None, "last", "all"][int(rng.integers(3))]
        cases[f"random-{index}"] = (kwargs, head, bool(rng.integers(2)))
    return cases


# name: (nn.GRU kwargs, head mode or None, h0 given); together they cover num_layers 1-4,
# bias, batch_first and bidirectional both ways, a dropout, heads none/last/all, with and without h0
CASES = {
    "minimal-1x1": (dict(input_size=1, hidden_size=1), None, False),
    "4-layers-bidir-all-h0": (
        dict(input_size=3, hidden_size=5, num_layers=4, bidirectional=True, batch_first=True),
        "all",
        True,
    ),
    "no-bias-time-major-last": (dict(input_size=4, hidden_size=3, bias=False), "last", True),
    **_random_cases(16),
}


def _inputs(model, batch: int = 3, seq: int = 6, with_h0: bool = False):
    """Batch-first float64 ``x`` and an optional ``h0`` of the model's shape (seeded)."""
    gru = model.gru
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (batch, seq, gru.input_size))
    layers = gru.num_layers * (2 if gru.bidirectional else 1)
    h0 = rng.uniform(-1, 1, (layers, batch, gru.hidden_size)) if with_h0 else None
    return x, h0


def _torch_outputs(model, x, h0):
    """PyTorch's batch-first output sequence, h_n and head output (or None) as NumPy."""
    xt = torch.from_numpy(x)
    if not model.batch_first:
        xt = xt.transpose(0, 1)
    with torch.no_grad():
        y, h_n = model.gru(xt, None if h0 is None else torch.from_numpy(h0))
        head = None if model.fc is None else model(xt, None if h0 is None else torch.from_numpy(h0))
    if not model.batch_first:
        y = y.transpose(0, 1)
        if head is not None and model.reads == "all":
            head = head.transpose(0, 1)
    return y.numpy(), h_n.numpy(), None if head is None else head.numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_live_gru_module_spec_matches_torch(name):
    kwargs, head, with_h0 = CASES[name]
    model = make_gru_model(len(name), head, **kwargs)
    spec = from_module(model, head=head)
    assert spec.cell == "gru" and spec.gate_order == ("r", "z", "n")
    assert (spec.num_layers, spec.bidirectional, spec.bias) == (
        kwargs.get("num_layers", 1), kwargs.get("bidirectional", False), kwargs.get("bias", True)
    )  # fmt: skip
    assert spec.dropout == kwargs.get("dropout", 0.0)
    assert (spec.head is None) == (head is None)
    x, h0 = _inputs(model, with_h0=with_h0)
    y, h_n, out = _torch_outputs(model, x, h0)
    result = reference.forward(spec, x, h0)
    assert np.abs(result.output - y).max() <= TOLERANCE, name
    assert np.abs(result.h_n - h_n).max() <= TOLERANCE, name
    assert result.c_n is None
    if head is not None:
        assert spec.head.mode == head
        assert np.abs(result.head - out).max() <= TOLERANCE, name


def test_bare_gru_and_its_state_dict_give_the_same_spec():
    model = make_gru_model(4, None, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    bare = from_module(model.gru)
    assert_same_spec(from_module(model), bare)
    inferred = from_state_dict(model.gru.state_dict())
    assert_same_spec(inferred, bare)
    assert_same_spec(from_state_dict(model.gru.state_dict(), cell="gru"), bare)


def test_gru_state_dict_with_prefix_and_head_is_inferred():
    model = make_gru_model(5, "last", input_size=2, hidden_size=3)
    spec = from_state_dict(model.state_dict(), head="all")
    assert spec.cell == "gru" and spec.head.mode == "all"
    assert_same_spec(spec, from_module(model, head="all"))


# name: (kwargs, head, which last timestep the forward reads, h0 passed to the file)
FILE_CASES = {
    "bidir-2-layers-last": (
        dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, batch_first=True),
        "last", "y", False,
    ),
    "time-major-y[-1]-h0": (dict(input_size=2, hidden_size=3), "last", "y", True),
    "h_n[-1]-no-bias": (dict(input_size=3, hidden_size=2, bias=False, num_layers=3), "last",
                        "h_n", False),
    "every-step": (dict(input_size=4, hidden_size=5, batch_first=True), "all", "y", True),
    "no-head": (dict(input_size=2, hidden_size=2, num_layers=4, bidirectional=True), None, "y",
                False),
}  # fmt: skip


def _save(model, kind: str, path, with_h0: bool):
    x, h0 = _inputs(model, batch=2, seq=4, with_h0=with_h0)
    xt = torch.from_numpy(x if model.batch_first else x.transpose(1, 0, 2).copy())
    args = (xt,) if h0 is None else (xt, torch.from_numpy(h0))
    if kind == "state_dict":
        torch.save(model.state_dict(), path)
    elif kind == "torchscript":
        torch.jit.script(model).save(str(path))
    else:
        torch.export.save(torch.export.export(model, args), path)
    return path


@pytest.mark.parametrize("kind", ["state_dict", "torchscript", "torch.export"])
@pytest.mark.parametrize("name", list(FILE_CASES))
def test_gru_model_files_give_the_module_spec(name, kind, tmp_path):
    kwargs, head, last, with_h0 = FILE_CASES[name]
    model = make_gru_model(len(name), head, last=last, **kwargs)
    path = _save(model, kind, tmp_path / f"model.{'pt2' if kind == 'torch.export' else 'pt'}",
                 with_h0)  # fmt: skip
    spec = load_model(path)
    # A state_dict does not say its head mode: "last" by default.
    expected = from_module(model, head="last" if kind == "state_dict" and head else head)
    assert_same_spec(spec, expected, context=f"{name} {kind}")
    x, h0 = _inputs(model, with_h0=with_h0)
    result = reference.forward(spec, x, h0)
    _, h_n, out = _torch_outputs(model, x, h0)
    assert np.abs(result.h_n - h_n).max() <= TOLERANCE
    if head is not None and spec.head.mode == head:
        assert np.abs(result.head - out).max() <= TOLERANCE


class GRUThenReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.fc(torch.relu(y[:, -1]))


class GRUTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 4, batch_first=True)

    def forward(self, x):
        y, h = self.gru(x)
        y, _ = self.gru(y, h)
        return y


class GRUWithComputedState(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x, h0):
        y, _ = self.gru(x, h0 * 2)
        return y


@pytest.mark.parametrize("kind", ["torchscript", "torch.export"])
@pytest.mark.parametrize(
    ("build", "inputs", "message"),
    [
        (GRUThenReLU, 1, r"unsupported forward: aten::relu"),
        (GRUTwice, 1, r"unsupported forward: aten::gru .*(applied twice|the model input)"),
        (GRUWithComputedState, 2, r"unsupported forward: aten::(mul|gru)"),
    ],
    ids=["relu", "twice", "computed-h0"],
)
def test_gru_archives_with_other_forwards_are_refused(kind, build, inputs, message, tmp_path):
    torch.manual_seed(0)
    model = build().eval()
    size = model.gru.input_size
    args = (torch.randn(2, 5, size),) + ((torch.randn(1, 2, 4),) if inputs == 2 else ())
    path = tmp_path / "m.pt"
    if kind == "torchscript":
        torch.jit.script(model).save(str(path))
    else:
        torch.export.save(torch.export.export(model, args), path)
    with pytest.raises(SpecError, match=message) as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_cell_given_for_an_archive_must_match_its_module(tmp_path):
    model = make_gru_model(1, "last", input_size=3, hidden_size=4, batch_first=True)
    torch.jit.script(model).save(str(tmp_path / "gru.pt"))
    with pytest.raises(SpecError, match=r"cell 'lstm' given, but the archive holds an nn.GRU$"):
        load_model(tmp_path / "gru.pt", cell="lstm")
    assert load_model(tmp_path / "gru.pt", cell="gru").cell == "gru"


def _gru_state_dict(**changes):
    state = nn.GRU(3, 4, num_layers=2).state_dict()
    state.update(changes)
    return state


BAD_GRU_STATE_DICTS = {
    "layer 1 w_hh wrong rows": (
        dict(weight_hh_l1=torch.zeros(12, 3)),
        r"^weight_hh_l1 must have shape \(12, 4\) for a GRU \(3\*hidden_size rows: .*\(12, 3\)$",
    ),
    "bias of an LSTM's length": (
        dict(bias_ih_l0=torch.zeros(16)),
        r"^bias_ih_l0 must have shape \(12,\) for a GRU .*, not \(16,\)$",
    ),
    "NaN weight": (
        dict(weight_ih_l1=torch.full((12, 4), float("nan"))),
        r"^weight_ih_l1 contains 48 non-finite value\(s\) \(NaN or Inf\)$",
    ),
    "a projection": (
        dict(weight_hr_l0=torch.zeros(4, 4), weight_hr_l1=torch.zeros(4, 4)),
        r"^proj_size must be smaller than hidden_size \(3\), not 4$",  # read as an LSTM
    ),
    "integer weights": (
        dict(weight_hh_l0=torch.zeros(12, 4, dtype=torch.int32)),
        r"^weight_hh_l0 must be a floating-point tensor, not torch.int32$",
    ),
}


@pytest.mark.parametrize("name", list(BAD_GRU_STATE_DICTS))
def test_bad_gru_state_dicts_are_refused_with_one_line(name):
    changes, message = BAD_GRU_STATE_DICTS[name]
    with pytest.raises(SpecError, match=message) as info:
        from_state_dict(_gru_state_dict(**changes))
    assert "\n" not in str(info.value)


def test_a_gru_has_no_projection_even_when_told_it_is_one():
    with pytest.raises(SpecError, match=r"^weight_hr_l0 given, but a GRU has no projection$"):
        state = _gru_state_dict(weight_hr_l0=torch.zeros(4, 4), weight_hr_l1=torch.zeros(4, 4))
        from_state_dict(state, cell="gru")


def test_unknown_cell_is_refused():
    with pytest.raises(SpecError, match=r"^cell must be 'lstm' or 'gru', not 'rnn'$"):
        from_state_dict(_gru_state_dict(), cell="rnn")
