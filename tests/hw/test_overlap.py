# amaranth: UnusedElaboratable=no
"""Double-buffered sequence mode (``buffers=2``): sequence k + 1 loads while k is computed
and k - 1 drained; every result equals the golden model's, and back-to-back sequences take
exactly the cycles of ``CycleModel.batch`` (Amaranth simulator).

The host here offers each sequence's first element right after the previous sequence's
``tlast`` (the flows of ``lstmfpga.sim`` wait for the previous results), with random
valid/ready stalls on both streams when asked.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.sim import Simulator

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant import golden
from lstmfpga.sim.streams import StreamGeometry, pack_inputs, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel


@dataclass
class BackToBack:
    """What :func:`run_back_to_back` saw: the results of each sequence (split at ``tlast``),
    the cycles from the first input transfer to the last result transfer (both included),
    the design's ``error`` flag, and per cycle ``busy`` and ``w__ready``."""

    outputs: list
    cycles: int
    error: bool
    busy: list
    w_ready: list


def run_back_to_back(acc, inputs, n_results, *, in_stall=0.0, out_stall=0.0, seed=0):
    """Stream the element lists ``inputs`` (one per sequence, ``tlast`` on each last) into
    ``acc`` back to back and collect ``n_results`` result elements, idling ``tvalid`` /
    ``tready`` with probabilities ``in_stall`` / ``out_stall`` on each cycle."""
    rng = np.random.default_rng(seed)
    elements = [(int(v), k == len(seq) - 1) for seq in inputs for k, v in enumerate(seq)]
    run = BackToBack([[]], 0, False, [], [])
    limit = 50 * (len(elements) + n_results) + 20_000

    async def bench(ctx):
        taken = received = now = 0
        first = last = None
        while received < n_results:
            offer = taken < len(elements) and rng.random() >= in_stall
            ctx.set(acc.s_axis_tvalid, offer)
            if offer:
                ctx.set(acc.s_axis_tdata, elements[taken][0])
                ctx.set(acc.s_axis_tlast, elements[taken][1])
            ready = rng.random() >= out_stall
            ctx.set(acc.m_axis_tready, ready)
            *_, s_ready, valid, data, tlast, busy, w_ready = await ctx.tick().sample(
                acc.s_axis_tready, acc.m_axis_tvalid, acc.m_axis_tdata, acc.m_axis_tlast,
                acc.busy, acc.w.ready,
            )  # fmt: skip
            run.busy.append(bool(busy))
            run.w_ready.append(bool(w_ready))
            if offer and s_ready:
                first = now if first is None else first
                taken += 1
            if ready and valid:
                run.outputs[-1].append(int(data))
                received, last = received + 1, now
                if tlast:
                    run.outputs.append([])
            now += 1
            assert now < limit, f"stuck: {received} of {n_results} results after {now} cycles"
        run.outputs.pop()  # (the empty list after the last tlast)
        run.cycles = last - first + 1
        run.error = bool(ctx.get(acc.error))

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return run


def sequences_of(acc, lengths, seed):
    """Random sequences of ``lengths`` steps for ``acc``: their ``s_axis`` elements and the
    ``m_axis`` elements the golden model gives (random ``h0``/``c0`` with ``initial_state``)."""
    q = acc.model
    geom = StreamGeometry.of(q, with_states=acc.with_states, initial_state=acc.initial_state)
    rng = np.random.default_rng(seed)
    LD = q.num_layers * q.num_directions
    inputs, expected = [], []
    for b, T in enumerate(lengths):
        x = golden.quantize_inputs(q, random_inputs(seed + b, 1, T, q.input_size))
        h0 = c0 = None
        if acc.initial_state:
            h0 = q.formats["hidden"].quantize(rng.normal(0, 0.3, (LD, 1, q.output_size)))
            if geom.cell_state:
                c0 = q.formats["cell"].quantize(rng.normal(0, 0.3, (LD, 1, q.hidden_size)))
        run = golden.run(q, x, h0, c0)
        inputs.append(pack_inputs(geom, x, 0, h0, c0))
        expected.append(pack_outputs(geom, run.prediction, 0, run.h_n, run.c_n))
    return inputs, expected


def check_back_to_back(acc, lengths, seed, **stalls):
    """Every sequence of ``lengths`` steps, streamed back to back, gives the golden model's
    results; returns the run."""
    inputs, expected = sequences_of(acc, lengths, seed)
    run = run_back_to_back(acc, inputs, sum(e.size for e in expected), seed=seed, **stalls)
    assert not run.error
    assert len(run.outputs) == len(expected)
    for b, (got, want) in enumerate(zip(run.outputs, expected, strict=True)):
        assert np.array_equal(got, want), (
            f"sequence {b} (T={lengths[b]}, seed {seed}): {got} != {want}"
        )
    return run


CASES = {
    # name: (model kwargs, build options, sequence lengths); max_seq_len 4
    "uni-head-last-P4": (dict(input_size=3, hidden_size=4, head="last"), dict(lanes=4),
                         [1, 4, 2, 4, 1]),
    # 2 layers, bidirectional, head, h0/c0 in, h_n/c_n out: every banked buffer
    "2layer-bidir-head-all-S2-states": (
        dict(input_size=2, hidden_size=3, num_layers=2, bidirectional=True, head="all",
             head_out=2),
        dict(lanes=3, simd=2, with_states=True, initial_state=True), [2, 1, 4],
    ),
    # no head: the drain reads outbuf, the top layer output buffer's copy; V = 2
    "nohead-proj-V2-h0": (dict(input_size=3, hidden_size=4, proj_size=2),
                          dict(lanes=8, cells=2, initial_state=True), [3, 1, 4]),
    # three layers, no head: obuf0 holds layers 0 and 2, outbuf the top one's outputs
    "3layer-nohead-states-P5": (dict(input_size=2, hidden_size=3, num_layers=3),
                                dict(lanes=5, with_states=True), [2, 4, 1]),
}  # fmt: skip


def build(name, buffers=2, cases=CASES):
    kwargs, options, lengths = cases[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, **kwargs)
    return LSTMAccelerator(q, max_seq_len=4, buffers=buffers, **options), lengths, seed


@pytest.mark.parametrize("name", list(CASES))
def test_back_to_back_sequences_are_bit_exact_with_stalls_on_both_streams(name):
    acc, lengths, seed = build(name)
    check_back_to_back(acc, lengths, seed, in_stall=0.3, out_stall=0.4)


def test_gru_back_to_back_with_initial_and_final_states():
    from helpers.gru_models import random_gru_qmodel

    q, _ = random_gru_qmodel(3, dict(preset="q16"), input_size=2, hidden_size=3, num_layers=2)
    acc = LSTMAccelerator(q, lanes=4, max_seq_len=3, with_states=True, initial_state=True,
                          buffers=2)  # fmt: skip
    assert "c0buf" in acc.bank_plan()  # h0 for the state memory
    check_back_to_back(acc, [2, 3, 1], 3, in_stall=0.2, out_stall=0.3)


BATCH = {
    # name: (model kwargs, build options, sequence lengths); measured == CycleModel.batch
    "P4-head-last-T3x4": (dict(input_size=3, hidden_size=4, head="last"), dict(lanes=4),
                          [3, 3, 3, 3]),
    "P1-nohead-long-drain": (dict(input_size=2, hidden_size=3), dict(lanes=1), [4, 1, 4]),
    "P8-S21-load-bound": (dict(input_size=40, hidden_size=2), dict(lanes=8, simd=21),
                          [2, 2, 2, 2]),
    "2layer-bidir-head-S2-states-h0": (
        dict(input_size=2, hidden_size=3, num_layers=2, bidirectional=True, head="last"),
        dict(lanes=6, simd=2, with_states=True, initial_state=True), [1, 4, 2],
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "buffers"),
    [(name, 2) for name in BATCH] + [("P1-nohead-long-drain", 1)],
)
def test_back_to_back_cycles_equal_the_cycle_model(name, buffers):
    acc, lengths, seed = build(name, buffers, BATCH)
    run = check_back_to_back(acc, lengths, seed)
    model = CycleModel.of(acc)
    assert run.cycles == model.batch(lengths)
    if len(set(lengths)) == 1:
        assert run.cycles == model.sequences(len(lengths), lengths[0])


def test_overlap_saves_the_loads_and_drains_of_all_but_one_sequence():
    acc1, lengths, _ = build("P8-S21-load-bound", 1, BATCH)
    acc2, *_ = build("P8-S21-load-bound", 2, BATCH)
    one, two = CycleModel.of(acc1), CycleModel.of(acc2)
    T, B = lengths[0], len(lengths)
    n_in, n_out = acc1.input_length(T), acc1.result_length(T)
    assert one.batch(lengths) == B * (n_in + one.compute(T) + n_out - 2)
    # here the load (80 elements) is longer than the compute: it sets the pace
    assert two.interval(T) == n_in > two.compute(T) - 2
    assert two.batch(lengths) == two.compute(T) + n_out - 2 + B * n_in


def test_buffers_change_no_cycle_of_a_sequence_that_finds_the_pipeline_idle():
    from lstmfpga.sim.amaranth_sim import run_amaranth

    stamps = {}
    for buffers in (1, 2):
        acc, _, seed = build("3layer-nohead-states-P5", buffers)
        x = golden.quantize_inputs(acc.model, random_inputs(seed, 2, 2, acc.model.input_size))
        stamps[buffers] = run_amaranth(acc, x, in_stall=0.3, out_stall=0.3, seed=seed).cycles
    assert stamps[1] == stamps[2]  # the flows of lstmfpga.sim: one sequence at a time


def error_inputs(acc, seed):
    """Back-to-back sequences with the documented error conditions between good ones:
    ``(s_axis element lists, expected results per sequence that has any)``."""
    q = acc.model
    I, Tmax = q.input_size, acc.max_seq_len
    good, want = sequences_of(acc, [2, Tmax], seed)
    x = golden.quantize_inputs(q, random_inputs(seed + 7, 1, Tmax + 2, I))
    geom = StreamGeometry.of(q, with_states=acc.with_states, initial_state=acc.initial_state)

    def expect(steps):
        run = golden.run(q, x[:, :steps])
        return pack_outputs(geom, run.prediction, 0, run.h_n, run.c_n)

    too_long = x.reshape(-1)  # Tmax + 2 vectors: the first Tmax are computed
    partial = x[0, :2].reshape(-1)[: 2 * I - 1]  # one whole vector, then I - 1 elements
    dropped = x[0, 0, : I - 1]  # no whole vector: no results at all
    inputs = [good[0], dropped, too_long, partial, good[1]]
    return inputs, [want[0], expect(Tmax), expect(1), want[1]]


def test_error_sequences_between_good_ones_behave_as_documented():
    _, q = random_qmodel(11, input_size=3, hidden_size=4, head="all", head_out=2)
    acc = LSTMAccelerator(q, lanes=4, max_seq_len=3, buffers=2)
    inputs, expected = error_inputs(acc, 11)
    run = run_back_to_back(acc, inputs, sum(e.size for e in expected), in_stall=0.2,
                           out_stall=0.3, seed=11)  # fmt: skip
    assert run.error  # sticky
    assert len(run.outputs) == len(expected)
    for b, (got, want) in enumerate(zip(run.outputs, expected, strict=True)):
        assert np.array_equal(got, want), f"sequence {b}: {got} != {want}"


def test_a_sequence_ending_inside_its_initial_state_is_dropped():
    acc, _, seed = build("nohead-proj-V2-h0")
    good, want = sequences_of(acc, [1, 2], seed)
    inputs = [good[0], good[1][:3], good[1]]  # the middle one ends inside h0
    run = run_back_to_back(acc, inputs, sum(w.size for w in want), seed=seed)
    assert run.error and len(run.outputs) == 2
    assert all(np.array_equal(g, w) for g, w in zip(run.outputs, want, strict=True))


def test_weight_port_is_ready_exactly_while_no_sequence_waits_computes_or_drains():
    acc, lengths, seed = build("uni-head-last-P4")
    run = check_back_to_back(acc, lengths, seed, in_stall=0.5, out_stall=0.5)
    assert run.w_ready == [not busy for busy in run.busy]
    first, last = run.busy.index(True), len(run.busy) - run.busy[::-1].index(True)
    assert sum(run.busy[first:last]) > 0.9 * (last - first)  # the sequences overlap


@pytest.mark.parametrize(
    ("kwargs", "options", "T"),
    [
        (dict(input_size=8, hidden_size=32, head="last", head_out=10), dict(lanes=8), 8),  # digits
        (dict(input_size=8, hidden_size=32, head="last", head_out=10), dict(lanes=16, simd=4), 8),
        (dict(input_size=16, hidden_size=64), dict(lanes=16), 16),
        (
            dict(input_size=4, hidden_size=16, num_layers=2, bidirectional=True, head="all"),
            dict(lanes=8, simd=2, with_states=True, initial_state=True),
            32,
        ),
        (dict(input_size=3, hidden_size=4), dict(lanes=4), 1),
    ],
    ids=["digits-P8", "digits-P16-S4", "H64-P16-nohead", "2layer-bidir-all-states", "tiny-T1"],
)
def test_back_to_back_sequences_cost_at_most_1_05_computes_plus_one_load_and_drain(
    kwargs, options, T
):
    _, q = random_qmodel(2, **kwargs)
    B = 16
    two = CycleModel.of(LSTMAccelerator(q, max_seq_len=max(T, 8), buffers=2, **options))
    one = CycleModel.of(LSTMAccelerator(q, max_seq_len=max(T, 8), buffers=1, **options))
    acc = two.accelerator
    load, drain, compute = acc.input_length(T), acc.result_length(T), two.compute(T)
    assert two.sequences(B, T) <= 1.05 * B * compute + load + drain
    assert one.sequences(B, T) == B * (load + compute + drain - 2)  # one at a time
    assert two.sequences(B, T) - two.sequences(B - 1, T) == two.interval(T)


@pytest.mark.parametrize("buffers", [0, 3, -1, 2.0, True, "2"])
def test_buffers_other_than_one_or_two_are_refused(buffers):
    _, q = random_qmodel(3, input_size=2, hidden_size=3)
    with pytest.raises(ValueError, match=rf"^buffers must be 1 or 2, not {buffers!r}$"):
        LSTMAccelerator(q, buffers=buffers)


def test_stream_mode_has_one_buffer():
    _, q = random_qmodel(3, input_size=2, hidden_size=3)
    assert LSTMAccelerator(q, mode="stream").buffers == 1
    assert LSTMAccelerator(q, mode="stream", buffers=1).buffers == 1
    with pytest.raises(ValueError, match=r"^buffers does not apply to mode 'stream' \(its "
                       r"rings overlap the steps already\), not 2$"):  # fmt: skip
        LSTMAccelerator(q, mode="stream", buffers=2)


@pytest.mark.parametrize(
    ("kwargs", "options", "two_banks", "single"),
    [
        (dict(head="last"), {}, {"xbuf", "headbuf"}, {"obuf0", "cmem"}),
        ({}, dict(initial_state=True), {"xbuf", "h0buf", "c0buf", "outbuf"}, {"obuf0", "cmem"}),
        (
            dict(num_layers=2, head="all"),
            dict(with_states=True),
            {"xbuf", "hnbuf", "cmem", "headbuf"},
            {"obuf0", "obuf1"},
        ),
        (
            dict(proj_size=2),
            dict(with_states=True, initial_state=True),
            {"xbuf", "h0buf", "c0buf", "hnbuf", "cmem", "outbuf"},
            {"obuf0", "mbuf"},
        ),
    ],
    ids=["head", "h0-nohead", "2layer-states", "proj-states-h0"],
)
def test_two_buffers_double_exactly_the_input_and_result_buffers(kwargs, options, two_banks,
                                                                 single):  # fmt: skip
    _, q = random_qmodel(4, input_size=3, hidden_size=5, **kwargs)
    one = LSTMAccelerator(q, max_seq_len=5, buffers=1, **options)
    two = LSTMAccelerator(q, max_seq_len=5, buffers=2, **options)
    banks = two.bank_plan()
    assert {name for name, (*_, count) in banks.items() if count == 2} == two_banks
    assert {name for name, (*_, count) in banks.items() if count == 1} == single
    assert one.bank_plan() == {name: (*wd, 1) for name, wd in one.buffer_plan().items()}
    plan1, plan2 = one.buffer_plan(), two.buffer_plan()
    for name, (width, depth, count) in banks.items():
        words = plan1.get(name, (0, depth))[1]  # c0buf: cmem's; outbuf: the top obuf's
        assert words == depth or name in ("c0buf", "outbuf")
        # bank 1 starts at the next power of two: word a of bank b is at b * 2**w + a
        high = 1 << max(1, (depth - 1).bit_length())
        assert plan2[name] == (width, depth if count == 1 else high + depth)
