"""A GRU spec (``ModelSpec(cell="gru")``) exports and describes, but the stages without GRU
support yet (quantize, finetune) refuse it with one line naming the cell type, through the
real CLI."""

from __future__ import annotations

import numpy as np
import pytest
from harness import Case, assert_refused, run_cli

from lstmfpga.export.spec import LayerWeights, ModelSpec


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
    np.save(root / "x.npy", rng.uniform(-1, 1, (4, 5, I)))
    np.save(root / "y.npy", rng.integers(0, 2, 4))
    return root


def test_info_describes_a_gru(tmp_path, gru_spec_dir):
    case = Case.make(tmp_path)
    result = run_cli(case, "info", gru_spec_dir / "spec")
    assert result.returncode == 0, result.stderr
    assert "GRU" in result.stdout


@pytest.mark.parametrize("preset", ["q16", "w8a8"])
def test_quantize_refuses_a_gru(tmp_path, gru_spec_dir, preset):
    case = Case.make(tmp_path)
    result = run_cli(
        case, "quantize", gru_spec_dir / "spec", "--calib", gru_spec_dir / "x.npy",
        "--preset", preset, "-o", case.out / "q",
    )  # fmt: skip
    assert_refused(result, case, match="quantization supports LSTM specs only, not cell 'gru'")


def test_finetune_refuses_a_gru(tmp_path, gru_spec_dir):
    case = Case.make(tmp_path)
    result = run_cli(
        case, "finetune", gru_spec_dir / "spec", "--preset", "w8a8",
        "--train", gru_spec_dir / "x.npy", "--labels", gru_spec_dir / "y.npy",
        "-o", case.out / "q",
    )  # fmt: skip
    assert_refused(result, case, match="LSTM specs only, not cell 'gru'")
