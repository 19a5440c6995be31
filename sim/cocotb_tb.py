"""The cocotb test module that starts a run of the Verilog test bench and checks its flags.

Run by :mod:`lstmfpga.sim.cocotb_flow` (never imported by it): the flow writes the run's
files (``config.hex``, ``inputs.hex``, ``in_gaps.hex``, ``out_gaps.hex``) and a copy of this
module (as the top-level module ``lstmfpga_cocotb_tb``, so that the simulator's Python does
not import the ``lstmfpga`` package and NumPy with it) into a run directory, the
simulator's working directory, named in :data:`RUN_DIR_ENV`. It imports nothing but cocotb
and the standard library.

Everything per cycle and per beat happens in Verilog (:func:`lstmfpga.sim.bench_top.wrapper`:
stimulus, stalls, capture, cycle stamps, protocol and budget checks); Python wakes to
start, and then only to look at ``done``: from just before the end the cycle model expects
(the times the flow passes in :data:`WAIT_ENV`: with only a timer pending, the Verilator
model's main loop runs the clock without waking cocotb), else on its rising edge. It then
reads the bench's ``status`` flag and the design's sticky ``error`` port and writes
``results.json``: ``status`` (``"ok"``, ``"timeout"``, ``"tlast"``, ``"x"`` or ``"extra"``,
see :data:`lstmfpga.sim.bench_files.STATUS`), ``error``, ``simulator``,
``simulator_version``.
The results themselves (``outputs.txt``, ``stamps.txt``, ``status.txt``) were written by the
bench. The test passes whatever the design does: the flow turns a bad status into one line.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge, Timer

#: Environment variable holding the run directory (set by the flow).
RUN_DIR_ENV = "LSTMFPGA_COCOTB_RUN_DIR"
#: Environment variable with ``"FIRST,STEP"`` (nanoseconds of simulated time): look at
#: ``done`` first after FIRST, then every STEP, instead of a value-change callback on it.
WAIT_ENV = "LSTMFPGA_COCOTB_WAIT_NS"
_STATUS = {1: "ok", 2: "timeout", 3: "tlast", 4: "x", 5: "extra"}


@cocotb.test()
async def stream_sequences(dut):
    """Wait for the Verilog bench to finish; record its status flag."""
    run_dir = Path(os.environ[RUN_DIR_ENV])
    await _until_done(dut)
    try:
        status = _STATUS.get(int(dut.status.value), "unknown")
    except ValueError:  # X/Z
        status = "unknown"
    try:
        error = bool(dut.error.value)
    except ValueError:  # X/Z: not expected after reset
        error = True
    info = {
        "status": status,
        "error": error,
        "simulator": cocotb.SIM_NAME,
        "simulator_version": cocotb.SIM_VERSION,
    }
    _write_json(run_dir / "results.json", info)


async def _until_done(dut) -> None:
    """Return once ``done`` is high. With :data:`WAIT_ENV` set, by looking at it at times
    (no callback runs while the design does: a value-change callback is checked by the
    simulator on every time step); else on its rising edge."""
    wait = os.environ.get(WAIT_ENV)
    if not wait:
        await RisingEdge(dut.done)
        return
    first, step = (int(v) for v in wait.split(","))
    await Timer(first, "ns")
    while not _high(dut.done):
        await Timer(step, "ns")


def _high(signal) -> bool:
    try:
        return bool(signal.value)
    except ValueError:  # X/Z
        return False


def _write_json(path: Path, value: dict) -> None:
    """``lstmfpga.export.files.write_json``'s temp file and rename, without importing
    ``lstmfpga`` (and so NumPy, whose import and idle BLAS threads would cost every simulator
    process a share of its start-up)."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(value, file, indent=2)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
