"""Rebuilding a Brevitas model from the user's factory (``package.module:function``) and a
saved state_dict (``build_module``), its refusals, and ``lstmfpga export --brevitas``.

The factory module is written by the test (a small ``QuantLSTM`` with power-of-two
quantizers) and imported from its ``tmp_path``; seeds are fixed.
"""

import numpy as np
import pytest
import torch

from lstmfpga.export.brevitas_loader import build_module, from_brevitas
from lstmfpga.export.spec import SpecError

FACTORY = """
import torch
from brevitas.nn import QuantLSTM
from brevitas.quant import Int8WeightPerTensorFixedPoint, Int16Bias
from brevitas.quant.fixed_point import Int8ActPerTensorFixedPointMinMaxInit


class IO8(Int8ActPerTensorFixedPointMinMaxInit):
    min_val, max_val = -2.0, 2.0


def build():
    return QuantLSTM(3, 4, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias,
                     io_quant=IO8, gate_acc_quant=IO8, sigmoid_quant=IO8, tanh_quant=IO8,
                     cell_state_quant=IO8, shared_intra_layer_weight_quant=True)


def broken():
    raise RuntimeError("no GPU")


def not_a_module():
    return 42
"""


@pytest.fixture
def factory(tmp_path, monkeypatch):
    (tmp_path / "brevitas_factory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "brevitas_factory:build"


def test_build_module_loads_a_state_dict_into_the_factorys_module(factory, tmp_path):
    torch.manual_seed(1)
    trained = build_module(factory)
    path = tmp_path / "model.pt"
    torch.save(trained.state_dict(), path)
    torch.manual_seed(2)  # other random weights, replaced by the state_dict
    module = build_module(factory, path)
    assert not module.training
    _, want = from_brevitas(trained)
    _, got = from_brevitas(module)
    assert np.array_equal(got.layers[0][0].w_ih.codes, want.layers[0][0].w_ih.codes)
    assert np.array_equal(got.layers[0][0].bias.codes, want.layers[0][0].bias.codes)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("brevitas_factory", r"^factory must look like 'package\.module:function', not"),
        ("brevitas_factory:missing", r"^cannot import brevitas_factory:missing: module"),
        (
            "no_such_package.models:build",
            r"^cannot import no_such_package\.models:build: No module",
        ),
        ("brevitas_factory:broken", r"^brevitas_factory:broken\(\) failed: RuntimeError: no GPU$"),
        (
            "brevitas_factory:not_a_module",
            r"^brevitas_factory:not_a_module\(\) must return a torch",
        ),
    ],
)
def test_build_module_refuses_bad_factories(factory, name, match):
    with pytest.raises(SpecError, match=match):
        build_module(name)


def test_build_module_refuses_a_state_dict_that_does_not_fit(factory, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2, 2)}, path)
    with pytest.raises(SpecError, match=r"other\.pt: does not fit brevitas_factory:build\(\): "):
        build_module(factory, path)


def test_cli_export_brevitas_writes_the_spec_and_the_qmodel(factory, tmp_path, capsys):
    from lstmfpga import cli
    from lstmfpga.quant.model import QuantizedModel

    torch.manual_seed(3)
    trained = build_module(factory)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    code = cli.main(
        [
            "export",
            str(tmp_path / "model.pt"),
            "--brevitas",
            factory,
            "--qmodel",
            str(tmp_path / "q"),
            "-o",
            str(tmp_path / "spec"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    _, want = from_brevitas(trained)
    got = QuantizedModel.load(tmp_path / "q")
    assert got.formats == want.formats
    assert np.array_equal(got.layers[0][0].w_hh.codes, want.layers[0][0].w_hh.codes)
    assert (tmp_path / "spec" / "manifest.json").is_file()
    capsys.readouterr()
    code = cli.main(["export", "--brevitas", factory, "-o", str(tmp_path / "s2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["lstmfpga: error: --brevitas and --qmodel go together"]
