# amaranth: UnusedElaboratable=no
"""``lstmfpga pack-weights``: the runtime's weight beats for a design folder, or one line
naming why the model does not fit the hardware."""

import argparse
import json

import pytest

from lstmfpga.commands import pack_weights as command
from lstmfpga.errors import CLIError
from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.axi_top import axi_manifest
from lstmfpga.hw.verilog import manifest as accelerator_manifest
from lstmfpga.quant.given_formats import quantize_like
from lstmfpga.runtime import HardwareDesign, ManifestError, pack_weights
from lstmfpga.testing import random_qmodel, random_spec

SEED = 31
GEOMETRY = dict(input_size=3, hidden_size=4, head="last")


def cli(*argv):
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["pack-weights", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack")
    _, ref = random_qmodel(SEED, **GEOMETRY)
    acc = LSTMAccelerator(ref, lanes=4, simd=2, max_seq_len=8)
    (root / "rtl").mkdir()
    (root / "rtl" / "manifest.json").write_text(json.dumps(axi_manifest(acc)))
    (root / "plain").mkdir()
    older = accelerator_manifest(acc)  # as written before manifests recorded weight formats
    del older["weight_formats"]
    (root / "plain" / "manifest.json").write_text(json.dumps(older))
    ref.save(root / "ref")
    quantize_like(random_spec(SEED, scale=0.45, **GEOMETRY), ref).save(root / "retrained")
    random_qmodel(SEED, **{**GEOMETRY, "hidden_size": 8})[1].save(root / "wide")
    return root


@pytest.mark.parametrize("qmodel", ["ref", "retrained"])
def test_writes_the_runtimes_beats_for_the_design(made, qmodel, capsys):
    from lstmfpga.quant.model import QuantizedModel

    out = made / f"{qmodel}.bin"
    assert cli(made / qmodel, "--rtl", made / "rtl", "-o", out) == 0
    want = pack_weights(HardwareDesign.load(made / "rtl"), QuantizedModel.load(made / qmodel))
    assert out.read_bytes() == want.to_bytes()
    assert f"{len(want)} beats of {want.bits} bits" in capsys.readouterr().out


def test_retrained_weights_differ_from_the_built_in_ones(made):
    cli(made / "ref", "--rtl", made / "rtl", "-o", made / "a.bin")
    cli(made / "retrained", "--rtl", made / "rtl", "-o", made / "b.bin")
    a, b = (made / "a.bin").read_bytes(), (made / "b.bin").read_bytes()
    assert len(a) == len(b) and a != b


def test_another_geometry_is_refused_naming_it(made):
    with pytest.raises(ManifestError, match=r"^qmodel hidden_size must be the design's 4, not 8$"):
        cli(made / "wide", "--rtl", made / "rtl", "-o", made / "w.bin")
    assert not (made / "w.bin").exists()


def test_a_design_without_weight_formats_is_refused(made):
    with pytest.raises(ManifestError, match="does not record the weight formats"):
        cli(made / "ref", "--rtl", made / "plain", "-o", made / "p.bin")


def test_bad_paths_are_refused(made):
    with pytest.raises(CLIError, match="must be a file name, not a directory"):
        cli(made / "ref", "--rtl", made / "rtl", "-o", made)
    with pytest.raises(CLIError, match=r"must be a design folder with manifest\.json"):
        cli(made / "ref", "--rtl", made / "ref" / "nothing", "-o", made / "x.bin")
    with pytest.raises(CLIError, match="does not exist"):
        cli(made / "ref", "--rtl", made / "rtl", "-o", made / "no" / "x.bin")
