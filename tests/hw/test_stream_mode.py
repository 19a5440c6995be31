# amaranth: UnusedElaboratable=no
"""Stream mode (``LSTMAccelerator(..., mode="stream")``) equals the golden model bit for bit.

Each step's input enters and its output leaves as soon as it is computed: the result stream
of a sequence is exactly sequence mode's (``pack_outputs`` of the golden model), with any
number of steps (no ``max_seq_len``), state reset per sequence or carried across
sequences (``keep_state``), and a reset before any step whose first input element carries
``s_axis_tuser``. Amaranth simulator, fixed seeds. The long runs (``slow``) are sized by
``LSTMFPGA_SWEEP``: ``small`` (the default, CI) 60 steps and a 48-step signal in 8
segments; ``large`` 1000 steps and a 400-step signal in 8 segments of 50
(``tests/sim/test_stream_sim.py`` runs 1000 steps in Verilator).
"""

import os

import numpy as np
import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.quant import golden
from lstmfpga.sim.amaranth_sim import run_amaranth
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.simulation import stateful_golden
from lstmfpga.testing import random_inputs, random_qmodel

CASES = {
    # name: (model kwargs, lanes, simd, T, batch, build options)
    "1layer-nohead-P4": (dict(input_size=3, hidden_size=4), 4, 1, 6, 2, {}),
    "P1-odd-head-last": (dict(input_size=2, hidden_size=3, head="last"), 1, 1, 5, 2, {}),
    "P2-S2-head-all-nobias": (
        dict(input_size=3, hidden_size=3, bias=False, head="all", head_bias=False),
        2, 2, 5, 2, {},
    ),
    "2layer-proj": (dict(input_size=4, hidden_size=5, num_layers=2, proj_size=2), 4, 1, 5, 2, {}),
    "3layer-proj-head-all-states-h0": (
        dict(input_size=2, hidden_size=4, num_layers=3, proj_size=3, head="all", head_out=2),
        8, 1, 3, 2, dict(with_states=True, initial_state=True),
    ),
    "P7-H3-2layer-head-last-states": (
        dict(input_size=3, hidden_size=3, num_layers=2, head="last", head_out=3),
        7, 1, 3, 2, dict(with_states=True),
    ),
    "V2-P8-S2-2layer": (dict(input_size=5, hidden_size=6, num_layers=2), 8, 2, 3, 2,
                        dict(cells=2)),
    "P6-H5-proj-head-all-h0": (
        dict(input_size=1, hidden_size=5, proj_size=3, head="all", head_out=2), 6, 1, 5, 2,
        dict(initial_state=True),
    ),
}  # fmt: skip

LARGE = os.environ.get("LSTMFPGA_SWEEP", "small") == "large"
LONG_T = 1000 if LARGE else 60
SEGMENT_T = 50 if LARGE else 6  # 8 segments of this many steps


def _states(q, batch, seed, initial_state):
    if not initial_state:
        return None, None
    rng = np.random.default_rng(seed)
    L = q.num_layers
    h0 = q.formats["hidden"].quantize(rng.normal(0, 0.3, (L, batch, q.output_size)))
    c0 = q.formats["cell"].quantize(rng.normal(0, 0.3, (L, batch, q.hidden_size)))
    return h0, c0


def _expected(acc, expected, batch):
    geom = StreamGeometry.of(acc.model, with_states=acc.with_states,
                             initial_state=acc.initial_state)  # fmt: skip
    return [pack_outputs(geom, expected.prediction, b, expected.h_n, expected.c_n)
            for b in range(batch)]  # fmt: skip


def _assert_equal(outputs, wanted):
    assert len(outputs) == len(wanted)
    for b, (got, want) in enumerate(zip(outputs, wanted, strict=True)):
        mismatch = np.flatnonzero(got != want) if got.shape == want.shape else [-1]
        assert got.shape == want.shape and len(mismatch) == 0, (
            f"sequence {b}: shapes {got.shape} {want.shape}, mismatches at {mismatch[:5]}"
        )


def _stream(q, lanes=4, simd=1, **options):
    return LSTMAccelerator(q, lanes=lanes, simd=simd, mode="stream", **options)


@pytest.mark.parametrize("name", list(CASES))
def test_stream_mode_is_bit_exact(name):
    kwargs, lanes, simd, T, batch, options = CASES[name]
    seed = sum(map(ord, name))
    _, q = random_qmodel(seed, **kwargs)
    acc = _stream(q, lanes, simd, **options)
    x = golden.quantize_inputs(q, random_inputs(seed, batch, T, q.input_size))
    h0, c0 = _states(q, batch, seed, options.get("initial_state"))
    result = run_amaranth(acc, x, h0, c0)
    assert not result.error
    _assert_equal(result.outputs, _expected(acc, golden.run(q, x, h0, c0), batch))


@pytest.mark.parametrize(("seed", "lanes", "head"), [(1, 4, "all"), (3, 3, "last")])
def test_random_stalls_on_both_streams_lose_nothing(seed, lanes, head):
    _, q = random_qmodel(seed, input_size=3, hidden_size=5, num_layers=2, head=head, head_out=2)
    acc = _stream(q, lanes, with_states=True)
    x = golden.quantize_inputs(q, random_inputs(seed, 2, 5, 3))
    result = run_amaranth(acc, x, in_stall=0.4, out_stall=0.5, seed=seed)
    assert not result.error
    _assert_equal(result.outputs, _expected(acc, golden.run(q, x), 2))


def test_outputs_leave_before_the_sequence_is_in():
    """Step 0's output is out before step 1's input is taken (inputs held back), so no
    step waits for the rest of the sequence."""
    _, q = random_qmodel(4, input_size=2, hidden_size=3)
    acc = _stream(q, 4)
    x = golden.quantize_inputs(q, random_inputs(4, 1, 6, 2))
    result = run_amaranth(acc, x)
    first_out = result.output_cycles[0][0]
    assert first_out < result.cycles[0].last_in
    _assert_equal(result.outputs, _expected(acc, golden.run(q, x), 1))


@pytest.mark.slow
def test_a_long_sequence_on_a_tiny_model_beyond_max_seq_len():
    _, q = random_qmodel(5, input_size=1, hidden_size=2, head="all", head_out=1)
    acc = _stream(q, 8, max_seq_len=4)
    x = golden.quantize_inputs(q, random_inputs(5, 1, LONG_T, 1))
    result = run_amaranth(acc, x)
    assert not result.error
    _assert_equal(result.outputs, _expected(acc, golden.run(q, x), 1))


@pytest.mark.slow
def test_a_signal_as_8_stateful_segments_equals_golden_on_the_whole_signal():
    _, q = random_qmodel(6, input_size=2, hidden_size=3, num_layers=2)
    acc = _stream(q, 6, with_states=True, initial_state=True)
    signal = golden.quantize_inputs(q, random_inputs(6, 1, 8 * SEGMENT_T, 2))
    segments = signal.reshape(8, SEGMENT_T, 2)
    h0, c0 = _states(q, 8, 6, True)
    resets = np.zeros((8, SEGMENT_T), dtype=bool)
    resets[0, 0] = True  # start from segment 0's h0/c0; the others' are not used
    result = run_amaranth(acc, segments, h0, c0, keep_state=True, resets=resets)
    assert not result.error
    whole = golden.run(q, signal, h0[:, :1], c0[:, :1])
    got = np.concatenate([out[: SEGMENT_T * 3] for out in result.outputs])
    np.testing.assert_array_equal(got, whole.output.reshape(-1))
    # and the final states after each segment are those of the signal up to there
    _assert_equal(result.outputs, _expected(acc, stateful_golden(q, segments, h0, c0), 8))


def test_tuser_resets_the_state_before_its_step():
    """A reset at step 4 of one sequence gives the outputs of two sequences (0..3, 4..8)."""
    _, q = random_qmodel(7, input_size=2, hidden_size=4, head="all", head_out=2)
    acc = _stream(q, 4)
    x = golden.quantize_inputs(q, random_inputs(7, 1, 9, 2))
    resets = np.zeros((1, 9), dtype=bool)
    resets[0, 4] = True
    result = run_amaranth(acc, x, resets=resets)
    want = np.concatenate([golden.run(q, x[:, :4]).prediction.reshape(-1),
                           golden.run(q, x[:, 4:]).prediction.reshape(-1)])  # fmt: skip
    np.testing.assert_array_equal(result.outputs[0], want)


def test_with_keep_state_the_state_carries_to_the_next_sequence():
    _, q = random_qmodel(8, input_size=3, hidden_size=3, head="last")
    acc = _stream(q, 2)
    x = golden.quantize_inputs(q, random_inputs(8, 3, 4, 3))
    result = run_amaranth(acc, x, keep_state=True)
    _assert_equal(result.outputs, _expected(acc, stateful_golden(q, x), 3))


def test_bidirectional_models_are_refused_in_stream_mode():
    _, q = random_qmodel(9, input_size=2, hidden_size=3, bidirectional=True)
    with pytest.raises(ValueError, match=r"^mode 'stream' needs a unidirectional model, not a "
                       r"bidirectional one: the reverse direction needs the whole sequence "
                       r"before its first step$"):  # fmt: skip
        LSTMAccelerator(q, mode="stream")


def test_mode_must_be_sequence_or_stream():
    _, q = random_qmodel(9, input_size=2, hidden_size=3)
    with pytest.raises(ValueError, match=r"^mode must be 'sequence' or 'stream', not 'streaming'$"):
        LSTMAccelerator(q, mode="streaming")
    assert LSTMAccelerator(q).mode == "sequence"
    assert _stream(q).mode == "stream"


def test_stream_ports_exist_only_in_stream_mode():
    _, q = random_qmodel(9, input_size=2, hidden_size=3)
    stream, sequence = _stream(q).signature.members, LSTMAccelerator(q).signature.members
    assert {"s_axis_tuser", "keep_state"} <= set(stream)
    assert not {"s_axis_tuser", "keep_state"} & set(sequence)


def _drive(acc, elements, n_out, cycles=4000):
    """Send ``elements`` (``(code, last)``) into ``s_axis``, collect ``n_out`` results
    ``(code, last)``; returns them and the ``error`` output at the end."""
    from amaranth.sim import Simulator

    got = []

    async def producer(ctx):
        for code, last in elements:
            ctx.set(acc.s_axis_tdata, code)
            ctx.set(acc.s_axis_tlast, last)
            ctx.set(acc.s_axis_tvalid, 1)
            await ctx.tick().until(acc.s_axis_tready)
        ctx.set(acc.s_axis_tvalid, 0)

    async def consumer(ctx):
        ctx.set(acc.m_axis_tready, 1)
        for _ in range(cycles):
            _, _, valid, data, last = await ctx.tick().sample(
                acc.m_axis_tvalid, acc.m_axis_tdata, acc.m_axis_tlast
            )
            if valid:
                got.append((int(data), bool(last)))
            if len(got) == n_out:
                break
        got.append(bool(ctx.get(acc.error)))

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got[:-1], got[-1]


def test_a_partial_last_vector_raises_error_and_ends_the_sequence_there():
    """A sequence ending inside its third vector computes that vector as its last step (the
    error flag says its missing element is undefined); the next sequence is unaffected."""
    _, q = random_qmodel(10, input_size=2, hidden_size=3)
    acc = _stream(q, 4)
    x = golden.quantize_inputs(q, random_inputs(10, 2, 2, 2))  # (2 sequences, 2 steps, 2)
    first = [(int(c), False) for c in x[0].reshape(-1)] + [(5, True)]  # 2.5 vectors
    second = [(int(c), k == 3) for k, c in enumerate(x[1].reshape(-1))]
    got, error = _drive(acc, first + second, 3 * 3 + 2 * 3)
    assert error
    want_first = golden.run(q, x[:1]).output.reshape(-1)  # its two whole steps
    assert [c for c, _ in got[:6]] == want_first.tolist()
    assert [last for _, last in got[:9]] == [False] * 8 + [True]  # 3 steps, tlast on the 3rd
    assert [c for c, _ in got[9:]] == golden.run(q, x[1:]).output.reshape(-1).tolist()
    assert [last for _, last in got[9:]] == [False] * 5 + [True]


def test_weights_loaded_through_w_between_sequences_replace_the_model():
    """``w`` is ready only between sequences (nothing taken of the next one, nothing in
    flight): garbage offered meanwhile changes nothing, and the sequence after a load runs
    the second model bit for bit."""
    from amaranth.sim import Simulator

    from lstmfpga.hw.verilog import build_manifest
    from lstmfpga.quant.given_formats import quantize_like
    from lstmfpga.runtime import HardwareDesign, pack_weights
    from lstmfpga.sim.streams import pack_inputs
    from lstmfpga.testing import random_spec

    kwargs = dict(input_size=3, hidden_size=4, head="all", head_out=2)
    _, first = random_qmodel(11, **kwargs)
    second = next(m for m in (_fitting(quantize_like, random_spec, first, kwargs, k)
                              for k in range(20)) if m is not None)  # fmt: skip
    acc = _stream(first, 4)
    design = HardwareDesign.from_manifest(build_manifest(acc).to_dict())
    beats = [int.from_bytes(bytes(b), "little") for b in pack_weights(design, second).beats]
    x = golden.quantize_inputs(first, random_inputs(11, 2, 4, 3))
    geom = StreamGeometry.of(first)
    n_out = geom.output_length(4)
    state = {"drained": 0, "busy_offers": 0, "loaded": False}
    outputs = [[], []]
    payload = acc.w.payload.as_value()

    async def weights(ctx):
        while state["drained"] < 1:  # garbage while sequence 0 is in flight: refused
            busy = ctx.get(acc.busy)
            ctx.set(acc.w.valid, busy)
            ctx.set(payload, 0x2A5A5A5A5A5A5A5)
            if busy:
                assert not ctx.get(acc.w.ready)
                state["busy_offers"] += 1
            await ctx.tick()
        for beat in beats:
            ctx.set(acc.w.valid, 1)
            ctx.set(payload, beat)
            await ctx.tick().until(acc.w.ready)
        ctx.set(acc.w.valid, 0)
        state["loaded"] = True

    async def source(ctx):
        for b in range(2):
            while state["drained"] < b or (b == 1 and not state["loaded"]):
                await ctx.tick()
            elements = pack_inputs(geom, x, b).tolist()
            for k, element in enumerate(elements):
                ctx.set(acc.s_axis_tvalid, 1)
                ctx.set(acc.s_axis_tdata, element)
                ctx.set(acc.s_axis_tlast, k == len(elements) - 1)
                await ctx.tick().until(acc.s_axis_tready)
            ctx.set(acc.s_axis_tvalid, 0)

    async def sink(ctx):
        ctx.set(acc.m_axis_tready, 1)
        for b in range(2):
            for _ in range(n_out):
                (data,) = await ctx.tick().sample(acc.m_axis_tdata).until(acc.m_axis_tvalid)
                outputs[b].append(int(data))
            state["drained"] = b + 1

    sim = Simulator(acc)
    sim.add_clock(1e-8)
    sim.add_testbench(weights, background=True)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert state["busy_offers"] > 0
    assert outputs[0] == golden.run(first, x[:1]).prediction.reshape(-1).tolist()
    assert outputs[1] == golden.run(second, x[1:]).prediction.reshape(-1).tolist()
    assert outputs[1] != golden.run(first, x[1:]).prediction.reshape(-1).tolist()


def _fitting(quantize_like, random_spec, reference, kwargs, attempt):
    """A model of ``reference``'s geometry and formats with other weights, or None."""
    spec = random_spec(1011 + attempt, scale=0.45 - 0.02 * attempt, **kwargs)
    try:
        return quantize_like(spec, reference)
    except ValueError:
        return None
