"""The cocotb test module that streams sequences through the accelerator's Verilog.

Run by :mod:`lstmfpga.sim.cocotb_flow` (never imported by it): the flow writes the run's
inputs into a run directory and names it in the environment variable :data:`RUN_DIR_ENV`;
this module reads them, drives the design and writes the results back beside them.

Files (all NumPy ``.npz`` without pickle, or JSON):

* ``run.json`` (in): ``period_ns``, ``reset_cycles``, ``in_stall``, ``out_stall``, ``seed``,
  ``cycle_budget`` (cycles each sequence may take, see :mod:`lstmfpga.sim.budget`);
* ``inputs.npz`` (in): ``elements`` (every ``s_axis`` element of every sequence, int64),
  ``offsets`` (``B + 1``: sequence ``b`` is ``elements[offsets[b]:offsets[b+1]]``) and
  ``out_lengths`` (``B``: expected ``m_axis`` elements per sequence);
* ``results.npz`` (out): ``outputs`` (every ``m_axis`` element, int64), ``out_offsets``
  (``B + 1``) and ``stamps`` (``B x 4``: cycle of the first input beat, of ``tlast`` in, of
  the first and of the last output beat);
* ``results.json`` (out): ``status`` (``"ok"``, ``"timeout"`` or ``"protocol"``), ``message``,
  ``total_cycles``, ``error`` (the design's sticky ``error`` port), ``simulator``,
  ``simulator_version``; with ``"timeout"`` also ``sequence`` (the one that exceeded its
  budget), ``received`` (its results so far) and ``waited`` (cycles).

The test passes whatever the design does (the flow reads ``results.json``): a stuck or
misbehaving design is reported by the flow as one line, not as a failed cocotb test.

Python acts once per stream beat, never once per clock: the clock is generated inside the
simulation top (see :func:`lstmfpga.sim.cocotb_flow.wrapper`); while the design loads, the
bench wakes once per beat; while it computes, both drivers sleep on an edge of
``s_axis_tready``/``m_axis_tvalid``; back-pressure or idles add one wake-up per stalled
cycle. Before each rising edge the bench samples ``tvalid``/``tready`` in the read-only
phase, so a beat's handshake edge is known without relying on the simulator's ordering of
callbacks at the edge itself.

Cycle stamps come from the simulation time (``time // period``, counted from the edge that
ends reset), so counting costs nothing per cycle. They follow
:func:`lstmfpga.sim.amaranth_sim.run_amaranth`: an output beat is stamped with the number of
its handshake edge, an input beat with one less (so ``first_out - last_in`` is
:meth:`CycleModel.compute <lstmfpga.hw.cycles.CycleModel.compute>`). Random ``tvalid``
idles and ``tready`` stalls are drawn per beat (per stalled cycle) from NumPy generators
seeded by ``seed`` (inputs) and ``seed + 1`` (outputs), as in the Amaranth flow.
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, First, ReadOnly, RisingEdge, Timer

from lstmfpga.export.files import load_arrays, read_json, save_npz, write_json

#: Environment variable holding the run directory (set by the flow).
RUN_DIR_ENV = "LSTMFPGA_COCOTB_RUN_DIR"


class _Protocol(Exception):
    """The design broke the stream contract (e.g. ``tlast`` at the wrong element)."""


class _Bench:
    def __init__(self, dut, run_dir: Path):
        self.dut = dut
        self.run_dir = run_dir
        config = read_json(run_dir / "run.json", "run settings")
        self.period_ns = float(config["period_ns"])
        self.reset_cycles = int(config["reset_cycles"])
        self.in_stall = float(config["in_stall"])
        self.out_stall = float(config["out_stall"])
        self.cycle_budget = int(config["cycle_budget"])
        seed = int(config["seed"])
        self.rng_in = np.random.default_rng(seed)
        self.rng_out = np.random.default_rng(seed + 1)
        data = load_arrays(run_dir / "inputs.npz", "run inputs")
        elements = data["elements"].astype(np.int64)
        offsets = data["offsets"].astype(np.int64)
        self.out_lengths = [int(n) for n in data["out_lengths"]]
        self.sequences = [
            [int(v) for v in elements[offsets[b] : offsets[b + 1]]] for b in range(len(offsets) - 1)
        ]
        B = len(self.sequences)
        self.in_marks = [(-1, -1)] * B
        self.outputs: list[list[int]] = [[] for _ in range(B)]
        self.out_marks = [(-1, -1)] * B
        self.done = Event()
        self.advanced = Event()  # set whenever a sequence's last result is accepted
        self.finished = 0  # sequences whose results are complete
        self.window = 0  # cycle at which the current sequence's budget window opened
        self.origin = 0
        self.problem: str | None = None

    def cycle(self) -> int:
        """Clock edges since the one that ended reset (edge ``n`` is at ``(n + 1/2) *
        period``)."""
        return int(get_sim_time("ns") // self.period_ns) - self.origin

    async def reset(self) -> None:
        dut = self.dut
        dut.s_axis_tvalid.value = 0
        dut.s_axis_tlast.value = 0
        dut.s_axis_tdata.value = 0
        dut.m_axis_tready.value = 0
        dut.rst.value = 1
        clk = RisingEdge(dut.clk)
        for _ in range(self.reset_cycles):
            await clk
        dut.rst.value = 0
        self.origin = self.cycle()

    async def produce(self) -> None:
        """Drive ``s_axis`` beat by beat; sleep on ``s_axis_tready`` while it is low."""
        dut, clk = self.dut, RisingEdge(self.dut.clk)
        tdata, tvalid, tlast, tready = (
            dut.s_axis_tdata, dut.s_axis_tvalid, dut.s_axis_tlast, dut.s_axis_tready,
        )  # fmt: skip
        stall = self.in_stall
        for b, elements in enumerate(self.sequences):
            first = None
            n = len(elements)
            for index, value in enumerate(elements):
                while stall and self.rng_in.random() < stall:
                    tvalid.value = 0
                    await clk
                tdata.value = value
                tlast.value = index == n - 1
                tvalid.value = 1
                await ReadOnly()
                while not tready.value:
                    await RisingEdge(tready)
                    await ReadOnly()
                await clk  # the handshake completes at this edge
                if first is None:
                    first = self.cycle() - 1
            self.in_marks[b] = (first, self.cycle() - 1)
            tvalid.value = 0
            tlast.value = 0

    async def consume(self) -> None:
        """Accept ``m_axis`` beat by beat; sleep on ``m_axis_tvalid`` while it is low."""
        try:
            await self._consume()
        except _Protocol as error:
            self.problem = str(error)
        finally:
            self.done.set()

    async def _consume(self) -> None:
        dut, clk = self.dut, RisingEdge(self.dut.clk)
        tdata, tvalid, tlast, tready = (
            dut.m_axis_tdata, dut.m_axis_tvalid, dut.m_axis_tlast, dut.m_axis_tready,
        )  # fmt: skip
        stall = self.out_stall
        for b, n in enumerate(self.out_lengths):
            got = self.outputs[b]
            first = None
            while len(got) < n:
                ready = not (stall and self.rng_out.random() < stall)
                tready.value = ready
                await ReadOnly()
                if ready and not tvalid.value:
                    await RisingEdge(tvalid)
                    await ReadOnly()
                if ready and tvalid.value:
                    value, last = tdata.value.to_signed(), bool(tlast.value)
                    await clk  # the handshake completes at this edge
                    got.append(value)
                    if first is None:
                        first = self.cycle()
                    if last != (len(got) == n):
                        raise _Protocol(
                            f"sequence {b}: tlast={int(last)} at output element {len(got)} of {n}"
                        )
                else:
                    await clk
            self.out_marks[b] = (first, self.cycle())
            self.finished = b + 1
            self.window = self.cycle()
            self.advanced.set()
        tready.value = 0

    def write(self, status: str, message: str = "", **extra) -> None:
        B = len(self.sequences)
        lengths = [len(o) for o in self.outputs]
        stamps = np.array(
            [[*self.in_marks[b], *self.out_marks[b]] for b in range(B)], dtype=np.int64
        ).reshape(B, 4)
        flat = [v for o in self.outputs for v in o]
        save_npz(
            self.run_dir / "results.npz",
            outputs=np.array(flat, dtype=np.int64),
            out_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            stamps=stamps,
        )
        try:
            error = bool(self.dut.error.value)
        except ValueError:  # X/Z: not expected after reset
            error = True
        info = {
            "status": status,
            "message": message,
            "total_cycles": self.cycle(),
            "error": error,
            "simulator": cocotb.SIM_NAME,
            "simulator_version": cocotb.SIM_VERSION,
            **extra,
        }
        # results.json last: the flow reads results.npz only when it exists.
        write_json(self.run_dir / "results.json", info)


async def _watch(bench: _Bench) -> dict | None:
    """Wait until every sequence is done, or one exceeds its budget (then return what the
    results file says about it)."""
    period = bench.period_ns
    while not bench.done.is_set():
        remaining = bench.window + bench.cycle_budget - bench.cycle()
        if remaining <= 0:
            b = bench.finished
            return {
                "sequence": b,
                "received": len(bench.outputs[b]),
                "waited": bench.cycle() - bench.window,
            }
        bench.advanced.clear()
        timer = Timer(remaining * period, unit="ns")
        if await First(bench.done.wait(), bench.advanced.wait(), timer) is timer:
            # The timer ends on a clock edge: let that edge's handshakes happen first (a
            # sequence finishing on the budget's last cycle is in time, as in Amaranth).
            await ReadOnly()
    return None


@cocotb.test()
async def stream_sequences(dut):
    """Stream every sequence of the run through the design and record what comes out."""
    bench = _Bench(dut, Path(os.environ[RUN_DIR_ENV]))
    await bench.reset()
    cocotb.start_soon(bench.produce())
    cocotb.start_soon(bench.consume())
    stuck = await _watch(bench)
    if bench.problem is not None:
        bench.write("protocol", bench.problem)
    elif stuck is not None:
        bench.write(
            "timeout",
            f"sequence {stuck['sequence']}: no complete result after {stuck['waited']} cycles",
            **stuck,
        )
    else:
        bench.write("ok")
