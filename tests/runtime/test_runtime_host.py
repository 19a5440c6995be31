# amaranth: UnusedElaboratable=no
"""lstmfpga.runtime: encode and decode as the stream contract says, pack the weight memory's
load beats, read registers through a transport; every bad input is one line naming it.

The end-to-end run against the Verilog is tests/sim/test_runtime_axi.py.
"""

import numpy as np
import pytest
from helpers.imports import heavy_imports

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.axi_top import axi_manifest
from lstmfpga.hw.beat_format import Beats
from lstmfpga.hw.layout import pack
from lstmfpga.hw.register_map import MAP_VERSION, REGISTERS
from lstmfpga.hw.verilog import manifest as accelerator_manifest
from lstmfpga.quant import golden
from lstmfpga.runtime import (
    DeviceError,
    HardwareDesign,
    ManifestError,
    MemoryTransport,
    Registers,
    StreamError,
    check_model,
    decode_beats,
    decode_bytes,
    decode_outputs,
    encode_codes,
    encode_inputs,
    pack_weights,
)
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel

SEED = 7
CASES = {
    "last": (dict(input_size=3, hidden_size=4, head="last"), 2, 1, {}),
    "bidir-proj-states": (
        dict(input_size=2, hidden_size=4, num_layers=2, bidirectional=True, proj_size=3,
             head=None),
        4, 2, dict(with_states=True, initial_state=True),
    ),
    "w8a8-all": (dict(input_size=2, hidden_size=3, head="all", head_out=2, preset="w8a8"), 3, 1,
                 {}),
}  # fmt: skip


def build(name):
    kwargs, lanes, simd, options = CASES[name]
    kwargs = dict(kwargs)
    preset = kwargs.pop("preset", "q16")
    spec, q = random_qmodel(SEED, preset=preset, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, simd=simd, max_seq_len=6, **options)
    return spec, q, acc


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    _spec, q, acc = build(request.param)
    info = axi_manifest(acc)
    return request.param, q, acc, info, HardwareDesign.from_manifest(info)


def floats_and_states(q, design, B, T, seed):
    rng = np.random.default_rng(seed)
    x = random_inputs(seed, B, T, q.input_size) * 2.0  # some saturate
    if not design.initial_state:
        return x, None, None
    L = design.states
    return x, rng.normal(0, 0.5, (L, B, q.output_size)), rng.normal(0, 0.5, (L, B, q.hidden_size))


# -- the manifest ----------------------------------------------------------------------------
def test_design_reads_the_manifest(case):
    _, q, acc, info, d = case
    assert (d.lanes, d.simd, d.max_seq_len) == (acc.lanes, acc.simd, 6)
    assert (d.input_size, d.hidden_size, d.num_layers, d.proj_size) == (
        q.input_size, q.hidden_size, q.num_layers, q.proj_size)  # fmt: skip
    assert d.formats == {**q.formats, "acc": q.acc}
    assert d.design_id == info["design_id"] and d.rounding == q.rounding
    assert d.in_beat_bits % 8 == 0 and d.in_bits <= d.in_beat_bits
    assert d.geometry == StreamGeometry.of(
        q, with_states=acc.with_states, initial_state=acc.initial_state)  # fmt: skip


def test_load_takes_a_folder_or_the_file(tmp_path, case):
    _, _, _, info, d = case
    import json

    (tmp_path / "manifest.json").write_text(json.dumps(info))
    assert HardwareDesign.load(tmp_path).formats == d.formats
    assert HardwareDesign.load(tmp_path / "manifest.json").design_id == d.design_id


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda i: i.update(format="lstmfpga.qmodel"),
            r"format must be 'lstmfpga\.hardware', not 'lstmfpga\.qmodel'",
        ),
        (lambda i: i.pop("lanes"), "lanes is missing"),
        (lambda i: i.update(lanes="8"), "lanes must be an integer >= 1, not '8'"),
        (lambda i: i["formats"].update(x="q16"), "format of x: format must look like"),
        (lambda i: i["formats"].pop("acc"), "formats: acc is missing"),
        (lambda i: i["model"].update(bidirectional=1), "bidirectional must be true or false"),
        (
            lambda i: i["model"]["head"].update(mode="first"),
            "model head: mode must be 'last' or 'all', not 'first'",
        ),
        (lambda i: i["axi"]["element_bits"].update(input=99), "input element bits must fit"),
        (lambda i: i.update(quantization=[]), "quantization must be an object"),
        (lambda i: i.pop("design_id"), "design_id is missing"),
        (lambda i: i["axi"].update(registers={}), "axi: registers must be a list"),
        (lambda i: i.update(weight_formats={"w_ih_l0": "s99"}), "weight format of w_ih_l0"),
    ],
)
def test_bad_manifests_are_refused_in_one_line(edit, match):
    _, _, acc = build("last")
    info = axi_manifest(acc)
    edit(info)
    with pytest.raises(ManifestError, match=match) as error:
        HardwareDesign.from_manifest(info, where="rtl/manifest.json")
    assert "\n" not in str(error.value)


# -- encode ----------------------------------------------------------------------------------
def test_encoded_inputs_are_the_golden_models_codes(case):
    _, q, acc, _, d = case
    x, h0, c0 = floats_and_states(q, d, 3, 5, SEED)
    beats = encode_inputs(d, x, h0, c0)
    _, result = golden.predict(q, x, h0, c0)
    x_codes = golden.quantize_inputs(q, x)
    n = acc.input_length(5)
    assert len(beats) == 3 * n and np.flatnonzero(beats.last).tolist() == [
        n - 1,
        2 * n - 1,
        3 * n - 1,
    ]
    mask = (1 << d.in_bits) - 1
    for b, seq in enumerate(beats.sequences()):
        parts = []
        if d.initial_state:
            h0c = q.formats["hidden"].quantize(h0, q.rounding)[:, b]
            c0c = q.formats["cell"].quantize(c0, q.rounding)[:, b]
            parts += [h0c.reshape(-1), c0c.reshape(-1)]
        parts.append(x_codes[b].reshape(-1))  # time-major
        want = np.concatenate(parts) & mask
        np.testing.assert_array_equal(seq.data, want.astype(np.uint64))
    assert result.saturation.get("x", 0) > 0


def test_beat_bytes_are_little_endian_whole_bytes():
    _, _q, acc = build("last")
    d = HardwareDesign.from_manifest(axi_manifest(acc))
    x_codes = np.array([[[-1, 2, -32768]]])
    beats = encode_codes(d, x_codes)
    assert beats.beat_bytes == 2
    assert beats.to_bytes() == b"\xff\xff\x02\x00\x00\x80"


def test_codes_must_fit_and_shapes_must_match():
    _, _q, acc = build("bidir-proj-states")
    d = HardwareDesign.from_manifest(axi_manifest(acc))
    with pytest.raises(
        StreamError, match=r"inputs must have shape \(batch, seq, 2\), not \(1, 3\)"
    ):
        encode_inputs(d, np.zeros((1, 3)))
    with pytest.raises(
        StreamError, match="sequence length must be at most the design's max_seq_len 6, not 7"
    ):
        encode_inputs(d, np.zeros((1, 7, 2)))
    with pytest.raises(StreamError, match="inputs must be finite, not NaN or Inf"):
        encode_inputs(d, np.full((1, 2, 2), np.nan))
    with pytest.raises(StreamError, match=r"h0 must have shape \(4, 1, 3\), not \(4, 2, 3\)"):
        encode_inputs(d, np.zeros((1, 2, 2)), h0=np.zeros((4, 2, 3)))
    with pytest.raises(StreamError, match="input codes has codes outside s16"):
        encode_codes(d, np.full((1, 2, 2), 1 << 20))
    with pytest.raises(StreamError, match="input codes must be integer codes, not dtype float64"):
        encode_codes(d, np.zeros((1, 2, 2)))


def older_design(section: str):
    """``(q, design)``: :func:`build` ``("last")``'s model and its design read from a manifest
    without ``section``, as written before manifests recorded it."""
    _, q, acc = build("last")
    older = accelerator_manifest(acc)
    del older[section]
    return q, HardwareDesign.from_manifest(older)


def test_float_encoding_needs_the_models_rounding_rules():
    _, d = older_design("quantization")
    with pytest.raises(StreamError, match="does not record the model's rounding"):
        encode_inputs(d, np.zeros((1, 2, 3)))
    assert len(encode_codes(d, np.zeros((1, 2, 3), np.int64))) == 6


def test_h0_needs_a_design_with_initial_state():
    _, _q, acc = build("last")
    d = HardwareDesign.from_manifest(axi_manifest(acc))
    with pytest.raises(StreamError, match="h0/c0 need a design built with initial_state"):
        encode_codes(d, np.zeros((1, 2, 3), np.int64), h0=np.zeros((1, 1, 4), np.int64))


# -- decode ----------------------------------------------------------------------------------
def test_decoded_results_are_predict_raw_and_predict(case):
    _, q, acc, _, d = case
    x, h0, c0 = floats_and_states(q, d, 3, 4, SEED + 1)
    floats, result = golden.predict(q, x, h0, c0)
    geom = d.geometry
    codes = np.concatenate(
        [pack_outputs(geom, result.prediction, b, result.h_n, result.c_n) for b in range(3)]
    )
    # as the AXI top sends them: sign-extended to whole bytes
    words = codes.astype(np.uint64) & np.uint64((1 << d.out_beat_bits) - 1)
    n = acc.result_length(4)
    last = np.zeros(words.size, bool)
    last[n - 1 :: n] = True
    got = decode_outputs(d, words, 4, last=last)
    np.testing.assert_array_equal(got.prediction, result.prediction)
    np.testing.assert_array_equal(got.floats()["prediction"], floats)
    if d.with_states:
        np.testing.assert_array_equal(got.h_n, result.h_n)
        np.testing.assert_array_equal(got.c_n, result.c_n)
        np.testing.assert_array_equal(got.floats()["c_n"], q.formats["cell"].dequantize(result.c_n))
    else:
        assert got.h_n is None and "h_n" not in got.floats()


def test_output_beats_must_be_whole_results_with_tlast_at_their_ends():
    _, _q, acc = build("last")  # 3 results per sequence
    d = HardwareDesign.from_manifest(axi_manifest(acc))
    with pytest.raises(StreamError, match="whole results of 3 beats for T=2, not 4 beats"):
        decode_outputs(d, np.zeros(4, np.uint64), 2)
    with pytest.raises(StreamError, match=r"every 3-beat result \(T=2\), not on beat 1$"):
        decode_outputs(d, np.zeros(6, np.uint64), 2, last=[0, 1, 1, 0, 0, 1])
    with pytest.raises(StreamError, match=r"not missing on beat 2$"):
        decode_outputs(d, np.zeros(6, np.uint64), 2, last=[0, 0, 0, 0, 0, 1])
    with pytest.raises(StreamError, match=r"T must be in 1\.\.6, not 0"):
        decode_outputs(d, np.zeros(3, np.uint64), 0)


# -- K elements per beat ---------------------------------------------------------------------
@pytest.mark.parametrize("K", [2, 3, 4])
def test_k_element_beats_carry_the_same_bytes_and_decode_to_the_same_results(case, K):
    _, q, acc, _, d1 = case
    d = HardwareDesign.from_manifest(axi_manifest(acc, beat_elements=K))
    assert (d.beat_elements, d1.beat_elements) == (K, 1)
    assert d.in_beat_bits == K * d1.in_beat_bits and d.in_format.lane_bits == d1.in_beat_bits
    x, h0, c0 = floats_and_states(q, d, 2, 3, SEED + K)
    one, wide = encode_inputs(d1, x, h0, c0), encode_inputs(d, x, h0, c0)
    assert wide.to_bytes() == one.to_bytes(), "a DMA buffer does not depend on K"
    beats = wide.beats()
    n = acc.input_length(3)
    assert len(beats) == 2 * -(-n // K) and beats.tlast.sum() == 2
    assert beats.tdata[beats.tkeep].tobytes() == one.to_bytes()
    if n % K:
        assert beats.tkeep[-1].sum() == (n % K) * d.in_format.lane_bytes
    _, result = golden.predict(q, x, h0, c0)
    codes = np.concatenate(
        [pack_outputs(d.geometry, result.prediction, b, result.h_n, result.c_n) for b in range(2)]
    )
    last = np.zeros(codes.size, bool)
    last[np.cumsum([acc.result_length(3)] * 2) - 1] = True
    out = d.out_format.pack(codes, last)  # what the AXI top's packer sends
    for got in (decode_beats(d, out, 3), decode_bytes(d, out.tdata[out.tkeep].tobytes(), 3)):
        np.testing.assert_array_equal(got.prediction, result.prediction)
        if d.with_states:
            np.testing.assert_array_equal(got.c_n, result.c_n)


def test_result_beats_and_bytes_must_be_whole():
    _, _q, acc = build("last")  # 3 results per sequence of 16-bit lanes
    d = HardwareDesign.from_manifest(axi_manifest(acc, beat_elements=2))
    with pytest.raises(StreamError, match=r"result bytes must be whole 2-byte elements, not 5"):
        decode_bytes(d, b"\0" * 5, 2)
    with pytest.raises(StreamError, match="whole results of 3 beats for T=2, not 2 beats"):
        decode_bytes(d, b"\0" * 4, 2)
    beats = d.out_format.pack(np.arange(6), [0, 0, 1, 0, 0, 1])  # 2 beats per sequence
    bad = Beats(beats.tdata, beats.tkeep, np.array([True, False, False, True]))  # tlast early
    with pytest.raises(StreamError, match=r"tlast must be on the last beat of every 3-beat"):
        decode_beats(d, bad, 2)
    with pytest.raises(StreamError, match=r"result beats must be \(n, 4\) tdata and tkeep"):
        decode_beats(d, Beats(beats.tdata[:, :2], beats.tkeep[:, :2], beats.tlast), 2)


# -- stream mode -----------------------------------------------------------------------------
def test_stream_mode_resets_mark_a_steps_first_x_element_and_any_length_is_taken():
    _, q = random_qmodel(SEED, input_size=2, hidden_size=3, head="all", head_out=2)
    acc = LSTMAccelerator(q, lanes=3, max_seq_len=4, mode="stream", initial_state=True)
    d = HardwareDesign.from_manifest(axi_manifest(acc))
    assert d.mode == "stream"
    x = np.zeros((2, 9, 2), np.int64)  # longer than max_seq_len: stream mode has no limit
    resets = np.zeros((2, 9), bool)
    resets[1, 4] = True
    stream = encode_codes(d, x, resets=resets)
    n_state = d.states * (d.output_size + d.hidden_size)
    n = n_state + 9 * 2
    assert np.flatnonzero(stream.user).tolist() == [n + n_state + 4 * 2]
    assert np.flatnonzero(encode_codes(d, x).user).tolist() == []
    assert decode_outputs(d, np.zeros(2 * 9 * 2, np.uint64), 9).prediction.shape == (2, 9, 2)
    with pytest.raises(StreamError, match=r"resets must be a \(2, 9\) boolean array, not"):
        encode_codes(d, x, resets=np.zeros((2, 8), bool))
    sequence = HardwareDesign.from_manifest(axi_manifest(build("last")[2]))
    with pytest.raises(StreamError, match="resets need a stream-mode design"):
        encode_codes(sequence, np.zeros((1, 2, 3), np.int64), resets=np.zeros((1, 2), bool))


def test_keep_state_writes_state_control():
    window = bytearray(256)
    regs = Registers(MemoryTransport(window))
    regs.keep_state(True)
    assert regs.read("STATE_CONTROL") == 1
    regs.keep_state(False)
    assert regs.read("STATE_CONTROL") == 0
    with pytest.raises(TypeError, match="on must be True or False, not 1"):
        regs.keep_state(1)


# -- weights ---------------------------------------------------------------------------------
def test_weight_beats_are_the_layouts_words_in_the_load_ports_packing(case):
    from amaranth.lib import data

    from lstmfpga.hw.weights import WeightMemory

    _, q, acc, _, d = case
    stream = pack_weights(d, q)
    layout = acc.layout
    load = WeightMemory(layout).signature.members["load"].signature.members["payload"].shape
    assert isinstance(load, data.StructLayout)
    assert stream.fields == {name: (f.offset, f.width) for name, f in load}
    assert stream.bits == load.size
    raw = [int.from_bytes(stream.beats[i].tobytes(), "little") for i in range(len(stream))]
    off, width = stream.fields["data"]
    words = [(v >> off) & ((1 << width) - 1) for v in raw]
    assert words == layout.packed_weights() + layout.packed_biases()
    assert stream.field("bias").tolist() == [0] * layout.depth + [1] * layout.bias_depth
    assert stream.field("addr").tolist() == [*range(layout.depth), *range(layout.bias_depth)]
    assert pack(layout.weight_words[:1], layout.weight_bits)[0] == words[0]
    assert len(stream.to_bytes()) == len(stream) * -(-stream.bits // 8)


def test_weights_of_another_geometry_or_format_are_refused():
    _, _q, acc = build("last")
    d = HardwareDesign.from_manifest(axi_manifest(acc))
    _, other = random_qmodel(SEED, input_size=3, hidden_size=6, head="last")
    with pytest.raises(ManifestError, match="qmodel hidden_size must be the design's 4, not 6"):
        pack_weights(d, other)
    _, other = random_qmodel(SEED + 5, input_size=3, hidden_size=4, head="last")
    with pytest.raises(
        ManifestError,
        match=r"^qmodel format of (tensor )?\w+ must be the design's s16\.\d+, not s16\.\d+$",
    ):
        pack_weights(d, other)  # another calibration: other fraction bits somewhere
    _, other = random_qmodel(SEED, preset="w8a8", input_size=3, hidden_size=4, head="last")
    with pytest.raises(ManifestError, match="qmodel format of x must be the design's s16"):
        check_model(d, other)


def test_weights_need_a_manifest_that_records_the_weight_formats():
    q, d = older_design("weight_formats")
    with pytest.raises(ManifestError, match="does not record the weight formats"):
        pack_weights(d, q)


# -- registers -------------------------------------------------------------------------------
def window(values: dict[str, int]) -> bytearray:
    mem = bytearray(256)
    for reg in REGISTERS:
        mem[reg.offset : reg.offset + 4] = values.get(reg.name, 0).to_bytes(4, "little")
    return mem


def test_registers_by_name_over_a_memory_window():
    _, _q, acc = build("last")
    info = axi_manifest(acc)
    d = HardwareDesign.from_manifest(info)
    mem = window({"ID": info["design_id"], "VERSION": MAP_VERSION, "STATUS": 0b11,
                  "ERRORS": 1, "SEQUENCES": 12})  # fmt: skip
    regs = Registers(MemoryTransport(mem), d)
    assert regs.check_id() == info["design_id"]
    assert regs.read("SEQUENCES") == 12
    assert regs.status() == {"busy": True, "error": True, "stream_error": True}
    regs.clear_errors()
    regs.soft_reset()
    assert mem[0x0C:0x10] == b"\x01\x00\x00\x00" and mem[0x10:0x14] == b"\x01\x00\x00\x00"
    with pytest.raises(ValueError, match="register SEQUENCES is read only"):
        regs.write("SEQUENCES", 0)
    with pytest.raises(KeyError, match="register must be one of ID, VERSION"):
        regs.read("SATURATION")


def test_another_designs_id_is_refused():
    _, _q, acc = build("last")
    d = HardwareDesign.from_manifest(axi_manifest(acc))
    regs = Registers(MemoryTransport(window({"ID": 0x1234, "VERSION": MAP_VERSION})), d)
    with pytest.raises(
        DeviceError, match=r"hardware ID must be the manifest's 0x[0-9a-f]{8}, not 0x00001234"
    ):
        regs.check_id()
    regs = Registers(MemoryTransport(window({"ID": d.design_id, "VERSION": 9})), d)
    with pytest.raises(DeviceError, match=f"register map version must be {MAP_VERSION}, not 9"):
        regs.check_id()


def test_registers_need_an_axi_design_and_a_writable_transport():
    _, _q, acc = build("last")
    plain = HardwareDesign.from_manifest(accelerator_manifest(acc))
    with pytest.raises(ManifestError, match="design without registers"):
        Registers(MemoryTransport(bytearray(256)), plain)
    with pytest.raises(TypeError, match="transport must have read32 and write32"):
        Registers(object())
    with pytest.raises(ValueError, match="buffer must be writable"):
        MemoryTransport(bytes(256))
    with pytest.raises(
        ValueError, match="offset must be a word offset inside the window, not 0x100"
    ):
        MemoryTransport(bytearray(256)).read32(0x100)


def test_the_runtime_imports_numpy_only():
    assert heavy_imports("lstmfpga.runtime") == []


def test_weight_beats_are_the_axi_weight_ports_and_another_port_is_refused():
    _, q, acc = build("last")
    info = axi_manifest(acc)
    d = HardwareDesign.from_manifest(info)
    assert d.weight_port.data == "s_axis_w_tdata" and d.weight_port.last == "s_axis_w_tlast"
    stream = pack_weights(d, q)
    assert np.array_equal(stream.beats, d.weight_port.pack(acc.layout))
    assert stream.beat_bytes == d.weight_port.beat_bytes == info["weight_port"]["beat_bytes"]
    info["weight_port"]["bias_words"] += 1  # a port that takes another number of words
    with pytest.raises(ManifestError, match=r"qmodel weight beats \(fields, beats\) must be"):
        pack_weights(HardwareDesign.from_manifest(info), q)
