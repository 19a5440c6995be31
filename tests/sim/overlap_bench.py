"""The cocotb test module of ``test_overlap_sim.py``: back-to-back sequences through a
double-buffered accelerator's streams in Verilator or Icarus, one Python step per clock cycle.

It reads the run from the JSON file named in ``OVERLAP_RUN`` (``inputs``: the ``s_axis``
elements of each sequence, ``results``: how many result elements to collect, ``in_stall`` /
``out_stall``: the probabilities of idling ``tvalid`` / ``tready`` on a cycle, ``seed``),
offers each sequence's first element right after the previous one's ``tlast``, and writes
``results.json`` beside it: the results of each sequence (split at ``tlast``), ``cycles``
(from the first input transfer to the last result transfer, both included) and the design's
``error`` flag. The simulator's Python imports only the standard library and cocotb; the
host side (:func:`build`, :func:`run`, used by ``test_overlap_sim.py`` and
``benchmarks/bench_cycles.py``) imports lstmfpga inside its functions.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

#: Environment variable naming the run's JSON file.
RUN_ENV = "OVERLAP_RUN"


@cocotb.test()
async def back_to_back(dut):
    """Stream the run's sequences and collect their results."""
    path = Path(os.environ[RUN_ENV])
    run = json.loads(path.read_text())
    rng = random.Random(run["seed"])
    elements = [(v, k == len(seq) - 1) for seq in run["inputs"] for k, v in enumerate(seq)]
    mask = (1 << len(dut.s_axis_tdata)) - 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in ("s_axis_tvalid", "s_axis_tlast", "m_axis_tready", "w__valid"):
        getattr(dut, name).value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    taken = received = cycle = 0
    first = last = None
    outputs: list[list[int]] = [[]]
    limit = 50 * (len(elements) + run["results"]) + 20_000
    while received < run["results"] and cycle < limit:
        await FallingEdge(dut.clk)  # the outputs of this cycle are settled (none is
        # combinational in tvalid/tready); the inputs set now count at the next rising edge
        offer = taken < len(elements) and rng.random() >= run["in_stall"]
        dut.s_axis_tvalid.value = int(offer)
        if offer:
            dut.s_axis_tdata.value = elements[taken][0] & mask
            dut.s_axis_tlast.value = int(elements[taken][1])
        ready = rng.random() >= run["out_stall"]
        dut.m_axis_tready.value = int(ready)
        if offer and int(dut.s_axis_tready.value):
            first = cycle if first is None else first
            taken += 1
        if ready and int(dut.m_axis_tvalid.value):
            outputs[-1].append(dut.m_axis_tdata.value.to_signed())
            received, last = received + 1, cycle
            if int(dut.m_axis_tlast.value):
                outputs.append([])
        cycle += 1
    result = {
        "outputs": outputs[:-1] if not outputs[-1] else outputs,
        "cycles": None if first is None or last is None else last - first + 1,
        "error": bool(int(dut.error.value)),
        "received": received,
    }
    (path.parent / "results.json").write_text(json.dumps(result))


def build(acc, build_dir: Path, simulator: str = "verilator"):
    """Build ``acc`` (top ``top``) for ``simulator`` (``verilator`` or ``icarus``) in
    ``build_dir`` with the flags of lstmfpga's own builds; returns the cocotb runner."""
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    from lstmfpga.sim.bench_build import ICARUS_FLAGS, WAIVERS
    from lstmfpga.sim.cocotb_build import runtime_objects
    from lstmfpga.sim.simulators import check_simulator, tool_environment

    check_simulator(simulator)
    source = build_dir / "top.v"
    source.write_text(verilog.convert(acc, name="top", emit_src=False))
    runner = get_runner(simulator)
    if simulator == "verilator":
        sources, build_args = [str(WAIVERS), str(source)], []
    else:
        sources, build_args = [str(source)], list(ICARUS_FLAGS)
    with tool_environment(simulator), runtime_objects(simulator):  # Verilator's, as compiled
        runner.build(sources=sources, hdl_toplevel="top", build_args=build_args,
                     build_dir=build_dir, timescale=("1ns", "1ps"))  # fmt: skip
    return runner


def run(runner, build_dir: Path, name: str, inputs, results: int, *, in_stall=0.0,
        out_stall=0.0, seed=0, simulator: str = "verilator") -> dict:  # fmt: skip
    """Run :func:`back_to_back` on the build over the sequences ``inputs`` (lists of
    ``s_axis`` codes), collecting ``results`` result elements; returns its
    ``results.json`` (``outputs``, ``cycles``, ``error``, ``received``) and ``log``."""
    from lstmfpga.sim.simulators import tool_environment

    run_dir = build_dir / name
    run_dir.mkdir()
    config = run_dir / "run.json"
    config.write_text(json.dumps({"inputs": [[int(v) for v in seq] for seq in inputs],
                                  "results": results, "in_stall": in_stall,
                                  "out_stall": out_stall, "seed": seed}))  # fmt: skip
    with tool_environment(simulator):
        runner.test(hdl_toplevel="top", test_module="overlap_bench", build_dir=build_dir,
                    test_dir=run_dir, extra_env={RUN_ENV: str(config)},
                    results_xml=str(run_dir / "results.xml"), log_file=run_dir / "sim.log",
                    timescale=("1ns", "1ps"))  # fmt: skip
    return json.loads((run_dir / "results.json").read_text()) | {"log": str(run_dir / "sim.log")}
