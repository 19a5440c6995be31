"""The float64 NumPy reference equals ``torch.nn.LSTM`` (+ ``nn.Linear``) in float64.

Every case builds a seeded PyTorch model, converts it with ``from_module`` and compares the
reference's output sequence, ``h_n``, ``c_n`` and head output with PyTorch's
(``model.double()``, eval mode) to within 1e-9 (float64 rounding, not an approximation).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_models import make_model, random_reference_case

from lstmfpga.export import reference
from lstmfpga.export.torch_loader import from_module

TOLERANCE = 1e-9

# name: (nn.LSTM kwargs, head mode or None, batch, seq, initial states given)
EDGE_CASES = {
    "minimal-1x1": (dict(input_size=1, hidden_size=1), None, 1, 1, False),
    "seq1-batch1-head-last": (dict(input_size=3, hidden_size=4), "last", 1, 1, True),
    "long-seq64": (dict(input_size=2, hidden_size=8), "last", 3, 64, False),
    "4-layers-bidir-proj": (dict(input_size=5, hidden_size=6, num_layers=4, bidirectional=True,
                                 proj_size=3), "all", 2, 50, True),
    "no-bias-head-all": (dict(input_size=4, hidden_size=3, bias=False), "all", 2, 7, False),
    "time-major": (dict(input_size=3, hidden_size=5, batch_first=False), "last", 4, 9, True),
    "dropout-eval": (dict(input_size=3, hidden_size=4, num_layers=3, dropout=0.5), "last", 2, 6, 0),
    "proj-1": (dict(input_size=2, hidden_size=2, proj_size=1), None, 2, 5, True),
    "bidir-no-head": (dict(input_size=3, hidden_size=4, bidirectional=True), None, 2, 5, False),
    "wide-16": (dict(input_size=16, hidden_size=16, num_layers=2), "all", 5, 3, True),
}  # fmt: skip


def _random_cases(count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    cases = {}
    for index in range(count):
        hidden = int(rng.integers(1, 9))
        kwargs = dict(
            input_size=int(rng.integers(1, 7)),
            hidden_size=hidden,
            num_layers=int(rng.integers(1, 5)),
            bias=bool(rng.integers(2)),
            batch_first=bool(rng.integers(2)),
            bidirectional=bool(rng.integers(2)),
            proj_size=int(rng.integers(0, hidden)) if rng.random() < 0.4 else 0,
            dropout=float(rng.choice([0.0, 0.3])),
        )
        cases[f"random-{index}"] = random_reference_case(rng, kwargs, (1, 2, 13, 50))
    return cases


RANDOM_SEED = 20240611
CASES = {**EDGE_CASES, **_random_cases(20, RANDOM_SEED)}


def _torch_forward(model, kwargs, head, x, h0, c0):
    """PyTorch's outputs as float64 NumPy, output sequence batch-first."""
    lstm = model if head is None else model.lstm
    xt = torch.from_numpy(x)
    if not kwargs.get("batch_first", False):
        xt = xt.transpose(0, 1)
    state = None if h0 is None else (torch.from_numpy(h0), torch.from_numpy(c0))
    with torch.no_grad():
        y, (h_n, c_n) = lstm(xt, state)
        if not kwargs.get("batch_first", False):
            y = y.transpose(0, 1)
        out = None
        if head is not None:
            out = model.fc(y[:, -1] if head == "last" else y).numpy()
    return y.numpy(), h_n.numpy(), c_n.numpy(), out


@pytest.mark.parametrize("name", list(CASES))
def test_reference_matches_torch(name):
    kwargs, head, batch, seq, with_states = CASES[name]
    seed = sum(map(ord, name))
    model = make_model(seed, head=head, **kwargs).double()
    spec = from_module(model, head=head)
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.5, (batch, seq, kwargs["input_size"]))
    h0 = c0 = None
    if with_states:
        layers = kwargs.get("num_layers", 1) * spec.num_directions
        h0 = rng.normal(0, 0.5, (layers, batch, spec.output_size))
        c0 = rng.normal(0, 0.5, (layers, batch, spec.hidden_size))

    got = reference.forward(spec, x, h0, c0)
    y, h_n, c_n, out = _torch_forward(model, kwargs, head, x, h0, c0)

    context = f"case {name} (seed {seed}, {kwargs}, head={head})"
    assert got.output.shape == y.shape, context
    assert np.max(np.abs(got.output - y)) <= TOLERANCE, context
    assert np.max(np.abs(got.h_n - h_n)) <= TOLERANCE, context
    assert np.max(np.abs(got.c_n - c_n)) <= TOLERANCE, context
    if head is None:
        assert got.head is None, context
        assert got.prediction is got.output, context
    else:
        assert got.head.shape == out.shape, context
        assert np.max(np.abs(got.head - out)) <= TOLERANCE, context
        expected_shape = (batch, 3) if head == "last" else (batch, seq, 3)
        assert got.prediction.shape == expected_shape, context


def test_reference_matches_torch_with_saturated_gates():
    """Large weights and inputs drive sigmoid/tanh into saturation: still within 1e-9."""
    kwargs = dict(input_size=3, hidden_size=4, num_layers=2, batch_first=True)
    model = make_model(5, head="all", **kwargs).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(8.0)
    spec = from_module(model)
    x = np.random.default_rng(5).normal(0, 10.0, (3, 20, 3))
    got = reference.forward(spec, x, trace=True)
    y, _, c_n, out = _torch_forward(model, kwargs, "all", x, None, None)
    preact = np.abs(got.trace[0, 0]["preact"])
    assert np.mean(preact > 10.0) > 0.5  # most gate inputs deep in saturation
    assert np.max(np.abs(got.output - y)) <= TOLERANCE
    assert np.max(np.abs(got.c_n - c_n)) <= TOLERANCE
    assert np.max(np.abs(got.head - out)) <= TOLERANCE


def test_reference_matches_float32_model_exactly_converted():
    """A float32 model's weights are widened exactly: same result as the model in float64."""
    model = make_model(3, head="last", input_size=3, hidden_size=4)
    spec32 = from_module(model)
    spec64 = from_module(model.double())
    x = np.random.default_rng(3).normal(size=(2, 6, 3))
    assert np.array_equal(reference.forward(spec32, x).head, reference.forward(spec64, x).head)


def test_trace_holds_per_timestep_internals():
    """``trace=True`` keeps preact/c/m/h per (layer, direction), indexed by time."""
    model = make_model(1, input_size=2, hidden_size=3, num_layers=2, bidirectional=True).double()
    spec = from_module(model)
    x = np.random.default_rng(1).normal(size=(2, 4, 2))
    result = reference.forward(spec, x, trace=True)
    assert set(result.trace) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    rec = result.trace[1, 1]
    assert rec["preact"].shape == (2, 4, 12)
    assert rec["c"].shape == rec["m"].shape == rec["h"].shape == (2, 4, 3)
    # The reverse direction's final state is its state at time 0.
    assert np.array_equal(result.c_n[3], rec["c"][:, 0])
    assert np.array_equal(result.output[:, :, 3:], rec["h"])
