# amaranth: UnusedElaboratable=no
"""``lstmfpga simulate``, ``report`` and ``compare`` end to end on a small saved model."""

import argparse
import json

import numpy as np
import pytest
from sim_flow_cases import CASES, MAX_SEQ_LEN, cache_root, seed_of

from lstmfpga.commands import compare, report, simulate
from lstmfpga.errors import CLIError
from lstmfpga.quant import golden
from lstmfpga.testing import random_inputs, random_qmodel

# The model, lanes and max_seq_len of test_cocotb_flow's "P1-odd" case: the same Verilog,
# so the simulator builds are shared through the session's cache.
NAME = "P1-odd"
KWARGS, LANES, T, _, _ = CASES[NAME]


def _parser():
    parser = argparse.ArgumentParser(prog="lstmfpga")
    subparsers = parser.add_subparsers()
    for module in (simulate, report, compare):
        module.register(subparsers)
    return parser


def _main(*argv):
    args = _parser().parse_args([str(a) for a in argv])
    result = args.func(args)
    return 0 if result is None else int(result)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    spec, q = random_qmodel(seed_of(NAME), **KWARGS)
    q.save(root / "qmodel")
    spec.save(root / "spec")
    x = random_inputs(11, 4, T, q.input_size)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", np.array([0, 1, 2, 1]))
    return {"root": root, "q": q, "x": x, "cache": cache_root(tmp_path_factory)}


def _simulate(files, simulator, *extra, report_name=None):
    root = files["root"]
    out = root / (report_name or f"{simulator}.json")
    code = _main(
        "simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", simulator,
        "--lanes", LANES, "--max-seq-len", MAX_SEQ_LEN, "--build-dir", files["cache"],
        "--report", out, *extra,
    )  # fmt: skip
    return code, out


@pytest.mark.parametrize("simulator", ["amaranth", "icarus", "verilator"])
def test_simulate_writes_a_bit_exact_report_and_dump(simulator, files, capsys):
    root = files["root"]
    dump = root / f"{simulator}.npz"
    code, out = _simulate(
        files, simulator, "--spec", root / "spec", "--labels", root / "y.npy",
        "--stall", "0.2", "--seed", "3", "--dump", dump,
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.startswith("bit-exact: yes (12 outputs of 4 sequences x 3 steps")
    data = json.loads(out.read_text())
    assert data["bit_exact"] and data["simulator"]["name"] == simulator
    assert data["accuracy"]["available"] and data["fixed_vs_float"]["available"]
    assert data["settings"] == {"stall": 0.2, "seed": 3}
    with np.load(dump, allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["float", "golden", "rtl", "scale"]
        q = files["q"]
        want = golden.run(q, golden.quantize_inputs(q, files["x"])).prediction
        assert np.array_equal(arrays["rtl"], want) and np.array_equal(arrays["golden"], want)
        assert arrays["float"].shape == want.shape
        assert float(arrays["scale"]) == q.output_format.lsb


def test_report_and_compare_commands(files, capsys):
    root = files["root"]
    for simulator in ("icarus", "verilator"):
        if not (root / f"{simulator}.json").exists():
            _simulate(files, simulator)
    capsys.readouterr()
    html = root / "r.html"
    assert _main("report", root / "verilator.json", "--html", html) == 0
    assert capsys.readouterr().out.startswith("bit-exact: yes")
    page = html.read_text()
    assert page.count("<svg") == 4 and "<script" not in page
    assert _main("compare", root / "icarus.json", root / "verilator.json") == 0
    table = capsys.readouterr().out
    assert "#1 icarus" in table and "#2 verilator" in table and "verilator (*)" in table
    with pytest.raises(CLIError, match="at least two reports"):
        _main("compare", root / "icarus.json")


def test_a_corrupted_golden_output_is_reported_and_exits_1(files, monkeypatch, capsys):
    """Flip one bit of one golden output: the checker names exactly that element."""
    real_run = golden.run

    def corrupted_run(*args, **kwargs):
        result = real_run(*args, **kwargs)
        result.head = result.head.copy()
        result.head[2, 1] ^= 1 << 4  # sequence 2, head output 1
        return result

    monkeypatch.setattr(golden, "run", corrupted_run)
    code, out = _simulate(files, "icarus", report_name="bad.json")
    assert code == 1
    data = json.loads(out.read_text())
    assert data["bit_exact"] is False and data["outputs"]["mismatched"] == 1
    (mismatch,) = data["outputs"]["first_mismatches"]
    assert (mismatch["sequence"], mismatch["tensor"], mismatch["timestep"], mismatch["index"]) == (
        2, "prediction", None, 1,
    )  # fmt: skip
    assert mismatch["rtl"] ^ mismatch["golden"] == 16
    assert "mismatch: sequence 2 prediction timestep - index 1" in capsys.readouterr().out


def test_missing_simulator_is_one_line_error(files, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CLIError) as error:
        _simulate(files, "icarus", report_name="none.json")
    assert "\n" not in str(error.value) and "apt-get install -y iverilog" in str(error.value)
    assert not (files["root"] / "none.json").exists()


def test_bad_arguments(files, tmp_path):
    root = files["root"]
    with pytest.raises(CLIError, match="shorter than the inputs' 3 steps"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--lanes", LANES, "--max-seq-len", 2, "--report", tmp_path / "r.json")  # fmt: skip
    np.save(tmp_path / "bad_labels.npy", np.zeros(3))
    with pytest.raises(CLIError, match="--labels must be 4 integer class indices"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--labels", tmp_path / "bad_labels.npy", "--report", tmp_path / "r.json")  # fmt: skip
    with pytest.raises(CLIError, match="--stall must be in"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--lanes", LANES, "--stall", "1.5", "--report", tmp_path / "r.json")  # fmt: skip
    with pytest.raises(CLIError, match=r"must be a \.vcd file"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--waves", tmp_path / "w.fst", "--report", tmp_path / "r.json")  # fmt: skip
    with pytest.raises(CLIError, match="not an lstmfpga report"):
        (tmp_path / "x.json").write_text("{}")
        _main("report", tmp_path / "x.json")
