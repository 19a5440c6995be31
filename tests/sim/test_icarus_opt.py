# amaranth: UnusedElaboratable=no
"""Long Icarus runs compile the design after Yosys's ``opt`` and the rewrite of
``lstmfpga.sim.vvp_netlist`` (a flat netlist Icarus runs about nine times faster): the same
outputs and cycle stamps as the Verilog as generated, with stalls; short runs use such a
build only when it exists; designs with ``$readmemh`` files or nets the bench reads inside
them (an AXI top's ``error``) and waves keep the generated Verilog."""

from pathlib import Path

from sim_flow_cases import assert_outputs_equal, build_case, expected_outputs

from lstmfpga.sim import icarus_opt
from lstmfpga.sim.cocotb_flow import run_cocotb


def test_an_optimized_icarus_build_gives_the_same_outputs_and_stamps(cache, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    _, _, acc, x, _, _ = build_case("P1-odd")
    stalls = dict(in_stall=0.3, out_stall=0.3, seed=7)
    plain = run_cocotb(acc, x, simulator="icarus", build_dir=cache, **stalls)
    assert not plain.meta["build"]["optimized"]  # a few hundred cycles: not worth Yosys
    own = tmp_path / "cache"  # the optimized build stays out of the session's cache
    monkeypatch.setattr(icarus_opt, "MIN_CYCLES", 1)
    fast = run_cocotb(acc, x, simulator="icarus", build_dir=own, **stalls)
    assert fast.meta["build"]["optimized"]
    built = Path(fast.meta["build"]["directory"]) / "lstm_accel.v"
    text = built.read_text()
    assert text.count("module ") == 1  # Yosys's flat netlist, not Amaranth's Verilog,
    assert "always @* begin" not in text  # without its combinational processes,
    assert text.count("always @(posedge clk)") == 1  # in one clocked block (vvp_netlist)
    assert_outputs_equal(fast.outputs, expected_outputs(acc, x), "optimized icarus")
    assert fast.cycles == plain.cycles
    monkeypatch.undo()  # a short run again: it reuses the optimized build that is there
    again = run_cocotb(acc, x, simulator="icarus", build_dir=own, **stalls)
    assert again.meta["build"]["optimized"] and again.meta["build"]["cached"]
    assert again.meta["build"]["directory"] == fast.meta["build"]["directory"]
    assert again.cycles == plain.cycles


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
    axi = "module axi(clk, s_axil_awvalid);\n  input clk;\n  input s_axil_awvalid;\nendmodule\n"
    assert icarus_opt.applicable("icarus", design)
    assert not icarus_opt.applicable("icarus", Design(axi, "axi", design.geometry))
