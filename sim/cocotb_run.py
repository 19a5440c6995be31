"""One simulator process of the cocotb flow: the run directory, the cocotb runner, the outcome.

:func:`run_chunk` writes a run's files (:mod:`lstmfpga.sim.bench_files`) and the cocotb test
module into a fresh run directory under the build, starts the simulator through
``cocotb_tools.runner`` with the build of :mod:`lstmfpga.sim.cocotb_build`, and turns what
the bench wrote into result elements, stamps and cycles, or a bad status into one line. The
batch, its chunks and jobs are :func:`lstmfpga.sim.cocotb_flow.run_cocotb`'s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ..export.files import atomic_write, read_json, write_text
from .bench_files import read_run, write_run
from .bench_top import PERIOD_NS, RESET_CYCLES, TB_TOP, TIMESCALE
from .budget import CycleBudget, SimulationError
from .cocotb_build import Build, Design, last_error, tool_environment
from .stalls import StallPattern

__all__ = ["RUN_DIR_ENV", "SIM_PROCESS_ENV", "TEST_MODULE", "WAIT_ENV", "run_chunk"]

#: The cocotb test module, :mod:`lstmfpga.sim.cocotb_tb` copied into each run directory
#: under this top-level name (the directory first on the simulator's ``PYTHONPATH``):
#: imported as ``lstmfpga.sim.cocotb_tb`` it would import the ``lstmfpga`` package, and
#: with it NumPy, in every simulator process (0.13 s of its start-up).
TEST_MODULE = "lstmfpga_cocotb_tb"
_TEST_SOURCE = Path(__file__).with_name("cocotb_tb.py")
RUN_DIR_ENV = "LSTMFPGA_COCOTB_RUN_DIR"  # same as cocotb_tb.RUN_DIR_ENV (not imported: cocotb)
WAIT_ENV = "LSTMFPGA_COCOTB_WAIT_NS"  # cocotb_tb.WAIT_ENV
#: The simulator process's environment besides the run directory: no pytest assertion
#: rewriting of the imported modules (the test module asserts nothing; installing the hook
#: imports pytest's configuration machinery and compiles the modules imported after it).
#: With it and a test module that does not import lstmfpga (nor NumPy), a Verilator
#: process starts in about 0.25 s of CPU instead of 0.75 s.
SIM_PROCESS_ENV = {"COCOTB_REWRITE_ASSERTION_FILES": ""}


def run_chunk(
    build: Build,
    design: Design,
    lines: list,
    n_out: int,
    *,
    stalls: StallPattern,
    seed: int,
    budget: CycleBudget,
    first: int,
    sequences: int,
    waves: Path | None,
    keep_state: bool = False,
):
    """One simulator process over the sequences of input ``lines`` (sequences ``first ..``;
    ``n_out`` result elements each): ``(outputs, stamps, total_cycles, wall_seconds,
    info)``, stamps counted from this run's reset."""
    from cocotb_tools.runner import get_runner

    runs = build.directory / "runs"
    runs.mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
    codec = design.lines()
    B, n_out_lines = len(lines), codec.beats(n_out)
    write_run(
        run_dir, lines, n_out_lines, in_gaps=stalls.in_gaps, out_gaps=stalls.out_gaps,
        budget=budget.cycles, line_bits=codec.in_bits, keep_state=keep_state,
    )  # fmt: skip
    for name, text in design.hex_files.items():
        write_text(run_dir / name, text)
    shutil.copyfile(_TEST_SOURCE, run_dir / f"{TEST_MODULE}.py")
    test_args: list[str] = []
    trace_file = None
    runner = get_runner(build.simulator)
    _python_path_first(runner, run_dir)
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
    outcome = read_run(run_dir, codec.out_bits)
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
        raise _failed(build.simulator, outcome, failure, budget, n_out_lines, B, first=first,
                      sequences=sequences, seed=seed, log=run_dir / "sim.log")  # fmt: skip
    try:
        outputs = codec.decode(outcome.lines, B, n_out)
    except ValueError as error:
        raise SimulationError(
            f"{build.simulator} simulation (sequences {first}..{first + B - 1}): {error} "
            f"(seed {seed}; log: {run_dir / 'sim.log'})"
        ) from None
    if trace_file is not None:
        with open(trace_file, "rb") as source, atomic_write(waves) as target:
            shutil.copyfileobj(source, target)
    shutil.rmtree(run_dir, ignore_errors=True)
    return outputs, outcome.stamps.reshape(B, 4), outcome.total_cycles, wall, info


def _python_path_first(runner, directory: Path) -> None:
    """Put ``directory`` first on the ``PYTHONPATH`` the runner gives the simulator (it
    sets ``PYTHONPATH`` to this process's ``sys.path``, after ``extra_env``)."""
    original = runner._set_env_test

    def set_env_test():
        original()
        runner.env["PYTHONPATH"] = os.pathsep.join([str(directory), runner.env["PYTHONPATH"]])

    runner._set_env_test = set_env_test


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
