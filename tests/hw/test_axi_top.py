# amaranth: UnusedElaboratable=no
"""The AXI top: lint-clean Verilog (Verilator -Wall with the waivers); in Amaranth's
simulator, codes in the low bits of whole-byte tdata words (padding ignored in,
sign-extended out), the soft reset abandons a half-loaded sequence, the registers count
the results. (The runtime drives its Verilog in tests/sim/test_runtime_axi.py.)"""

import json

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.axi_top import AXITop, axi_manifest, write_axi_design
from lstmfpga.hw.register_map import REGISTERS, design_id, field_mask
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.runtime import HardwareDesign, decode_outputs, encode_inputs
from lstmfpga.sim.lint import verilator_lint
from lstmfpga.testing import random_inputs, random_spec

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
