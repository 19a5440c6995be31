# amaranth: UnusedElaboratable=no
"""The Verilog bench drives every stream port a top has: stream mode's ``s_axis_tuser``
(resets) and ``keep_state`` give in Verilator what they give in Amaranth's simulator and the
stateful golden model, and an AXI top with K-element beats (``tkeep``, lines wider than 64
bits) is bit-exact in Icarus and Verilator, stalls included."""

import numpy as np
import pytest
from sim_flow_cases import assert_outputs_equal, cache_root, expected_outputs

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.axi_top import write_axi_design
from lstmfpga.quant import golden
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.sim.bench_files import StreamLines
from lstmfpga.sim.cocotb_build import Design
from lstmfpga.sim.cocotb_flow import run_cocotb
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.simulation import stateful_golden
from lstmfpga.testing import random_inputs, random_qmodel

#: tests/sim/test_stream_sim.py's design (the same Verilator build, shared in a session).
STREAM_MODEL = dict(input_size=2, hidden_size=3, num_layers=2, head="all", head_out=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_root(tmp_path_factory)


@pytest.fixture(scope="module")
def stream():
    _, q = random_qmodel(5, **STREAM_MODEL)
    return q, LSTMAccelerator(q, lanes=4, mode="stream", max_seq_len=8, with_states=True)


def test_keep_state_carries_the_state_from_sequence_to_sequence_in_verilator(stream, cache):
    q, acc = stream
    x = golden.quantize_inputs(q, random_inputs(3, 3, 12, q.input_size))
    got = run_cocotb(acc, x, simulator="verilator", keep_state=True, jobs=2, build_dir=cache,
                     in_stall=0.2, out_stall=0.2, seed=1)  # fmt: skip
    assert got.meta["chunks"] == 1  # one process: the state goes from sequence to sequence
    want = stateful_golden(q, x)
    geom = StreamGeometry.of(q, with_states=True)
    assert_outputs_equal(got.outputs, [pack_outputs(geom, want.prediction, b, want.h_n, want.c_n)
                                       for b in range(3)], "keep_state")  # fmt: skip


def test_tuser_resets_give_amaranths_outputs_and_cycles_in_verilator(stream, cache):
    q, acc = stream
    x = golden.quantize_inputs(q, random_inputs(4, 3, 12, q.input_size))
    resets = np.zeros((3, 12), dtype=bool)
    resets[1, 5] = resets[2, 0] = resets[2, 11] = True
    options = dict(keep_state=True, resets=resets, in_stall=0.3, out_stall=0.3, seed=3)
    amaranth = run_amaranth(acc, x, **options)
    got = run_cocotb(acc, x, simulator="verilator", build_dir=cache, **options)
    assert_outputs_equal(got.outputs, amaranth.outputs, "tuser resets")
    assert got.cycles == amaranth.cycles
    # a reset before step 5 of sequence 1: its steps 5.. are those of a fresh sequence
    fresh = golden.run(q, x[1:2, 5:]).prediction.reshape(-1)  # 7 steps of the head's outputs
    per_step = fresh.size // 7
    assert np.array_equal(got.outputs[1][5 * per_step : 12 * per_step], fresh)


def test_resets_and_keep_state_need_a_stream_mode_top(cache):
    _, q = random_qmodel(1, input_size=2, hidden_size=3, head="last")
    acc = LSTMAccelerator(q, lanes=2, max_seq_len=4)
    x = np.zeros((1, 4, 2), np.int64)
    with pytest.raises(ValueError, match=r"keep_state needs a stream-mode design"):
        run_cocotb(acc, x, keep_state=True, build_dir=cache)
    with pytest.raises(ValueError, match=r"resets must be a \(batch, seq\) array of a stream"):
        run_cocotb(acc, x, resets=np.zeros((1, 4), bool), build_dir=cache)


def test_k_element_lines_round_trip_with_partial_last_beats():
    lines = StreamLines(in_data=64, out_data=64, in_keep=8, out_keep=8, elements=4,
                        element_bits=(13, 11))  # fmt: skip
    rng = np.random.default_rng(0)
    inputs = [rng.integers(-4096, 4096, 10) for _ in range(3)]  # 3 beats each, 2 lanes null
    encoded = lines.encode(inputs)
    assert [len(seq) for seq in encoded] == [3, 3, 3]
    assert all(seq[-1] >> 64 == 0b1111 for seq in encoded)  # tkeep: the first two lanes
    # the same beats as results (other lane width): what the bench would capture
    outputs = [rng.integers(-1024, 1024, 10) for _ in range(3)]
    out = StreamLines(in_data=64, out_data=64, in_keep=8, out_keep=8, elements=4,
                      element_bits=(11, 13))  # fmt: skip
    flat = [v for seq in out.encode(outputs) for v in seq]
    decoded = lines.decode(flat, 3, 10)
    assert all(np.array_equal(d, o) for d, o in zip(decoded, outputs, strict=True))
    with pytest.raises(ValueError, match=r"hold 30 elements \(tkeep\), not 9 for each of 3"):
        lines.decode(flat, 3, 9)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_an_axi_top_with_4_element_beats_is_bit_exact_with_stalls(simulator, tmp_path, cache):
    _, q = random_qmodel(9, input_size=3, hidden_size=4, head="all", head_out=3)
    acc = LSTMAccelerator(q, lanes=4, max_seq_len=5)
    write_axi_design(acc, tmp_path, beat_elements=4)
    design = Design.of(tmp_path)
    assert design.beat_elements == 4 and design.lines().out_bits > 64  # wide lines
    x = golden.quantize_inputs(q, random_inputs(9, 3, 5, q.input_size))  # 15 in, 15 out: partial
    got = run_cocotb(tmp_path, x, simulator=simulator, in_stall=0.3, out_stall=0.3, seed=5,
                     build_dir=cache)  # fmt: skip
    assert not got.error
    assert_outputs_equal(got.outputs, expected_outputs(acc, x), f"{simulator}, K=4")
