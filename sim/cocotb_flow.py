"""Run the accelerator's generated Verilog under cocotb 2.x with Icarus Verilog or Verilator.

:func:`run_cocotb` takes a design (an :class:`~lstmfpga.hw.accelerator.LSTMAccelerator`, or
the directory :func:`lstmfpga.hw.verilog.generate` wrote), input codes ``(B, T, I)`` and
returns the same :class:`~lstmfpga.sim.amaranth_sim.RunResult` as the Amaranth flow: the
``m_axis`` elements of every sequence and the cycle stamps of its handshakes.

How it runs:

* The test bench is Verilog (:mod:`lstmfpga.sim.bench_top`): the simulation top holds the
  design, its clock, the stimulus and the per-beat stall decisions (read with ``$readmemh``
  from files of the run directory, the :class:`~lstmfpga.sim.stalls.StallPattern` shared with
  the Amaranth flow), the capture of every result and cycle stamp, the protocol checks and
  the cycle budget. No Python runs per beat or per cycle: the cocotb test module
  :mod:`lstmfpga.sim.cocotb_tb`, started through ``cocotb_tools.runner.get_runner``, waits
  for the bench's ``done`` and records its status; the flow reads the results files (one
  simulator process: :mod:`lstmfpga.sim.cocotb_run`).
* Builds are cached by content (:func:`lstmfpga.sim.cocotb_build.prepare`; the cache, its
  key and the tools' environment are described there).
* ``$readmemh`` designs: the ``.hex`` files are copied into each run directory (the
  simulator's working directory), where the Verilog's relative file names resolve.
* Long runs can be split into chunks of sequences, each a separate simulator process reusing
  the build, run ``jobs`` at a time; cycle stamps continue across chunks and are the same
  as in one run (sequences do not overlap; see :mod:`lstmfpga.sim.stalls`).
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..progress import ProgressBar
from . import icarus_opt
from .amaranth_sim import RunResult, SequenceCycles
from .bench_top import (
    CAPACITIES,
    port_widths,
)
from .budget import CycleBudget, SimulationError
from .cocotb_build import (
    BUILD_MARKER,
    COCOTB_SIMULATORS,
    Build,
    Design,
    check_fst_headers,
    check_simulator,
    default_cache_dir,
    has_build,
    prepare,
    simulator_version,
    wave_format,
)
from .cocotb_run import run_chunk
from .stalls import StallPattern
from .streams import pack_inputs

__all__ = [
    "BUILD_MARKER",
    "COCOTB_SIMULATORS",
    "Build",
    "Design",
    "ProgressBar",
    "check_simulator",
    "default_cache_dir",
    "prepare",
    "run_cocotb",
    "simulator_version",
]


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
    resets=None,
    keep_state: bool = False,
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
    Stream mode (a top with ``s_axis_tuser`` and ``keep_state``), as in
    :func:`~lstmfpga.sim.amaranth_sim.run_amaranth`: ``keep_state`` drives the design's input
    of that name for the whole run (which then is one simulator process: the state goes from
    each sequence to the next), ``resets`` ``(B, T)`` (booleans, default none) sets
    ``s_axis_tuser`` on the first element of step ``t`` of sequence ``b``.

    Returns a :class:`RunResult`; ``meta`` holds ``simulator``, ``simulator_version``,
    ``build`` (directory, cached, seconds), ``chunks``, ``jobs`` and ``process_seconds``
    (the chunks' simulator processes added up); ``wall_seconds`` is the wall time of the
    simulation runs (not the build).
    """
    waves_kind, jobs = _checked_options(simulator, in_stall, out_stall, waves, jobs)
    design = Design.of(design)
    x_codes = _checked_codes(design, x_codes)
    B, T, _ = x_codes.shape
    lines, n_out, n_out_lines = _encoded(design, x_codes, h0, c0, resets, keep_state)
    n_in = len(lines[0])
    compute = design.compute(T) if design.compute else None
    cycles = None if compute is None else B * (compute + n_in + n_out_lines)
    build, optimize = _build(design, simulator, waves_kind, build_dir, cycles)
    progress = ProgressBar(simulator) if progress is True else (progress or None)
    chunk_size = _chunk_size(
        chunk_size, B, n_in, n_out_lines, compute or 0,
        jobs=jobs, progress=progress is not None, whole=waves is not None or keep_state,
        capacities=CAPACITIES[simulator],
    )  # fmt: skip
    budget = CycleBudget.of(
        compute, n_in, n_out_lines, in_stall=in_stall, out_stall=out_stall,
        override=cycle_budget,
    )  # fmt: skip
    stalls = StallPattern.draw(
        B, n_in, n_out_lines, in_stall=in_stall, out_stall=out_stall, seed=seed
    )
    starts = list(range(0, B, chunk_size))

    def run(start: int):
        return run_chunk(
            build, design, lines[start : start + chunk_size], n_out,
            stalls=stalls.part(start, start + chunk_size), seed=seed, budget=budget,
            first=start, sequences=B, waves=Path(waves) if waves is not None else None,
            keep_state=keep_state,
        )  # fmt: skip

    results, wall = _run_chunks(run, starts, B, chunk_size, jobs, progress)
    result, product, process = _merged([results[start] for start in starts], wall)
    result.meta = {
        "simulator": simulator,
        "simulator_version": build.version,
        "simulator_product": product,
        "build": {"directory": str(build.directory), "cached": build.cached,
                  "seconds": round(build.seconds, 3), "optimized": optimize},
        "chunks": len(starts),
        "jobs": min(jobs, len(starts)),
        "process_seconds": round(process, 3),
        "cycle_budget": budget.cycles,
        "expected_cycles": budget.expected,
    }  # fmt: skip
    return result


def _encoded(design: Design, x_codes: np.ndarray, h0, c0, resets, keep_state: bool):
    """``(lines, n_out, n_out_lines)``: the bench's input lines of every sequence
    (:meth:`~lstmfpga.sim.bench_files.StreamLines.encode`), the result elements and lines
    of one sequence."""
    B, T, _ = x_codes.shape
    inputs = [pack_inputs(design.geometry, x_codes, b, h0, c0) for b in range(B)]
    n_out = design.geometry.output_length(T)
    codec = design.lines()
    lines = codec.encode(inputs, _users(design, inputs[0].size, T, resets, keep_state))
    return lines, n_out, codec.beats(n_out)


def _build(design: Design, simulator: str, waves: str | None, build_dir, cycles: int | None):
    """``(build, optimized)``: the build a run of ``cycles`` simulated cycles (None:
    unknown) uses, compiled from the optimized netlist (:mod:`lstmfpga.sim.icarus_opt`) if
    the run is long enough for Yosys to pay off or if that build exists already."""
    optimize = waves is None and icarus_opt.applicable(simulator, design)
    if optimize and not icarus_opt.worth_it(simulator, design, cycles):
        optimize = has_build(design, simulator, build_dir=build_dir, optimize=True)
    build = prepare(design, simulator, waves=waves, build_dir=build_dir, optimize=optimize)
    return build, optimize


def _users(design: Design, n_in: int, T: int, resets, keep_state: bool):
    """``s_axis_tuser`` per input element ``(B, n_in)`` from ``resets`` (on the first element
    of each step's ``x`` vector, as the Amaranth flow sets it), None without ``resets``; a
    ValueError for ``resets`` or ``keep_state`` on a top without those ports."""
    ports = port_widths(design)
    if keep_state and "keep_state" not in ports:
        raise ValueError(f"keep_state needs a stream-mode design (an input keep_state), not "
                         f"module {design.top!r}")  # fmt: skip
    if resets is None:
        return None
    resets = np.asarray(resets, dtype=bool)
    B = len(resets) if resets.ndim else 0
    if "s_axis_tuser" not in ports or resets.shape != (B, T):
        raise ValueError(
            f"resets must be a (batch, seq) array of a stream-mode design (an input "
            f"s_axis_tuser), not shape {resets.shape} for module {design.top!r} and {T} steps"
        )
    users = np.zeros((B, n_in), dtype=bool)
    input_size = design.geometry.input_size
    users[:, n_in - T * input_size + np.arange(T) * input_size] = resets
    return users


def _checked_options(simulator: str, in_stall, out_stall, waves, jobs) -> tuple:
    """``(waves format or None, jobs)`` after checking the options and the simulator (a
    ValueError or SimulationError naming the first wrong one)."""
    for name, value in (("in_stall", in_stall), ("out_stall", out_stall)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), not {value!r}")
    waves_kind = wave_format(waves)
    check_simulator(simulator)
    if simulator == "verilator" and waves_kind == "fst":
        check_fst_headers()
    if jobs is None:
        jobs = os.cpu_count() or 1
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    return waves_kind, jobs


def _checked_codes(design: Design, x_codes) -> np.ndarray:
    """``x_codes`` as int64 ``(B, T, input_size)`` with ``B, T >= 1``, else ValueError."""
    x_codes = np.asarray(x_codes, dtype=np.int64)
    if x_codes.ndim != 3 or x_codes.shape[2] != design.geometry.input_size:
        raise ValueError(
            f"x_codes must have shape (batch, seq, {design.geometry.input_size}), "
            f"not {x_codes.shape}"
        )
    if 0 in x_codes.shape:
        raise ValueError(f"x_codes must hold at least one sequence and step, not {x_codes.shape}")
    return x_codes


def _merged(chunks: list[tuple], wall: float) -> tuple[RunResult, str, float]:
    """One :class:`RunResult` (without ``meta``) from the chunks' ``_run_chunk`` results in
    order: outputs concatenated, stamps shifted to where each chunk starts in one
    uninterrupted run; with the simulator's product name and the chunks' process seconds."""
    outputs: list[np.ndarray] = []
    cycles: list[SequenceCycles] = []
    base, error, process = 0, False, 0.0
    info: dict = {}
    for got, stamps, total, seconds, info in chunks:
        outputs += got
        cycles += [SequenceCycles(*(int(v) + base for v in row)) for row in stamps]
        base += total
        process += seconds
        error = error or bool(info["error"])
    return RunResult(outputs, cycles, base, wall, error), info.get("simulator", ""), process


def _chunk_size(
    chunk_size, B: int, n_in: int, n_out: int, compute: int, *, jobs: int, progress: bool,
    whole: bool, capacities: tuple[int, int, int],
) -> int:  # fmt: skip
    """Sequences per simulator process: as asked (at most what the bench holds), else the
    whole batch split over ``jobs`` (and into about 10 chunks with progress, each ~2M cycles
    at least: a process takes ~0.5 s to start); ``whole`` (waves, or a state kept from
    sequence to sequence): one run."""
    in_cap, out_cap, seq_cap = capacities
    fits = min(in_cap // n_in, out_cap // max(n_out, 1), seq_cap)
    if fits < 1:
        raise ValueError(
            f"a sequence of {n_in} input and {n_out} output beats does not fit the "
            f"simulation bench ({in_cap} and {out_cap} at most)"
        )
    if chunk_size is None:
        least = math.ceil(2_000_000 / (compute + n_in + n_out))
        chunk_size = B if not progress else max(math.ceil(B / 10), least)
        chunk_size = min(chunk_size, math.ceil(B / jobs))
    if whole:
        chunk_size = B
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, not {chunk_size!r}")
    chunk_size = min(chunk_size, fits)
    if whole and chunk_size < B:
        raise ValueError(
            f"waves or keep_state: the batch must fit one run of at most {fits} sequences"
        )
    return chunk_size


def _run_chunks(run, starts: list[int], B: int, chunk_size: int, jobs: int, progress):
    """``run(start)`` for every chunk, ``jobs`` at a time: ``({start: result}, wall
    seconds)``. The first failing chunk's error is raised (the others are cancelled)."""
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
            except (SimulationError, ValueError, OSError) as error:
                failures[start] = error
                for other in futures:
                    other.cancel()
            done += min(chunk_size, B - start)
            if progress is not None and not failures:
                progress(done, B)
    if failures:
        raise failures[min(failures)]  # the first failing chunk, whatever finished first
    return results, time.perf_counter() - started
