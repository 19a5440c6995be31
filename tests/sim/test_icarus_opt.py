# amaranth: UnusedElaboratable=no
"""Long Icarus runs compile the design after Yosys's ``opt`` (a flat netlist Icarus runs about
three times faster): the same outputs and cycle stamps as the Verilog as generated, with
stalls; short runs, designs with ``$readmemh`` files and waves keep the generated Verilog."""

from pathlib import Path

import pytest
from sim_flow_cases import assert_outputs_equal, build_case, cache_root, expected_outputs

from lstmfpga.sim import icarus_opt
from lstmfpga.sim.cocotb_flow import run_cocotb


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_root(tmp_path_factory)


def test_an_optimized_icarus_build_gives_the_same_outputs_and_stamps(cache, monkeypatch):
    _, _, acc, x, _, _ = build_case("P1-odd")
    stalls = dict(in_stall=0.3, out_stall=0.3, seed=7)
    plain = run_cocotb(acc, x, simulator="icarus", build_dir=cache, **stalls)
    assert not plain.meta["build"]["optimized"]  # a few hundred cycles: not worth Yosys
    monkeypatch.setattr(icarus_opt, "MIN_CYCLES", 1)
    fast = run_cocotb(acc, x, simulator="icarus", build_dir=cache, **stalls)
    assert fast.meta["build"]["optimized"]
    built = Path(fast.meta["build"]["directory"]) / "lstm_accel.v"
    assert "always @*" not in built.read_text()  # Yosys's netlist, not Amaranth's Verilog
    assert_outputs_equal(fast.outputs, expected_outputs(acc, x), "optimized icarus")
    assert fast.cycles == plain.cycles


def test_only_long_icarus_runs_of_designs_without_memory_files_are_optimized():
    _, _, acc, _, _, _ = build_case("P1-odd")
    from lstmfpga.sim.cocotb_build import Design

    design = Design.of(acc)
    assert icarus_opt.worth_it("icarus", design, icarus_opt.MIN_CYCLES)
    assert not icarus_opt.worth_it("icarus", design, icarus_opt.MIN_CYCLES - 1)
    assert not icarus_opt.worth_it("icarus", design, None)
    assert not icarus_opt.worth_it("verilator", design, 10**9)
    with_files = Design(design.verilog, design.top, design.geometry, {"w.hex": "0\n"})
    assert not icarus_opt.worth_it("icarus", with_files, 10**9)
