# amaranth: UnusedElaboratable=no
"""The Verilog test bench runs without Python per beat: the same stall pattern in every flow,
runs split into chunks and parallel jobs give the stamps of one run, and the protocol flags
the bench raises (tlast, X, an extra beat) become one-line errors."""

import re

import numpy as np
import pytest
from sim_flow_cases import CASES, assert_outputs_equal, expected_outputs

from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.sim.bench_top import top_ports
from lstmfpga.sim.budget import SimulationError
from lstmfpga.sim.cocotb_build import COCOTB_SIMULATORS
from lstmfpga.sim.cocotb_flow import Design, run_cocotb
from lstmfpga.sim.stalls import MAX_GAP, StallPattern


def test_the_stall_pattern_is_seeded_geometric_and_sliceable():
    a = StallPattern.draw(40, 50, 30, in_stall=0.5, out_stall=0.25, seed=9)
    b = StallPattern.draw(40, 50, 30, in_stall=0.5, out_stall=0.25, seed=9)
    assert np.array_equal(a.in_gaps, b.in_gaps) and np.array_equal(a.out_gaps, b.out_gaps)
    assert a.in_gaps.shape == (40, 50) and a.out_gaps.shape == (40, 30)
    # Mean of a geometric gap with stall probability p: p / (1 - p) (1 and 1/3 here).
    assert a.in_gaps.mean() == pytest.approx(1.0, abs=0.1)
    assert a.out_gaps.mean() == pytest.approx(1 / 3, abs=0.06)
    assert 0 <= a.in_gaps.min() and a.in_gaps.max() <= MAX_GAP
    assert np.array_equal(a.part(10, 20).in_gaps, a.in_gaps[10:20])
    none = StallPattern.draw(3, 4, 5)
    assert none.stalled_cycles == 0
    with pytest.raises(ValueError, match=r"out_stall must be in \[0, 1\), not 1.0"):
        StallPattern.draw(1, 1, 1, out_stall=1.0)


def _batch(cases, name, copies):
    _, _, acc, x, h0, c0 = cases[name]
    x = np.concatenate([x, x[::-1]] * copies)
    if h0 is not None:
        h0 = np.concatenate([h0, h0[:, ::-1]] * copies, axis=1)
        c0 = np.concatenate([c0, c0[:, ::-1]] * copies, axis=1)
    return acc, x, h0, c0


@pytest.mark.parametrize("name", list(CASES))
def test_stalls_are_identical_in_amaranth_icarus_and_verilator(name, cases, cache):
    acc, x, h0, c0 = _batch(cases, name, 1)
    want = expected_outputs(acc, x, h0, c0)
    stalls = dict(in_stall=0.35, out_stall=0.45, seed=11)
    amaranth = run_amaranth(acc, x, h0, c0, **stalls)
    plain = run_amaranth(acc, x, h0, c0)
    assert amaranth.total_cycles > plain.total_cycles  # stalls happened
    assert_outputs_equal(amaranth.outputs, want, "amaranth")
    for simulator in COCOTB_SIMULATORS:
        got = run_cocotb(acc, x, h0, c0, simulator=simulator, build_dir=cache, **stalls)
        assert_outputs_equal(got.outputs, want, simulator)
        assert got.cycles == amaranth.cycles, simulator
        assert got.total_cycles == amaranth.total_cycles, simulator


@pytest.mark.parametrize("simulator", COCOTB_SIMULATORS)
def test_chunks_and_jobs_give_the_stamps_of_one_run(simulator, cases, cache):
    acc, x, _, _ = _batch(cases, "P1-odd", 3)  # 12 sequences
    stalls = dict(in_stall=0.3, out_stall=0.3, seed=4)
    whole = run_cocotb(acc, x, simulator=simulator, build_dir=cache, jobs=1, **stalls)
    assert whole.meta["chunks"] == 1
    calls = []
    sharded = run_cocotb(
        acc, x, simulator=simulator, build_dir=cache, jobs=2, chunk_size=5,
        progress=lambda done, total: calls.append((done, total)), **stalls,
    )  # fmt: skip
    assert sharded.meta["chunks"] == 3 and sharded.meta["jobs"] == 2
    assert calls[0] == (0, 12) and calls[-1] == (12, 12) and len(calls) == 4
    assert_outputs_equal(sharded.outputs, whole.outputs, "sharded")
    assert sharded.cycles == whole.cycles
    assert sharded.total_cycles == whole.total_cycles == whole.cycles[-1].last_out
    split = run_cocotb(acc, x, simulator=simulator, build_dir=cache, jobs=2, **stalls)
    assert split.meta["chunks"] == 2 and split.cycles == whole.cycles


def _shim(design: Design, body: str) -> Design:
    """``design`` with its top renamed ``<top>_inner`` inside a new top of the same ports;
    ``body`` drives the new top's m_axis outputs from ``inner_tdata/tvalid/tlast``."""
    top = design.top
    ports = top_ports(design.verilog, top)
    verilog = re.sub(rf"^module {top}\(", f"module {top}_inner(", design.verilog, count=1,
                     flags=re.MULTILINE)  # fmt: skip
    names = ", ".join(name for _, _, name in ports)
    lines = [f"module {top}({names});"]
    lines += [f"  {d} {w + ' ' if w else ''}{n};" for d, w, n in ports]
    width = next(w for _, w, n in ports if n == "m_axis_tdata")
    lines += [f"  wire {width} inner_tdata;", "  wire inner_tvalid, inner_tlast;"]
    renamed = {"m_axis_tdata": "inner_tdata", "m_axis_tvalid": "inner_tvalid",
               "m_axis_tlast": "inner_tlast"}  # fmt: skip
    conn = ", ".join(f".{n}({renamed.get(n, n)})" for _, _, n in ports)
    lines += [f"  {top}_inner inner ({conn});", body, "endmodule", ""]
    return Design(
        verilog=verilog + "\n".join(lines), top=top, geometry=design.geometry,
        compute=design.compute,
    )  # fmt: skip


PASS_DATA = "  assign m_axis_tdata = inner_tdata;\n"
EXTRA_BEAT = """  reg extra = 1'b0;
  always @(posedge clk) extra <= (inner_tvalid & inner_tlast & m_axis_tready) | (extra & ~m_axis_tready);
  assign m_axis_tvalid = inner_tvalid | extra;
  assign m_axis_tlast = inner_tlast | extra;
"""  # noqa: E501


@pytest.mark.parametrize("simulator", COCOTB_SIMULATORS)
def test_a_missing_tlast_is_a_one_line_error(simulator, cases, cache):
    _, _, acc, x, _, _ = cases["P1-odd"]
    design = Design.of(acc)
    n_out = acc.result_length(x.shape[1])
    no_tlast = _shim(design, PASS_DATA + "  assign m_axis_tvalid = inner_tvalid;\n"
                     "  assign m_axis_tlast = 1'b0;\n")  # fmt: skip
    with pytest.raises(SimulationError) as error:
        run_cocotb(no_tlast, x, simulator=simulator, build_dir=cache)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"{simulator} simulation: sequence 0: tlast wrong at output element {n_out} of {n_out}"
    )


def test_a_result_beat_after_the_last_one_is_flagged(cases, cache):
    """(The checks are the same Verilog in both simulators: Icarus alone spares a build.)"""
    _, _, acc, x, _, _ = cases["P1-odd"]
    extra = _shim(Design.of(acc), PASS_DATA + EXTRA_BEAT)
    with pytest.raises(SimulationError, match="a result beat after the last expected one"):
        run_cocotb(extra, x[:1], simulator="icarus", build_dir=cache)
    # With a next sequence, the extra beat is that sequence's first result, with tlast.
    with pytest.raises(SimulationError, match="sequence 1: tlast wrong at output element 1 "):
        run_cocotb(extra, x, simulator="icarus", build_dir=cache)


def test_icarus_flags_x_on_the_result_data(cases, cache):
    _, _, acc, x, _, _ = cases["P1-odd"]
    x_data = _shim(
        Design.of(acc),
        "  assign m_axis_tdata = 'bx;\n"
        "  assign m_axis_tvalid = inner_tvalid;\n  assign m_axis_tlast = inner_tlast;\n",
    )
    with pytest.raises(SimulationError, match="sequence 0: X/Z on m_axis at output element 1 "):
        run_cocotb(x_data, x, simulator="icarus", build_dir=cache)
