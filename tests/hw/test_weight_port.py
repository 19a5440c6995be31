# amaranth: UnusedElaboratable=no
"""The accelerator's weight port ``w`` (Amaranth simulator).

A design built for one model is loaded, through ``w``, with the words of a second model of
the same geometry and formats (``quantize_like``), packed by the host runtime
(:func:`lstmfpga.runtime.pack_weights`, its bytes as they leave the host), with random idle
cycles on ``w``, while the next sequence's input is being streamed in. Sequences before the
load equal the golden model of the first model, sequences after it that of the second one,
bit for bit. While a sequence is computed or drained, ``w.ready`` is low and beats offered on
``w`` (garbage) change nothing.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from helpers.streams import put_all, simulate

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.verilog import build_manifest
from lstmfpga.quant import golden
from lstmfpga.quant.given_formats import quantize_like
from lstmfpga.runtime import HardwareDesign, pack_weights
from lstmfpga.sim.streams import StreamGeometry, pack_inputs, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel, random_spec

CASES = {
    # name: (model kwargs, lanes, simd, build options)
    "P4-S1-head-last": (dict(input_size=3, hidden_size=4, head="last"), 4, 1, {}),
    "P5-S2-bidir-proj-states": (
        dict(input_size=3, hidden_size=3, bidirectional=True, proj_size=2, head="all",
             head_out=2),
        5, 2, dict(with_states=True),
    ),
}  # fmt: skip


def second_model(seed, reference, kwargs):
    """A model of ``reference``'s geometry and formats with other weights."""
    for attempt in range(20):  # smaller weights until every one fits the reference's formats
        spec = random_spec(seed + 1000 + attempt, scale=0.45 - 0.02 * attempt, **kwargs)
        try:
            return quantize_like(spec, reference)
        except ValueError:
            continue
    raise AssertionError("no second model fits the reference's formats")


def weight_beats(acc, model) -> list[int]:
    """``pack_weights``' beats for ``acc``'s design, each as the integer of its bytes."""
    design = HardwareDesign.from_manifest(build_manifest(acc).to_dict())
    stream = pack_weights(design, model)
    assert stream.bits == acc.weight_load_layout.size  # the runtime's beat is the port's payload
    return [int.from_bytes(bytes(beat), "little") for beat in stream.beats]


def expected(acc, model, x_codes, b, h0, c0):
    run = golden.run(model, x_codes, h0, c0)
    geom = StreamGeometry.of(model, with_states=acc.with_states, initial_state=acc.initial_state)
    return pack_outputs(geom, run.prediction, b, run.h_n, run.c_n)


def run_with_reload(acc, beats, x_codes, h0, c0, *, reload_before, seed, idle):
    """Sequences of ``x_codes`` back to back; the ``w`` beats go in (with random idle
    cycles) after sequence ``reload_before - 1``'s results, beside the next sequence's input,
    whose ``tlast`` waits for the last weight beat. Returns the outputs of every sequence
    and the number of beats offered on ``w`` while ``busy`` (all refused)."""
    geom = StreamGeometry.of(acc.model, with_states=acc.with_states,
                             initial_state=acc.initial_state)  # fmt: skip
    B, T = x_codes.shape[:2]
    inputs = [pack_inputs(geom, x_codes, b, h0, c0).tolist() for b in range(B)]
    n_out = geom.output_length(T)
    rng = np.random.default_rng(seed)
    state = {"drained": 0, "loaded": False, "busy_offers": 0}
    outputs = [[] for _ in range(B)]
    # the beat's bits, as the Verilog port w__payload
    w = SimpleNamespace(valid=acc.w.valid, payload=acc.w.payload.as_value(), ready=acc.w.ready)

    async def weights(ctx):
        # while busy: offer garbage on every cycle; ready must stay low
        while state["drained"] < reload_before:
            ctx.set(acc.w.valid, 1)
            ctx.set(w.payload, int(rng.integers(0, 1 << 62)))
            busy, ready = ctx.get(acc.busy), ctx.get(acc.w.ready)
            if busy:
                assert not ready, "w.ready must be low while a sequence is computed or drained"
                state["busy_offers"] += 1
            else:
                ctx.set(acc.w.valid, 0)
            await ctx.tick()
        await put_all(ctx, w, beats, rng=rng, idle=idle)
        state["loaded"] = True

    async def source(ctx):
        for b, elements in enumerate(inputs):
            while state["drained"] < b:  # one sequence at a time
                await ctx.tick()
            for k, element in enumerate(elements):
                last = k == len(elements) - 1
                while last and b == reload_before and not state["loaded"]:
                    ctx.set(acc.s_axis_tvalid, 0)
                    await ctx.tick()
                ctx.set(acc.s_axis_tvalid, 1)
                ctx.set(acc.s_axis_tdata, element)
                ctx.set(acc.s_axis_tlast, last)
                await ctx.tick().until(acc.s_axis_tready)
            ctx.set(acc.s_axis_tvalid, 0)

    async def sink(ctx):
        ctx.set(acc.m_axis_tready, 1)
        for b in range(B):
            for k in range(n_out):
                data, last = (
                    await ctx.tick()
                    .sample(acc.m_axis_tdata, acc.m_axis_tlast)
                    .until(acc.m_axis_tvalid)
                )
                assert bool(last) == (k == n_out - 1)
                outputs[b].append(int(data))
            state["drained"] = b + 1
        assert not ctx.get(acc.error)

    simulate(acc, sink, background=(weights, source), timeout=1_000_000)
    return [np.array(o, np.int64) for o in outputs], state["busy_offers"]


@pytest.mark.parametrize("name", list(CASES))
def test_weights_loaded_through_w_replace_the_model(name):
    kwargs, lanes, simd, options = CASES[name]
    seed = sum(map(ord, name))
    _, first = random_qmodel(seed, **kwargs)
    second = second_model(seed, first, kwargs)
    acc = LSTMAccelerator(first, lanes=lanes, simd=simd, max_seq_len=4, **options)
    beats = weight_beats(acc, second)
    x = golden.quantize_inputs(first, random_inputs(seed, 3, 3, first.input_size))
    h0 = c0 = None
    outputs, busy_offers = run_with_reload(acc, beats, x, h0, c0, reload_before=1, seed=seed,
                                           idle=0.4)  # fmt: skip
    assert busy_offers > 0  # garbage was offered while busy, and refused
    for b, got in enumerate(outputs):
        model = first if b < 1 else second
        want = expected(acc, model, x, b, h0, c0)
        assert np.array_equal(got, want), f"sequence {b}: rtl {got} golden {want}"
    # the second model really differs from the first on these inputs
    assert not np.array_equal(expected(acc, first, x, 1, h0, c0), outputs[1])


def test_w_payload_is_the_weight_memory_load_layout():
    _, q = random_qmodel(3, input_size=2, hidden_size=3)
    acc = LSTMAccelerator(q, lanes=3, simd=2)
    layout = acc.weight_load_layout
    assert [(name, field.offset) for name, field in layout] == [
        ("bias", 0), ("addr", 1), ("data", 1 + layout["addr"].width),
    ]  # fmt: skip
    assert acc.signature.members["w"].signature.members["payload"].shape == layout
