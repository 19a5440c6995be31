# amaranth: UnusedElaboratable=no
"""Stream mode as generated Verilog: lint-clean, and bit-exact against the golden model in
Verilator (1000 steps per sequence, far beyond ``max_seq_len``) and in Icarus, with random
valid/ready stalls on both streams. One stream-mode design, built once per simulator and
session (the shared build cache of ``sim_flow_cases``).
"""

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
