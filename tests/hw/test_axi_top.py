# amaranth: UnusedElaboratable=no
"""The AXI top: lint-clean Verilog (Verilator -Wall with the waivers); in Amaranth's
simulator, codes in the low bits of whole-byte tdata words (padding ignored in,
sign-extended out), the soft reset abandons a half-loaded sequence, the registers count
the results; with K elements per beat (K = 2, 4, I; tkeep on a sequence's partial last
beat) the results are the golden model's bit for bit under random stalls on both streams,
and K = 1 is the top without wide beats, port for port. (The runtime drives its Verilog in
tests/sim/test_runtime_axi.py.)"""

import json

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.axi_top import AXITop, axi_manifest, write_axi_design
from lstmfpga.hw.beat_format import Beats
from lstmfpga.hw.register_map import REGISTERS, design_id, field_mask
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.runtime import (
    HardwareDesign,
    ManifestError,
    decode_beats,
    decode_outputs,
    encode_inputs,
)
from lstmfpga.sim.lint import verilator_lint
from lstmfpga.testing import random_inputs, random_qmodel, random_spec

SEED = 47
OFF = {reg.name: reg.offset for reg in REGISTERS}
#: 12-bit data: the 16-bit tdata words carry 4 padding bits.
CONFIG = 'preset = "q16"\nname = "c12"\n[roles]\nx = { bits = 12 }\nhidden = { bits = 12 }\nhead_out = { bits = 12 }\n'  # noqa: E501


@pytest.fixture(scope="module")
def model():
    spec = random_spec(SEED, input_size=2, hidden_size=3, head="last")
    return quantize(spec, random_inputs(SEED, 8, 6, 2), QuantConfig.from_toml(CONFIG, "c12"))


def accelerator(model):
    return LSTMAccelerator(model, lanes=2, max_seq_len=4)


def test_ports_are_whole_bytes_and_the_manifest_says_so(model):
    acc = accelerator(model)
    info = axi_manifest(acc)
    top = AXITop(acc, info["design_id"])
    widths = {n: Shape.cast(m.shape).width for n, m in top.signature.members.items()}
    assert widths["s_axis_tdata"] == widths["m_axis_tdata"] == 16
    assert widths["s_axil_wdata"] == widths["s_axil_rdata"] == 32
    assert info["axi"]["element_bits"] == {"input": 12, "output": 12}
    assert info["axi"]["beat_bytes"] == {"input": 2, "output": 2}
    ports = {p["name"]: p["width"] for p in info["ports"]}
    assert ports["s_axis_tdata"] == 16 and ports["s_axil_awaddr"] == 8 and "busy" not in ports
    assert info["design_id"] == design_id(info) and top.design_id == info["design_id"]
    assert top.accelerator is acc


def test_constructor_checks_its_arguments(model):
    with pytest.raises(TypeError, match="accelerator must be an LSTMAccelerator, not 'a'"):
        AXITop("a", 0)
    with pytest.raises(ValueError, match="design_id must fit 32 unsigned bits"):
        AXITop(accelerator(model), -1)


def test_the_id_changes_with_the_weights(model):
    spec = random_spec(SEED + 1, input_size=2, hidden_size=3, head="last")
    other = quantize(spec, random_inputs(SEED, 8, 6, 2), QuantConfig.from_toml(CONFIG, "c12"))
    assert (
        axi_manifest(accelerator(model))["design_id"]
        != axi_manifest(accelerator(other))["design_id"]
    )


def test_write_axi_design_writes_verilog_hex_files_and_the_manifest(tmp_path, model):
    info = write_axi_design(accelerator(model), tmp_path / "rtl", memories="readmemh")
    names = sorted(p.name for p in (tmp_path / "rtl").iterdir())
    assert names == sorted(info["files"])
    text = (tmp_path / "rtl" / "lstm_axi.v").read_text()
    assert "module lstm_axi(" in text and "s_axil_awaddr" in text and "$readmemh" in text
    assert json.loads((tmp_path / "rtl" / "manifest.json").read_text()) == info
    problems = verilator_lint(tmp_path / "rtl", "lstm_axi")
    assert problems == "", problems[:3000]
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "manifest.json").write_text('{"format": "lstmfpga.spec"}')
    with pytest.raises(ValueError, match=r"holds a 'lstmfpga\.spec' artifact, not a design"):
        write_axi_design(accelerator(model), tmp_path / "spec")


async def ticks(ctx, n):
    for _ in range(n):
        await ctx.tick()


async def put(ctx, top, word, last):
    ctx.set(top.s_axis_tdata, int(word))
    ctx.set(top.s_axis_tlast, bool(last))
    ctx.set(top.s_axis_tvalid, 1)
    while True:
        ready = ctx.get(top.s_axis_tready)
        await ctx.tick()
        if ready:
            break
    ctx.set(top.s_axis_tvalid, 0)


async def axil(ctx, top, name, value=None):
    """One AXI4-Lite write (``value`` given) or read of register ``name``; returns the data."""
    bus = {s: getattr(top, f"s_axil_{s}") for s in ("awaddr", "awvalid", "awready", "wdata",
           "wstrb", "wvalid", "wready", "bvalid", "bready", "bresp", "araddr", "arvalid",
           "arready", "rvalid", "rready", "rdata", "rresp")}  # fmt: skip
    if value is None:
        ctx.set(bus["araddr"], OFF[name])
        ctx.set(bus["arvalid"], 1)
        while not ctx.get(bus["arready"]):
            await ctx.tick()
        await ctx.tick()
        ctx.set(bus["arvalid"], 0)
        ctx.set(bus["rready"], 1)
        while not ctx.get(bus["rvalid"]):
            await ctx.tick()
        data, resp = ctx.get(bus["rdata"]), ctx.get(bus["rresp"])
    else:
        ctx.set(bus["awaddr"], OFF[name])
        ctx.set(bus["wdata"], value)
        ctx.set(bus["wstrb"], 0xF)
        ctx.set(bus["awvalid"], 1)
        ctx.set(bus["wvalid"], 1)
        await ctx.tick()  # both ready while nothing is held
        ctx.set(bus["awvalid"], 0)
        ctx.set(bus["wvalid"], 0)
        ctx.set(bus["bready"], 1)
        while not ctx.get(bus["bvalid"]):
            await ctx.tick()
        data, resp = None, ctx.get(bus["bresp"])
    await ctx.tick()
    ctx.set(bus["rready"], 0)
    ctx.set(bus["bready"], 0)
    assert resp == 0, f"{name}: response {resp}"
    return data


def test_soft_reset_drops_a_half_loaded_sequence_and_results_are_bit_exact(model):
    acc = accelerator(model)
    info = axi_manifest(acc)
    design = HardwareDesign.from_manifest(info)
    top = AXITop(acc, info["design_id"])
    x = random_inputs(SEED, 2, 3, 2)
    x[1, 0, 0] = -50.0  # saturates: a negative code, sign-extended on the way out
    beats = encode_inputs(design, x)
    garbage = np.uint64(0xA000)  # padding bits above the 12-bit code: ignored
    words, lasts, done, seen = [], [], [], {}

    async def producer(ctx):
        assert await axil(ctx, top, "ID") == info["design_id"]
        for word in beats.data[:3]:  # half a sequence, no tlast ...
            await put(ctx, top, word | garbage, 0)
        await axil(ctx, top, "CONTROL", field_mask("CONTROL", "soft_reset"))  # ... abandoned
        await ticks(ctx, 2)
        for word, last in zip(beats.data, beats.last, strict=True):
            await put(ctx, top, word | garbage, last)
        while len(done) < 2:
            await ctx.tick()
        seen["SEQUENCES"] = await axil(ctx, top, "SEQUENCES")
        seen["ERRORS"] = await axil(ctx, top, "ERRORS")

    async def consumer(ctx):
        ctx.set(top.m_axis_tready, 1)
        while len(done) < 2:
            if ctx.get(top.m_axis_tvalid):  # taken at this edge (ready is high)
                words.append(ctx.get(top.m_axis_tdata))
                lasts.append(ctx.get(top.m_axis_tlast))
                if lasts[-1]:
                    done.append(True)
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    want = golden.run(model, golden.quantize_inputs(model, x)).prediction
    got = decode_outputs(design, np.array(words, np.uint64), 3, last=lasts)
    np.testing.assert_array_equal(got.prediction, want)
    assert want.min() < 0
    # sign-extended: a negative code's padding bits are ones
    assert all((w >> 12) in (0, 0xF) and ((w >> 11) & 1) == (w >> 15) for w in words)
    assert seen == {"SEQUENCES": 2, "ERRORS": 0}


# -- K elements per beat ------------------------------------------------------------------------
#: Initial and final states make sequences whose lengths K rarely divides; input size 3 = K "I".
WIDE = dict(input_size=3, hidden_size=3, head="all", head_out=2)


@pytest.fixture(scope="module")
def wide_model():
    return random_qmodel(SEED, **WIDE)[1]


def wide_accelerator(q):
    return LSTMAccelerator(q, lanes=3, max_seq_len=4, with_states=True, initial_state=True)


def run_beats(top, beats: Beats, n_sequences: int, seed: int, idle: float, stall: float,
              before=None):  # fmt: skip
    """Drive ``beats`` on ``s_axis`` (after ``await before(ctx)``, when given) and take
    result beats until ``n_sequences`` tlasts, with random gaps on both sides; returns the
    result beats and ``SEQUENCES``."""
    rng_in, rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    members = top.signature.members
    wide, user = "s_axis_tkeep" in members, "s_axis_tuser" in members
    got, seen = {"data": [], "keep": [], "last": []}, {}

    async def producer(ctx):
        if before is not None:
            await before(ctx)
        fields = zip(beats.words(), beats.keeps(), beats.users(), beats.tlast, strict=True)
        for word, keep, users, last in fields:
            while rng_in.random() < idle:
                ctx.set(top.s_axis_tvalid, 0)
                await ctx.tick()
            if wide:
                ctx.set(top.s_axis_tkeep, keep)
            if user:
                ctx.set(top.s_axis_tuser, users)
            await put(ctx, top, word, last)

    async def consumer(ctx):
        while sum(got["last"]) < n_sequences:
            ready = rng_out.random() >= stall
            ctx.set(top.m_axis_tready, ready)
            if ready and ctx.get(top.m_axis_tvalid):  # taken at this edge
                got["data"].append(ctx.get(top.m_axis_tdata))
                got["keep"].append(ctx.get(top.m_axis_tkeep) if wide else 1)
                got["last"].append(bool(ctx.get(top.m_axis_tlast)))
            await ctx.tick()
        ctx.set(top.m_axis_tready, 1)
        await ticks(ctx, 12)
        assert not ctx.get(top.m_axis_tvalid), "a result beat after the last sequence"
        seen["SEQUENCES"] = await axil(ctx, top, "SEQUENCES")

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got, seen["SEQUENCES"]


def as_beats(got, beat_bytes: int) -> Beats:
    n = len(got["data"])
    tdata = np.array([list(int(w).to_bytes(beat_bytes, "little")) for w in got["data"]], np.uint8)
    keep = [[bool((k >> b) & 1) for b in range(beat_bytes)] for k in got["keep"]]
    return Beats(tdata.reshape(n, beat_bytes), np.array(keep, bool).reshape(n, beat_bytes),
                 np.array(got["last"], bool))  # fmt: skip


@pytest.mark.parametrize("K", [1, 2, 4, 3], ids=["K1", "K2", "K4", "K=I"])
def test_k_element_beats_give_the_golden_models_results_under_stalls(wide_model, K):
    q = wide_model
    acc = wide_accelerator(q)
    info = axi_manifest(acc, beat_elements=K)
    design = HardwareDesign.from_manifest(info)
    assert design.beat_elements == K
    top = AXITop(acc, info["design_id"], K)
    B, T = 3, 3
    x = random_inputs(SEED + K, B, T, q.input_size)
    x[0, 0, 0] = -40.0  # saturates: a negative code on the way in
    rng = np.random.default_rng(SEED + K)
    LD = q.num_layers * q.num_directions
    h0 = rng.normal(0, 0.5, (LD, B, q.output_size))
    c0 = rng.normal(0, 0.5, (LD, B, q.hidden_size))
    stream = encode_inputs(design, x, h0, c0)
    beats = stream.beats()
    n_in = LD * (q.output_size + q.hidden_size) + T * q.input_size  # elements per sequence
    assert len(beats) == B * -(-n_in // K) and len(stream) == B * n_in
    got, sequences = run_beats(top, beats, B, SEED + K, idle=0.3, stall=0.4)
    result = decode_beats(design, as_beats(got, design.out_format.beat_bytes), T)
    _, want = golden.predict(q, x, h0, c0)
    assert want.saturation.get("x", 0) > 0, "the inputs were meant to saturate"
    np.testing.assert_array_equal(result.prediction, want.prediction)
    np.testing.assert_array_equal(result.h_n, want.h_n)
    np.testing.assert_array_equal(result.c_n, want.c_n)
    n_out = T * 2 + LD * (q.output_size + q.hidden_size)
    assert len(got["last"]) == B * -(-n_out // K), "K results per beat, a partial last one"
    if K > 1 and n_out % K:
        lane = design.out_format.lane_bytes
        assert got["keep"][-1] == (1 << (n_out % K) * lane) - 1, "tkeep: the partial lanes"
        assert got["keep"][0] == (1 << K * lane) - 1
    assert sequences == B


def test_k_is_recorded_in_the_manifest_with_tkeep_ports_and_k1_has_none(wide_model):
    acc = wide_accelerator(wide_model)
    one, four = axi_manifest(acc), axi_manifest(acc, beat_elements=4)
    ports = {info is four: {p["name"]: p["width"] for p in info["ports"]} for info in (one, four)}
    assert "beat_elements" not in one["axi"] and "s_axis_tkeep" not in ports[False]
    assert four["axi"]["beat_elements"] == 4
    assert four["axi"]["beat_bytes"] == {"input": 8, "output": 8}  # 4 lanes of 2 bytes
    assert ports[True]["s_axis_tdata"] == ports[True]["m_axis_tdata"] == 64
    assert ports[True]["s_axis_tkeep"] == ports[True]["m_axis_tkeep"] == 8
    assert {k: v for k, v in ports[True].items() if "tkeep" not in k and "axis_tdata" not in k} == {
        k: v for k, v in ports[False].items() if "axis_tdata" not in k
    }
    assert four["design_id"] != one["design_id"] and four["design_id"] == design_id(four)
    members = AXITop.members(acc)
    assert set(AXITop(acc, 0).signature.members) == set(members)
    assert AXITop(acc, 0, 4).beat_elements == 4


@pytest.mark.parametrize(
    ("K", "error", "match"),
    [
        (0, ValueError, r"beat_elements must be in 1\.\.64, not 0"),
        (65, ValueError, r"beat_elements must be in 1\.\.64, not 65"),
        ("2", TypeError, "beat_elements must be an integer, not '2'"),
    ],
)
def test_bad_k_is_refused_in_one_line(tmp_path, wide_model, K, error, match):
    acc = wide_accelerator(wide_model)
    with pytest.raises(error, match=match):
        AXITop(acc, 0, K)
    with pytest.raises(error, match=match):
        axi_manifest(acc, beat_elements=K)
    with pytest.raises(error, match=match):
        write_axi_design(acc, tmp_path / "rtl", beat_elements=K)
    assert not (tmp_path / "rtl").exists()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda info: info["axi"].update(beat_elements=0), r"axi: beat_elements must be in 1"),
        (
            lambda info: info["axi"].update(beat_elements=2),
            "axi: s_axis_tdata must be 32 bits wide for 2 elements per beat, not 64",
        ),
        (
            lambda info: info.update(
                ports=[p for p in info["ports"] if p["name"] != "m_axis_tkeep"]
            ),
            "axi: m_axis_tkeep must be 8 bits wide for 4 elements per beat, not missing",
        ),
    ],
    ids=["zero", "wrong-k", "no-tkeep"],
)
def test_a_manifest_whose_k_does_not_match_its_ports_is_refused(wide_model, edit, match):
    info = axi_manifest(wide_accelerator(wide_model), beat_elements=4)
    edit(info)
    with pytest.raises(ManifestError, match=match):
        HardwareDesign.from_manifest(info)


def test_wide_beats_verilog_is_lint_clean(tmp_path, wide_model):
    info = write_axi_design(wide_accelerator(wide_model), tmp_path / "rtl", beat_elements=2)
    assert HardwareDesign.load(tmp_path / "rtl").beat_elements == 2
    problems = verilator_lint(tmp_path / "rtl", info["top"])
    assert problems == "", problems[:3000]


# -- stream mode: s_axis_tuser, MODE, STATE_CONTROL ---------------------------------------------
@pytest.mark.parametrize("K", [1, 2], ids=["K1", "K2"])
def test_stream_mode_keeps_the_state_over_tlast_and_tuser_resets_it(K):
    """Three 3-step segments of one signal with STATE_CONTROL.keep_state written over
    AXI4-Lite; tuser on step 1 of segment 1: the results are the golden model's on the
    signal cut there, bit for bit, under stalls."""
    _, q = random_qmodel(SEED + 2, input_size=3, hidden_size=3, head="all", head_out=2)
    acc = LSTMAccelerator(q, lanes=3, mode="stream")
    info = axi_manifest(acc, beat_elements=K)
    design = HardwareDesign.from_manifest(info)
    assert design.mode == "stream" and info["mode"] == "stream"
    top = AXITop(acc, info["design_id"], K)
    widths = {n: Shape.cast(m.shape).width for n, m in top.signature.members.items()}
    assert widths["s_axis_tuser"] == K
    B, T = 3, 3
    x = random_inputs(SEED + 3, B, T, q.input_size)
    resets = np.zeros((B, T), bool)
    resets[1, 1] = True
    beats = encode_inputs(design, x, resets=resets).beats()
    assert beats.users().count(0) == len(beats) - 1
    seen = {}

    async def before(ctx):
        seen["MODE"] = await axil(ctx, top, "MODE")
        await axil(ctx, top, "STATE_CONTROL", field_mask("STATE_CONTROL", "keep_state"))

    got, sequences = run_beats(top, beats, B, SEED + K, 0.3, 0.4, before=before)
    assert sequences == B
    result = decode_beats(design, as_beats(got, design.out_format.beat_bytes), T)
    signal = golden.quantize_inputs(q, x).reshape(1, B * T, q.input_size)
    cut = T + 1  # segment 1, step 1
    want = np.concatenate([golden.run(q, signal[:, :cut]).prediction,
                           golden.run(q, signal[:, cut:]).prediction], axis=1)  # fmt: skip
    np.testing.assert_array_equal(result.prediction, want.reshape(B, T, -1))
    assert seen["MODE"] == field_mask("MODE", "stream")
    kept = golden.run(q, signal).prediction.reshape(B, T, -1)
    assert not np.array_equal(result.prediction, kept), "the tuser reset was meant to matter"


def test_a_sequence_mode_top_has_no_tuser_and_its_manifest_says_sequence(wide_model):
    top = AXITop(wide_accelerator(wide_model), 0)
    assert "s_axis_tuser" not in top.signature.members
    assert HardwareDesign.from_manifest(axi_manifest(wide_accelerator(wide_model))).mode == (
        "sequence"
    )
