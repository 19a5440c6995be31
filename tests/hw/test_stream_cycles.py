# amaranth: UnusedElaboratable=no
"""The stream-mode cycle model (``hw.stream_cycles.StreamCycleModel``) is exact.

``latency``: an isolated step (here each one-step sequence of a batch), from its last input
element accepted to its first output element valid, as measured in the Amaranth simulator.
``interval``: in a long sequence fed and drained without stalls, the cycles between the
first output elements of consecutive steps once the pipeline is steady.
"""

import numpy as np
import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.hw.stream_cycles import StreamCycleModel
from lstmfpga.quant import golden
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.testing import random_inputs, random_qmodel

CASES = {
    # name: (model kwargs, lanes, simd, cells)
    "1layer-P4": (dict(input_size=3, hidden_size=4), 4, 1, None),
    "2layer-proj-P4": (dict(input_size=4, hidden_size=5, num_layers=2, proj_size=2), 4, 1, None),
    "V2-P8-S2-2layer-head-all": (
        dict(input_size=5, hidden_size=6, num_layers=2, head="all", head_out=2), 8, 2, 2,
    ),
    "P1-head-last": (dict(input_size=2, hidden_size=3, head="last"), 1, 1, None),
}  # fmt: skip


def _accelerator(name):
    kwargs, lanes, simd, cells = CASES[name]
    _, q = random_qmodel(sum(map(ord, name)), **kwargs)
    return LSTMAccelerator(q, lanes=lanes, simd=simd, cells=cells, mode="stream")


@pytest.mark.parametrize("name", list(CASES))
def test_isolated_step_latency_is_the_model(name):
    acc = _accelerator(name)
    x = golden.quantize_inputs(acc.model, random_inputs(1, 2, 1, acc.model.input_size))
    result = run_amaranth(acc, x)
    model = StreamCycleModel.of(acc)
    assert [c.compute for c in result.cycles] == [model.latency] * 2
    # the one-step path of sequence mode (+1 for a last head's final words)
    extra = 1 if acc.model.head is not None and acc.model.head.mode == "last" else 0
    assert model.latency == CycleModel.of(acc).compute(1) + extra


@pytest.mark.parametrize("name", [n for n in CASES if "last" not in n])
def test_steady_step_interval_is_the_model(name):
    acc = _accelerator(name)
    T = 8
    x = golden.quantize_inputs(acc.model, random_inputs(2, 1, T, acc.model.input_size))
    result = run_amaranth(acc, x)
    model = StreamCycleModel.of(acc)
    per_step = model.per_step_outputs
    firsts = result.output_cycles[0][: T * per_step : per_step]
    np.testing.assert_array_equal(np.diff(firsts)[-4:], [model.interval] * 4)


def test_the_model_is_for_stream_mode_only():
    _, q = random_qmodel(1, input_size=2, hidden_size=3)
    with pytest.raises(ValueError, match=r"^accelerator mode must be 'stream', not 'sequence'$"):
        StreamCycleModel.of(LSTMAccelerator(q))
