"""Verilator's lint of generated Verilog (``-Wall``, with the project's waivers).

The waivers (``hw/verilator_waivers.vlt``, :data:`lstmfpga.sim.bench_build.WAIVERS`) are the
documented ones every simulator build uses too; a design is lint-clean when Verilator exits
0 and prints no ``%Warning``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .bench_build import WAIVERS
from .cocotb_build import check_simulator, tool_environment

__all__ = ["verilator_lint"]


def verilator_lint(folder: str | Path, top: str = "lstm_accel") -> str:
    """``verilator --lint-only -Wall`` with the waivers on ``folder/top.v`` (top module
    ``top``): ``""`` when it is lint-clean, else what Verilator printed. Raises
    :class:`~lstmfpga.errors.SimulationError` (one line) when Verilator is not available."""
    check_simulator("verilator")
    with tool_environment("verilator"):
        lint = subprocess.run(
            [shutil.which("verilator"), "--lint-only", "-Wall", str(WAIVERS), f"{top}.v",
             "--top-module", top],
            cwd=folder, capture_output=True, text=True,
        )  # fmt: skip
    if lint.returncode == 0 and "%Warning" not in lint.stderr:
        return ""
    return lint.stderr or f"verilator exited with {lint.returncode}"
