# amaranth: UnusedElaboratable=no
"""A GRU runs on the whole accelerator bit for bit (Amaranth simulator).

The accelerator built for a GRU qmodel (``WeightLayout.of``: the gate rows of
``hw.gru_layout`` with their identity target; the GRU cell bank in the cell bank's place, its
state memory ``cmem`` holding ``h``, filled from ``h0``) runs several sequences back to back
through ``s_axis``/``m_axis`` with random valid/ready stalls; every output element, and
``h_n`` with ``with_states``, equals ``quant.gru_golden`` by integer equality, and the cycle
model predicts every sequence's compute cycles exactly.
"""

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cellbank import CellBank
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.hw.gru_cell import gru_cell_multipliers
from lstmfpga.hw.gru_cellbank import GRUBankAsCellBank, accelerator_cell_bank
from lstmfpga.hw.gru_layout import gru_gate_rows
from lstmfpga.hw.layout import GRU_SUMS, WeightLayout
from lstmfpga.hw.plans import state_format
from lstmfpga.hw.stream_cycles import StreamCycleModel
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.gru_golden import GRUCellArithmetic
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.simulation import stateful_golden
from lstmfpga.testing import random_qmodel

# name: (spec kwargs, preset, lanes P, simd S, cells V, T, build options)
CASES = {
    "P1-S1-V1-head-last": (dict(input_size=3, hidden_size=3, head="last"), "q16", 1, 1, 1, 3, {}),
    "P3-S2-V2-nohead-h0-states": (
        dict(input_size=2, hidden_size=5), "w8a8", 3, 2, 2, 4,
        dict(with_states=True, initial_state=True),
    ),
    "P4H-S1-V2-bidir-head-all": (
        dict(input_size=3, hidden_size=3, bidirectional=True, head="all", head_out=2),
        "q16", 12, 1, 2, 3, {},
    ),
    "P3-S1-2layer-bidir-h0-states-nobias": (
        dict(input_size=1, hidden_size=3, num_layers=2, bidirectional=True, bias=False,
             head="last", head_out=3),
        "w8a16", 3, 1, 1, 3, dict(with_states=True, initial_state=True),
    ),
    "P4-S2-2layer-head-all-states": (
        dict(input_size=4, hidden_size=2, num_layers=2, head="all", head_out=1),
        "w4a8", 4, 2, 1, 4, dict(with_states=True),
    ),
}  # fmt: skip


def gru_model(seed, preset, **spec_kwargs):
    """A GRU qmodel (weights in ``[-1, 1]``) calibrated on its own inputs, and float inputs."""
    spec = random_gru_spec(seed, **spec_kwargs)
    x = np.random.default_rng(seed + 100).normal(0, 1, (3, 6, spec.input_size))
    return quantize(spec, x, QuantConfig.preset(preset)), x


def check_run(acc, x, h0=None, **run_kwargs):
    """Run ``x`` (floats) through ``acc``; every element equals the golden GRU's."""
    q = acc.model
    x_codes = golden.quantize_inputs(q, x)
    expected = golden.run(q, x_codes, h0)
    result = run_amaranth(acc, x_codes, h0, **run_kwargs)
    geom = StreamGeometry.of(q, with_states=acc.with_states, initial_state=acc.initial_state)
    assert not result.error
    for b, got in enumerate(result.outputs):
        want = pack_outputs(geom, expected.prediction, b, expected.h_n)
        mismatch = np.flatnonzero(got != want)
        assert got.shape == want.shape and mismatch.size == 0, (
            f"sequence {b}: {mismatch.size} mismatches, first at {mismatch[:5]}: "
            f"rtl {got[mismatch[:5]]} golden {want[mismatch[:5]]}"
        )
    return result


@pytest.mark.parametrize("name", list(CASES))
def test_gru_accelerator_equals_golden_with_stalls(name):
    spec_kwargs, preset, P, S, V, T, options = CASES[name]
    seed = sorted(CASES).index(name)
    q, x = gru_model(seed, preset, **spec_kwargs)
    acc = LSTMAccelerator(q, lanes=P, simd=S, cells=V, max_seq_len=8, **options)
    h0 = None
    if options.get("initial_state"):
        rng = np.random.default_rng(seed)
        LD = q.num_layers * q.num_directions
        h0 = q.formats["hidden"].quantize(rng.normal(0, 0.4, (LD, 3, q.hidden_size)))
    check_run(acc, x[:, :T], h0, in_stall=0.3, out_stall=0.3, seed=seed)


def test_gru_accelerator_cycle_model_without_stalls_odd_lanes():
    q, x = gru_model(7, "q16", input_size=2, hidden_size=5, head="last")
    for P, S in ((7, 1), (20, 2)):
        acc = LSTMAccelerator(q, lanes=P, simd=S, max_seq_len=6)
        result = check_run(acc, x[:2, :5])
        assert [c.compute for c in result.cycles] == [CycleModel.of(acc).compute(5)] * 2


def test_gru_layout_holds_the_gate_rows_with_the_identity_target():
    q, _ = gru_model(3, "w8a16", input_size=3, hidden_size=3, num_layers=2,
                     bidirectional=True, head="last")  # fmt: skip
    layout = WeightLayout.of(q, 5, 2)
    assert [mx.kind for mx in layout.matrices] == ["gates"] * 4 + ["head"]
    assert layout.targets[0] == (GRU_SUMS, 0, q.acc)
    assert [t.role for t in layout.targets] == [GRU_SUMS, "head_out"]
    for mx in layout.matrices[:4]:
        rows = gru_gate_rows(q, mx.layer, mx.direction)
        assert mx.rows == 12 and mx.padded_rows == 15 and mx.target == 0
        assert np.array_equal(mx.codes[:12], rows.codes) and not mx.codes[12:].any()
        assert np.array_equal(mx.bias[:12], rows.bias)
        assert [(s.start, s.length, s.shift) for s in mx.segments] == [
            (s.start, s.length, s.shift) for s in rows.segments
        ]


def test_gru_plans_state_memory_and_multipliers():
    q, _ = gru_model(4, "w8a8", input_size=2, hidden_size=4, num_layers=2, head="all")
    acc = LSTMAccelerator(q, lanes=3, simd=2, cells=2, max_seq_len=5, with_states=True,
                          initial_state=True, buffers=1)  # fmt: skip
    assert state_format(q) == q.formats["hidden"]
    plan = acc.buffer_plan()
    assert plan["cmem"] == (q.formats["hidden"].bits, 2 * 4)  # h of every layer, direction
    assert "c0buf" not in plan and "mbuf" not in plan
    # double-buffered: the next sequence's h0 waits in c0buf (the cell bank's initial state)
    banks = LSTMAccelerator(q, lanes=3, simd=2, cells=2, max_seq_len=5, with_states=True,
                            initial_state=True, buffers=2).bank_plan()  # fmt: skip
    bits = q.formats["hidden"].bits
    assert banks["cmem"] == (bits, 8, 1) and banks["c0buf"] == (bits, 8, 2)
    assert banks["h0buf"] == banks["hnbuf"] == (bits, 8, 2) and "mbuf" not in banks
    muls = acc.multiplier_plan()
    assert muls[0]["count"] == 6
    assert muls[1:] == gru_cell_multipliers(GRUCellArithmetic.of(q), 2)
    geom = acc.stream_geometry
    assert not geom.cell_state and geom.state_length == 2 * 4
    assert acc.input_length(5) == 8 + 5 * 2 and acc.result_length(5) == 5 * 2 + 8


def test_gru_cell_bank_choice():
    q, _ = gru_model(5, "q16", input_size=2, hidden_size=3)
    bank = accelerator_cell_bank(q, cells=2, in_bits=q.acc.bits, c_depth=3)
    assert isinstance(bank, GRUBankAsCellBank)
    assert bank.latency == bank.bank.latency == 21  # interpolating q16 tables
    # CellBank's ports (what the accelerator joins), plus the GRU's own saturation pulses
    _, lstm = random_qmodel(5, input_size=2, hidden_size=3)
    lstm_bank = accelerator_cell_bank(lstm, cells=2, in_bits=lstm.acc.bits, c_depth=3)
    assert isinstance(lstm_bank, CellBank)
    assert set(bank.signature.members) == set(lstm_bank.signature.members) | {
        "sat_preact",
        "sat_hn",
    }


# name: (spec kwargs, preset, lanes P, simd S, cells V, build options)
STREAM_CASES = {
    "P3-S1-head-all-h0-states": (dict(input_size=2, hidden_size=3, head="all", head_out=2),
                                 "q16", 3, 1, 1, dict(with_states=True, initial_state=True)),
    "P8-S2-V2-2layer-h0-states": (dict(input_size=3, hidden_size=2, num_layers=2), "w8a8", 8, 2,
                                  2, dict(with_states=True, initial_state=True)),
    "P1-head-last": (dict(input_size=1, hidden_size=3, head="last"), "w8a16", 1, 1, 1, {}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(STREAM_CASES))
def test_gru_stream_mode_equals_golden_step_by_step(name):
    """Stream mode (each step's output as soon as it is computed): independent sequences
    under stalls, then the state carried over ``tlast`` (``keep_state``) with a ``tuser``
    reset at the first step (which restores ``h0``)."""
    spec_kwargs, preset, P, S, V, options = STREAM_CASES[name]
    seed = sorted(STREAM_CASES).index(name)
    q, x = gru_model(20 + seed, preset, **spec_kwargs)
    acc = LSTMAccelerator(q, lanes=P, simd=S, cells=V, mode="stream", **options)
    h0 = None
    if options.get("initial_state"):
        rng = np.random.default_rng(seed)
        h0 = q.formats["hidden"].quantize(rng.normal(0, 0.4, (q.num_layers, 3, q.hidden_size)))
    check_run(acc, x[:, :4], h0, in_stall=0.3, out_stall=0.3, seed=seed)
    x_codes = golden.quantize_inputs(q, x[:, :4])
    resets = np.zeros((3, 4), dtype=bool)
    resets[0, 0] = True
    result = run_amaranth(acc, x_codes, h0, keep_state=True, resets=resets)
    expected = stateful_golden(q, x_codes, h0)
    geom = acc.stream_geometry
    for b, got in enumerate(result.outputs):
        want = pack_outputs(geom, expected.prediction, b, expected.h_n)
        np.testing.assert_array_equal(got, want, err_msg=f"segment {b}")


def test_gru_stream_cycle_model_latency_and_interval():
    q, x = gru_model(30, "q16", input_size=3, hidden_size=4, num_layers=2, head="all")
    acc = LSTMAccelerator(q, lanes=4, simd=2, mode="stream")
    model = StreamCycleModel.of(acc)
    one = run_amaranth(acc, golden.quantize_inputs(q, x[:2, :1]))  # isolated steps
    assert [c.compute for c in one.cycles] == [model.latency] * 2
    T = 6
    steady = run_amaranth(acc, golden.quantize_inputs(q, x[:1, :T]))
    per_step = model.per_step_outputs
    firsts = steady.output_cycles[0][: T * per_step : per_step]
    np.testing.assert_array_equal(np.diff(firsts)[-3:], [model.interval] * 3)
