# amaranth: UnusedElaboratable=no
"""Double-buffered sequence mode (``buffers=2``) in Verilator and Icarus: back-to-back sequences of
different lengths (1 to ``max_seq_len``) with random stalls on both streams equal the golden
model, and without stalls take exactly ``CycleModel.batch`` cycles (one build of a 2-layer
bidirectional model with a head, ``h0``/``c0`` in and ``h_n``/``c_n`` out).

The flows of ``lstmfpga.sim`` send a sequence only after the previous one's results, so this
test drives the streams itself (``overlap_bench.py``, a cocotb module, one Python step per
cycle) on the design's own Verilog.
"""

import numpy as np
import overlap_bench  # tests/sim/overlap_bench.py: the cocotb module and its host side
import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant import golden
from lstmfpga.sim.streams import StreamGeometry, pack_inputs, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel

SEED = 21


@pytest.fixture(scope="module", params=["verilator", "icarus"])
def design(request, tmp_path_factory):
    """The accelerator and its build in each simulator (built once for this module)."""
    simulator = request.param
    _, q = random_qmodel(SEED, input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                         head="all", head_out=3)  # fmt: skip
    acc = LSTMAccelerator(q, lanes=6, simd=2, max_seq_len=6, with_states=True,
                          initial_state=True, buffers=2)  # fmt: skip
    build_dir = tmp_path_factory.mktemp(f"overlap_{simulator}")
    return acc, overlap_bench.build(acc, build_dir, simulator), build_dir, simulator


def sequences(acc, lengths, seed):
    """The ``s_axis`` elements of random sequences of ``lengths`` steps (random h0, c0) and
    the ``m_axis`` elements the golden model gives for each."""
    q = acc.model
    geom = StreamGeometry.of(q, with_states=True, initial_state=True)
    rng = np.random.default_rng(seed)
    LD = q.num_layers * q.num_directions
    inputs, expected = [], []
    for b, T in enumerate(lengths):
        x = golden.quantize_inputs(q, random_inputs(seed + b, 1, T, q.input_size))
        h0 = q.formats["hidden"].quantize(rng.normal(0, 0.3, (LD, 1, q.output_size)))
        c0 = q.formats["cell"].quantize(rng.normal(0, 0.3, (LD, 1, q.hidden_size)))
        run = golden.run(q, x, h0, c0)
        inputs.append(pack_inputs(geom, x, 0, h0, c0))
        expected.append(pack_outputs(geom, run.prediction, 0, run.h_n, run.c_n))
    return inputs, expected


def run_back_to_back(design, name, lengths, *, in_stall=0.0, out_stall=0.0, seed=SEED):
    acc, runner, build_dir, simulator = design
    inputs, expected = sequences(acc, lengths, seed)
    result = overlap_bench.run(runner, build_dir, name, inputs, sum(e.size for e in expected),
                               in_stall=in_stall, out_stall=out_stall, seed=seed,
                               simulator=simulator)  # fmt: skip
    assert not result["error"]
    assert len(result["outputs"]) == len(expected), f"log: {result['log']}"
    for b, (got, want) in enumerate(zip(result["outputs"], expected, strict=True)):
        assert np.array_equal(got, want), f"sequence {b} (T={lengths[b]}): {got} != {want}"
    return result


def test_back_to_back_sequences_with_stalls_are_bit_exact(design):
    run_back_to_back(design, "stalls", [1, 6, 3, 1, 5, 6, 2], in_stall=0.3, out_stall=0.4)


def test_back_to_back_cycles_equal_the_cycle_model(design):
    lengths = [4, 4, 4, 4, 6, 1]
    result = run_back_to_back(design, "cycles", lengths)
    model = CycleModel.of(design[0])
    assert result["cycles"] == model.batch(lengths)
    assert model.batch(lengths) < CycleModel.of(
        LSTMAccelerator(design[0].model, lanes=6, simd=2, max_seq_len=6, with_states=True,
                        initial_state=True, buffers=1)
    ).batch(lengths)  # fmt: skip


@pytest.mark.parametrize("design", ["verilator"], indirect=True)  # one lint of the Verilog
def test_double_buffered_verilog_is_lint_clean(design):
    from lstmfpga.sim.lint import verilator_lint

    assert verilator_lint(design[2], "top") == ""  # -Wall with the project's waivers
