"""``lstmfpga predict --states/--h0c0`` for both cells: an LSTM has h and c, a GRU h only.

A spec is checked against torch (float64, <= 1e-9); a GRU qmodel's final states against the
float ones within the q16 tolerance stated below. Wrong state archives (c0 for a GRU, no c0
for an LSTM) are refused with one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lstmfpga.cli import main
from lstmfpga.export import files

B, T, I, H, LAYERS = 3, 5, 3, 4, 2
FLOAT64_TOLERANCE = 1e-9  # the float64 reference against torch in float64
#: |fixed - float| of h_n and the outputs for q16 on this small model (inputs in [-1, 1])
Q16_STATE_TOLERANCE = 0.02


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def gru(tmp_path_factory):
    """A 2-layer GRU state_dict exported and quantized through the CLI, its torch module, the
    inputs and initial states."""
    root = tmp_path_factory.mktemp("gru_states")
    torch.manual_seed(0)
    module = nn.GRU(I, H, num_layers=LAYERS, batch_first=True).double().eval()
    torch.save(module.state_dict(), root / "gru.pt")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (B, T, I))
    h0 = rng.uniform(-0.5, 0.5, (LAYERS, B, H))
    files.save_npy(root / "x.npy", x)
    files.save_npz(root / "h0.npz", h0=h0)
    files.save_npz(root / "h0c0.npz", h0=h0, c0=h0)
    assert main(["export", str(root / "gru.pt"), "-o", str(root / "spec")]) == 0
    assert main(["quantize", str(root / "spec"), "--calib", str(root / "x.npy"),
                 "-o", str(root / "qmodel")]) == 0  # fmt: skip
    return root, module, x, h0


@pytest.mark.parametrize(
    ("artifact", "tolerance"), [("spec", FLOAT64_TOLERANCE), ("qmodel", Q16_STATE_TOLERANCE)]
)
def test_gru_states_follow_torch(gru, capsys, artifact, tolerance):
    root, module, x, h0 = gru
    states_args = ("--h0c0", root / "h0.npz", "--states", root / f"{artifact}.npz")
    code, err = _cli(capsys, "predict", root / artifact, "--inputs", root / "x.npy", *states_args,
                     "-o", root / f"{artifact}.npy")  # fmt: skip
    assert code == 0, err
    states = files.load_arrays(root / f"{artifact}.npz", "states")
    assert set(states) == {"h_n"}  # a GRU has no cell state
    with torch.no_grad():
        y, h_n = module(torch.from_numpy(x), torch.from_numpy(h0))
    assert np.abs(states["h_n"] - h_n.numpy()).max() <= tolerance
    assert np.abs(np.load(root / f"{artifact}.npy") - y.numpy()).max() <= tolerance


@pytest.mark.parametrize("artifact", ["spec", "qmodel"])
def test_gru_refuses_a_cell_state(gru, capsys, artifact):
    root = gru[0]
    code, err = _cli(capsys, "predict", root / artifact, "--inputs", root / "x.npy",
                     "--h0c0", root / "h0c0.npz", "-o", root / "no.npy")  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("lstmfpga: error: ") and "a GRU has no cell state: drop c0" in err
    assert not (root / "no.npy").exists()


def test_lstm_needs_c0(tmp_path, capsys):
    torch.manual_seed(1)
    torch.save(nn.LSTM(I, H, batch_first=True).state_dict(), tmp_path / "lstm.pt")
    assert main(["export", str(tmp_path / "lstm.pt"), "-o", str(tmp_path / "spec")]) == 0
    files.save_npy(tmp_path / "x.npy", np.zeros((B, T, I)))
    files.save_npz(tmp_path / "h0.npz", h0=np.zeros((1, B, H)))
    code, err = _cli(capsys, "predict", tmp_path / "spec", "--inputs", tmp_path / "x.npy",
                     "--h0c0", tmp_path / "h0.npz", "-o", tmp_path / "y.npy")  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "an LSTM needs c0 beside h0" in err
    assert not (tmp_path / "y.npy").exists()
