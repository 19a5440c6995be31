"""Every benchmark script still runs (at its smoke size, printing only)."""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.sweep import LARGE

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))


def test_there_are_benchmarks():
    assert {"bench_quant.py", "bench_cycles.py", "bench_sim.py", "bench_synth.py"} <= set(SCRIPTS)


#: Scripts whose smoke run synthesizes (tens of seconds each): with LSTMFPGA_SWEEP=large only,
#: for CI's budget; tests/e2e/test_synth.py and test_explore.py run the same flows.
SYNTHESIZING = {"bench_explore.py", "bench_synth.py"}
SMOKED = [s for s in SCRIPTS if s not in SYNTHESIZING or LARGE]


@pytest.mark.parametrize("script", SMOKED)
def test_benchmark_runs_at_smoke_size(script, tmp_path):
    results = tmp_path / "RESULTS.md"
    before = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert results.is_file() and "--smoke" in results.read_text()
    assert (ROOT / "benchmarks" / "RESULTS.md").read_text() == before  # smoke never writes it
