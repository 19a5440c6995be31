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
    # The recurrent columns of step s read h_{s-1} unit by unit as it is written: P = 4 rows
    # are one unit per row group, so only the first group's last beat (column 5 + 8 - 1, the
    # last unit) waits for the previous step's last unit, tail_gates after its last beat.
    assert model.step(0) == model.ideal_step(0) + max(0, model.tail_gates - (5 + 8 - 1))


def test_the_recurrent_fetch_of_a_step_waits_only_for_the_units_it_reads():
    # digits-sized (I = 8, H = 32, P = 8): 16 row groups of 40 beats, 2 units per group. A
    # step's first group reads unit k in beat 8 + k; the previous step wrote unit k (group
    # k // 2) (15 - k // 2) * 40 cycles before its last unit, so only beats near the end
    # of the first group can wait: for unit 31 (beat 39), tail_gates - 39 <= 0.
    _, q = random_qmodel(2, input_size=8, hidden_size=32)
    model = CycleModel.of(LSTMAccelerator(q, lanes=8, max_seq_len=8))
    assert model.tail_gates > 8  # the whole-vector wait would stall tail_gates - 8 cycles
    assert model.step(0) == model.ideal_step(0) == 16 * 40


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
    ("hidden", "lanes", "cells", "extra"),
    [
        (4, 1, 1, 0),
        (4, 4, 1, 0),
        (4, 16, 1, 3),
        (6, 3, 1, 0),
        (6, 6, 1, 1),
        (5, 10, 1, 2),
        (4, 7, 1, 0),
        (4, 15, 1, 0),
        (5, 6, 1, 0),
        (5, 12, 1, 1),
        (3, 7, 1, 1),
        (3, 11, 1, 0),
        (8, 20, 1, 2),
        (4, 16, 2, 1),
        (4, 16, 3, 1),
        (4, 16, 4, 0),
        (8, 32, 3, 2),
        (5, 12, 2, 0),
        (8, 20, 5, 0),
    ],
)
def test_gate_tail_grows_by_one_cycle_per_extra_unit_beat_in_a_row_group(
    hidden, lanes, cells, extra
):
    # tail_gates = (its value at P = 1) + ceil(ceil(r/4) / V) - 1, r the real rows of the
    # last gate group (P when P divides 4H; 4H - (groups - 1) * P otherwise): the last
    # group's units leave V per cycle
    _, q = random_qmodel(4, input_size=2, hidden_size=hidden)
    model = CycleModel.of(LSTMAccelerator(q, lanes=lanes, cells=cells, max_seq_len=4))
    base = CycleModel.of(LSTMAccelerator(q, lanes=1, max_seq_len=4))
    assert model.tail_gates - base.tail_gates == extra


CELL_CONFIGS = {
    # name: (model kwargs, P, S, V)
    "P16-V1-paced": (dict(input_size=3, hidden_size=4), 16, 1, 1),
    "P16-V2": (dict(input_size=3, hidden_size=4), 16, 1, 2),
    "P16-S4-V3-odd": (dict(input_size=3, hidden_size=4), 16, 4, 3),
    "P16-S4-V4=H": (dict(input_size=3, hidden_size=4), 16, 4, 4),
    "P12-V2-padded-head-last": (dict(input_size=2, hidden_size=5, head="last"), 12, 1, 2),
    "P20-S2-V3-2layer-proj-head-all": (
        dict(input_size=3, hidden_size=6, num_layers=2, proj_size=2, head="all"), 20, 2, 3,
    ),
    "P24-S3-V5-bidir": (dict(input_size=2, hidden_size=6, bidirectional=True), 24, 3, 5),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CELL_CONFIGS))
def test_model_matches_simulated_cycles_with_parallel_cells(name):
    kwargs, lanes, simd, cells = CELL_CONFIGS[name]
    _, q = random_qmodel(5, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, simd=simd, cells=cells, max_seq_len=4)
    model = CycleModel.of(acc)
    for T in (1, 3):
        assert _measure(acc, T).compute == model.compute(T), f"T={T}"


def test_more_cells_shorten_a_step_until_the_mvu_never_waits():
    # P = 32, S = 4, I = 3, H = 8: a gate group is 3 beats but completes 8 units
    _, q = random_qmodel(6, input_size=3, hidden_size=8)
    steps = [
        CycleModel.of(LSTMAccelerator(q, lanes=32, simd=4, cells=v, max_seq_len=4)).step(0)
        for v in (1, 2, 3, 4, 8)
    ]
    assert steps == sorted(steps, reverse=True) and steps[0] > steps[2]
    ideal = CycleModel.of(LSTMAccelerator(q, lanes=32, simd=4, max_seq_len=4)).ideal_step(0)
    assert ideal == 1 * 3  # ceil(32 / 32) groups * ceil(11 / 4) chunks


@pytest.mark.parametrize("buffers", [1, 2])
@pytest.mark.parametrize("name", ["uni-P16=4H", "wide-input", "head-all", "everything"])
def test_back_to_back_sequences_cost_one_sequence_then_an_interval_each(name, buffers):
    # the model of back-to-back sequences (measured == model: tests/hw/test_overlap.py and
    # tests/sim/test_overlap_sim.py): one sequence alone is load + compute + drain - 2 cycles
    # (first input transfer to last result transfer), each further one interval(T)
    kwargs, lanes = CONFIGS[name]
    _, q = random_qmodel(1, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=8, buffers=buffers)
    model = CycleModel.of(acc)
    for T in (1, 3, 8):
        load, drain, compute = acc.input_length(T), acc.result_length(T), model.compute(T)
        assert model.batch([T]) == load + compute + drain - 2
        for B in range(1, 6):
            assert model.sequences(B + 1, T) - model.sequences(B, T) == model.interval(T)
        if buffers == 1:
            assert model.interval(T) == load + compute + drain - 2
        else:
            assert model.interval(T) == max(compute - 2, load, drain + 2)
