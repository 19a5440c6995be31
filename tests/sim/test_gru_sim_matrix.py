# amaranth: UnusedElaboratable=no
"""GRU designs across the option matrix as Verilog, in Icarus and in Verilator.

Two designs beside tests/sim/test_gru_sim.py's (2 layers, bidirectional, ``all`` head,
``w8a16``, P = 5, S = 2, ``h0`` in and ``h_n`` out, through ``generate``/``simulate --rtl``),
chosen so that together they cover the GRU's options:

* sequence mode: one layer without biases, a ``last`` head, ``w4a8``, P = 4H (every gate row
  of a step in one beat group), S = 3, V = 2 cells;
* stream mode: 2 layers, no head, ``w8a8``, P = 1, S = 2, V = 2, ``h0`` in and ``h_n`` out;
  independent sequences, then a signal fed as stateful segments (``keep_state``, the
  ``s_axis_tuser`` reset on the first step), equal to the golden GRU on the whole signal.

Each runs with random valid/ready stalls on both streams, the stream design in Icarus and
Verilator, the sequence design in Icarus (and Verilator with ``LSTMFPGA_SWEEP=large``: CI's
budget); every element must equal ``quant.gru_golden``'s by integer equality, and the
measured cycles the cycle model's (sequence mode: every sequence's compute cycles; stream
mode: an isolated step's latency and the steady interval between steps). Icarus runs are
kept short. Builds go to the session's shared cache (``helpers.sim_cache``), one per design
and simulator. tests/sim/test_gru_random_sweep.py (``slow``) draws many more designs.
"""

from functools import cache

import numpy as np
import pytest
from helpers.gru_models import random_gru_qmodel
from helpers.sim_cache import cache_root
from helpers.sweep import LARGE

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.hw.stream_cycles import StreamCycleModel
from lstmfpga.quant import golden, gru_golden
from lstmfpga.sim.cocotb_flow import run_cocotb
from lstmfpga.sim.streams import pack_outputs
from lstmfpga.simulation import stateful_golden

SIMULATORS = ["verilator", "icarus"]
#: The sequence-mode design's Verilator build (~30 CPU s) runs with LSTMFPGA_SWEEP=large only
#: (CI's budget): test_gru_sim.py's design is CI's sequence-mode GRU in Verilator.
SEQUENCE_SIMULATORS = SIMULATORS if LARGE else ["icarus"]
# name: (spec kwargs, preset, lanes P, simd S, cells V, mode, build options)
DESIGNS = {
    "sequence": (dict(input_size=4, hidden_size=3, bias=False, head="last", head_out=3),
                 "w4a8", 12, 3, 2, "sequence", {}),
    "stream": (dict(input_size=2, hidden_size=3, num_layers=2), "w8a8", 1, 2, 2, "stream",
               dict(with_states=True, initial_state=True)),
}  # fmt: skip
STALLS = dict(in_stall=0.3, out_stall=0.4)


@pytest.fixture(scope="module")
def build_cache(tmp_path_factory):
    return cache_root(tmp_path_factory)


@cache
def design(name: str):
    """``(qmodel, accelerator)`` of a design (one object per session, so one build)."""
    spec_kwargs, preset, P, S, V, mode, options = DESIGNS[name]
    seed = sorted(DESIGNS).index(name) + 50
    q, _ = random_gru_qmodel(seed, {"preset": preset}, calib_scale=1.0, **spec_kwargs)
    acc = LSTMAccelerator(q, lanes=P, simd=S, cells=V, mode=mode, max_seq_len=6, **options)
    return q, acc


def inputs(q, seed: int, batch: int, steps: int):
    """Input codes ``(batch, steps, I)`` and ``h0`` codes ``(L, batch, H)`` (seeded)."""
    rng = np.random.default_rng(seed)
    x = golden.quantize_inputs(q, rng.normal(0, 1, (batch, steps, q.input_size)))
    h0 = q.formats["hidden"].quantize(
        rng.normal(0, 0.4, (q.num_layers * q.num_directions, batch, q.hidden_size)), q.rounding
    )
    return x, h0


def expected(acc, golden_result) -> list[np.ndarray]:
    """The golden result as ``m_axis`` elements, per sequence."""
    r, geom = golden_result, acc.stream_geometry
    return [pack_outputs(geom, r.prediction, b, r.h_n) for b in range(len(r.prediction))]


def assert_equal(result, want, what: str) -> None:
    assert not result.error, what
    assert len(result.outputs) == len(want), what
    for b, (got, w) in enumerate(zip(result.outputs, want, strict=True)):
        np.testing.assert_array_equal(got, w, err_msg=f"{what}, sequence {b}")


@pytest.mark.parametrize("simulator", SEQUENCE_SIMULATORS)
def test_sequence_mode_w4a8_P4H_S3_no_bias_last_head(simulator, build_cache):
    q, acc = design("sequence")
    B, T = (3, 5) if simulator == "verilator" else (2, 3)
    x, _ = inputs(q, 1, B, T)
    want = expected(acc, gru_golden.run(q, x))
    plain = run_cocotb(acc, x, simulator=simulator, build_dir=build_cache)
    assert_equal(plain, want, f"{simulator}, no stalls")
    compute = CycleModel.of(acc).compute(T)
    assert [c.compute for c in plain.cycles] == [compute] * B
    stalled = run_cocotb(acc, x, simulator=simulator, seed=7, build_dir=build_cache, **STALLS)
    assert_equal(stalled, want, f"{simulator}, stalls (seed 7)")
    assert stalled.total_cycles > plain.total_cycles, "no stall happened"


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_stream_mode_w8a8_P1_2layer_no_head_h0_h_n(simulator, build_cache):
    q, acc = design("stream")
    B, T = (3, 6) if simulator == "verilator" else (2, 3)
    x, h0 = inputs(q, 2, B, T)
    stalled = run_cocotb(acc, x, h0, simulator=simulator, seed=8, build_dir=build_cache,
                         **STALLS)  # fmt: skip
    assert_equal(stalled, expected(acc, gru_golden.run(q, x, h0)), f"{simulator}, stalls")

    # the signal x[0] ++ x[1] ++ ... as stateful segments: the state carries over tlast
    resets = np.zeros((B, T), dtype=bool)
    resets[0, 0] = True  # restores h0 (of segment 0) before the first step
    segments = run_cocotb(acc, x, h0, simulator=simulator, seed=9, build_dir=build_cache,
                          keep_state=True, resets=resets, **STALLS)  # fmt: skip
    assert_equal(segments, expected(acc, stateful_golden(q, x, h0)), f"{simulator}, stateful")
    whole = gru_golden.run(q, x.reshape(1, B * T, -1), h0[:, :1])
    H = q.hidden_size
    got = np.concatenate([out[: T * H] for out in segments.outputs])
    np.testing.assert_array_equal(got, whole.prediction.reshape(-1))

    # cycles: an isolated step's latency, and the steady interval between steps
    model = StreamCycleModel.of(acc)
    one = run_cocotb(acc, x[:, :1], h0, simulator=simulator, build_dir=build_cache)
    assert [c.compute for c in one.cycles] == [model.latency] * B
    spans = []
    for steps in (T - 1, T):
        run = run_cocotb(acc, x[:1, :steps], h0[:, :1], simulator=simulator,
                         build_dir=build_cache)  # fmt: skip
        spans.append(run.cycles[0].last_out - run.cycles[0].first_out)
    assert spans[1] - spans[0] == model.interval, (spans, model)
