# amaranth: UnusedElaboratable=no
"""The whole accelerator equals the golden model bit for bit (Amaranth simulator).

Each case builds a random model, quantizes it, runs several sequences back to back through
``s_axis``/``m_axis`` (optionally with random valid/ready stalls) and compares every output
element with ``quant.golden.run`` by integer equality.
"""

import numpy as np
import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator, default_cells
from lstmfpga.quant import golden
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel

CASES = {
    # name: (model kwargs, lanes, T, batch, build options)
    "uni-nohead-P4": (dict(input_size=3, hidden_size=4), 4, 5, 2, {}),
    "P1-odd": (dict(input_size=2, hidden_size=3, head="last"), 1, 3, 2, {}),
    "P2-head-all-nobias": (
        dict(input_size=3, hidden_size=3, bias=False, head="all", head_bias=False),
        2, 4, 2, {},
    ),
    "P4H-bidir": (dict(input_size=3, hidden_size=2, bidirectional=True, head="last"), 8, 4, 2, {}),
    "2layer-proj": (dict(input_size=4, hidden_size=5, num_layers=2, proj_size=2), 4, 3, 2, {}),
    "3layer-bidir-proj-states": (
        dict(input_size=2, hidden_size=4, num_layers=3, bidirectional=True, proj_size=3,
             head="all", head_out=2),
        8, 3, 2, dict(with_states=True, initial_state=True),
    ),
    # lane counts that are neither divisors nor multiples of 4: row groups end inside units
    "P6-3layer-bidir-proj-states": (
        dict(input_size=2, hidden_size=3, num_layers=3, bidirectional=True, proj_size=2,
             head="all", head_out=3),
        6, 3, 2, dict(with_states=True, initial_state=True),
    ),
    "P3-H6-nobias-head-all": (
        dict(input_size=2, hidden_size=6, bias=False, head="all", head_out=2), 3, 4, 2, {},
    ),
    "P10-H5-proj-head-last": (
        dict(input_size=3, hidden_size=5, proj_size=3, head="last", head_out=4), 10, 3, 2, {},
    ),
    # lane counts not dividing 4H: the last gate row group of a step is padded
    "P7-H3-2layer-bidir-proj-states": (
        dict(input_size=3, hidden_size=3, num_layers=2, bidirectional=True, proj_size=2,
             head="all", head_out=3),
        7, 3, 2, dict(with_states=True, initial_state=True),
    ),
    "P9-H5-head-last": (dict(input_size=1, hidden_size=5, head="last", head_out=3), 9, 4, 2, {}),
}  # fmt: skip


def _check(acc, x, h0=None, c0=None, **run_kwargs):
    q = acc.model
    x_codes = golden.quantize_inputs(q, x)
    expected = golden.run(q, x_codes, h0, c0)
    result = run_amaranth(acc, x_codes, h0, c0, **run_kwargs)
    geom = StreamGeometry.of(q, with_states=acc.with_states, initial_state=acc.initial_state)
    assert not result.error
    for b, got in enumerate(result.outputs):
        want = pack_outputs(geom, expected.prediction, b, expected.h_n, expected.c_n)
        mismatch = np.flatnonzero(got != want)
        assert got.shape == want.shape and mismatch.size == 0, (
            f"sequence {b}: {mismatch.size} mismatches, first at {mismatch[:5]}: "
            f"rtl {got[mismatch[:5]]} golden {want[mismatch[:5]]}"
        )
    return result


def _initial_states(q, batch, seed, options):
    """Random ``(h0, c0)`` codes for a design built with ``initial_state``, else Nones."""
    if not options.get("initial_state"):
        return None, None
    rng = np.random.default_rng(seed)
    LD = q.num_layers * q.num_directions
    h0 = q.formats["hidden"].quantize(rng.normal(0, 0.3, (LD, batch, q.output_size)))
    c0 = q.formats["cell"].quantize(rng.normal(0, 0.3, (LD, batch, q.hidden_size)))
    return h0, c0


@pytest.mark.parametrize("name", list(CASES))
def test_accelerator_is_bit_exact(name):
    kwargs, lanes, T, batch, options = CASES[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=8, **options)
    x = random_inputs(seed, batch, T, q.input_size)
    _check(acc, x, *_initial_states(q, batch, seed, options))


@pytest.mark.parametrize(("seed", "lanes"), [(1, 4), (2, 4), (3, 6), (4, 3), (5, 5), (6, 17)])
def test_random_stalls_on_both_streams_lose_nothing(seed, lanes):
    _, q = random_qmodel(seed, input_size=3, hidden_size=6, head="all", head_out=2)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=8)
    x = random_inputs(seed, 3, 4, 3)
    _check(acc, x, in_stall=0.4, out_stall=0.5, seed=seed)


def test_long_sequence_of_length_50():
    _, q = random_qmodel(7, input_size=2, hidden_size=2, head="last")
    acc = LSTMAccelerator(q, lanes=8, max_seq_len=64)
    _check(acc, random_inputs(7, 1, 50, 2))


def test_sequence_of_length_one_and_max_length():
    _, q = random_qmodel(8, input_size=2, hidden_size=3, bidirectional=True)
    acc = LSTMAccelerator(q, lanes=4, max_seq_len=6)
    _check(acc, random_inputs(8, 2, 1, 2))
    _check(acc, random_inputs(9, 1, 6, 2))


def test_lanes_beyond_the_gate_rows_are_refused():
    _, q = random_qmodel(3, input_size=2, hidden_size=3)
    acc = LSTMAccelerator(q, lanes=5)  # 5 does not divide 12: the last row group is padded
    assert acc.layout.matrices[0].padded_rows == 15
    with pytest.raises(ValueError, match=r"^lanes must be in 1\.\.12 \(4\*hidden_size\), not 13$"):
        LSTMAccelerator(q, lanes=13)


def test_bad_arguments_are_rejected():
    _, q = random_qmodel(3, input_size=2, hidden_size=3)
    with pytest.raises(TypeError, match="model must be a QuantizedModel"):
        LSTMAccelerator("model.q")
    with pytest.raises(ValueError, match="max_seq_len must be a positive integer"):
        LSTMAccelerator(q, lanes=4, max_seq_len=0)


CELL_CASES = {
    # name: (model kwargs, P, S, V, T, build options): V parallel activation + cell units
    "V1-P8-S2-head-last": (dict(input_size=3, hidden_size=4, head="last"), 8, 2, 1, 3, {}),
    "V2-P8-uni-nohead": (dict(input_size=3, hidden_size=4), 8, 1, 2, 3, {}),
    "V3-P12-S2-2layer-head-all": (
        dict(input_size=3, hidden_size=5, num_layers=2, head="all", head_out=2), 12, 2, 3, 3, {},
    ),
    "V=H-P16-S4-bidir-proj-states": (
        dict(input_size=2, hidden_size=4, bidirectional=True, proj_size=3, head="last"),
        16, 4, 4, 3, dict(with_states=True, initial_state=True),
    ),
    "V2-P7-S3-proj-padded-units-straddle": (
        dict(input_size=3, hidden_size=5, proj_size=2), 7, 3, 2, 3, {},
    ),
    "V4-P20-S1-2layer-bidir-nobias-head-all": (
        dict(input_size=2, hidden_size=6, num_layers=2, bidirectional=True, bias=False,
             head="all", head_out=3),
        20, 1, 4, 2, {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CELL_CASES))
def test_parallel_cells_are_bit_exact_with_stalls(name):
    kwargs, lanes, simd, cells, T, options = CELL_CASES[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, simd=simd, cells=cells, max_seq_len=4, **options)
    assert acc.cells == cells
    x = random_inputs(seed, 2, T, q.input_size)
    _check(acc, x, *_initial_states(q, 2, seed, options), in_stall=0.3, out_stall=0.4, seed=seed)


@pytest.mark.parametrize(
    ("kwargs", "lanes", "simd", "cells"),
    [
        (dict(input_size=8, hidden_size=32), 8, 1, 1),  # digits: 40 beats per group, 2 units
        (dict(input_size=8, hidden_size=32), 128, 1, 1),  # 32 units in 40 beats
        (dict(input_size=8, hidden_size=32), 128, 4, 4),  # 32 units in 10 beats
        (dict(input_size=3, hidden_size=4), 16, 4, 2),  # 4 units in 2 beats
        (dict(input_size=1, hidden_size=2, num_layers=2), 8, 3, 2),  # layer 0: 2 units, 1 beat
        (dict(input_size=1, hidden_size=3), 12, 4, 3),  # 3 units in 1 beat: V = H
    ],
)
def test_default_cells_are_the_fewest_that_keep_the_mvu_from_waiting(kwargs, lanes, simd, cells):
    _, q = random_qmodel(2, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, simd=simd)
    assert acc.cells == default_cells(acc.layout) == cells
    units = -(-lanes // 4)
    chunks = min(mx.chunks for mx in acc.layout.matrices if mx.kind == "gates")
    assert -(-units // cells) <= chunks or cells == q.hidden_size  # the MVU never waits
    assert cells == 1 or -(-units // (cells - 1)) > chunks  # and one fewer would not do


def test_cells_count_in_the_multiplier_plan():
    _, q = random_qmodel(3, input_size=2, hidden_size=6)
    plans = {v: LSTMAccelerator(q, lanes=8, cells=v).multiplier_plan() for v in (1, 3)}
    for one, three in zip(plans[1], plans[3], strict=True):
        assert one["where"] == three["where"]
        mvu = one["where"] == "matrix-vector unit lanes"
        assert three["count"] == one["count"] * (1 if mvu else 3)
    assert sum(mul["count"] for mul in plans[3]) == 8 + 3 * (4 + 1 + 1 + 2)


@pytest.mark.parametrize("cells", [0, 7, -1, 2.0, True, "2"])
def test_cells_outside_one_to_hidden_size_are_refused(cells):
    _, q = random_qmodel(3, input_size=2, hidden_size=6)
    with pytest.raises(
        ValueError, match=rf"^cells must be in 1\.\.6 \(hidden_size\), not {cells!r}$"
    ):
        LSTMAccelerator(q, lanes=4, cells=cells)
