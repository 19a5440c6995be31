# amaranth: UnusedElaboratable=no
"""Generated Verilog: lint-clean in Verilator -Wall (with the documented waivers), accepted by
Icarus, memories externalized to $readmemh files, and a manifest that tells the truth."""

import json
import subprocess

import pytest
from helpers.imports import heavy_imports

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.hw.manifest import MANIFEST_VERSION, Manifest, ManifestError
from lstmfpga.hw.stream_geometry import StreamGeometry
from lstmfpga.hw.verilog import build_manifest, generate
from lstmfpga.sim.cocotb_build import check_simulator
from lstmfpga.sim.lint import verilator_lint
from lstmfpga.testing import random_qmodel

# Edge geometries: sizes of one, odd sizes, every optional part on and off.
GEOMETRIES = {
    "I1-H1-P4": (dict(input_size=1, hidden_size=1), 4),
    "I1-H1-P1": (dict(input_size=1, hidden_size=1, head="last", head_out=1), 1),
    "odd-P2-all": (dict(input_size=3, hidden_size=5, head="all", head_out=3), 2),
    "bidir-proj-3layers": (
        dict(input_size=2, hidden_size=4, num_layers=3, bidirectional=True, proj_size=3),
        8,
    ),
    "nobias-P4H": (dict(input_size=4, hidden_size=8, bias=False, head="last"), 32),
}


@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("options", [{}, {"with_states": True, "initial_state": True}])
def test_verilog_is_lint_clean_and_accepted_by_icarus(name, options, tmp_path):
    kwargs, lanes = GEOMETRIES[name]
    _, q = random_qmodel(3, **kwargs)
    generate(q, tmp_path, lanes=lanes, max_seq_len=3, **options)
    problems = verilator_lint(tmp_path)
    assert problems == "", problems[:3000]
    check_simulator("icarus")
    icarus = subprocess.run(
        ["iverilog", "-g2005", "-o", "a.out", "lstm_accel.v"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert icarus.returncode == 0, icarus.stderr[:3000]


def test_verilator_lint_reports_what_the_waivers_do_not_cover(tmp_path):
    ports = "module top(input wire a, output wire y, output wire z);\n  assign y = a;\n"
    (tmp_path / "top.v").write_text(ports + "endmodule\n")  # z is never driven
    assert "%Warning-UNDRIVEN" in verilator_lint(tmp_path, "top")
    (tmp_path / "top.v").write_text(ports + "  assign z = ~a;\nendmodule\n")
    assert verilator_lint(tmp_path, "top") == ""


def test_readmemh_files_hold_the_memory_contents(tmp_path):
    _, q = random_qmodel(4, input_size=3, hidden_size=4, head="last")
    inline = generate(q, tmp_path / "inline", lanes=4, max_seq_len=4)
    external = generate(q, tmp_path / "ext", lanes=4, max_seq_len=4, memories="readmemh")
    text = (tmp_path / "ext" / "lstm_accel.v").read_text()
    hex_files = [f for f in external["files"] if f.endswith(".hex")]
    assert hex_files and all(f'$readmemh("{f}"' in text for f in hex_files)
    assert "initial begin" not in text
    weights = next(f for f in hex_files if f.endswith("weights_weights.hex"))
    words = (tmp_path / "ext" / weights).read_text().split()
    layout = LSTMAccelerator(q, lanes=4, max_seq_len=4).layout
    assert [int(w, 16) for w in words] == layout.packed_weights()
    assert inline["files"] == ["lstm_accel.v", "manifest.json", "manifest.md"]


def test_manifest_describes_the_design(tmp_path):
    _, q = random_qmodel(5, input_size=3, hidden_size=4, head="all", head_out=2)
    info = generate(q, tmp_path, lanes=2, max_seq_len=6)
    assert json.loads((tmp_path / "manifest.json").read_text())["top"] == "lstm_accel"
    ports = {p["name"]: p for p in info["ports"]}
    axis = [f"{side}_axis_t{sig}" for side in "sm" for sig in ("data", "valid", "ready", "last")]
    assert {"clk", "rst", *axis} <= set(ports)
    assert ports["s_axis_tdata"]["width"] == q.formats["x"].bits
    assert ports["m_axis_tdata"]["width"] == q.formats["head_out"].bits
    acc = LSTMAccelerator(q, lanes=2, max_seq_len=6)
    assert info["cycles"]["compute"]["6"] == CycleModel.of(acc).compute(6)
    assert info["multipliers"][0]["count"] == 2
    assert info["ram_bits"] == sum(m["width"] * m["depth"] for m in info["memories"])
    assert "| `m_axis_tlast` |" in (tmp_path / "manifest.md").read_text()


def test_bad_names_and_memory_modes_are_rejected(tmp_path):
    _, q = random_qmodel(6, input_size=2, hidden_size=2)
    with pytest.raises(ValueError, match="memories must be one of"):
        generate(q, tmp_path, lanes=4, memories="bram")
    with pytest.raises(ValueError, match="name must be a Verilog identifier"):
        generate(q, tmp_path, lanes=4, name="2fast")


def test_a_folder_with_an_earlier_design_keeps_only_the_new_one(tmp_path):
    _, q = random_qmodel(7, input_size=2, hidden_size=2, head="last")
    first = generate(q, tmp_path, lanes=4, max_seq_len=2, memories="readmemh", name="old")
    old_hex = [f for f in first["files"] if f.endswith(".hex")]
    assert old_hex and all((tmp_path / f).is_file() for f in old_hex)
    (tmp_path / "notes.txt").write_text("mine")  # not part of any design: left alone
    second = generate(q, tmp_path, lanes=4, max_seq_len=2, name="new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*second["files"], "notes.txt"])
    assert json.loads((tmp_path / "manifest.json").read_text())["top"] == "new"


def test_leftover_hex_files_of_the_same_top_are_removed(tmp_path):
    _, q = random_qmodel(7, input_size=2, hidden_size=2, head="last")
    generate(q, tmp_path, lanes=4, max_seq_len=2, memories="readmemh")
    (tmp_path / "lstm_accel_interrupted.hex").write_text("0\n")
    info = generate(q, tmp_path, lanes=4, max_seq_len=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(info["files"])
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporaries


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("file", "must be a directory, not an existing file"),
        ("qmodel", "holds a 'lstmfpga.qmodel' artifact, not a design"),
        ("bad-json", "existing manifest"),
        ("bad-files", "files must be a list of plain file names"),
    ],
)
def test_an_output_that_is_not_a_design_folder_is_refused_untouched(tmp_path, setup, message):
    _, q = random_qmodel(7, input_size=2, hidden_size=2)
    out = tmp_path / "out"
    if setup == "file":
        out.write_text("x")
    else:
        out.mkdir()
        manifest = {
            "qmodel": '{"format": "lstmfpga.qmodel"}',
            "bad-json": "{",
            "bad-files": '{"format": "lstmfpga.hardware", "files": ["../../etc/passwd"]}',
        }[setup]
        (out / "manifest.json").write_text(manifest)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=message):
        generate(q, out, lanes=4, max_seq_len=2)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_an_interrupted_write_leaves_no_manifest_beside_mixed_files(tmp_path, monkeypatch):
    _, q = random_qmodel(7, input_size=2, hidden_size=2, head="last")
    generate(q, tmp_path, lanes=4, max_seq_len=2)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lstmfpga.export.files.write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(q, tmp_path, lanes=2, max_seq_len=2)
    assert not (tmp_path / "manifest.json").exists()
    monkeypatch.undo()
    info = generate(q, tmp_path, lanes=2, max_seq_len=2)  # the folder heals
    assert json.loads((tmp_path / "manifest.json").read_text())["lanes"] == info["lanes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(info["files"])


def test_generate_cli_takes_simd_and_lists_p_times_s_multipliers(tmp_path, capsys):
    from lstmfpga.cli import main

    _, q = random_qmodel(3, input_size=3, hidden_size=4, head="last", head_out=2)
    q.save(tmp_path / "qm")
    out = tmp_path / "design"
    assert main(["generate", str(tmp_path / "qm"), "--lanes", "4", "--simd", "3",
                 "--max-seq-len", "4", "-o", str(out)]) in (0, None)  # fmt: skip
    info = json.loads((out / "manifest.json").read_text())
    assert (info["lanes"], info["simd"]) == (4, 3)
    assert info["multipliers"][0] == {"where": "matrix-vector unit lanes", "count": 12,
                                      "a_bits": 16, "b_bits": 16}  # fmt: skip
    acc = LSTMAccelerator(q, lanes=4, simd=3, max_seq_len=4)
    assert CycleModel.of(acc).to_dict().items() <= info["cycles"].items()
    assert "4 lanes x simd 3" in capsys.readouterr().out
    for simd, message in ((7, "--simd: simd must be in 1..7"), (8, "--simd: simd must be in 1..7"),
                          (0, "--simd must be a positive integer, not 0")):  # fmt: skip
        code = main(["generate", str(tmp_path / "qm"), "--simd", str(simd), "--lanes", "4",
                     "-o", str(tmp_path / f"bad{simd}")])  # fmt: skip
        if simd == 7:  # the longest row (I + H) is accepted
            assert code in (0, None)
            continue
        assert code == 2
        assert message in capsys.readouterr().err


# -- the manifest: typed, versioned, checked ----------------------------------------------------
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_the_manifest_stores_the_stream_geometry_and_the_exact_cycle_model(name, tmp_path):
    kwargs, lanes = GEOMETRIES[name]
    _, q = random_qmodel(3, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=5, with_states=True, initial_state=True)
    built = build_manifest(acc)
    built.replace(files=("lstm_accel.v", "manifest.json")).save(tmp_path / "manifest.json")
    loaded = Manifest.load(tmp_path)
    assert loaded == built.replace(files=("lstm_accel.v", "manifest.json"))
    assert loaded.geometry == StreamGeometry.of(q, with_states=True, initial_state=True)
    for T in range(1, 6):
        assert loaded.compute(T) == CycleModel.of(acc).compute(T)
        assert loaded.geometry.input_length(T) == acc.input_length(T)
        assert loaded.geometry.output_length(T) == acc.result_length(T)
    directions = {p.name: p.direction for p in loaded.ports}
    assert directions["s_axis_tdata"] == directions["m_axis_tready"] == "input"
    assert directions["m_axis_tdata"] == directions["s_axis_tready"] == "output"
    assert directions["busy"] == directions["error"] == "output"


@pytest.fixture(scope="module")
def manifest_dict():
    _, q = random_qmodel(5, input_size=3, hidden_size=4, head="all", head_out=2)
    return build_manifest(LSTMAccelerator(q, lanes=2, max_seq_len=6)).to_dict()


def _edited(info: dict, path: str, value):
    info = json.loads(json.dumps(info))
    *parents, key = path.split(".")
    target = info
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return info


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", "lstmfpga.qmodel", "format must be 'lstmfpga.hardware', not 'lstmfpga.qmodel'"),
        ("version", 1, "not 1 (written by an older lstmfpga): re-run lstmfpga generate"),
        ("version", 3, "version must be 2, not 3 (written by a newer lstmfpga): upgrade lstmfpga"),
        ("version", "2", "version must be 2, not '2'"),
        ("top", "2fast", "top must be a string matching"),
        ("lanes", 0, "lanes must be an integer >= 1, not 0"),
        ("with_states", "yes", "with_states must be true or false, not 'yes'"),
        ("stream.geometry.head_mode", "middle", "head_mode must be null, 'last' or 'all'"),
        ("stream.geometry.states", KeyError, "stream geometry: states is missing"),
        ("stream.geometry.input_size", 4, "the stream geometry must be the model's"),
        ("stream.output_format", "q7", "stream: output_format"),
        ("cycles.compute_per_step", -1, "compute_per_step must be an integer >= 0, not -1"),
        ("cycles.compute_first", KeyError, "cycles: compute_first is missing"),
        ("ports.2.direction", "inout", "port s_axis_tdata: direction must be one of"),
        ("ram_bits", 1, "ram_bits must be the memories'"),
        ("memory_files", "flash", "memory_files must be one of ('inline', 'readmemh')"),
        ("files", ["../x.v"], "files must be a list of plain file names"),
        ("model.head.mode", "middle", "model head: mode must be 'last' or 'all', not 'middle'"),
        ("formats.cell", 16, "formats: format of cell: must be a string, not 16"),
    ],
)  # fmt: skip
def test_a_bad_manifest_field_is_refused_in_one_line_naming_it(manifest_dict, path, value, message):
    with pytest.raises(ManifestError) as error:
        Manifest.from_dict(_edited(manifest_dict, path, value), "design/manifest.json")
    text = str(error.value)
    assert "\n" not in text and text.startswith("design/manifest.json") and message in text, text


def test_unknown_sections_are_kept_and_the_current_version_is_written(manifest_dict, tmp_path):
    info = manifest_dict | {"axi": {"element_bits": {"input": 16, "output": 16}}, "design_id": 7}
    loaded = Manifest.from_dict(info)
    recorded = {"quantization", "weight_formats"}  # what generate adds for host runtimes
    assert loaded.extra == {k: info[k] for k in recorded | {"axi", "design_id"}}
    assert loaded.extra["quantization"] == {"rounding": "half_even", "overflow": "saturate"}
    assert loaded.to_dict() == info and info["version"] == MANIFEST_VERSION
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        Manifest.load(tmp_path)


def test_the_manifest_module_imports_neither_amaranth_nor_torch():
    assert heavy_imports("lstmfpga.hw.manifest", "lstmfpga.hw.stream_geometry") == []
