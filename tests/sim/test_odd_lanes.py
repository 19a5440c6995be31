# amaranth: UnusedElaboratable=no
"""Lane counts that are not a multiple of 4, as generated Verilog in Verilator: lint-clean,
bit-exact against the golden model with and without random valid/ready stalls on both
streams, and cycle-exact against the cycle model.

A sample of the lane grid of ``tests/hw/test_lane_divisors.py`` (which runs every P in
Amaranth's simulator): row groups straddling hidden units (P = 3, 6), a P that does not
divide 4H (P = 7 for 20 gate rows: the last row group is padded), with a head on every
step, a projection with a last head and initial/final states, and two bidirectional layers
without a head.
"""

import pytest
from sim_flow_cases import (
    assert_bit_and_cycle_exact_in_verilator,
    assert_verilator_lint_clean,
    cache_root,
    initial_states,
)

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.verilog import generate
from lstmfpga.quant import golden
from lstmfpga.testing import random_inputs, random_qmodel

CASES = {
    # name: (model kwargs, lanes, T, batch, accelerator options)
    "H6-P3-nobias-head-all": (
        dict(input_size=2, hidden_size=6, bias=False, head="all", head_out=2), 3, 5, 3, {},
    ),
    "H5-P7-padded-proj-head-last-states": (
        dict(input_size=3, hidden_size=5, proj_size=2, head="last", head_out=3), 7, 4, 3,
        dict(with_states=True, initial_state=True),
    ),
    "H3-P6-bidir-2layers": (
        dict(input_size=2, hidden_size=3, num_layers=2, bidirectional=True), 6, 4, 3, {},
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_root(tmp_path_factory)


def build(name):
    kwargs, lanes, T, batch, options = CASES[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=T, **options)
    x = golden.quantize_inputs(q, random_inputs(seed, batch, T, q.input_size))
    h0, c0 = initial_states(q, batch, seed) if options.get("initial_state") else (None, None)
    return seed, q, acc, x, h0, c0


@pytest.mark.parametrize("name", list(CASES))
def test_odd_lanes_are_bit_and_cycle_exact_in_verilator(name, cache):
    seed, _, acc, x, h0, c0 = build(name)
    assert 4 % acc.lanes and acc.lanes % 4, "the sample is about lanes straddling units"
    assert_bit_and_cycle_exact_in_verilator(name, acc, x, h0, c0, seed, cache)


@pytest.mark.parametrize("name", list(CASES))
def test_odd_lane_verilog_is_lint_clean(name, tmp_path):
    kwargs, lanes, T, _, options = CASES[name]
    _, q = random_qmodel(sum(map(ord, name)), **kwargs)
    generate(q, tmp_path, lanes=lanes, max_seq_len=T, **options)
    assert_verilator_lint_clean(tmp_path)
