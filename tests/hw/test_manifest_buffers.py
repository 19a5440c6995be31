# amaranth: UnusedElaboratable=no
"""The manifest's ``buffers``: the banks of the input and result buffers, a typed field of
hw.manifest.Manifest written for a double-buffered design, absent (1) for a single-buffered
one and in manifests written before it, read back equal; a bad value is refused in one line,
and ``simulate --rtl`` refuses other buffers than the folder's."""

import copy

import pytest

from lstmfpga.errors import ManifestError, SimulationError
from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.manifest import Manifest
from lstmfpga.hw.verilog import build_manifest, generate
from lstmfpga.simulation import simulate_model
from lstmfpga.testing import random_inputs, random_qmodel


@pytest.fixture(scope="module")
def model():
    return random_qmodel(6, input_size=2, hidden_size=3, head="last", head_out=2)[1]


@pytest.mark.parametrize("buffers", [1, 2])
def test_buffers_round_trip_and_one_is_not_written(model, buffers):
    acc = LSTMAccelerator(model, lanes=4, buffers=buffers)
    manifest = build_manifest(acc)
    info = manifest.to_dict()
    assert manifest.buffers == acc.buffers == buffers
    assert info.get("buffers", 1) == buffers and ("buffers" in info) == (buffers == 2)
    again = Manifest.from_dict(copy.deepcopy(info))
    assert again == manifest and again.to_dict() == info


@pytest.mark.parametrize(("value", "match"), [
    (3, r"^manifest: buffers must be 1 or 2, not 3$"),
    (0, r"^manifest: buffers must be an integer >= 1, not 0$"),
    ("2", r"^manifest: buffers must be an integer >= 1, not '2'$"),
])  # fmt: skip
def test_bad_buffers_are_refused_naming_the_field(model, value, match):
    info = build_manifest(LSTMAccelerator(model, lanes=4)).to_dict() | {"buffers": value}
    with pytest.raises(ManifestError, match=match):
        Manifest.from_dict(info)


def test_simulate_rtl_needs_the_folders_buffers(model, tmp_path):
    generate(model, tmp_path / "rtl", lanes=4, max_seq_len=4, buffers=1)
    x = random_inputs(6, 1, 3, 2)
    with pytest.raises(
        SimulationError, match=r"^buffers must be the design's 1 \(--rtl .*\), not 2$"
    ):
        simulate_model(model, x, simulator="icarus", rtl=tmp_path / "rtl", buffers=2)
