"""The cocotb test module that starts a run of the Verilog test bench and checks its flags.

Run by :mod:`lstmfpga.sim.cocotb_flow` (never imported by it): the flow writes the run's
files (``config.hex``, ``inputs.hex``, ``in_gaps.hex``, ``out_gaps.hex``) into a run
directory, the simulator's working directory, named in :data:`RUN_DIR_ENV`.

Everything per cycle and per beat happens in Verilog (:func:`lstmfpga.sim.bench_top.wrapper`:
stimulus, stalls, capture, cycle stamps, protocol and budget checks); Python wakes twice:
to start, and when the bench raises ``done``. It then reads the bench's ``status`` flag and
the design's sticky ``error`` port and writes ``results.json``: ``status`` (``"ok"``,
``"timeout"``, ``"tlast"``, ``"x"`` or ``"extra"``, see
:data:`lstmfpga.sim.bench_top.STATUS`), ``error``, ``simulator``, ``simulator_version``.
The results themselves (``outputs.hex``, ``stamps.hex``, ``status.hex``) were written by the
bench. The test passes whatever the design does: the flow turns a bad status into one line.
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge

from lstmfpga.export.files import write_json

#: Environment variable holding the run directory (set by the flow).
RUN_DIR_ENV = "LSTMFPGA_COCOTB_RUN_DIR"
_STATUS = {1: "ok", 2: "timeout", 3: "tlast", 4: "x", 5: "extra"}


@cocotb.test()
async def stream_sequences(dut):
    """Wait for the Verilog bench to finish; record its status flag."""
    run_dir = Path(os.environ[RUN_DIR_ENV])
    await RisingEdge(dut.done)
    try:
        status = _STATUS.get(int(dut.status.value), "unknown")
    except ValueError:  # X/Z
        status = "unknown"
    try:
        error = bool(dut.error.value)
    except ValueError:  # X/Z: not expected after reset
        error = True
    write_json(
        run_dir / "results.json",
        {
            "status": status,
            "error": error,
            "simulator": cocotb.SIM_NAME,
            "simulator_version": cocotb.SIM_VERSION,
        },
    )
