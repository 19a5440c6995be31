"""``lstmfpga export`` / ``info`` / ``predict`` and the CLI's error contract.

* export → info → predict round trip equals the float64 reference (and PyTorch);
* every user error exits with code 2 and exactly one stderr line ``lstmfpga: error: ...``,
  no traceback; ``LSTMFPGA_DEBUG=1`` re-raises instead.
"""

import json
import pickle
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from export_models import TORCH_WARNINGS, make_model

from lstmfpga.cli import COMMANDS, main
from lstmfpga.export import reference
from lstmfpga.export.spec import ModelSpec, SpecError
from lstmfpga.export.torch_loader import from_module

pytestmark = [pytest.mark.filterwarnings(w) for w in TORCH_WARNINGS]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lstmfpga: error: "), err
    assert fragment in lines[0], err
    assert "Traceback" not in err


@pytest.fixture
def model_file(tmp_path):
    """A state_dict file of a 2-layer bidirectional LSTM with a Linear head (3 outputs)."""
    model = make_model(21, head="last", input_size=3, hidden_size=4, num_layers=2,
                       bidirectional=True, batch_first=True)  # fmt: skip
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture
def spec_dir(tmp_path, model_file, capsys):
    path = tmp_path / "spec"
    code, _, err = run_cli(capsys, "export", model_file[0], "-o", path)
    assert code == 0, err
    return path


def test_commands_are_registered_in_order(capsys):
    assert COMMANDS[:3] == ["export", "info", "predict"]
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    # a command's line is indented by 4 (its wrapped help text by more)
    listed = [m[1] for m in re.finditer(r"^ {4}(\S+)", out, re.MULTILINE)]
    # command modules are named like the command, with _ for - (pack_weights: pack-weights)
    assert listed == [name.replace("_", "-") for name in COMMANDS]


def test_no_command_prints_help_and_fails(capsys):
    code, _, err = run_cli(capsys)
    assert code == 2
    assert "usage: lstmfpga" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("export", "model.pt"),
            "lstmfpga export: the following arguments are required: -o/--output",
        ),
        (
            ("generate", "q", "--lanes", "abc", "-o", "x"),
            "argument --lanes: invalid int value: 'abc'",
        ),
        (("nosuchcommand",), "argument COMMAND: invalid choice: 'nosuchcommand'"),
        (("synth", "d", "--target", "asic"), "argument --target: invalid choice: 'asic'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(capsys, args, message):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lstmfpga: error: "), err
    assert message in err and err.rstrip().endswith("--help)")


@pytest.mark.parametrize("head", ["last", "all"])
def test_export_info_predict_round_trip(head, tmp_path, model_file, capsys):
    model_path, model = model_file
    spec_path = tmp_path / "spec"
    code, out, err = run_cli(capsys, "export", model_path, "--head", head, "-o", spec_path)
    assert code == 0, err
    assert f"on {head} timestep(s)" in out
    assert f"wrote {spec_path}" in out

    code, out, err = run_cli(capsys, "info", spec_path)
    assert code == 0, err
    assert "lstmfpga.spec artifact" in out
    assert "num_layers=2 bidirectional=True" in out
    assert f"parameters: {sum(p.numel() for p in model.parameters())}" in out
    assert "weight_hh_l1_reverse" in out

    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 7, 3)).astype(np.float32)
    h0 = rng.normal(size=(4, 3, 4))
    c0 = rng.normal(size=(4, 3, 4))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "init.npz", h0=h0, c0=c0)
    code, out, err = run_cli(
        capsys, "predict", spec_path, "--inputs", tmp_path / "x.npy", "-o", tmp_path / "y",
        "--states", tmp_path / "s", "--h0c0", tmp_path / "init.npz",
    )  # fmt: skip
    assert code == 0, err
    y = np.load(tmp_path / "y")  # written to exactly the path given
    with np.load(tmp_path / "s") as states:
        h_n, c_n = states["h_n"], states["c_n"]

    expected = reference.forward(ModelSpec.load(spec_path), x, h0, c0)
    assert y.shape == ((3, 3) if head == "last" else (3, 7, 3))
    assert np.array_equal(y, expected.head)
    assert np.array_equal(h_n, expected.h_n) and np.array_equal(c_n, expected.c_n)

    with torch.no_grad():  # and PyTorch agrees
        model = model.double()
        seq, (_, tc) = model.lstm(
            torch.from_numpy(x).double(), (torch.from_numpy(h0), torch.from_numpy(c0))
        )
        out_t = model.fc(seq[:, -1] if head == "last" else seq).numpy()
    assert np.max(np.abs(y - out_t)) <= 1e-9
    assert np.max(np.abs(c_n - tc.numpy())) <= 1e-9


def test_predict_without_head_writes_the_output_sequence(tmp_path, capsys):
    lstm = make_model(2, input_size=2, hidden_size=3, proj_size=2, bidirectional=True)
    spec = from_module(lstm).save(tmp_path / "spec")
    x = np.random.default_rng(0).normal(size=(2, 5, 2))
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(
        capsys, "predict", spec, "--inputs", tmp_path / "x.npy", "-o", tmp_path / "y.npy"
    )
    assert code == 0, err
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (2, 5, 4)
    assert np.array_equal(y, reference.forward(ModelSpec.load(spec), x).output)


def test_info_on_model_files(tmp_path, model_file, capsys):
    path, model = model_file
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert "PyTorch state_dict file" in out
    assert "head: Linear(8 -> 3, bias=True) on last timestep(s)" in out
    torch.jit.script(model).save(str(tmp_path / "model.ts"))
    code, out, err = run_cli(capsys, "info", tmp_path / "model.ts")
    assert code == 0, err
    assert "PyTorch torchscript file" in out
    assert "source: TorchScript archive model.ts" in out


def _write_inputs(tmp_path, name, value):
    path = tmp_path / name
    if isinstance(value, bytes):
        path.write_bytes(value)
    else:
        np.save(path, value, allow_pickle=True)
    return path


BAD_INPUTS = {
    "wrong rank": (np.zeros((2, 3)), "inputs must have shape (batch, seq, features), not (2, 3)"),
    "wrong features": (np.zeros((2, 4, 5)), "inputs have 5 features, the model expects 3"),
    "complex dtype": (np.zeros((2, 4, 3), complex), "inputs must be a float array, not dtype"),
    "bool dtype": (np.zeros((2, 4, 3), bool), "inputs must be a float array, not dtype bool"),
    "NaN": (np.full((1, 2, 3), np.nan), "inputs contain non-finite values (NaN or Inf)"),
    "empty sequence": (np.zeros((1, 0, 3)), "at least one sequence and one timestep"),
    "text file": (b"1 2 3\n", "not a NumPy file"),
    "pickled objects": (np.array([{"a": 1}], dtype=object), "object arrays (pickles) are refused"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_predict_bad_inputs_fail_with_one_line(name, tmp_path, spec_dir, capsys):
    value, fragment = BAD_INPUTS[name]
    x = _write_inputs(tmp_path, "x.npy", value)
    code, _, err = run_cli(capsys, "predict", spec_dir, "--inputs", x, "-o", tmp_path / "y.npy")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "y.npy").exists()


def test_predict_bad_files_fail_with_one_line(tmp_path, spec_dir, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 2, 3)))
    y = tmp_path / "y.npy"
    cases = [
        (("--inputs", tmp_path / "missing.npy"), "--inputs", "missing.npy: no such file"),
        (("--inputs", tmp_path), "--inputs", "is a directory"),
        (("--inputs", spec_dir / "tensors.npz"), "--inputs", "not a zip/.npz archive"),
        (("--inputs", x, "--h0c0", x), "--h0c0", "must be an .npz archive"),
        (("--inputs", x, "--h0c0", spec_dir / "tensors.npz"), "--h0c0",
         "must hold arrays ['h0', 'c0']"),
    ]  # fmt: skip
    for args, _, fragment in cases:
        code, _, err = run_cli(capsys, "predict", spec_dir, *args, "-o", y)
        assert_one_line_error(code, err, fragment)

    np.savez(tmp_path / "init.npz", h0=np.zeros((4, 1, 3)), c0=np.zeros((4, 1, 4)))
    code, _, err = run_cli(
        capsys, "predict", spec_dir, "--inputs", x, "--h0c0", tmp_path / "init.npz", "-o", y
    )
    assert_one_line_error(code, err, "h0 must have shape (4, 1, 4), not (4, 1, 3)")

    code, _, err = run_cli(capsys, "predict", tmp_path / "nowhere", "--inputs", x, "-o", y)
    assert_one_line_error(code, err, "nowhere: no such file or directory")
    code, _, err = run_cli(capsys, "predict", spec_dir, "--inputs", x, "-o", tmp_path / "no/y")
    assert_one_line_error(code, err, str(tmp_path / "no"))
    assert "no such directory" in err.lower() or "no such file or directory" in err.lower()


def test_unknown_artifact_format_fails_with_one_line(tmp_path, spec_dir, capsys):
    manifest = json.loads((spec_dir / "manifest.json").read_text())
    manifest["format"] = "lstmfpga.future"
    (spec_dir / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "info", spec_dir)
    assert_one_line_error(code, err, "unknown artifact format 'lstmfpga.future'")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 2, 3)))
    code, _, err = run_cli(capsys, "predict", spec_dir, "--inputs", x, "-o", tmp_path / "y.npy")
    assert_one_line_error(code, err, "cannot predict with a 'lstmfpga.future' artifact")


def test_spec_version_mismatch_fails_with_one_line(tmp_path, spec_dir, capsys):
    manifest = json.loads((spec_dir / "manifest.json").read_text())
    manifest["version"] = 99
    (spec_dir / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "info", spec_dir)
    assert_one_line_error(code, err, "lstmfpga.spec version 99 is not supported")


class WritesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_export_errors_fail_with_one_line(tmp_path, capsys):
    out = tmp_path / "spec"
    code, _, err = run_cli(capsys, "export", tmp_path / "missing.pt", "-o", out)
    assert_one_line_error(code, err, "missing.pt: no such file")

    marker = tmp_path / "marker"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": WritesMarker(marker)}))
    code, _, err = run_cli(capsys, "export", tmp_path / "evil.pt", "-o", out)
    assert_one_line_error(code, err, "refused: not a plain state_dict")
    assert not marker.exists()

    torch.save(make_model(0, input_size=2, hidden_size=2), tmp_path / "whole.pt")
    code, _, err = run_cli(capsys, "export", tmp_path / "whole.pt", "-o", out)
    assert_one_line_error(code, err, "refused: a whole pickled nn.Module")

    torch.save(torch.nn.GRU(2, 3).state_dict(), tmp_path / "gru.pt")
    code, _, err = run_cli(capsys, "export", tmp_path / "gru.pt", "--cell", "lstm", "-o", out)
    assert_one_line_error(code, err, "a GRU?")

    lstm_only = make_model(0, input_size=2, hidden_size=2)
    torch.save(lstm_only.state_dict(), tmp_path / "lstm.pt")
    code, _, err = run_cli(capsys, "export", tmp_path / "lstm.pt", "--head", "all", "-o", out)
    assert_one_line_error(code, err, "head='all' given, but the model has no nn.Linear head")
    assert not out.exists()


def test_debug_environment_variable_reraises(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMFPGA_DEBUG", "1")
    with pytest.raises(SpecError, match="no such file"):
        main(["export", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "spec")])


def test_console_script_reports_one_line_error(tmp_path):
    script = shutil.which("lstmfpga")
    assert script is not None, "the lstmfpga console script is not installed"
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 2, 3)))
    result = subprocess.run(
        [script, "predict", str(tmp_path / "nowhere"), "--inputs", str(x), "-o", "y.npy"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr == f"lstmfpga: error: {tmp_path / 'nowhere'}: no such file or directory\n"
    assert result.stdout == ""


def test_export_refuses_an_output_that_is_not_a_spec_folder(tmp_path, model_file, capsys):
    """Checked before the model is read: nothing is overwritten."""
    (tmp_path / "file").write_text("keep")
    code, _, err = run_cli(capsys, "export", model_file[0], "-o", tmp_path / "file")
    assert_one_line_error(code, err, "must be a directory, not an existing file")
    assert (tmp_path / "file").read_text() == "keep"
    other = tmp_path / "q"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format": "lstmfpga.qmodel"}))
    code, _, err = run_cli(capsys, "export", model_file[0], "-o", other)
    assert_one_line_error(code, err, "holds a 'lstmfpga.qmodel' artifact, not 'lstmfpga.spec'")
    assert sorted(p.name for p in other.iterdir()) == ["manifest.json"]


def test_export_and_info_read_a_gru_state_dict(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(torch.nn.GRU(2, 3, bidirectional=True).state_dict(), tmp_path / "gru.pt")
    code, out, err = run_cli(capsys, "info", tmp_path / "gru.pt")
    assert code == 0, err
    assert "GRU input_size=2 hidden_size=3 num_layers=1 bidirectional=True" in out
    code, _, err = run_cli(capsys, "info", tmp_path / "gru.pt", "--cell", "lstm")
    assert_one_line_error(code, err, "(3*hidden rows: a GRU?)")
    code, out, err = run_cli(capsys, "export", tmp_path / "gru.pt", "--cell", "gru",
                             "-o", tmp_path / "spec")  # fmt: skip
    assert code == 0, err
    assert "gates: r, z, n" in out
    spec = ModelSpec.load(tmp_path / "spec")
    assert spec.cell == "gru" and spec.num_directions == 2
