# amaranth: UnusedElaboratable=no
"""The weight port's beat format has one definition (hw.weight_port.WeightPort): the accelerator's
``w`` payload and the AXI top's ``s_axis_w_tdata`` are sized from it, the manifest records it
with the top's port names, and a manifest whose ``weight_port`` disagrees is refused in one
line naming the field."""

import copy

import numpy as np
import pytest
from amaranth.hdl import Shape

from lstmfpga.errors import ManifestError
from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.axi_top import WEIGHT_PORT_NAMES, AXITop, axi_manifest
from lstmfpga.hw.manifest import Manifest
from lstmfpga.hw.register_map import weights_digest
from lstmfpga.hw.verilog import build_manifest
from lstmfpga.hw.weight_port import WeightPort
from lstmfpga.testing import random_qmodel

CASES = {  # (model kwargs, lanes, simd): odd sizes, a projection, wide words
    "odd": (dict(input_size=3, hidden_size=5, head="last"), 3, 1),
    "proj-simd": (dict(input_size=2, hidden_size=4, num_layers=2, proj_size=3), 4, 2),
    "P16": (dict(input_size=4, hidden_size=4, head="all", head_out=2), 16, 3),
}


@pytest.fixture(scope="module", params=list(CASES))
def acc(request):
    kwargs, lanes, simd = CASES[request.param]
    _, q = random_qmodel(5, **kwargs)
    return LSTMAccelerator(q, lanes=lanes, simd=simd, max_seq_len=4)


def test_the_accelerators_w_payload_is_the_beat_format(acc):
    port = WeightPort.of(acc.layout)
    payload = acc.signature.members["w"].signature.members["payload"].shape
    assert {name: (f.offset, f.width) for name, f in payload} == port.fields
    assert payload.size == port.bits and port.beat_bytes == -(-port.bits // 8)
    assert port.beats == acc.layout.depth + acc.layout.bias_depth


def test_packed_beats_hold_every_memory_word_at_its_address(acc):
    layout = acc.layout
    port = WeightPort.of(layout)
    beats = port.pack(layout)
    assert beats.dtype == np.uint8 and beats.shape == (port.beats, port.beat_bytes)
    values = [int.from_bytes(row.tobytes(), "little") for row in beats]
    (_, a), (d_off, d) = port.fields["addr"], port.fields["data"]
    assert [v & 1 for v in values] == [0] * layout.depth + [1] * layout.bias_depth
    assert [(v >> 1) & ((1 << a) - 1) for v in values] == [*range(layout.depth),
                                                           *range(layout.bias_depth)]  # fmt: skip
    words = [(v >> d_off) & ((1 << d) - 1) for v in values]
    assert words == layout.packed_weights() + layout.packed_biases()
    assert all(v >> port.bits == 0 for v in values), "bits above the beat are zero"


def test_the_manifest_records_the_port_the_weights_and_the_cells(acc):
    info = build_manifest(acc).to_dict()
    assert info["weight_port"] == WeightPort.of(acc.layout).to_dict()
    assert info["weight_port"]["ports"] == {"data": "w__payload", "valid": "w__valid",
                                            "ready": "w__ready", "last": None}  # fmt: skip
    assert info["weights_sha256"] == weights_digest(acc.layout) and info["cells"] == acc.cells
    loaded = Manifest.from_dict(info)
    assert loaded.weight_port == WeightPort.of(acc.layout) and loaded.cells == acc.cells
    assert loaded.to_dict() == info
    older = {k: v for k, v in info.items() if k not in ("cells", "weight_port", "weights_sha256")}
    old = Manifest.from_dict(older)
    assert (old.cells, old.weight_port, old.weights_sha256) == (1, None, None)


def test_the_axi_top_carries_the_same_beats_in_whole_bytes(acc):
    info = axi_manifest(acc)
    port = WeightPort.of(acc.layout, **WEIGHT_PORT_NAMES)
    assert info["weight_port"] == port.to_dict()
    members = AXITop.members(acc)
    assert Shape.cast(members["s_axis_w_tdata"].shape).width == 8 * port.beat_bytes
    assert Manifest.from_dict(info).weight_port == port
    assert weights_digest(acc.layout) == info["axi"]["weights_sha256"] == info["weights_sha256"]


def _port(key, value):
    return lambda info: info["weight_port"].update({key: value})


def _fields(key, value):
    return lambda info: info["weight_port"]["fields"].update({key: value})


def _ports(key, value):
    return lambda info: info["weight_port"]["ports"].update({key: value})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_fields("addr", [2, 5]), "weight_port: fields must be bias, addr, data"),
        (_fields("data", [1]), "weight_port fields: data must be [offset, width]"),
        (_port("beat_bits", 7), "weight_port: beat_bits must be"),
        (_port("beat_bytes", 99), "weight_port: beat_bytes must be"),
        (_ports("valid", "w_valid"), "weight_port: port 'w_valid' is not a port"),
        (_ports("data", "busy"), "weight_port: port busy must be"),
        (_port("weight_words", 0), "weight_port: weight_words must be an integer >= 1"),
        (lambda info: info["weight_port"].pop("ports"), "weight_port: ports is missing"),
        (lambda info: info.update(weights_sha256="abc"), "weights_sha256 must be a string"),
        (lambda info: info.update(cells=0), "cells must be an integer >= 1, not 0"),
    ],
)  # fmt: skip
def test_a_bad_weight_port_section_is_refused_naming_it(acc, edit, message):
    info = copy.deepcopy(build_manifest(acc).to_dict())
    edit(info)
    with pytest.raises(ManifestError) as error:
        Manifest.from_dict(info, "rtl/manifest.json")
    text = str(error.value)
    assert "\n" not in text and text.startswith("rtl/manifest.json") and message in text, text


def test_packing_another_layout_is_refused():
    _, q = random_qmodel(5, input_size=3, hidden_size=5)
    a, b = (LSTMAccelerator(q, lanes=p, max_seq_len=2).layout for p in (2, 3))
    with pytest.raises(ValueError, match="weights must have the weight port's fields"):
        WeightPort.of(a).pack(b)
