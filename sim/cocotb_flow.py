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
  for the bench's ``done`` and records its status; the flow reads the results files.
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
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..export.files import atomic_write, read_json, write_text
from ..progress import ProgressBar
from .amaranth_sim import RunResult, SequenceCycles
from .bench_top import (
    IN_CAPACITY,
    OUT_CAPACITY,
    PERIOD_NS,
    RESET_CYCLES,
    SEQ_CAPACITY,
    TB_TOP,
    TIMESCALE,
    port_width,
    read_run,
    top_ports,
    write_run,
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
    last_error,
    prepare,
    simulator_version,
    tool_environment,
    wave_format,
)
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

TEST_MODULE = "lstmfpga.sim.cocotb_tb"
RUN_DIR_ENV = "LSTMFPGA_COCOTB_RUN_DIR"  # same as cocotb_tb.RUN_DIR_ENV (not imported: cocotb)
WAIT_ENV = "LSTMFPGA_COCOTB_WAIT_NS"  # cocotb_tb.WAIT_ENV
#: The simulator process's environment besides the run directory: no pytest assertion
#: rewriting of the imported modules (the test module asserts nothing; installing the hook
#: imports pytest's configuration machinery and compiles the modules imported after it).
#: With it and a test module that does not import lstmfpga (nor NumPy), a Verilator
#: process starts in about 0.25 s of CPU instead of 0.75 s.
SIM_PROCESS_ENV = {"COCOTB_REWRITE_ASSERTION_FILES": ""}


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
    ports = {name: port_width(width) for _, width, name in top_ports(design.verilog, design.top)}
    B = len(inputs)
    write_run(
        run_dir, inputs, n_out, in_gaps=stalls.in_gaps, out_gaps=stalls.out_gaps,
        budget=budget.cycles, input_bits=ports["s_axis_tdata"],
    )  # fmt: skip
    for name, text in design.hex_files.items():
        write_text(run_dir / name, text)
    test_args: list[str] = []
    trace_file = None
    runner = get_runner(build.simulator)
    if waves is not None:
        trace_file = run_dir / f"waves.{build.waves}"
        if build.simulator == "verilator":
            test_args = ["--trace-file", str(trace_file)]
        elif build.waves == "vcd":
            _icarus_vcd(runner)
    started = time.perf_counter()
    failure = None
    with tool_environment(build.simulator):
        try:
            runner.test(
                test_module=TEST_MODULE,
                hdl_toplevel=TB_TOP,
                hdl_toplevel_lang="verilog",
                build_dir=build.directory,
                test_dir=run_dir,
                extra_env={RUN_DIR_ENV: str(run_dir), **SIM_PROCESS_ENV, **_wait_env(budget, B)},
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
    outcome = read_run(run_dir, ports["m_axis_tdata"])
    if not info_path.is_file() or outcome is None:
        raise SimulationError(
            f"{build.simulator} run failed ({failure or 'no results'}): "
            f"{last_error(run_dir / 'sim.log')} (log: {run_dir / 'sim.log'})"
        )
    info = read_json(info_path, f"{build.simulator} results")
    status = outcome.status
    if info.get("status") != status:
        raise SimulationError(
            f"{build.simulator} run failed: the bench's status files disagree "
            f"({info.get('status')!r} vs {status!r}); log: {run_dir / 'sim.log'}"
        )
    if status != "ok" or failure:
        if status == "timeout":
            shutil.rmtree(run_dir, ignore_errors=True)
        raise _failed(build.simulator, outcome, failure, budget, n_out, B, first=first,
                      sequences=sequences, seed=seed, log=run_dir / "sim.log")  # fmt: skip
    flat = outcome.outputs
    outputs = [flat[b * n_out : (b + 1) * n_out].copy() for b in range(B)]
    if trace_file is not None:
        with open(trace_file, "rb") as source, atomic_write(waves) as target:
            shutil.copyfileobj(source, target)
    shutil.rmtree(run_dir, ignore_errors=True)
    return outputs, outcome.stamps.reshape(B, 4), outcome.total_cycles, wall, info


def _wait_env(budget: CycleBudget, B: int) -> dict[str, str]:
    """When the cocotb test first looks at ``done`` and how often after that
    (:data:`WAIT_ENV`): at 63/64 of the cycles the cycle model expects for the ``B``
    sequences, then every 1/256 of them (at least 1,024 cycles): the run simulates at most
    that much past its end, and Python wakes a few times. Without a cycle model, on
    ``done``'s rising edge."""
    if budget.expected is None:
        return {}
    expected = (RESET_CYCLES + B * budget.expected) * PERIOD_NS
    return {WAIT_ENV: f"{expected * 63 // 64},{max(1024 * PERIOD_NS, expected // 256)}"}


def _failed(simulator: str, outcome, failure, budget: CycleBudget, n_out: int, B: int, *,
            first: int, sequences: int, seed: int, log: Path) -> SimulationError:  # fmt: skip
    """The one-line error of a run that did not end ``"ok"`` (``outcome.sequence`` counts
    from the chunk's ``first``)."""
    status, bad_seq, bad_elem = outcome.status, first + outcome.sequence, outcome.element
    where = f"seed {seed}; log: {log}"
    if status == "timeout":
        return budget.stuck(
            simulator=simulator, sequence=bad_seq, sequences=sequences, received=bad_elem,
            expected_outputs=n_out, waited=outcome.waited, seed=seed,
        )  # fmt: skip
    if status == "tlast":
        return SimulationError(
            f"{simulator} simulation: sequence {bad_seq}: tlast wrong at output element "
            f"{bad_elem} of {n_out} ({where})"
        )
    if status == "x":
        return SimulationError(
            f"{simulator} simulation: sequence {bad_seq}: X/Z on m_axis at output element "
            f"{bad_elem} of {n_out} ({where})"
        )
    if status == "extra":
        return SimulationError(
            f"{simulator} simulation: a result beat after the last expected one "
            f"(sequence {first + B - 1} had all {n_out}) ({where})"
        )
    return SimulationError(f"{simulator} run failed ({status}, {failure}); {where}")


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
    waves_kind, jobs = _checked_options(simulator, in_stall, out_stall, waves, jobs)
    design = Design.of(design)
    x_codes = _checked_codes(design, x_codes)
    B, T, _ = x_codes.shape
    build = prepare(design, simulator, waves=waves_kind, build_dir=build_dir)
    geom = design.geometry
    inputs = [pack_inputs(geom, x_codes, b, h0, c0) for b in range(B)]
    n_in, n_out = inputs[0].size, geom.output_length(T)
    if progress is True:
        progress = ProgressBar(f"{simulator}")
    elif progress is False:
        progress = None
    compute = design.compute(T) if design.compute else None
    chunk_size = _chunk_size(
        chunk_size, B, n_in, n_out, compute or 0,
        jobs=jobs, progress=progress is not None, waves=waves is not None,
    )  # fmt: skip
    budget = CycleBudget.of(
        compute, n_in, n_out, in_stall=in_stall, out_stall=out_stall, override=cycle_budget
    )
    stalls = StallPattern.draw(B, n_in, n_out, in_stall=in_stall, out_stall=out_stall, seed=seed)
    starts = list(range(0, B, chunk_size))

    def run(start: int):
        return _run_chunk(
            build, design, inputs[start : start + chunk_size], n_out,
            stalls=stalls.part(start, start + chunk_size), seed=seed, budget=budget,
            first=start, sequences=B, waves=Path(waves) if waves is not None else None,
        )  # fmt: skip

    results, wall = _run_chunks(run, starts, B, chunk_size, jobs, progress)
    result, product, process = _merged([results[start] for start in starts], wall)
    result.meta = {
        "simulator": simulator,
        "simulator_version": build.version,
        "simulator_product": product,
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
    }
    return result


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
    waves: bool,
) -> int:  # fmt: skip
    """Sequences per simulator process: as asked (at most what the bench holds), else the
    whole batch split over ``jobs`` (and into about 10 chunks with progress, each ~2M cycles
    at least: a process takes ~0.5 s to start); with waves one run."""
    fits = min(IN_CAPACITY // n_in, OUT_CAPACITY // max(n_out, 1), SEQ_CAPACITY)
    if fits < 1:
        raise ValueError(
            f"a sequence of {n_in} input and {n_out} output elements does not fit the "
            f"simulation bench ({IN_CAPACITY} and {OUT_CAPACITY} at most)"
        )
    if chunk_size is None:
        least = math.ceil(2_000_000 / (compute + n_in + n_out))
        chunk_size = B if not progress else max(math.ceil(B / 10), least)
        chunk_size = min(chunk_size, math.ceil(B / jobs))
    if waves:
        chunk_size = B
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, not {chunk_size!r}")
    chunk_size = min(chunk_size, fits)
    if waves and chunk_size < B:
        raise ValueError(f"waves: the batch must fit one run of at most {fits} sequences")
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
