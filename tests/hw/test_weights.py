# amaranth: UnusedElaboratable=no
"""WeightMemory streams every matrix beat by beat, as the model's (reordered) weights say."""

import numpy as np
import pytest
from helpers.lstm_models import array, make_model
from helpers.streams import Harness, expect_quiet, get_n, put_all, simulate

from lstmfpga.hw.layout import WeightLayout, pack
from lstmfpga.hw.weights import WeightMemory

MODEL = {"input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": True,
         "proj_size": 3, "head": 3}  # fmt: skip


def expected_beats(model, layout, matrix):
    """Every beat of ``matrix`` built from the model's tensors directly (torch row order)."""
    P, H = layout.lanes, model.hidden_size
    m = layout.matrices[matrix]
    shifts = layout.product_shifts
    if m.kind == "gates":
        q = model.layers[m.layer][m.direction]
        full = np.concatenate([q.w_ih.codes, q.w_hh.codes], axis=1)
        bias = model.aligned_gate_bias(m.layer, m.direction)
        torch_row = [(r % 4) * H + r // 4 for r in range(4 * H)]  # row 4j+q <- q*H+j
        rows = full[torch_row]
        biases = bias[torch_row]
        s_in, s_rec, _ = model.gate_shifts(m.layer, m.direction)
        col_shift = [s_in] * q.w_ih.codes.shape[1] + [s_rec] * q.w_hh.codes.shape[1]
        role = "preact"
        in_cols = q.w_ih.codes.shape[1]  # the layer's input columns, then the recurrent ones
    elif m.kind == "proj":
        q = model.layers[m.layer][m.direction]
        rows, biases = q.w_hr.codes, np.zeros(q.w_hr.codes.shape[0], np.int64)
        col_shift = [model.proj_shift(m.layer, m.direction)] * H
        role = "hidden"
    else:
        rows, biases = model.head.weight.codes, model.aligned_head_bias()
        col_shift = [model.head_shifts()[0]] * rows.shape[1]
        role = "head_out"
    target = [t.role for t in layout.targets].index(role)
    n_rows, cols = rows.shape
    if m.kind != "gates":
        in_cols = cols  # every column reads the layer's (the projection's, the head's) input
    in_mask, rec_mask = column_masks(model)
    groups = -(-n_rows // P)
    beats = []
    for g in range(groups):
        rs = [g * P + p for p in range(P)]
        for k in range(cols):
            beats.append({
                "weights": [int(rows[r, k]) if r < n_rows else 0 for r in rs],
                "bias": [int(biases[r]) if r < n_rows else 0 for r in rs],
                "col": k, "group": g, "shift_sel": shifts.index(col_shift[k]),
                "target_sel": target, "first": int(k == 0), "last": int(k == cols - 1),
                "end": int(g == groups - 1 and k == cols - 1),
                "rec": int(k >= in_cols), "in_col": k & in_mask,
                "rec_col": (k - in_cols) & rec_mask,
            })  # fmt: skip
    return beats


def column_masks(model):
    """The bits of the ``in_col`` and ``rec_col`` fields: enough for the longest layer input
    (or projection, or head input) and for ``H_out`` recurrent columns."""
    longest_in = max([model.layer_input_size(l) for l in range(model.num_layers)]
                     + [model.hidden_size if model.proj_size else 0,
                        model.num_directions * model.output_size])  # fmt: skip
    return (1 << max(1, (longest_in - 1).bit_length())) - 1, (
        1 << max(1, (model.output_size - 1).bit_length())
    ) - 1


def as_dict(payload, lanes):
    return {
        "weights": array(payload.weights, lanes),
        "bias": array(payload.bias, lanes),
        **{f: int(getattr(payload, f)) for f in ("col", "group", "shift_sel", "target_sel",
                                                  "first", "last", "end", "rec", "in_col",
                                                  "rec_col")},
    }  # fmt: skip


def run_program(dut, commands, seed, idle=0.0, stall=0.0, loads=()):
    """Issue ``commands`` (after ``loads``); return the (beat dict, cycle) list and the cycles
    in which each command was accepted."""
    harness = Harness(dut)
    n = sum(dut.layout.matrices[c].words for c in commands)
    got = {}

    async def producer(ctx):
        await put_all(ctx, dut.load, loads)
        got["cmd"] = await put_all(ctx, dut.cmd, commands, rng=np.random.default_rng([seed, 1]),
                                   idle=idle, cycle=harness.cycle)  # fmt: skip

    async def consumer(ctx):
        beats = await get_n(ctx, dut.o, n, rng=np.random.default_rng([seed, 2]), stall=stall,
                            cycle=harness.cycle)  # fmt: skip
        got["beats"] = [(as_dict(p, dut.lanes), c) for p, c in beats]
        await expect_quiet(ctx, dut.o, 4)

    simulate(harness, producer, consumer)
    return got["beats"], got["cmd"]


@pytest.mark.parametrize("lanes", [1, 2, 4, 8, 16])
@pytest.mark.parametrize(("idle", "stall"), [(0.0, 0.0), (0.4, 0.5)])
def test_streams_every_matrix(lanes, idle, stall):
    model, _ = make_model(**MODEL, seed=lanes)
    layout = WeightLayout.of(model, lanes)
    dut = WeightMemory(layout)
    seed = 100 + lanes
    commands = [*range(len(layout.matrices)), len(layout.matrices) - 1, 0]
    beats, _ = run_program(dut, commands, seed, idle, stall)
    expected = [b for c in commands for b in expected_beats(model, layout, c)]
    assert len(beats) == len(expected)
    for index, ((got, _), want) in enumerate(zip(beats, expected, strict=True)):
        assert got == want, f"seed {seed}: beat {index}"


@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_back_to_back_commands_have_no_bubble(lanes):
    model, _ = make_model(**MODEL, seed=1)
    layout = WeightLayout.of(model, lanes)
    dut = WeightMemory(layout)
    commands = [0, 1, 4, 8, 8, 2]
    beats, accepted = run_program(dut, commands, seed=0)
    cycles = [c for _, c in beats]
    assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))
    assert cycles[0] == accepted[0] + dut.latency
    start = 0
    for c, when in zip(commands, accepted, strict=True):
        # each command is accepted while the previous matrix's last beat is issued
        assert cycles[start] == when + dut.latency
        start += layout.matrices[c].words


def test_single_matrix_model():
    model, _ = make_model(input_size=1, hidden_size=1, head=0)
    layout = WeightLayout.of(model, 4)
    assert len(layout.matrices) == 1
    dut = WeightMemory(layout)
    beats, _ = run_program(dut, [0, 0], seed=4, idle=0.3, stall=0.3)
    assert [b for b, _ in beats] == expected_beats(model, layout, 0) * 2


def test_load_rewrites_words():
    model, _ = make_model(**MODEL, seed=2)
    P = 4
    layout = WeightLayout.of(model, P)
    dut = WeightMemory(layout)
    m = layout.index("head")
    mat = layout.matrices[m]
    new_w = [-(1 << (layout.weight_bits - 1)), 1, -1, (1 << (layout.weight_bits - 1)) - 1]
    new_b = [-(1 << (layout.acc.bits - 1)), 5, -5, (1 << (layout.acc.bits - 1)) - 1]
    k = 2
    loads = [
        {"bias": 0, "addr": mat.base + k, "data": pack([new_w], layout.weight_bits)[0]},
        {"bias": 1, "addr": mat.bias_base, "data": pack([new_b], layout.acc.bits)[0]},
    ]
    beats, _ = run_program(dut, [m, 0], seed=9, stall=0.3, loads=loads)
    expected = expected_beats(model, layout, m) + expected_beats(model, layout, 0)
    for index, beat in enumerate(expected[: mat.words]):
        beat["bias"] = new_b
        if index == k:
            beat["weights"] = new_w
    assert [b for b, _ in beats] == expected


def test_properties_and_signature():
    model, _ = make_model(**MODEL)
    layout = WeightLayout.of(model, 8)
    dut = WeightMemory(layout)
    assert dut.layout is layout and dut.lanes == 8 and dut.latency == 2
    assert set(dut.signature.members) == {"cmd", "o", "load"}
    assert set(dut.beat_layout.members) == {"weights", "bias", "col", "group", "shift_sel",
                                            "target_sel", "first", "last", "end", "rec",
                                            "in_col", "rec_col"}  # fmt: skip
    assert set(dut.load_layout.members) == {"bias", "addr", "data"}
    assert dut.beat_layout["weights"].shape.elem_shape.width == layout.weight_bits
    assert dut.beat_layout["bias"].shape.elem_shape.width == layout.acc.bits
    assert dut.beat_layout["weights"].shape.length == 8


def test_bad_layout():
    with pytest.raises(TypeError, match=r"^layout must be a WeightLayout, not 'x'$"):
        WeightMemory("x")
