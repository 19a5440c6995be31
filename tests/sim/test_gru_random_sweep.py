# amaranth: UnusedElaboratable=no
"""A randomized GRU sweep: random geometries and datapaths, bit-exact as Verilog.

Marked ``slow``. CI runs it at its small size (``LSTMFPGA_SWEEP=small``, the default: one
model, in Icarus); ``LSTMFPGA_SWEEP=large`` runs 16 models in Verilator and 4 more in Icarus.
Each model draws its layers (1-3), directions, bias, head (none/last/all), input and hidden
sizes, preset, lanes P (any of 1..4H), simd S, cells V, mode (stream only when
unidirectional), ``h0`` in and ``h_n`` out, and a sequence length from a seeded generator (the
seed is in the test id). Each runs without stalls (sequence mode: every sequence's compute
cycles equal the cycle model's; stream mode: an isolated step's latency) and with random
stalls on both streams; every element must equal ``quant.gru_golden``'s.
"""

import os

import numpy as np
import pytest
from helpers.gru_models import random_gru_qmodel

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.hw.stream_cycles import StreamCycleModel
from lstmfpga.quant import golden, gru_golden
from lstmfpga.sim.cocotb_flow import run_cocotb
from lstmfpga.sim.streams import pack_outputs

RUNS = {
    "small": [(200, "icarus")],
    "large": [(200 + i, "verilator") for i in range(16)] + [(300 + i, "icarus") for i in range(4)],
}[os.environ.get("LSTMFPGA_SWEEP", "small")]
PRESETS = ["q16", "w8a16", "w8a8", "w4a8"]


def draw(seed: int):
    """``(spec kwargs, preset, build kwargs, T)`` of one random GRU design."""
    rng = np.random.default_rng(seed)
    hidden = int(rng.integers(1, 7))
    input_size = int(rng.integers(1, 6))
    bidirectional = bool(rng.integers(2))
    spec = dict(
        input_size=input_size,
        hidden_size=hidden,
        num_layers=int(rng.integers(1, 4)),
        bidirectional=bidirectional,
        bias=bool(rng.integers(2)),
        head=[None, "last", "all"][int(rng.integers(3))],
        head_out=int(rng.integers(1, 4)),
    )
    mode = "stream" if not bidirectional and rng.integers(2) else "sequence"
    build = dict(
        lanes=int(rng.integers(1, 4 * hidden + 1)),
        simd=int(rng.integers(1, input_size + hidden + 1)),
        cells=int(rng.integers(1, hidden + 1)),
        mode=mode,
        with_states=bool(rng.integers(2)),
        initial_state=bool(rng.integers(2)),
    )
    return spec, PRESETS[int(rng.integers(len(PRESETS)))], build, int(rng.integers(1, 8))


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "simulator"), RUNS)
def test_random_gru_is_bit_exact(seed, simulator, tmp_path):
    spec, preset, build, T = draw(seed)
    if simulator == "icarus":
        T = min(T, 3)
    what = f"seed {seed} {spec} {preset} {build} T={T} in {simulator}"
    q, _ = random_gru_qmodel(seed, {"preset": preset}, calib_scale=1.0, **spec)
    acc = LSTMAccelerator(q, max_seq_len=T, **build)
    rng = np.random.default_rng(seed)
    B, LD = 3, q.num_layers * q.num_directions
    x = golden.quantize_inputs(q, rng.normal(0, 1, (B, T, q.input_size)))
    h0 = None
    if acc.initial_state:
        h0 = q.formats["hidden"].quantize(rng.normal(0, 0.4, (LD, B, q.hidden_size)))
    result = gru_golden.run(q, x, h0)
    geom = acc.stream_geometry
    want = [pack_outputs(geom, result.prediction, b, result.h_n) for b in range(B)]
    plain = run_cocotb(acc, x, h0, simulator=simulator, build_dir=tmp_path)
    stalled = run_cocotb(acc, x, h0, simulator=simulator, in_stall=0.3, out_stall=0.3,
                         seed=seed, build_dir=tmp_path)  # fmt: skip
    for run in (plain, stalled):
        assert not run.error, what
        for b, got in enumerate(run.outputs):
            np.testing.assert_array_equal(got, want[b], err_msg=f"{what}, sequence {b}")
    if acc.mode == "sequence":
        assert [c.compute for c in plain.cycles] == [CycleModel.of(acc).compute(T)] * B, what
    else:
        one = run_cocotb(acc, x[:, :1], None if h0 is None else h0, simulator=simulator,
                         build_dir=tmp_path)  # fmt: skip
        assert [c.compute for c in one.cycles] == [StreamCycleModel.of(acc).latency] * B, what
