# amaranth: UnusedElaboratable=no
"""The stream contract: one geometry gives the accelerator's stream lengths, and packing and
unpacking a sequence's elements are inverses in the documented order."""

import numpy as np
import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.sim.streams import StreamGeometry, pack_inputs, pack_outputs, unpack_outputs
from lstmfpga.testing import random_qmodel

MODELS = {
    "last-head": dict(input_size=3, hidden_size=4, head="last", head_out=2),
    "all-head": dict(input_size=1, hidden_size=1, head="all", head_out=3),
    "no-head-bidir-proj-2layers": dict(
        input_size=2, hidden_size=5, num_layers=2, bidirectional=True, proj_size=3
    ),
}


@pytest.fixture(scope="module", params=list(MODELS))
def qmodel(request):
    return random_qmodel(11, **MODELS[request.param])[1]


@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("initial_state", [False, True])
def test_the_geometry_gives_the_accelerators_stream_lengths(qmodel, with_states, initial_state):
    acc = LSTMAccelerator(
        qmodel, lanes=2, max_seq_len=4, with_states=with_states, initial_state=initial_state
    )
    geom = StreamGeometry.of(qmodel, with_states=with_states, initial_state=initial_state)
    LD, H, Ho = geom.states, qmodel.hidden_size, qmodel.output_size
    assert (
        geom.state_length == LD * (H + Ho) == qmodel.num_layers * qmodel.num_directions * (H + Ho)
    )
    for T in (1, 2, 4):
        assert geom.input_length(T) == acc.input_length(T)
        assert geom.output_length(T) == acc.result_length(T)
        assert geom.input_length(T) == T * qmodel.input_size + initial_state * LD * (H + Ho)


def test_inputs_are_h0_then_c0_then_x_time_major(qmodel):
    geom = StreamGeometry.of(qmodel, initial_state=True)
    rng = np.random.default_rng(3)
    B, T, LD = 2, 3, geom.states
    x = rng.integers(-99, 99, (B, T, geom.input_size))
    h0 = rng.integers(-99, 99, (LD, B, geom.output_size))
    c0 = rng.integers(-99, 99, (LD, B, geom.hidden_size))
    for b in range(B):
        got = pack_inputs(geom, x, b, h0, c0)
        want = np.concatenate([h0[:, b].ravel(), c0[:, b].ravel(), x[b].ravel()])
        assert got.dtype == np.int64 and np.array_equal(got, want)
        assert got.size == geom.input_length(T)
    zeros = pack_inputs(geom, x, 1)  # no h0/c0: zero states
    assert np.array_equal(zeros, np.concatenate([np.zeros(geom.state_length, int), x[1].ravel()]))
    plain = StreamGeometry.of(qmodel)
    assert np.array_equal(pack_inputs(plain, x, 0), x[0].ravel())


@pytest.mark.parametrize("with_states", [False, True])
def test_unpacking_undoes_packing_the_outputs(qmodel, with_states):
    geom = StreamGeometry.of(qmodel, with_states=with_states)
    rng = np.random.default_rng(4)
    B, T = 2, 3
    prediction = rng.integers(-99, 99, (B, *geom.prediction_shape(T)))
    h_n = rng.integers(-99, 99, (geom.states, B, geom.output_size))
    c_n = rng.integers(-99, 99, (geom.states, B, geom.hidden_size))
    for b in range(B):
        elements = pack_outputs(geom, prediction, b, h_n, c_n)
        assert elements.size == geom.output_length(T)
        parts = unpack_outputs(geom, elements, T)
        assert np.array_equal(parts["prediction"], prediction[b])
        assert sorted(parts) == (["c_n", "h_n", "prediction"] if with_states else ["prediction"])
        if with_states:
            assert np.array_equal(parts["h_n"], h_n[:, b]) and np.array_equal(
                parts["c_n"], c_n[:, b]
            )
    with pytest.raises(ValueError, match=f"expected {geom.output_length(T)} output elements"):
        unpack_outputs(geom, np.zeros(geom.output_length(T) + 1), T)


def test_prediction_shapes_follow_the_head():
    common = dict(input_size=2, hidden_size=3, output_size=3, states=2, sequence_output_size=6)
    assert StreamGeometry(**common, head_out=4, head_mode="last").prediction_shape(5) == (4,)
    assert StreamGeometry(**common, head_out=4, head_mode="all").prediction_shape(5) == (5, 4)
    assert StreamGeometry(**common, head_out=0, head_mode=None).prediction_shape(5) == (5, 6)
