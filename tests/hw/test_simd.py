# amaranth: UnusedElaboratable=no
"""Two-dimensional parallelism: ``lanes`` P rows x ``simd`` S columns per beat.

The matrix-vector unit takes ``S`` columns per beat (``P * S`` multipliers, an adder tree
per lane), the weight memory stores ``P`` banks of ``S``-wide words and the fetch stage
reads ``S`` vector elements per beat (one buffer read port per slot); a matrix costs
``ceil(rows / P) * ceil(cols / S)`` beats and the last chunk of a row is padded with zero
columns, so any ``S`` from 1 to the longest row works. Checked here in Amaranth's simulator:
the unit alone against ``quant.golden.dot_accumulate`` + ``requantize`` with stalls, the
layout's words, and whole accelerators bit-exact against ``quant.golden.run`` with random
valid/ready stalls on both streams and cycle-exact against ``CycleModel``.
"""

import numpy as np
import pytest
from helpers.lstm_models import make_model
from test_lane_divisors import assert_bit_and_cycle_exact
from test_mvu import build, make_case, run_mvu

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.layout import WeightLayout
from lstmfpga.hw.mvu import MatrixVectorUnit
from lstmfpga.quant.fixed import requantize as golden_requantize
from lstmfpga.quant.fixed import shift_round
from lstmfpga.quant.golden import dot_accumulate
from lstmfpga.testing import random_inputs, random_qmodel


def simd_beats(job, lanes, simd):
    """The beats of ``job`` for a ``lanes`` x ``simd`` unit: columns in chunks of ``simd``,
    the last chunk padded with zero weights (and a non-zero vector element, which must not
    matter)."""
    rows, cols = job.weights.shape
    chunks = -(-cols // simd)
    wide = np.zeros((rows, chunks * simd), np.int64)
    wide[:, :cols] = job.weights
    vector = np.full(chunks * simd, 12345, np.int64)
    vector[:cols] = job.vector
    sel = np.zeros(chunks * simd, np.int64)
    sel[:cols] = job.shift_sel
    for g in range(rows // lanes):
        rs = slice(g * lanes, (g + 1) * lanes)
        for c in range(chunks):
            cs = slice(c * simd, (c + 1) * simd)
            yield {
                "weights": wide[rs, cs].reshape(-1).tolist(),
                "vector": vector[cs].tolist(),
                "bias": job.bias[rs].tolist(),
                "shift_sel": sel[cs].tolist(),
                "target_sel": job.target,
                "first": int(c == 0),
                "last": int(c == chunks - 1),
            }


@pytest.mark.parametrize(("lanes", "simd"), [(1, 2), (3, 3), (4, 5), (2, 8), (12, 4)])
def test_mvu_with_simd_matches_golden_with_stalls(lanes, simd):
    I, H = 3, 3
    seed = 100 * lanes + simd
    jobs, acc, targets = make_case(lanes, I, H, seed)
    ref = build(lanes, acc, targets)
    dut = MatrixVectorUnit(lanes, ref.weight_bits, ref.vector_bits, acc, ref.product_shifts,
                           targets, simd=simd)  # fmt: skip
    ref._MustUse__silence = True
    assert (dut.simd, dut.latency) == (simd, 6)

    class SimdJob:  # run_mvu streams job.beats(lanes)
        def __init__(self, job):
            self.job, self.weights = job, job.weights

        def beats(self, lanes):
            return simd_beats(self.job, lanes, simd)

    accepted, outputs = run_mvu(dut, [SimdJob(j) for j in jobs], seed, idle=0.3, stall=0.5)
    expected = []
    for job in jobs:
        shifts = np.array(job.shifts)[job.shift_sel]
        total = dot_accumulate(job.weights, job.vector, shifts, job.bias)
        _, shift, fmt = targets[job.target]
        codes, _ = golden_requantize(total, shift, fmt, dut.rounding, dut.overflow)
        flags = fmt.overflows(shift_round(total, shift, dut.rounding))
        for g in range(len(total) // lanes):
            rs = slice(g * lanes, (g + 1) * lanes)
            expected.append((codes[rs].tolist(),
                             sum(int(f) << p for p, f in enumerate(flags[rs]))))  # fmt: skip
    got = [([int(payload.data[p]) for p in range(lanes)], int(payload.saturated))
           for payload, _ in outputs]  # fmt: skip
    assert got == expected, f"seed {seed}"
    assert len(accepted) == sum(len(list(SimdJob(j).beats(lanes))) for j in jobs)


def test_layout_words_hold_chunks_of_simd_columns():
    model, _ = make_model(input_size=3, hidden_size=2, proj_size=1, head=3, seed=4)
    base = WeightLayout.of(model, 4)
    for simd in (1, 2, 3, 4):
        layout = WeightLayout.of(model, 4, simd)
        assert layout.simd == simd and layout.weight_words.shape[1] == 4 * simd
        for mat, ref in zip(layout.matrices, base.matrices, strict=True):
            assert mat.chunks == -(-ref.cols // simd) and mat.words == ref.groups * mat.chunks
            words = layout.weight_words[mat.base : mat.base + mat.words]
            # element p*S + s of word g*chunks + c is row g*P + p, column c*S + s (or 0)
            grid = words.reshape(mat.groups, mat.chunks, 4, simd).transpose(0, 2, 1, 3)
            grid = grid.reshape(mat.groups * 4, mat.chunks * simd)
            assert np.array_equal(grid[:, : mat.cols], ref.codes)
            assert not grid[:, mat.cols :].any()
        assert np.array_equal(layout.bias_words, base.bias_words)


@pytest.mark.parametrize(
    ("simd", "error", "message"),
    [
        (0, ValueError, r"^simd must be in 1\.\.7 \(the longest matrix row\), not 0$"),
        (8, ValueError, r"^simd must be in 1\.\.7 \(the longest matrix row\), not 8$"),
        ("2", TypeError, r"^simd must be an integer, not '2'$"),
        (True, TypeError, r"^simd must be an integer, not True$"),
    ],
)
def test_bad_simd_is_refused(simd, error, message):
    _, q = random_qmodel(5, input_size=4, hidden_size=3)
    with pytest.raises(error, match=message):
        LSTMAccelerator(q, lanes=4, simd=simd)


VARIANTS = {
    # name: (model kwargs, accelerator options)
    "head-all": (dict(head="all", head_out=2), {}),
    "proj-states": (dict(proj_size=2, head="last", head_out=3),
                    dict(with_states=True, initial_state=False)),
    "bidir-2layers": (dict(num_layers=2, bidirectional=True, bias=False), dict(with_states=True)),
}  # fmt: skip
T, BATCH, H = 2, 2, 3


def longest_row(q):
    sizes = [q.layer_input_size(l) + q.output_size for l in range(q.num_layers)]
    return max(*sizes, q.hidden_size if q.proj_size else 0, q.num_directions * q.output_size)


def grid():
    for index, (P, S) in enumerate((p, s) for p in (1, 3, 12) for s in (2, 3, "longest")):
        variant = list(VARIANTS)[index % len(VARIANTS)]
        yield pytest.param(P, S, variant, id=f"P{P}-S{S}-{variant}")


@pytest.mark.parametrize(("P", "S", "variant"), list(grid()))
def test_accelerator_with_simd_is_bit_exact_with_an_exact_cycle_model(P, S, variant):
    model_kwargs, options = VARIANTS[variant]
    seed = 7000 + 10 * P + (0 if S == "longest" else S)
    I = 2 + seed % 2
    _, q = random_qmodel(seed, input_size=I, hidden_size=H, **model_kwargs)
    S = longest_row(q) if S == "longest" else S
    # One buffer: each sequence's compute is then CycleModel.compute (tests/hw/test_overlap.py
    # checks two buffers, back to back, against CycleModel.batch).
    acc = LSTMAccelerator(q, lanes=P, simd=S, max_seq_len=T, buffers=1, **options)
    assert_bit_and_cycle_exact(acc, random_inputs(seed, BATCH, T, I), seed)
    # a matrix costs ceil(rows / P) * ceil(cols / S) beats
    assert [mx.words for mx in acc.layout.matrices] == [
        -(-mx.rows // P) * -(-mx.cols // S) for mx in acc.layout.matrices
    ]
