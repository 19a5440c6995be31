# amaranth: UnusedElaboratable=no
"""The manifest's mode: ``mode`` and ``stream_cycles`` are typed fields of
hw.manifest.Manifest (stream mode's per-step latency and interval), written only for a
stream-mode design (a sequence-mode manifest is as before), read back equal, and a bad
value is refused in one line naming the field."""

import copy

import pytest

from lstmfpga.errors import ManifestError
from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.manifest import Manifest
from lstmfpga.hw.stream_cycles import StreamCycleModel
from lstmfpga.hw.verilog import build_manifest
from lstmfpga.testing import random_qmodel


@pytest.fixture(scope="module")
def manifests():
    _, q = random_qmodel(5, input_size=3, hidden_size=4, head="all", head_out=2)
    stream = LSTMAccelerator(q, lanes=4, mode="stream")
    return build_manifest(stream), build_manifest(LSTMAccelerator(q, lanes=4)), stream


def test_stream_mode_is_typed_and_round_trips(manifests):
    stream, _, acc = manifests
    assert stream.mode == "stream" and "mode" not in stream.extra
    model = StreamCycleModel.of(acc)
    assert stream.stream_cycles == model.to_dict()
    assert stream.stream_cycles["latency"] == model.latency  # the per-step latency
    info = stream.to_dict()
    assert info["mode"] == "stream" and info["stream_cycles"] == model.to_dict()
    again = Manifest.from_dict(copy.deepcopy(info))
    assert again == stream and again.to_dict() == info


def test_a_sequence_mode_manifest_has_no_mode_entries(manifests):
    _, sequence, _ = manifests
    info = sequence.to_dict()
    assert sequence.mode == "sequence" and sequence.stream_cycles is None
    assert "mode" not in info and "stream_cycles" not in info
    assert Manifest.from_dict(info).mode == "sequence"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda i: i.update(mode="streaming"), "mode must be 'sequence' or 'stream', not 'str"),
        (
            lambda i: i.pop("stream_cycles"),
            "stream_cycles must be present exactly in stream mode, not missing in mode 'stream'",
        ),
        (
            lambda i: i.pop("mode"),
            "stream_cycles must be present exactly in stream mode, not present in mode 'sequ",
        ),
        (
            lambda i: i["stream_cycles"].update(latency=-1),
            "stream_cycles: latency must be an integer >= 0, not -1",
        ),
        (lambda i: i["stream_cycles"].pop("formula"), "stream_cycles: formula is missing"),
    ],
    ids=["mode", "no-cycles", "no-mode", "latency", "formula"],
)
def test_bad_mode_entries_are_refused_in_one_line(manifests, edit, match):
    info = copy.deepcopy(manifests[0].to_dict())
    edit(info)
    with pytest.raises(ManifestError, match=match):
        Manifest.from_dict(info)
