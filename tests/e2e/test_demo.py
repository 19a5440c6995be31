"""The README's main command works: the demo flow is bit-exact and keeps the accuracy.

Runs the demo's pipeline without synthesis (``tests/e2e/test_synth.py`` covers Yosys and
nextpnr) on every digits test image in Verilator and two images in Amaranth's simulator.
"""

import json
import time
from pathlib import Path

import pytest

from lstmfpga.cli import main
from lstmfpga.pipeline import run_demo, summary


def test_demo_flow_is_bit_exact_and_keeps_accuracy(tmp_path):
    result = run_demo(tmp_path / "demo", synthesize=False, amaranth_sequences=2, log=lambda _: 0)
    report = result.report
    assert report["bit_exact"] is True
    assert report["outputs"]["mismatched"] == 0
    assert report["cross_checks"][0]["bit_exact"] is True
    acc = report["accuracy"]
    assert acc["float"] > 0.90  # the model learned the task
    assert acc["float"] - acc["fixed"] <= 0.005  # q16 loses at most 0.5 points
    assert acc["rtl"] == acc["fixed"]  # bit-exact hardware: identical decisions
    assert report["cycles"]["model_exact"] is True
    for name in ("report", "html"):
        assert result.paths[name].is_file()
    assert (result.paths["verilog"] / "lstm_accel.v").is_file()
    # one sequence buffer: the flow sends one sequence at a time (run_demo's docstring)
    design = json.loads((result.paths["verilog"] / "manifest.json").read_text())
    assert design.get("buffers", 1) == 1  # the manifest leaves the key out for one buffer
    assert json.loads(result.paths["report"].read_text())["bit_exact"] is True
    assert "bit-exact: yes" in summary(report)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--lanes", "129"],
            "--lanes for the digits model (hidden_size 32): lanes must be in 1..128",
        ),
        (
            ["--lanes", "256"],
            "--lanes for the digits model (hidden_size 32): lanes must be in 1..128",
        ),
        (["--lanes", "0"], "--lanes must be a positive integer, not 0"),
        (["--simd", "0"], "--simd for the digits model (hidden_size 32): simd must be in 1..40"),
        (["--simd", "41"], "--simd for the digits model (hidden_size 32): simd must be in 1..40"),
        (["--cells", "0"], "--cells for the digits model must be in 1..32 (hidden_size), not 0"),
        (["--cells", "33"], "--cells for the digits model must be in 1..32 (hidden_size), not 33"),
        (["--out", "{tmp}/file"], "--out {tmp}/file must be a directory, not an existing file"),
        (
            ["--out", "{tmp}/taken"],
            "--out {tmp}/taken/spec holds a 'lstmfpga.qmodel' artifact, not 'lstmfpga.spec'",
        ),
    ],
)
def test_demo_command_line_refuses_bad_options_before_training(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "taken" / "spec").mkdir(parents=True)
    (tmp_path / "taken" / "spec" / "manifest.json").write_text('{"format": "lstmfpga.qmodel"}')
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "demo")]
    started = time.perf_counter()
    assert main(["demo", *argv, "--no-synth"]) == 2
    assert time.perf_counter() - started < 20  # refused before training and simulation
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lstmfpga: error: {message.format(tmp=tmp_path)}")
    assert not (tmp_path / "demo").exists()


def test_synthesis_is_reused_for_the_same_design(tmp_path, monkeypatch):
    """The demo's synthesis cache: a second synthesis of the same generated files copies the
    first one's result and files back instead of running the tools; a changed design or a
    damaged entry runs them again."""
    from lstmfpga import pipeline, synth

    design = tmp_path / "verilog"
    design.mkdir()
    (design / "manifest.json").write_text('{"files": ["top.v"]}')
    (design / "top.v").write_text("module top; endmodule\n")
    calls = []

    def fake_synthesize(outdir, target="ecp5", progress=None):
        calls.append(target)
        (Path(outdir) / "top_ecp5.json").write_text(f"netlist {len(calls)}")
        return {"target": target, "luts": 100 + len(calls)}

    monkeypatch.setattr(synth, "synthesize", fake_synthesize)
    monkeypatch.setenv("LSTMFPGA_SYNTH_CACHE", str(tmp_path / "cache"))
    first = pipeline.cached_synthesis(design)
    assert first == {"target": "ecp5", "luts": 101, "cached": False} and len(calls) == 1
    (design / "top_ecp5.json").unlink()
    again = pipeline.cached_synthesis(design)
    assert again == {"target": "ecp5", "luts": 101, "cached": True} and len(calls) == 1
    assert (design / "top_ecp5.json").read_text() == "netlist 1"  # the files come back
    (design / "top.v").write_text("module top; wire w; endmodule\n")
    assert pipeline.cached_synthesis(design)["luts"] == 102 and len(calls) == 2
    for entry in (tmp_path / "cache").iterdir():
        (entry / "result.json").write_text("{not json")
    assert pipeline.cached_synthesis(design)["cached"] is False and len(calls) == 3
