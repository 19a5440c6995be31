"""The float64 NumPy reference of a GRU spec equals ``torch.nn.GRU`` (+ ``nn.Linear``) in float64.

Every case builds a seeded ``nn.GRU`` (``.double()``, eval mode), copies its parameters into a
``ModelSpec(cell="gru")`` with :func:`gru_spec` below (the torch loader learns GRUs later) and
compares the reference's output sequence, ``h_n`` and head output with PyTorch's to within
1e-9 in max abs error (float64 rounding, not an approximation).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_models import random_reference_case
from torch import nn

from lstmfpga.export import reference
from lstmfpga.export.spec import HeadSpec, LayerWeights, ModelSpec, SpecError

TOLERANCE = 1e-9


def gru_spec(gru: nn.GRU, fc: nn.Linear | None = None, head: str | None = None) -> ModelSpec:
    """A GRU spec holding exactly the parameters of ``gru`` (and of the head ``fc``)."""

    def array(name: str) -> np.ndarray | None:
        tensor = getattr(gru, name, None)
        return None if tensor is None else tensor.detach().double().numpy()

    layers = []
    for index in range(gru.num_layers):
        directions = []
        for d in range(2 if gru.bidirectional else 1):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            directions.append(
                LayerWeights(
                    w_ih=array("weight_ih" + suffix),
                    w_hh=array("weight_hh" + suffix),
                    b_ih=array("bias_ih" + suffix),
                    b_hh=array("bias_hh" + suffix),
                )
            )
        layers.append(tuple(directions))
    head_spec = None
    if fc is not None:
        bias = None if fc.bias is None else fc.bias.detach().double().numpy()
        head_spec = HeadSpec(fc.weight.detach().double().numpy(), bias, head)
    return ModelSpec(
        input_size=gru.input_size,
        hidden_size=gru.hidden_size,
        num_layers=gru.num_layers,
        bidirectional=gru.bidirectional,
        proj_size=0,
        bias=gru.bias,
        layers=tuple(layers),
        head=head_spec,
        dropout=float(gru.dropout),
        cell="gru",
    )


def make_gru(seed: int, head: str | None, head_out: int = 3, **kwargs):
    """A seeded float64 ``nn.GRU`` in eval mode and its optional ``nn.Linear`` head."""
    torch.manual_seed(seed)
    gru = nn.GRU(**kwargs).double().eval()
    with torch.no_grad():
        for parameter in gru.parameters():  # wider than PyTorch's init: gates leave 0.5
            parameter.uniform_(-1.0, 1.0)
    fc = None
    if head is not None:
        D = 2 if kwargs.get("bidirectional") else 1
        fc = nn.Linear(D * kwargs["hidden_size"], head_out).double().eval()
    return gru, fc


def torch_forward(gru, fc, head, x, h0):
    """PyTorch's outputs as float64 NumPy; ``x`` and the output sequence are batch-first."""
    xt = torch.from_numpy(x)
    if not gru.batch_first:
        xt = xt.transpose(0, 1)
    with torch.no_grad():
        y, h_n = gru(xt, None if h0 is None else torch.from_numpy(h0))
        if not gru.batch_first:
            y = y.transpose(0, 1)
        out = None if fc is None else fc(y[:, -1] if head == "last" else y).numpy()
    return y.numpy(), h_n.numpy(), out


# name: (nn.GRU kwargs, head mode or None, batch, seq, initial state given)
EDGE_CASES = {
    "minimal-1x1": (dict(input_size=1, hidden_size=1), None, 1, 1, False),
    "seq1-batch1-head-last-h0": (dict(input_size=3, hidden_size=4), "last", 1, 1, True),
    "long-seq64": (dict(input_size=2, hidden_size=7), "last", 3, 64, False),
    "4-layers-bidir-h0-all": (
        dict(input_size=5, hidden_size=6, num_layers=4, bidirectional=True),
        "all",
        2,
        30,
        True,
    ),
    "no-bias-head-all": (dict(input_size=4, hidden_size=3, bias=False), "all", 2, 7, False),
    "time-major-h0": (dict(input_size=3, hidden_size=5, batch_first=False), "last", 4, 9, True),
    "dropout-eval": (dict(input_size=3, hidden_size=4, num_layers=3, dropout=0.5), "last", 2, 6, 0),
    "bidir-no-bias-no-head": (
        dict(input_size=3, hidden_size=4, bidirectional=True, bias=False),
        None,
        2,
        5,
        True,
    ),
    "wide-16": (dict(input_size=16, hidden_size=16, num_layers=2), "all", 5, 3, True),
}


def _random_cases(count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    cases = {}
    for index in range(count):
        kwargs = dict(
            input_size=int(rng.integers(1, 8)),  # odd and even
            hidden_size=int(rng.integers(1, 10)),
            num_layers=int(rng.integers(1, 5)),
            bias=bool(rng.integers(2)),
            batch_first=bool(rng.integers(2)),
            bidirectional=bool(rng.integers(2)),
            dropout=float(rng.choice([0.0, 0.3])),
        )
        cases[f"random-{index}"] = random_reference_case(rng, kwargs, (1, 2, 13, 40))
    return cases


RANDOM_SEED = 20261201
CASES = {**EDGE_CASES, **_random_cases(24, RANDOM_SEED)}


def test_random_cases_cover_the_option_matrix():
    """The seeded sweep really spans what it claims: odd/even sizes, 1-4 layers, every option."""
    configs = [case[0] for case in CASES.values()]
    assert {c["input_size"] % 2 for c in configs} == {0, 1}
    assert {c["hidden_size"] % 2 for c in configs} == {0, 1}
    assert {c.get("num_layers", 1) for c in configs} == {1, 2, 3, 4}
    defaults = dict(bias=True, batch_first=False, bidirectional=False)
    for option, default in defaults.items():
        assert {c.get(option, default) for c in configs} == {False, True}, option
    assert {case[1] for case in CASES.values()} == {None, "last", "all"}
    assert {bool(case[4]) for case in CASES.values()} == {False, True}


@pytest.mark.parametrize("name", list(CASES))
def test_gru_reference_matches_torch(name):
    kwargs, head, batch, seq, with_state = CASES[name]
    seed = sum(map(ord, name))
    gru, fc = make_gru(seed, head, **kwargs)
    spec = gru_spec(gru, fc, head)
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.5, (batch, seq, kwargs["input_size"]))
    h0 = None
    if with_state:
        h0 = rng.normal(0, 0.5, (spec.num_layers * spec.num_directions, batch, spec.hidden_size))

    got = reference.forward(spec, x, h0)
    y, h_n, out = torch_forward(gru, fc, head, x, h0)

    context = f"case {name} (seed {seed}, {kwargs}, head={head})"
    assert got.output.shape == y.shape == (batch, seq, spec.sequence_output_size), context
    assert np.max(np.abs(got.output - y)) <= TOLERANCE, context
    assert got.h_n.shape == h_n.shape, context
    assert np.max(np.abs(got.h_n - h_n)) <= TOLERANCE, context
    assert got.c_n is None, context
    if head is None:
        assert got.head is None and got.prediction is got.output, context
    else:
        expected_shape = (batch, 3) if head == "last" else (batch, seq, 3)
        assert got.head.shape == out.shape == expected_shape, context
        assert np.max(np.abs(got.head - out)) <= TOLERANCE, context


def test_gru_reference_matches_torch_with_saturated_gates():
    """Large weights and inputs drive sigmoid/tanh into saturation: still within 1e-9."""
    kwargs = dict(input_size=3, hidden_size=4, num_layers=2, batch_first=True)
    gru, fc = make_gru(5, "all", **kwargs)
    with torch.no_grad():
        for parameter in gru.parameters():
            parameter.mul_(8.0)
    spec = gru_spec(gru, fc, "all")
    x = np.random.default_rng(5).normal(0, 10.0, (3, 20, 3))
    got = reference.forward(spec, x, trace=True)
    y, h_n, out = torch_forward(gru, fc, "all", x, None)
    assert np.mean(np.abs(got.trace[0, 0]["gi"]) > 10.0) > 0.5  # mostly deep in saturation
    assert np.max(np.abs(got.output - y)) <= TOLERANCE
    assert np.max(np.abs(got.h_n - h_n)) <= TOLERANCE
    assert np.max(np.abs(got.head - out)) <= TOLERANCE


def test_reset_gate_scales_the_recurrent_sum_including_its_bias():
    """PyTorch's n gate: tanh(W_in x + b_in + r * (W_hn h + b_hn)), not r * h inside W_hn.

    With r forced to 0 (a large negative b_hr), n no longer depends on h nor on b_hn.
    """
    gru, _ = make_gru(7, None, input_size=2, hidden_size=3)
    with torch.no_grad():
        gru.bias_hh_l0[:3] = -1e3  # r = sigmoid(-1000) = 0 in float64
    spec = gru_spec(gru)
    rng = np.random.default_rng(7)
    x, h0 = rng.normal(size=(2, 1, 2)), rng.normal(size=(1, 2, 3))
    result = reference.forward(spec, x, h0, trace=True)
    rec = result.trace[0, 0]
    assert np.max(rec["r"]) < 1e-300
    w_in, b_in = spec.layers[0][0].w_ih[6:], spec.layers[0][0].b_ih[6:]
    assert np.max(np.abs(rec["n"][:, 0] - np.tanh(x[:, 0] @ w_in.T + b_in))) <= 1e-15
    y, _, _ = torch_forward(gru, None, None, x, h0)
    assert np.max(np.abs(result.output - y)) <= TOLERANCE


def test_gru_trace_holds_per_timestep_internals():
    """``trace=True`` keeps gi/gh (3H) and r/z/n/h (H) per (layer, direction), indexed by time."""
    gru, _ = make_gru(1, None, input_size=2, hidden_size=3, num_layers=2, bidirectional=True)
    spec = gru_spec(gru)
    x = np.random.default_rng(1).normal(size=(2, 4, 2))
    result = reference.forward(spec, x, trace=True)
    assert set(result.trace) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    rec = result.trace[1, 1]
    assert rec["gi"].shape == rec["gh"].shape == (2, 4, 9)
    assert rec["r"].shape == rec["z"].shape == rec["n"].shape == rec["h"].shape == (2, 4, 3)
    # h' = (1 - z) n + z h at every step; the reverse direction's final state is its time 0.
    h_prev = rec["h"][:, 1]
    expected = (1 - rec["z"][:, 0]) * rec["n"][:, 0] + rec["z"][:, 0] * h_prev
    assert np.max(np.abs(rec["h"][:, 0] - expected)) <= 1e-15
    assert np.array_equal(result.h_n[3], rec["h"][:, 0])
    assert np.array_equal(result.output[:, :, 3:], rec["h"])


def test_gru_refuses_a_cell_state_and_checks_h0():
    gru, _ = make_gru(2, None, input_size=2, hidden_size=3, num_layers=2)
    spec = gru_spec(gru)
    x = np.zeros((4, 5, 2))
    with pytest.raises(SpecError, match=r"^c0 must be None for a GRU \(it has no cell state\)"):
        reference.forward(spec, x, np.zeros((2, 4, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(SpecError, match=r"^h0 must have shape \(2, 4, 3\), not \(1, 4, 3\)$"):
        reference.forward(spec, x, np.zeros((1, 4, 3)))
    with pytest.raises(SpecError, match=r"^h0 contains non-finite values"):
        reference.forward(spec, x, np.full((2, 4, 3), np.nan))
    with pytest.raises(SpecError, match=r"^inputs have 3 features, the model expects 2$"):
        reference.forward(spec, np.zeros((4, 5, 3)))


def test_lstm_only_stages_get_a_one_line_refusal_from_a_gru_trace():
    """Calibration reads ``preact``/``c``/``m``: a GRU trace refuses with a SpecError."""
    gru, _ = make_gru(3, None, input_size=2, hidden_size=3)
    trace = reference.forward(gru_spec(gru), np.zeros((1, 2, 2)), trace=True).trace[0, 0]
    assert list(trace) == ["gh", "r", "z", "n", "gi", "h"]
    with pytest.raises(
        SpecError,
        match=r"^a GRU has no 'preact' \(its trace holds gi, gh, r, z, n, h\): "
        r"this stage supports LSTM specs only$",
    ):
        trace["preact"]
