# amaranth: UnusedElaboratable=no
"""Back-to-back runs (``run_cocotb(..., back_to_back=True)``): the bench offers each
sequence's inputs right after the previous sequence's last input beat instead of after its
last result, in one simulator process; the outputs stay those of the golden model."""

import pytest
from sim_flow_cases import assert_outputs_equal, build_case, cache_root, expected_outputs

from lstmfpga.sim.bench_top import wrapper
from lstmfpga.sim.cocotb_flow import Design, run_cocotb


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_root(tmp_path_factory)


def test_only_a_back_to_back_bench_offers_inputs_before_the_results_are_out():
    design = Design.of(build_case("P1-odd")[2])
    gate = "(b_in < n_seq) && (b_in == b_out);"
    assert gate in wrapper(design, "icarus")
    assert gate not in wrapper(design, "icarus", back_to_back=True)
    assert "(b_in < n_seq);" in wrapper(design, "icarus", back_to_back=True)


def test_a_back_to_back_run_is_one_process_with_the_golden_outputs(cache):
    _, _, acc, x, _, _ = build_case("P1-odd")
    stalls = dict(in_stall=0.3, out_stall=0.3, seed=5)
    plain = run_cocotb(acc, x, simulator="icarus", build_dir=cache, jobs=2, **stalls)
    overlap = run_cocotb(acc, x, simulator="icarus", build_dir=cache, jobs=2,
                         back_to_back=True, **stalls)  # fmt: skip
    assert plain.meta["chunks"] == 2 and overlap.meta["chunks"] == 1
    assert_outputs_equal(overlap.outputs, expected_outputs(acc, x), "back to back")
    assert overlap.cycles[0] == plain.cycles[0]  # the first sequence waits for nothing
    pairs = zip(overlap.cycles[:-1], overlap.cycles[1:], plain.cycles[1:], strict=True)
    for before, seq, alone in pairs:
        assert before.last_in < seq.first_in <= alone.first_in
        assert seq.first_in < before.last_out  # taken while the previous one computes
