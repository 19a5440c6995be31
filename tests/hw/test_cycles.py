# amaranth: UnusedElaboratable=no
"""The analytic cycle model equals the cycles measured in simulation."""

import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant import golden
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.testing import random_inputs, random_qmodel

CONFIGS = {
    "uni-P4": (dict(input_size=3, hidden_size=4), 4),
    "uni-P16=4H": (dict(input_size=3, hidden_size=4), 16),
    "uni-P1": (dict(input_size=3, hidden_size=4), 1),
    "uni-P7-padded": (dict(input_size=3, hidden_size=4), 7),
    "uni-P15-padded": (dict(input_size=3, hidden_size=4), 15),
    "wide-input": (dict(input_size=12, hidden_size=4), 16),
    "proj": (dict(input_size=3, hidden_size=8, proj_size=3), 8),
    "head-last": (dict(input_size=3, hidden_size=4, head="last", head_out=5), 4),
    "head-all": (dict(input_size=3, hidden_size=4, head="all", head_out=5), 4),
    "bidir": (dict(input_size=3, hidden_size=4, bidirectional=True), 4),
    "2-layer": (dict(input_size=3, hidden_size=4, num_layers=2), 4),
    "everything": (
        dict(input_size=3, hidden_size=4, num_layers=2, proj_size=2, bidirectional=True,
             head="all"),
        2,
    ),
}  # fmt: skip


def _measure(acc, T, seed=1):
    xc = golden.quantize_inputs(acc.model, random_inputs(seed, 1, T, acc.model.input_size))
    return run_amaranth(acc, xc).cycles[0]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_model_matches_simulated_compute_cycles(name):
    kwargs, lanes = CONFIGS[name]
    _, q = random_qmodel(1, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=8)
    model = CycleModel.of(acc)
    for T in (1, 3):
        measured = _measure(acc, T)
        assert measured.compute == model.compute(T), f"T={T}"
        # Load and drain run at one element per cycle without stalls.
        assert measured.last_out - measured.first_out + 1 == acc.result_length(T)


def test_step_cost_is_the_difference_between_consecutive_lengths():
    _, q = random_qmodel(2, input_size=5, hidden_size=8)
    acc = LSTMAccelerator(q, lanes=4, max_seq_len=8)
    model = CycleModel.of(acc)
    assert model.compute(4) - model.compute(3) == model.step(0)
    assert model.ideal_step(0) == (4 * 8 // 4) * (5 + 8)
    assert model.step(0) == model.ideal_step(0) + max(0, model.tail_gates - 5)


@pytest.mark.parametrize(
    ("kwargs", "lanes"),
    [
        (dict(input_size=3, hidden_size=2, bidirectional=True, head="last"), 8),
        (dict(input_size=1, hidden_size=4, head="all", head_out=7), 16),
        (dict(input_size=1, hidden_size=12, proj_size=1, head="all", head_out=3), 24),
    ],
    ids=["head-4-cols-P8", "head-all-7-rows-P16", "proj-1-row-P24"],
)
def test_more_lanes_than_rows_or_columns_keep_the_model_exact(kwargs, lanes):
    # The fetch stage paces row groups to the emitter (one row, or one unit, per cycle), so
    # the matrix-vector unit never waits for it and the model stays exact.
    _, q = random_qmodel(3, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=4)
    model = CycleModel.of(acc)
    for T in (1, 3):
        assert _measure(acc, T).compute == model.compute(T), f"T={T}"


@pytest.mark.parametrize(
    ("hidden", "lanes", "tail"),
    [
        (4, 1, 20),
        (4, 4, 20),
        (4, 16, 23),
        (6, 3, 20),
        (6, 6, 21),
        (5, 10, 22),
        (4, 7, 20),
        (4, 15, 20),
        (5, 6, 20),
        (5, 12, 21),
        (3, 7, 21),
        (3, 11, 20),
        (8, 20, 22),
    ],
)
def test_gate_tail_grows_by_one_cycle_per_extra_unit_in_a_row_group(hidden, lanes, tail):
    # tail_gates = 20 + ceil(r/4) - 1 with the default (interpolating) tables, r the real
    # rows of the last gate group (P when P divides 4H; 4H - (groups - 1) * P otherwise)
    _, q = random_qmodel(4, input_size=2, hidden_size=hidden)
    model = CycleModel.of(LSTMAccelerator(q, lanes=lanes, max_seq_len=4))
    assert model.tail_gates == tail
