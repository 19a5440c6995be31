"""GRUs through the real CLI: ``export`` reads GRU model files (the cell inferred from the
shapes, or given with ``--cell``) and refuses bad ones with one line (shapes, NaN/Inf and
integer weights, forwards other than GRU -> optional head); ``quantize`` and ``info`` take
GRU specs and qmodels and refuse malformed ones (gate order, the recurrent n bias ``b_hn``
missing or outside its format, an LSTM's roles); ``quantize --formats-from`` refuses the
other cell's qmodel and a retrained weight outside its format, naming them; ``predict``
refuses a ``c0``, ``generate`` lanes beyond 4H; ``finetune`` (no GRU support) refuses a GRU
with one line naming the cell."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from harness import Case, assert_refused, run_cli
from torch import nn

from lstmfpga.export.spec import HeadSpec, LayerWeights, ModelSpec
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig


@pytest.fixture(scope="module")
def gru_spec_dir(tmp_path_factory):
    rng = np.random.default_rng(5)
    I, H = 3, 4
    layer = LayerWeights(
        w_ih=rng.uniform(-0.5, 0.5, (3 * H, I)),
        w_hh=rng.uniform(-0.5, 0.5, (3 * H, H)),
        b_ih=rng.uniform(-0.5, 0.5, 3 * H),
        b_hh=rng.uniform(-0.5, 0.5, 3 * H),
    )
    spec = ModelSpec(I, H, 1, False, 0, True, ((layer,),), None, cell="gru")
    root = tmp_path_factory.mktemp("gru")
    spec.save(root / "spec")
    head = HeadSpec(rng.uniform(-1, 1, (2, H)), np.zeros(2), "last")
    dataclasses.replace(spec, head=head).save(root / "classifier")
    x = rng.uniform(-1, 1, (4, 5, I))
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", rng.integers(0, 2, 4))
    quantize(spec, x, QuantConfig.preset("w8a8")).save(root / "q")
    n_bias = np.concatenate([layer.b_hh[: 2 * H], 50 * layer.b_hh[2 * H :]])  # b_hn x 50
    outgrown = dataclasses.replace(layer, b_hh=n_bias)
    dataclasses.replace(spec, layers=((outgrown,),)).save(root / "outgrown")
    lstm = LayerWeights(
        w_ih=rng.uniform(-0.5, 0.5, (4 * H, I)),
        w_hh=rng.uniform(-0.5, 0.5, (4 * H, H)),
        b_ih=rng.uniform(-0.5, 0.5, 4 * H),
        b_hh=rng.uniform(-0.5, 0.5, 4 * H),
    )
    lstm_spec = ModelSpec(I, H, 1, False, 0, True, ((lstm,),), None)
    lstm_spec.save(root / "lstm_spec")
    quantize(lstm_spec, x, QuantConfig.preset("w8a8")).save(root / "lstm_q")
    return root


def test_info_describes_a_gru(tmp_path, gru_spec_dir):
    case = Case.make(tmp_path)
    result = run_cli(case, "info", gru_spec_dir / "spec")
    assert result.returncode == 0, result.stderr
    assert "GRU" in result.stdout


@pytest.mark.parametrize("preset", ["q16", "w8a8"])
def test_quantize_takes_a_gru_and_info_describes_it(tmp_path, gru_spec_dir, preset):
    case = Case.make(tmp_path)
    result = run_cli(
        case, "quantize", gru_spec_dir / "spec", "--calib", gru_spec_dir / "x.npy",
        "--preset", preset, "-o", case.out / "q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"quantized GRU ({preset}) input_size=3 hidden_size=4" in result.stdout
    assert "saturation on the calibration data (4 sequences): x=0, preact=0, hn=0" in result.stdout
    info = run_cli(case, "info", case.out / "q")
    assert info.returncode == 0, info.stderr
    assert "quantized GRU" in info.stdout and "b_hn=" in info.stdout


# name: (spec, formats qmodel, expected message): the other cell's qmodel, or a retrained
# GRU whose recurrent n bias outgrew its format
BAD_FORMATS_FROM = {
    "GRU spec, LSTM qmodel": ("spec", "lstm_q", "cell must be the formats qmodel's lstm, not gru"),
    "LSTM spec, GRU qmodel": ("lstm_spec", "q", "cell must be the formats qmodel's gru, not lstm"),
    "b_hn outgrew its format": ("outgrown", "q", "tensor b_hn_l0 must fit "),
}


@pytest.mark.parametrize("name", list(BAD_FORMATS_FROM))
def test_quantize_formats_from_refuses_another_cell_or_an_outgrown_weight(
    tmp_path, gru_spec_dir, name
):
    spec, reference, message = BAD_FORMATS_FROM[name]
    case = Case.make(tmp_path)
    result = run_cli(
        case, "quantize", gru_spec_dir / spec, "--formats-from", gru_spec_dir / reference,
        "-o", case.out / "q",
    )  # fmt: skip
    assert_refused(result, case, match=message)


def test_finetune_refuses_a_gru(tmp_path, gru_spec_dir):
    case = Case.make(tmp_path)
    result = run_cli(
        case, "finetune", gru_spec_dir / "classifier", "--preset", "w8a8",
        "--train", gru_spec_dir / "x.npy", "--labels", gru_spec_dir / "y.npy",
        "-o", case.out / "q",
    )  # fmt: skip
    assert_refused(result, case, match="LSTM specs only, not cell 'gru'")


def test_export_reads_a_gru_state_dict(tmp_path):
    case = Case.make(tmp_path)
    torch.manual_seed(0)
    torch.save(nn.GRU(3, 4, num_layers=2).state_dict(), case.inputs / "gru.pt")
    result = run_cli(case, "export", case.inputs / "gru.pt", "-o", case.out / "spec")
    assert result.returncode == 0, result.stderr
    assert "GRU input_size=3 hidden_size=4 num_layers=2" in result.stdout
    assert ModelSpec.load(case.out / "spec").cell == "gru"


class _GRUThenTanh(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x):
        y, _ = self.gru(x)
        return torch.tanh(y)


class _GRUHidden(_GRUThenTanh):
    def forward(self, x):
        _, h = self.gru(x)
        return h


def _gru_weights(**changes):
    torch.manual_seed(1)
    state = nn.GRU(3, 4).state_dict()
    state.update(changes)
    return state


# name: (build the file in case.inputs -> extra CLI args, expected message fragment)
BAD_GRU_FILES = {
    "shape fits neither cell": (
        lambda p: torch.save(_gru_weights(weight_hh_l0=torch.zeros(12, 5)), p),
        (),
        (
            "neither an LSTM's (4*hidden, hidden) nor a GRU's (3*hidden, hidden): say which it "
            "is with --cell lstm or --cell gru"
        ),
    ),
    "NaN in weight_hh": (
        lambda p: torch.save(_gru_weights(weight_hh_l0=torch.full((12, 4), float("nan"))), p),
        (),
        "weight_hh_l0 contains 48 non-finite value(s)",
    ),
    "wrong input width": (
        lambda p: torch.save(_gru_weights(bias_hh_l0=torch.zeros(11)), p),
        (),
        "bias_hh_l0 must have shape (12,) for a GRU",
    ),
    "LSTM weights with --cell gru": (
        lambda p: torch.save(nn.LSTM(3, 4).state_dict(), p),
        ("--cell", "gru"),
        "but a GRU has weight_hh of shape (3*hidden, hidden) (gates r, z, n) (4*hidden rows",
    ),
    "GRU then tanh (TorchScript)": (
        lambda p: torch.jit.script(_GRUThenTanh()).save(str(p)),
        (),
        "unsupported forward: aten::tanh",
    ),
    "forward returns h_n (TorchScript)": (
        lambda p: torch.jit.script(_GRUHidden()).save(str(p)),
        (),
        "unsupported forward: forward returns h_n;",
    ),
    "Inf in bias_ih": (
        lambda p: torch.save(_gru_weights(bias_ih_l0=torch.full((12,), float("inf"))), p),
        (),
        "bias_ih_l0 contains 12 non-finite value(s) (NaN or Inf)",
    ),
    "integer weight_ih": (
        lambda p: torch.save(_gru_weights(weight_ih_l0=torch.zeros(12, 3, dtype=torch.int32)), p),
        (),
        "weight_ih_l0 must be a floating-point tensor, not torch.int32",
    ),
    "unknown --cell": (
        lambda p: torch.save(_gru_weights(), p),
        ("--cell", "rnn"),
        "argument --cell: invalid choice: 'rnn'",
    ),
}


@pytest.mark.parametrize("name", list(BAD_GRU_FILES))
def test_export_refuses_bad_gru_files(tmp_path, name):
    build, extra, message = BAD_GRU_FILES[name]
    case = Case.make(tmp_path)
    path = case.inputs / "model.pt"
    build(path)
    result = run_cli(case, "export", path, *extra, "-o", case.out / "spec")
    assert_refused(result, case, match=message)


# name: (write the bad input into case.inputs -> extra quantize args, expected message)
BAD_GRU_QUANTIZE = {
    "calibration with 2 features": (
        lambda c: np.save(c / "x.npy", np.zeros((4, 5, 2))),
        "calibration data: inputs have 2 features, the model expects 3",
    ),
    "NaN calibration data": (
        lambda c: np.save(c / "x.npy", np.full((4, 5, 3), np.nan)),
        "calibration data: inputs contain non-finite values (NaN or Inf)",
    ),
    "hn rule too narrow": (
        lambda c: (np.save(c / "x.npy", np.zeros((4, 5, 3))),
                   (c / "c.toml").write_text('preset = "w8a8"\n[roles]\nhn = { bits = 1 }\n')),
        "role hn: bits must be in 2..32, not 1",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_GRU_QUANTIZE))
def test_quantize_refuses_bad_gru_inputs(tmp_path, gru_spec_dir, name):
    write, message = BAD_GRU_QUANTIZE[name]
    case = Case.make(tmp_path)
    write(case.inputs)
    config = ("--config", case.inputs / "c.toml") if (case.inputs / "c.toml").exists() else ()
    result = run_cli(case, "quantize", gru_spec_dir / "spec", "--calib", case.inputs / "x.npy",
                     *config, "-o", case.out / "q")  # fmt: skip
    assert_refused(result, case, match=message)


def _edited(root, source: str, name: str, manifest=None, tensors=None):
    """A copy of artifact ``source`` with ``manifest(dict)`` / ``tensors(dict)`` applied."""
    target = root / name
    shutil.copytree(source, target)
    if manifest is not None:
        data = json.loads((target / "manifest.json").read_text())
        manifest(data)
        (target / "manifest.json").write_text(json.dumps(data))
    if tensors is not None:
        with np.load(target / "tensors.npz") as arrays:
            data = dict(arrays)
        tensors(data)
        np.savez(target / "tensors.npz", **data)
    return target


def _hn_named_cell(manifest):
    manifest["formats"]["cell"] = manifest["formats"].pop("hn")


# name: (artifact, manifest edit, tensors edit, expected message of `info`)
BAD_GRU_ARTIFACTS = {
    "spec with an LSTM's gate_order": (
        "spec", lambda m: m.update(gate_order=["i", "f", "g", "o"]), None,
        "gate_order must be a permutation of ['r', 'z', 'n'], not ['i', 'f', 'g', 'o']",
    ),
    "qmodel without b_hn": (
        "q", None, lambda t: t.pop("b_hn_l0"), "tensors.npz lacks tensor b_hn_l0",
    ),
    "qmodel b_hn codes outside their format": (
        "q", None, lambda t: t.update(b_hn_l0=np.full(4, 1 << 20)),
        "tensor b_hn_l0: tensor codes do not fit s16.",
    ),
    "qmodel formats with cell instead of hn": (
        "q", _hn_named_cell, None,
        "formats must name exactly the roles x, preact, gate, hn, hidden, head_out, not",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_GRU_ARTIFACTS))
def test_info_refuses_a_malformed_gru_artifact(tmp_path, gru_spec_dir, name):
    source, manifest, tensors, message = BAD_GRU_ARTIFACTS[name]
    case = Case.make(tmp_path)
    bad = _edited(case.inputs, gru_spec_dir / source, "bad", manifest, tensors)
    assert_refused(run_cli(case, "info", bad), case, match=message)


def test_predict_refuses_a_c0_for_a_gru(tmp_path, gru_spec_dir):
    case = Case.make(tmp_path)
    np.savez(case.inputs / "init.npz", h0=np.zeros((1, 4, 4)), c0=np.zeros((1, 4, 4)))
    result = run_cli(case, "predict", gru_spec_dir / "q", "--inputs", gru_spec_dir / "x.npy",
                     "--h0c0", case.inputs / "init.npz", "-o", case.out / "y.npy")  # fmt: skip
    assert_refused(result, case, match="a GRU has no cell state: drop c0")


def test_generate_refuses_lanes_beyond_4h_for_a_gru(tmp_path, gru_spec_dir):
    case = Case.make(tmp_path)
    result = run_cli(case, "generate", gru_spec_dir / "q", "--lanes", 17, "-o", case.out / "rtl")
    assert_refused(result, case, match="lanes must be in 1..16 (4*hidden_size), not 17")
