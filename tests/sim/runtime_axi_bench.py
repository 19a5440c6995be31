"""cocotb test module for tests/sim/test_runtime_axi.py: the host runtime drives the AXI top.

Run by cocotb (not collected by pytest). For a stream-mode design it runs
:func:`stream_mode` (``case.npz``: ``x``, ``resets``, ``x2``) instead of what follows. The
run directory (``$H6_AXI_RUN``) holds
``case.npz`` (float inputs ``x``, ``x2``, ``x3``, ``x4``, initial states ``h0``, ``c0``,
``h0b``, ``c0b``, ``h0c``, ``c0c``, ``h0d``, ``c0d``), the design folder ``rtl/`` (built for
model ``qa``) and the saved models ``qa`` and ``qb`` (B: other weights, A's formats); this
module writes ``results.npz`` (the decoded codes of every phase) and ``registers.json``
(what the registers read at each step, the ``SATURATION_*`` counters too). Everything the
host does goes through :mod:`lstmfpga.runtime`: encode, decode, pack the weights, registers
over AXI4-Lite.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiResp,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

from lstmfpga.quant.model import QuantizedModel
from lstmfpga.runtime import (
    AsyncRegisters,
    DeviceError,
    HardwareDesign,
    decode_bytes,
    decode_outputs,
    encode_inputs,
    pack_weights,
)


class AxiLiteTransport:
    """The runtime's async transport over cocotbext-axi's AXI4-Lite master."""

    def __init__(self, master: AxiLiteMaster):
        self.master = master

    async def read32(self, offset: int) -> int:
        resp = await self.master.read(offset, 4)
        if resp.resp != AxiResp.OKAY:
            raise DeviceError(f"read of {offset:#x} answered {resp.resp!r}")
        return int.from_bytes(resp.data, "little")

    async def write32(self, offset: int, value: int) -> None:
        resp = await self.master.write(offset, int(value).to_bytes(4, "little"))
        if resp.resp != AxiResp.OKAY:
            raise DeviceError(f"write of {offset:#x} answered {resp.resp!r}")


def pauses(seed: int, rate: float):
    rng = np.random.default_rng(seed)
    while True:
        yield bool(rng.random() < rate)


class TB:
    """With one element per beat (K = 1) a frame is a list of ``tdata`` words (one "byte"
    lane as wide as ``tdata``); with K > 1 it is the DMA buffer's bytes (byte lanes,
    cocotbext-axi drives and reads ``tkeep``)."""

    def __init__(self, dut, design: HardwareDesign):
        self.dut, self.design = dut, design
        self.wide = design.beat_elements > 1
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        lanes = {} if self.wide else {"byte_lanes": 1}  # K > 1: from tkeep, one per byte
        self.source = AxiStreamSource(
            AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst, **lanes
        )
        self.sink = AxiStreamSink(
            AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst, **lanes
        )
        self.weights = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_w"), dut.clk, dut.rst)
        self.source.set_pause_generator(pauses(1, 0.3))
        self.sink.set_pause_generator(pauses(2, 0.4))
        self.weights.set_pause_generator(pauses(3, 0.35))
        master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.transport = AxiLiteTransport(master)
        self.regs = AsyncRegisters(self.transport, design)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def run(self, beats, T: int):
        """Send every sequence of ``beats`` (one frame each), receive as many result frames
        and decode them with the runtime."""
        frames = beats.sequences()
        for frame in frames:
            await self.source.send(self.frame(frame))
        received, last = [], []
        lane = 1 if not self.wide else self.design.out_format.lane_bytes
        for _ in frames:
            got = await self.sink.recv()
            received.append(got.tdata)
            n = len(got.tdata) // lane
            last += [False] * (n - 1) + [True]
        if self.wide:
            data = b"".join(bytes(r) for r in received)
            return decode_bytes(self.design, data, T, last=np.array(last))
        words = np.array([w for r in received for w in r], np.uint64)
        return decode_outputs(self.design, words, T, last=np.array(last))

    def frame(self, stream, drop: int = 0) -> AxiStreamFrame:
        """One sequence's input as a frame, without its last ``drop`` elements; in stream
        mode with ``tuser`` (cocotbext-axi drives a beat's ``tuser`` from its last byte: every
        byte of a beat gets the beat's lane bits)."""
        n = len(stream) - drop
        if self.wide:
            data = stream.to_bytes()[: n * stream.lane_bytes]
            frame = AxiStreamFrame(data)
            if stream.user is not None:
                users = stream.beats().users()
                frame.tuser = [users[i // stream.beat_bytes] for i in range(len(data))]
            return frame
        frame = AxiStreamFrame([int(v) for v in stream.data[:n]])
        if stream.user is not None:
            frame.tuser = [int(u) for u in stream.user[:n]]
        return frame

    async def load_weights(self, model: QuantizedModel):
        """Stream ``model``'s weight beats (the runtime's bytes, one frame) between sequences
        and wait until the last one is taken."""
        stream = pack_weights(self.design, model)
        await self.weights.send(AxiStreamFrame(stream.to_bytes()))
        await self.weights.wait()

    async def snapshot(self) -> dict:
        status = await self.regs.status()
        out = {name: await self.regs.read(name)
               for name in ("SEQUENCES", "CYCLES", "BUSY_CYCLES", "ERRORS", "WEIGHT_LOADS",
                            "ID")}  # fmt: skip
        saturation = await self.regs.saturation()
        return {**out, **{k: bool(v) for k, v in status.items()}, "saturation": saturation}


async def stream_mode(tb: TB, case, run: Path) -> None:
    """Stream mode: ``x`` as consecutive segments of one signal (``keep_state`` written over
    AXI4-Lite) with a ``tuser`` reset at ``resets``, then ``x2`` with ``keep_state`` 0."""
    design, log, results = tb.design, {}, {}
    log["mode"] = await tb.regs.read("MODE")
    await tb.regs.keep_state(True)
    log["state_control"] = await tb.regs.read("STATE_CONTROL")
    x, resets = case["x"], case["resets"]
    got = await tb.run(encode_inputs(design, x, resets=resets), x.shape[1])
    results["kept"] = got.prediction
    await tb.regs.keep_state(False)
    x2 = case["x2"]
    got = await tb.run(encode_inputs(design, x2), x2.shape[1])
    results["reset"] = got.prediction
    await ClockCycles(tb.dut.clk, 2)
    log["after"] = await tb.snapshot()
    np.savez(run / "results.npz", **results)
    (run / "registers.json").write_text(json.dumps(log))


@cocotb.test()
async def runtime_drives_the_axi_top(dut):
    run = Path(os.environ["H6_AXI_RUN"])
    case = np.load(run / "case.npz")
    design = HardwareDesign.load(run / "rtl")
    tb = TB(dut, design)
    await tb.reset()
    if design.mode == "stream":
        await stream_mode(tb, case, run)
        return
    log = {"id": await tb.regs.check_id()}
    try:  # an address without a register answers SLVERR: the transport raises
        await tb.transport.read32(0x80)
        log["unmapped"] = "read"
    except DeviceError as error:
        log["unmapped"] = str(error)
    results = {}

    # 1. three sequences with stalls on both streams
    x = case["x"]
    got = await tb.run(encode_inputs(design, x, case["h0"], case["c0"]), x.shape[1])
    results |= {"a_prediction": got.prediction, "a_h_n": got.h_n, "a_c_n": got.c_n}
    results["a_float"] = got.floats()["prediction"]
    await ClockCycles(dut.clk, 2)
    log["after_a"] = await tb.snapshot()

    # 2. a malformed sequence (not whole x vectors): the sticky flag, cleared on write
    bad = encode_inputs(design, x[:1], case["h0"][:, :1], case["c0"][:, :1])
    await tb.source.send(tb.frame(bad, drop=1))  # one element short
    await tb.sink.recv()  # whatever the accelerator made of the whole vectors it had
    await ClockCycles(dut.clk, 2)
    log["after_bad"] = await tb.snapshot()
    await tb.regs.clear_errors()
    log["after_clear"] = await tb.snapshot()

    # 3. soft reset: the accelerator's error and the counters go, results are right again
    await tb.regs.soft_reset()
    log["after_reset"] = await tb.snapshot()
    x2 = case["x2"]
    got = await tb.run(encode_inputs(design, x2, case["h0b"], case["c0b"]), x2.shape[1])
    results |= {"b_prediction": got.prediction, "b_h_n": got.h_n, "b_c_n": got.c_n}
    await ClockCycles(dut.clk, 2)
    log["after_b"] = await tb.snapshot()

    # 4. reload: model B's weights through s_axis_w, then a soft reset (keeps them), then A's
    models = {name: QuantizedModel.load(run / name) for name in ("qa", "qb")}
    x3, h0c, c0c = case["x3"], case["h0c"], case["c0c"]
    for phase, name, reset in (("c", "qb", False), ("d", "qb", True), ("e", "qa", False)):
        if reset:
            await tb.regs.soft_reset()
        else:
            await tb.load_weights(models[name])
        got = await tb.run(encode_inputs(design, x3, h0c, c0c), x3.shape[1])
        results |= {f"{phase}_prediction": got.prediction, f"{phase}_h_n": got.h_n,
                    f"{phase}_c_n": got.c_n}  # fmt: skip
        await ClockCycles(dut.clk, 2)
        log[f"after_{phase}"] = await tb.snapshot()

    # 5. inputs and states at the ends of their formats: the SATURATION_* counters add
    # them to the counts since the soft reset of phase d; then clear_saturation zeroes them
    x4 = case["x4"]
    got = await tb.run(encode_inputs(design, x4, case["h0d"], case["c0d"]), x4.shape[1])
    results |= {"f_prediction": got.prediction, "f_h_n": got.h_n, "f_c_n": got.c_n}
    await ClockCycles(dut.clk, 2)
    log["after_f"] = await tb.snapshot()
    await tb.regs.clear_saturation()
    log["after_clear_saturation"] = await tb.snapshot()
    log["idle"] = {"source": tb.source.empty(), "sink": tb.sink.empty(),
                   "weights": tb.weights.empty()}  # fmt: skip

    np.savez(run / "results.npz", **results)
    (run / "registers.json").write_text(json.dumps(log))
