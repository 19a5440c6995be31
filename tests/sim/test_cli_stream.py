# amaranth: UnusedElaboratable=no
"""``lstmfpga generate/simulate --mode stream`` (and ``simulate --stateful``) end to end on
small saved models, and their one-line refusals."""

import argparse
import json

import numpy as np
import pytest

from lstmfpga.commands import generate, simulate
from lstmfpga.errors import CLIError
from lstmfpga.quant import golden
from lstmfpga.testing import random_inputs, random_qmodel


def _main(*argv):
    parser = argparse.ArgumentParser(prog="lstmfpga")
    subparsers = parser.add_subparsers()
    for module in (generate, simulate):
        module.register(subparsers)
    args = parser.parse_args([str(a) for a in argv])
    result = args.func(args)
    return 0 if result is None else int(result)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-stream")
    _, q = random_qmodel(21, input_size=2, hidden_size=3, num_layers=2)
    q.save(root / "qmodel")
    _, bidir = random_qmodel(22, input_size=2, hidden_size=2, bidirectional=True)
    bidir.save(root / "bidir")
    np.save(root / "x.npy", random_inputs(21, 4, 6, 2))
    return {"root": root, "q": q}


def _simulate(files, *extra, name="r.json"):
    root = files["root"]
    return _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
                 "--lanes", 4, "--mode", "stream", "--report", root / name, *extra)  # fmt: skip


def test_simulate_stream_mode_is_bit_exact(files, capsys):
    root = files["root"]
    assert _simulate(files, "--dump", root / "d.npz") == 0
    report = json.loads((root / "r.json").read_text())
    assert report["bit_exact"] and report["settings"]["mode"] == "stream"
    dump = np.load(root / "d.npz")
    x_codes = golden.quantize_inputs(files["q"], np.load(root / "x.npy"))
    np.testing.assert_array_equal(dump["rtl"], golden.run(files["q"], x_codes).prediction)


def test_simulate_stateful_equals_golden_on_the_concatenated_signal(files):
    root = files["root"]
    assert _simulate(files, "--stateful", "--dump", root / "s.npz", name="s.json") == 0
    x_codes = golden.quantize_inputs(files["q"], np.load(root / "x.npy"))  # (4, 6, 2)
    whole = golden.run(files["q"], x_codes.reshape(1, 24, 2)).prediction  # (1, 24, H)
    dump = np.load(root / "s.npz")
    np.testing.assert_array_equal(dump["rtl"].reshape(1, 24, -1), whole)
    report = json.loads((root / "s.json").read_text())
    assert report["bit_exact"] and report["settings"]["stateful"] is True


def test_generate_stream_mode_records_the_mode_and_the_per_step_latency(files, capsys):
    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.stream_cycles import StreamCycleModel

    out = files["root"] / "rtl"
    assert _main("generate", files["root"] / "qmodel", "--lanes", 4, "--mode", "stream",
                 "-o", out) == 0  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    model = StreamCycleModel.of(LSTMAccelerator(files["q"], lanes=4, mode="stream"))
    assert manifest["mode"] == "stream"
    assert manifest["stream_cycles"] == model.to_dict()
    assert {"s_axis_tuser", "keep_state"} <= {p["name"] for p in manifest["ports"]}
    assert f"per-step latency {model.latency} cycles" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--mode", "streaming"), r"^--mode must be 'sequence' or 'stream', not 'streaming'$"),
        (("--stateful",), r"^--stateful needs --mode stream \(the state is carried across rows"),
        (("--mode", "stream", "--max-seq-len", "8"),
         r"^--max-seq-len 8 does not apply to --mode stream \(sequences of any length\)$"),
        (("--mode", "stream", "--stateful", "--spec", "nospec"),
         r"^--stateful with --spec: the float reference runs whole sequences$"),
    ],
)  # fmt: skip
def test_bad_mode_options_are_one_line_errors(files, argv, message):
    root = files["root"]
    base = ["simulate", root / "qmodel", "--inputs", root / "x.npy", "--report", root / "b.json"]
    if "--sim" not in argv:
        base += ["--sim", "amaranth"]
    with pytest.raises(CLIError, match=message):
        _main(*base, *argv)


@pytest.mark.parametrize("command", ["generate", "simulate"])
def test_a_bidirectional_model_is_refused_in_stream_mode(files, command):
    root = files["root"]
    tail = (
        ["-o", root / "never"]
        if command == "generate"
        else ["--inputs", root / "x.npy", "--sim", "amaranth", "--report", root / "n.json"]
    )
    with pytest.raises(CLIError, match=r"^--mode stream needs a unidirectional model, not a "
                       r"bidirectional one: the reverse direction needs the whole sequence "
                       r"before its first step$"):  # fmt: skip
        _main(command, root / "bidir", "--mode", "stream", *tail)
    assert not (root / "never").exists()


def test_generate_refuses_max_seq_len_in_stream_mode(files):
    with pytest.raises(CLIError, match=r"^--max-seq-len 8 does not apply to --mode stream"):
        _main("generate", files["root"] / "qmodel", "--mode", "stream", "--max-seq-len", 8,
              "-o", files["root"] / "never")  # fmt: skip
