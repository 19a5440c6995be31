# amaranth: UnusedElaboratable=no
"""Stream mode as generated Verilog: lint-clean, and bit-exact against the golden model in
Verilator (1000 steps per sequence, far beyond ``max_seq_len``) and in Icarus, with random
valid/ready stalls on both streams, and a 400-step signal fed as 8 stateful segments
(``keep_state``) equal to the golden model on the whole signal. One stream-mode design,
built once per simulator and session (the shared build cache of ``sim_flow_cases``).
"""

import numpy as np
import pytest
from sim_flow_cases import (
    assert_outputs_equal,
    assert_verilator_lint_clean,
    cache_root,
    expected_outputs,
)

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.verilog import generate
from lstmfpga.quant import golden
from lstmfpga.sim.cocotb_flow import run_cocotb
from lstmfpga.testing import random_inputs, random_qmodel

MODEL = dict(input_size=2, hidden_size=3, num_layers=2, head="all", head_out=2)
MAX_SEQ_LEN = 8  # not a limit in stream mode


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_root(tmp_path_factory)


def _design():
    _, q = random_qmodel(5, **MODEL)
    return q, LSTMAccelerator(q, lanes=4, mode="stream", max_seq_len=MAX_SEQ_LEN, with_states=True)


@pytest.mark.parametrize(("simulator", "T"), [("verilator", 1000), ("icarus", 40)])
def test_stream_mode_is_bit_exact_with_stalls(simulator, T, cache):
    q, acc = _design()
    x = golden.quantize_inputs(q, random_inputs(5, 2, T, q.input_size))
    result = run_cocotb(acc, x, simulator=simulator, in_stall=0.3, out_stall=0.3, seed=2,
                        build_dir=cache)  # fmt: skip
    assert not result.error
    assert_outputs_equal(result.outputs, expected_outputs(acc, x), f"{simulator}, stream mode")


def test_stream_mode_verilog_is_lint_clean(tmp_path):
    q, _ = _design()
    generate(q, tmp_path, lanes=4, mode="stream", with_states=True, initial_state=True)
    assert_verilator_lint_clean(tmp_path)


def test_a_400_step_signal_as_8_stateful_segments_equals_golden_on_the_whole_signal(cache):
    """``keep_state``: each segment starts from the state the previous one ended in, so the
    outputs, concatenated, are the golden model's on the whole signal (``s_axis_tuser`` on
    the first step resets to zeros once)."""
    q, acc = _design()
    signal = golden.quantize_inputs(q, random_inputs(6, 1, 400, q.input_size))
    segments = signal.reshape(8, 50, q.input_size)
    resets = np.zeros((8, 50), dtype=bool)
    resets[0, 0] = True
    result = run_cocotb(acc, segments, simulator="verilator", in_stall=0.2, out_stall=0.2,
                        seed=3, build_dir=cache, keep_state=True, resets=resets)  # fmt: skip
    assert not result.error
    per_step = 2  # head_out, every step
    got = np.concatenate([out[: 50 * per_step] for out in result.outputs])
    np.testing.assert_array_equal(got, golden.run(q, signal).head.reshape(-1))
    assert_outputs_equal(result.outputs, expected_outputs_stateful(acc, segments), "verilator")


def expected_outputs_stateful(acc, segments):
    from lstmfpga.sim.streams import StreamGeometry, pack_outputs
    from lstmfpga.simulation import stateful_golden

    expected = stateful_golden(acc.model, segments)
    geom = StreamGeometry.of(acc.model, with_states=acc.with_states)
    return [pack_outputs(geom, expected.prediction, b, expected.h_n, expected.c_n)
            for b in range(segments.shape[0])]  # fmt: skip
