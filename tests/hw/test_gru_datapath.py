# amaranth: UnusedElaboratable=no
"""The LSTM's MatrixVectorUnit and GateRegrouper, unchanged, carry a GRU layer into the GRU cell
bank: beats of the GRU gate rows (``hw.gru_layout``) for ``P`` lanes and ``S`` columns go
through the MVU (one identity target), the regrouper (units of four rows, ``V`` at a time,
units straddling row groups when ``P`` is not a multiple of 4) and ``GRUCellBank`` (``h_prev``
from a state memory the testbench fills with the previous step's results), step after step
with the recurrence, under random stalls; the hidden states are the golden GRU's bit for bit."""

import numpy as np
import pytest
from amaranth.hdl import Array, Elaboratable, Module, Signal, signed
from helpers.gru_models import mvu_beats, random_gru_qmodel, step_inputs
from helpers.streams import Harness, get_all, put_all, simulate

from lstmfpga.hw.gru_cellbank import GRUCellBank
from lstmfpga.hw.gru_layout import gru_gate_rows
from lstmfpga.hw.mvu import MatrixVectorUnit
from lstmfpga.hw.regroup import GateRegrouper
from lstmfpga.hw.schedule import KIND_GATES

# name: (lanes P, simd S, cells V, quantization config, (layer, direction))
CASES = {
    "P3-S1-V1-w8a8-saturating": (3, 1, 1, dict(preset="w8a8", roles={
        "preact": {"bits": 8, "frac": 6}, "hn": {"bits": 6, "frac": 4}}), (0, 0)),
    "P8-S2-V2-q16-layer1-reverse": (8, 2, 2, dict(preset="q16"), (1, 1)),
    "P6-S4-V3-w4a8-truncate-wrap": (6, 4, 3, dict(preset="w4a8", rounding="truncate",
                                                  overflow="wrap"), (1, 0)),
}  # fmt: skip
H = 5


class Chain(Elaboratable):
    """MVU → regrouper (gates only, always enabled) → GRU cell bank; the bank's ``h_prev``
    read ports read ``hmem`` (``H`` signals the testbench sets), ``zero_h`` is ``first``."""

    def __init__(self, model, rows, lanes, simd, cells):
        q, f = model.layers[rows.layer][rows.direction], model.formats
        self.mvu = MatrixVectorUnit(lanes, max(q.w_ih.fmt.bits, q.w_hh.fmt.bits),
                                    max(f["x"].bits, f["hidden"].bits), model.acc,
                                    rows.product_shifts, (rows.target,), model.rounding,
                                    model.overflow, simd)  # fmt: skip
        self.regroup = GateRegrouper(lanes=lanes, hidden_size=H, bits=self.mvu.out_bits,
                                     cells=cells)  # fmt: skip
        self.bank = GRUCellBank(model, cells=cells, in_bits=self.mvu.out_bits, h_depth=H)
        self.hmem = [Signal(signed(f["hidden"].bits), name=f"hmem{j}") for j in range(H)]
        self.first = Signal()
        self.i, self.o = self.mvu.i, self.bank.o

    def elaborate(self, platform):
        m = Module()
        m.submodules.mvu, m.submodules.regroup = mvu, regroup = self.mvu, self.regroup
        m.submodules.bank = bank = self.bank
        m.d.comb += [
            regroup.i.valid.eq(mvu.o.valid),
            regroup.i.payload.eq(mvu.o.payload.data),
            mvu.o.ready.eq(regroup.i.ready),
            regroup.kind.eq(KIND_GATES),
            regroup.enable.eq(1),
            bank.i.valid.eq(regroup.unit.valid),
            bank.i.payload.rows.eq(regroup.unit.payload.rows),
            bank.i.payload.count.eq(regroup.unit.payload.count),
            bank.i.payload.h_addr.eq(regroup.unit.payload.index),
            bank.i.payload.zero_h.eq(self.first),
            regroup.unit.ready.eq(bank.i.ready),
            regroup.row.ready.eq(0),
        ]
        hmem = Array(self.hmem)
        for k in range(bank.cells):
            port = getattr(bank, f"h_r{k}")
            m.d.comb += port.data.eq(hmem[port.addr])
        return m


@pytest.mark.parametrize("name", list(CASES))
def test_mvu_regrouper_and_cell_bank_compute_the_golden_gru_layer(name):
    lanes, simd, cells, config, (layer, d) = CASES[name]
    seed = list(CASES).index(name) + 70
    model, x_codes = random_gru_qmodel(seed, config, hidden_size=H, num_layers=2,
                                       bidirectional=True, batch=1, steps=4)  # fmt: skip
    _, steps = step_inputs(model, x_codes)
    s, rows = steps[(layer, d)], gru_gate_rows(model, layer, d)
    T = x_codes.shape[1]
    order = list(range(T - 1, -1, -1)) if d else list(range(T))
    chain = Chain(model, rows, lanes, simd, cells)
    rng_in, rng_out = (np.random.default_rng(k) for k in np.random.SeedSequence(seed).spawn(2))
    hidden = model.formats["hidden"]
    garbage = rng_in.integers(hidden.min_code, hidden.max_code + 1, H).tolist()
    results = []  # the hidden states, one list per step in order

    async def producer(ctx):
        h_prev = [0] * H
        for n, t in enumerate(order):
            while len(results) < n:  # the recurrence: the previous step's h is needed
                await ctx.tick()
            if n:
                h_prev = results[-1]
            for j in range(H):  # the first step reads garbage, zeroed by zero_h
                ctx.set(chain.hmem[j], garbage[j] if n == 0 else h_prev[j])
            ctx.set(chain.first, n == 0)
            vector = np.concatenate([s["u"][0, t], h_prev])
            beats, _ = mvu_beats(rows, vector[None], lanes, simd)
            await put_all(ctx, chain.i, beats, rng=rng_in, idle=0.2)

    async def consumer(ctx):
        for _ in order:
            h = []
            while len(h) < H:
                (out,) = await get_all(ctx, chain.o, 1, rng=rng_out, stall=0.3)
                h += out["h"][: out["count"]]
            results.append(h)

    simulate(Harness(chain), producer, consumer)
    assert results == [s["h"][0, t].tolist() for t in order], f"seed={seed}"
