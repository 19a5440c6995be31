"""``lstmfpga finetune`` end to end: export -> finetune -> simulate in Verilator, bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmfpga import cli
from lstmfpga.digits import SequenceModel
from lstmfpga.export import files
from lstmfpga.quant import golden
from lstmfpga.quant.model import QuantizedModel
from lstmfpga.quant.qat import QATLSTM


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(0)
    torch.save(SequenceModel("lstm", 2, 3, 2).state_dict(), root / "model.pt")  # LSTM + last step
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (48, 5, 2))
    y = (x[:, :, 1].sum(axis=1) > 0).astype(np.int64)
    files.save_npy(root / "x.npy", x)
    files.save_npy(root / "y.npy", y)
    assert (
        cli.main(["export", str(root / "model.pt"), "--head", "last", "-o", str(root / "spec")])
        == 0
    )
    return root, x, y


def test_finetuned_model_is_bit_exact_in_golden_and_verilator(task, capsys):
    root, x, y = task
    code = cli.main(
        [
            "finetune",
            str(root / "spec"),
            "--train",
            str(root / "x.npy"),
            "--labels",
            str(root / "y.npy"),
            "--preset",
            "w8a16",
            "--epochs",
            "3",
            "--lr",
            "0.02",
            "--seed",
            "1",
            "-o",
            str(root / "qmodel"),
            "--spec-out",
            str(root / "spec_ft"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("epoch")] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ]
    qmodel = QuantizedModel.load(root / "qmodel")
    # the golden model of the saved qmodel equals the QAT forward pass of the saved spec
    from lstmfpga.export.spec import ModelSpec

    spec_ft = ModelSpec.load(root / "spec_ft")
    assert qmodel.spec_hash == spec_ft.content_hash()
    x_codes = golden.quantize_inputs(qmodel, x)
    with torch.no_grad():
        qat = QATLSTM(spec_ft, qmodel).codes(x_codes)["prediction"].numpy().astype(np.int64)
    assert np.array_equal(qat, golden.run(qmodel, x_codes).prediction)
    # and the hardware equals the golden model
    code = cli.main(
        [
            "simulate",
            str(root / "qmodel"),
            "--inputs",
            str(root / "x.npy"),
            "--labels",
            str(root / "y.npy"),
            "--spec",
            str(root / "spec_ft"),
            "--sim",
            "verilator",
            "--lanes",
            "4",
            "--report",
            str(root / "r.json"),
            "--build-dir",
            str(root / "build"),
        ]
    )
    assert code == 0
    report = files.read_json(root / "r.json", "report")
    assert report["bit_exact"] is True and report["outputs"]["mismatched"] == 0
    fixed = float(np.mean(golden.predict(qmodel, x)[0].argmax(1) == y))
    assert report["accuracy"]["rtl"] == pytest.approx(fixed)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--targets", "y.npy"], "training targets must have shape (48, 2), not (48,)"),
        (["--labels", "y.npy", "--loss", "mse"], "--loss mse needs --targets"),
        (["--labels", "y.npy", "--epochs", "-2"], "epochs must be an integer >= 0"),
        (["--labels", "x.npy"], "labels must be integers"),
    ],
)
def test_bad_finetune_settings_are_one_line_errors(task, capsys, extra, message):
    root, _, _ = task
    args = [a if not a.endswith(".npy") else str(root / a) for a in extra]
    code = cli.main(
        [
            "finetune",
            str(root / "spec"),
            "--train",
            str(root / "x.npy"),
            *args,
            "-o",
            str(root / "bad"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("lstmfpga: error: ")
    assert message in err[0]
