# amaranth: UnusedElaboratable=no
"""``simd`` S > 1 (S columns per beat, adder trees, S buffer read ports) as generated Verilog
in Verilator: lint-clean, bit-exact against the golden model with and without random
valid/ready stalls on both streams, and cycle-exact against the cycle model.

A sample of ``tests/hw/test_simd.py`` (which runs a P x S grid in Amaranth's simulator): a
chunk straddling the input/recurrent boundary with an odd lane count, a projection, a last
head and initial/final states; and S = the longest row (one beat per row group, padded
chunks for the shorter matrices) with two bidirectional layers and a head on every step.
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
    # name: (model kwargs, lanes, simd, T, batch, accelerator options)
    "H3-P3-S2-proj-head-last-states": (
        dict(input_size=3, hidden_size=3, proj_size=2, head="last", head_out=3), 3, 2, 4, 3,
        dict(with_states=True, initial_state=True),
    ),
    "H2-P8-S6-bidir-2layers-head-all": (
        dict(input_size=3, hidden_size=2, num_layers=2, bidirectional=True, head="all",
             head_out=2),
        8, 6, 3, 2, {},
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_root(tmp_path_factory)


def build(name):
    kwargs, lanes, simd, T, batch, options = CASES[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, simd=simd, max_seq_len=T, **options)
    x = golden.quantize_inputs(q, random_inputs(seed, batch, T, q.input_size))
    h0, c0 = initial_states(q, batch, seed) if options.get("initial_state") else (None, None)
    return seed, q, acc, x, h0, c0


def test_the_longest_case_uses_the_longest_row():
    _, _, acc, *_ = build("H2-P8-S6-bidir-2layers-head-all")
    assert acc.simd == max(mx.cols for mx in acc.layout.matrices) == 6
    assert any(mx.cols < acc.simd for mx in acc.layout.matrices)  # padded chunks


@pytest.mark.parametrize("name", list(CASES))
def test_simd_is_bit_and_cycle_exact_in_verilator(name, cache):
    seed, _, acc, x, h0, c0 = build(name)
    assert_bit_and_cycle_exact_in_verilator(name, acc, x, h0, c0, seed, cache)


@pytest.mark.parametrize("name", list(CASES))
def test_simd_verilog_is_lint_clean_and_lists_its_multipliers(name, tmp_path):
    kwargs, lanes, simd, T, _, options = CASES[name]
    _, q = random_qmodel(sum(map(ord, name)), **kwargs)
    info = generate(q, tmp_path, lanes=lanes, simd=simd, max_seq_len=T, **options)
    assert (info["lanes"], info["simd"]) == (lanes, simd)
    assert info["multipliers"][0]["count"] == lanes * simd
    assert_verilator_lint_clean(tmp_path)


def test_report_counts_every_multiplier_in_mac_efficiency():
    from lstmfpga.pipeline import simulate_model
    from lstmfpga.sim.report import mac_count

    _, q = random_qmodel(9, input_size=3, hidden_size=2, head="last", head_out=2)
    x = random_inputs(9, 2, 3, 3)
    report, _ = simulate_model(q, x, simulator="amaranth", lanes=4, simd=2)
    c = report["cycles"]
    assert report["bit_exact"] is True and report["settings"]["simd"] == 2
    assert c["mac_efficiency"] == pytest.approx(mac_count(q, 3) / (4 * 2 * c["compute"]))
