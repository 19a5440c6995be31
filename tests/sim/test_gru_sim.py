# amaranth: UnusedElaboratable=no
"""A GRU through the command line: ``lstmfpga generate`` writes its design (the manifest
records the cell and a stream geometry without c0/c_n; the Verilog is lint-clean), ``lstmfpga
simulate --rtl`` runs that Verilog in Icarus and in Verilator (weights streamed in through the
weight port, ``h0`` in, ``h_n`` out, random stalls) bit for bit against the golden GRU, and the
bad inputs a GRU brings are refused in one line."""

import json

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec

from lstmfpga.cli import main
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.sim.lint import verilator_lint

B, T, LANES, SIMD = 3, 3, 5, 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gru_cli")
    spec = random_gru_spec(15, input_size=2, hidden_size=3, num_layers=2, bidirectional=True,
                           head="all", head_out=2)  # fmt: skip
    x = np.random.default_rng(15).normal(0, 1, (B, T, 2))
    q = quantize(spec, x, QuantConfig.preset("w8a16"))
    spec.save(root / "spec")
    q.save(root / "qmodel")
    np.save(root / "x.npy", x)
    h0 = np.random.default_rng(16).normal(0, 0.4, (4, B, 3))
    np.savez(root / "init.npz", h0=h0)
    np.savez(root / "lstm_init.npz", h0=h0, c0=h0)
    return {"root": root, "q": q, "x": x, "h0": h0}


def cli(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def rtl(files):
    """The GRU design both simulators run (``lstmfpga generate``, h0 in and h_n out)."""
    rtl = files["root"] / "rtl"
    assert cli("generate", files["root"] / "qmodel", "--lanes", LANES, "--simd", SIMD,
               "--max-seq-len", 4, "--with-states", "--initial-state", "-o", rtl) == 0  # fmt: skip
    return rtl


def _simulate_rtl(files, rtl, simulator, capsys, stall, seed):
    """``lstmfpga simulate --rtl`` of the design in ``simulator``: the run's dump and report
    must be the golden GRU's prediction and h_n, bit for bit."""
    root, q = files["root"], files["q"]
    capsys.readouterr()
    dump, states = root / f"{simulator}-dump.npz", root / f"{simulator}-states.npz"
    code = cli("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", simulator,
               "--rtl", rtl, "--h0c0", root / "init.npz", "--states", states, "--dump", dump,
               "--spec", root / "spec", "--stall", stall, "--seed", seed,
               "--build-dir", root / "build", "--report", root / f"{simulator}.json")  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.startswith(f"bit-exact: yes ({B * T * 2 + B * 12} outputs of {B} sequences")
    h0 = q.formats["hidden"].quantize(files["h0"], q.rounding)
    want = golden.run(q, golden.quantize_inputs(q, files["x"]), h0)
    with np.load(dump) as arrays:
        assert sorted(arrays.files) == ["float", "golden", "golden_h_n", "hidden_scale", "rtl",
                                        "rtl_h_n", "scale"]  # fmt: skip
        assert np.array_equal(arrays["rtl"], want.prediction)
        assert np.array_equal(arrays["rtl_h_n"], want.h_n)
    with np.load(states) as arrays:
        assert arrays.files == ["h_n"] and np.array_equal(arrays["h_n"], want.h_n)
    report = json.loads((root / f"{simulator}.json").read_text())
    assert report["bit_exact"] and report["cycles"]["model_exact"]
    assert report["simulator"]["name"] == simulator
    assert report["settings"]["stall"] == stall


def test_gru_generate_then_simulate_rtl_in_icarus(files, rtl, capsys):
    manifest = json.loads((rtl / "manifest.json").read_text())
    assert manifest["model"]["cell"] == "gru" and "cell" not in manifest["formats"]
    assert manifest["stream"]["geometry"]["cell_state"] is False
    # h0 (L*D*H = 12) then x; the prediction (T * out) then h_n (12): no c0, no c_n
    assert manifest["stream"]["input_elements"] == "12 + T * 2"
    assert manifest["stream"]["output_elements"] == {"1": 2 + 12, "4": 8 + 12}
    assert verilator_lint(rtl) == ""  # the whole GRU design, with the project's waivers
    _simulate_rtl(files, rtl, "icarus", capsys, stall=0.2, seed=4)


def test_gru_design_simulates_bit_exact_in_verilator_with_stalls(files, rtl, capsys):
    """The same Verilog in Verilator (its own build), other random stalls: bit-exact."""
    _simulate_rtl(files, rtl, "verilator", capsys, stall=0.3, seed=7)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (("generate", "{q}", "--mode", "stream", "-o", "{root}/stream"),
         "--mode stream needs a unidirectional model"),
        (("simulate", "{q}", "--inputs", "{root}/x.npy", "--sim", "amaranth", "--h0c0",
          "{root}/lstm_init.npz", "--report", "{root}/bad.json"), "lstm_init.npz"),
    ],
    ids=["stream-mode-bidirectional", "h0c0-with-c0"],
)  # fmt: skip
def test_gru_cli_refusals_are_one_line(files, capsys, argv, match):
    root = files["root"]
    argv = [a.format(q=root / "qmodel", root=root) for a in argv]
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lstmfpga: error:") and match in err
