# amaranth: UnusedElaboratable=no
"""``lstmfpga quantize --formats-from`` with a GRU (issue 15): a retrained GRU takes every
format of the first one's qmodel (data roles with ``hn``, each weight tensor's including the
recurrent n bias ``b_hn``, the config and so the accumulator), and then runs bit-exact on the
hardware generated from the first (its weights streamed in through the weight port)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec

from lstmfpga.cli import main
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.given_formats import tensor_formats
from lstmfpga.quant.model import QuantizedModel

B, T = 3, 4


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def _retrained(spec, factor: float):
    """``spec`` with every GRU weight and bias scaled by ``factor`` (within the formats)."""
    layers = tuple(
        tuple(
            dataclasses.replace(
                lw, w_ih=lw.w_ih * factor, w_hh=lw.w_hh * factor,
                b_ih=lw.b_ih * factor, b_hh=lw.b_hh * factor,
            )
            for lw in directions
        )
        for directions in spec.layers
    )  # fmt: skip
    return dataclasses.replace(spec, layers=layers)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("gru_formats_from")
    spec_a = random_gru_spec(31, input_size=2, hidden_size=3, head="last", head_out=2)
    x = np.random.default_rng(31).normal(0, 1, (B, T, 2))
    spec_a.save(root / "spec_a")
    _retrained(spec_a, 0.9).save(root / "spec_b")
    quantize(spec_a, x, QuantConfig.preset("w8a16")).save(root / "qa")
    np.save(root / "x.npy", x)
    return root


def test_the_same_gru_with_its_own_formats_is_its_qmodel(built):
    assert cli("quantize", built / "spec_a", "--formats-from", built / "qa", "-o",
               built / "qa_again") == 0  # fmt: skip
    qa, again = QuantizedModel.load(built / "qa"), QuantizedModel.load(built / "qa_again")
    assert again.cell == "gru" and again.formats == qa.formats and again.acc == qa.acc
    assert tensor_formats(again) == tensor_formats(qa) and "b_hn_l0" in tensor_formats(qa)
    for mine, theirs in zip(again.layers[0], qa.layers[0], strict=True):
        for name in ("w_ih", "w_hh", "bias", "b_hn"):
            assert np.array_equal(getattr(mine, name).codes, getattr(theirs, name).codes), name


def test_a_retrained_gru_runs_bit_exact_on_the_first_ones_hardware(built, capsys):
    assert cli("quantize", built / "spec_b", "--formats-from", built / "qa", "-o",
               built / "qb") == 0  # fmt: skip
    qa, qb = QuantizedModel.load(built / "qa"), QuantizedModel.load(built / "qb")
    assert qb.formats == qa.formats and tensor_formats(qb) == tensor_formats(qa)
    assert not np.array_equal(qb.layers[0][0].b_hn.codes, qa.layers[0][0].b_hn.codes)
    rtl = built / "rtl"
    assert cli("generate", built / "qa", "--lanes", 3, "--max-seq-len", T, "-o", rtl) == 0
    capsys.readouterr()
    code = cli("simulate", built / "qb", "--inputs", built / "x.npy", "--sim", "icarus",
               "--rtl", rtl, "--dump", built / "dump.npz", "--stall", 0.2, "--seed", 5,
               "--build-dir", built / "build", "--report", built / "r.json")  # fmt: skip
    assert code == 0, capsys.readouterr().out
    x = np.load(built / "x.npy")
    want = golden.run(qb, golden.quantize_inputs(qb, x)).prediction
    built_in = golden.run(qa, golden.quantize_inputs(qa, x)).prediction
    assert not np.array_equal(want, built_in)  # the new weights ran, not the built-in ones
    with np.load(built / "dump.npz") as arrays:
        assert np.array_equal(arrays["rtl"], want)
    assert json.loads((built / "r.json").read_text())["bit_exact"]
