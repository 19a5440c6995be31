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


def test_head_rows_wider_than_columns_make_the_model_a_lower_bound():
    _, q = random_qmodel(3, input_size=3, hidden_size=2, bidirectional=True, head="last")
    acc = LSTMAccelerator(q, lanes=8, max_seq_len=4)  # head has 4 columns < 8 lanes
    assert _measure(acc, 2).compute >= CycleModel.of(acc).compute(2)
