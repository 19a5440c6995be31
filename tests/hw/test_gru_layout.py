# amaranth: UnusedElaboratable=no
"""A GRU gate matrix in the LSTM MVU's geometry (``hw.gru_layout``): its integer product gives,
step by step, exactly the golden GRU's r and z pre-activations, its ``hn`` codes and the exact
``n_x`` accumulator; followed by the GRU cell arithmetic it gives the golden hidden states
and saturation counts; and the real ``MatrixVectorUnit`` (one lane, so one target per row)
computes the same rows under random stalls."""

import numpy as np
import pytest
from helpers.gru_models import random_gru_qmodel, step_inputs
from helpers.streams import Harness, expect_quiet, get_all, put_all, simulate

from lstmfpga.export.spec import SpecError
from lstmfpga.hw.gru_layout import GRU_BLOCKS, gru_gate_rows, gru_rows_reference, split_units
from lstmfpga.hw.mvu import MatrixVectorUnit
from lstmfpga.quant.gru_golden import GRUCellArithmetic, GRUStep
from lstmfpga.testing import random_qmodel

# name: (config, spec kwargs, with h0)
CASES = {
    "q16-2-layers-bidir": (dict(preset="q16"), dict(num_layers=2, bidirectional=True), False),
    "w8a16-no-bias": (dict(preset="w8a16"), dict(bias=False, hidden_size=5), True),
    "w8a8-saturating-h0": (dict(preset="w8a8", roles={"preact": {"bits": 8, "frac": 6},
                                                      "hn": {"bits": 6, "frac": 4}}),
                           dict(num_layers=2, bidirectional=True), True),
    "w4a8-truncate-wrap": (dict(preset="w4a8", rounding="truncate", overflow="wrap"),
                           dict(num_layers=2), True),
    "w8a8-half_up-1x1": (dict(preset="w8a8", rounding="half_up"),
                         dict(input_size=1, hidden_size=1), False),
}  # fmt: skip


def _case(name):
    config, kwargs, with_h0 = CASES[name]
    seed = list(CASES).index(name) + 11
    model, x_codes = random_gru_qmodel(seed, config, **kwargs)
    h0 = None
    if with_h0:
        hidden = model.formats["hidden"]
        shape = (model.num_layers * model.num_directions, x_codes.shape[0], model.hidden_size)
        h0 = np.random.default_rng(seed).integers(hidden.min_code, hidden.max_code + 1, shape)
    return model, x_codes, h0


@pytest.mark.parametrize("name", list(CASES))
def test_rows_give_the_golden_pre_activations_hn_and_exact_n_x(name):
    model, x_codes, h0 = _case(name)
    _, steps = step_inputs(model, x_codes, h0)
    H = model.hidden_size
    for (layer, d), s in steps.items():
        rows = gru_gate_rows(model, layer, d)
        codes, _ = gru_rows_reference(rows, s["u"], s["h_prev"], model.rounding, model.overflow)
        units = split_units(codes)
        assert np.array_equal(units["r"], s["preact"][..., :H]), (name, layer, d)
        assert np.array_equal(units["z"], s["preact"][..., H : 2 * H]), (name, layer, d)
        assert np.array_equal(units["n_h"], s["hn"]), (name, layer, d)
        n_x = GRUStep(model, layer, d).input_sums(s["u"])[..., 2 * H :]
        assert np.array_equal(units["n_x"], n_x), (name, layer, d)


@pytest.mark.parametrize("name", list(CASES))
def test_rows_then_the_cell_arithmetic_give_the_golden_states_and_saturation(name):
    model, x_codes, h0 = _case(name)
    result, steps = step_inputs(model, x_codes, h0)
    arith = GRUCellArithmetic.of(model)
    sat = {"preact": 0, "hn": 0, "hidden": 0}
    for (layer, d), s in steps.items():
        rows = gru_gate_rows(model, layer, d)
        codes, flags = gru_rows_reference(rows, s["u"], s["h_prev"], model.rounding,
                                          model.overflow)  # fmt: skip
        units = split_units(codes)
        h, *_ = arith.update(units["r"], units["z"], units["n_x"], units["n_h"], s["h_prev"], sat)
        assert np.array_equal(h, s["h"]), (name, layer, d)
        block = np.asarray(rows.row_targets)
        sat["preact"] += int(flags[..., block == 0].sum())
        sat["hn"] += int(flags[..., block == 2].sum())
        assert not flags[..., block == 1].any(), "the exact n_x rows never saturate"
    for role in sat:
        assert sat[role] == result.saturation[role], (name, role)
    if name == "w8a8-saturating-h0":
        assert sat["preact"] > 0 and sat["hn"] > 0  # the case saturates both MVU targets


def test_arrangement_has_the_lstm_geometry_and_the_models_numbers():
    model, _, _ = _case("q16-2-layers-bidir")
    H = model.hidden_size
    for layer in range(2):
        for d in range(2):
            rows = gru_gate_rows(model, layer, d)
            q = model.layers[layer][d]
            I = q.w_ih.codes.shape[1]
            assert rows.codes.shape == (4 * H, I + H) == (rows.rows, rows.cols)
            s_in, s_rec, s_b = model.gate_shifts(layer, d)
            assert rows.product_shifts == (s_in, s_rec)
            assert list(rows.col_shifts) == [s_in] * I + [s_rec] * H
            for j in range(H):
                r, z, n_x, n_h = (rows.codes[4 * j + k] for k in range(4))
                assert np.array_equal(r, np.concatenate([q.w_ih.codes[j], q.w_hh.codes[j]]))
                assert np.array_equal(z, np.concatenate([q.w_ih.codes[H + j],
                                                         q.w_hh.codes[H + j]]))  # fmt: skip
                assert np.array_equal(n_x[:I], q.w_ih.codes[2 * H + j]) and not n_x[I:].any()
                assert np.array_equal(n_h[I:], q.w_hh.codes[2 * H + j]) and not n_h[:I].any()
                s_bn, _ = model.gru_shifts(layer, d)
                assert list(rows.bias[4 * j : 4 * j + 4]) == [
                    q.bias.codes[j] << s_b, q.bias.codes[H + j] << s_b,
                    q.bias.codes[2 * H + j] << s_b, q.b_hn.codes[j] << s_bn,
                ]  # fmt: skip
    assert [(t.role, t.shift, t.fmt) for t in rows.targets] == [
        ("preact", model.requant_shift("preact"), model.formats["preact"]),
        ("n_x", 0, model.acc),
        ("hn", model.requant_shift("hn"), model.formats["hn"]),
    ]
    assert list(rows.row_targets) == [0, 0, 1, 2] * H
    assert rows.out_bits == model.acc.bits
    assert GRU_BLOCKS == ("r", "z", "n_x", "n_h")


def test_argument_errors():
    model, _, _ = _case("w8a8-half_up-1x1")
    with pytest.raises(TypeError, match=r"^model must be a QuantizedModel, not "):
        gru_gate_rows("model", 0, 0)
    _, lstm = random_qmodel(1, input_size=2, hidden_size=2)
    with pytest.raises(SpecError, match=r"^the GRU gate rows need a GRU qmodel, not cell 'lstm'"):
        gru_gate_rows(lstm, 0, 0)
    with pytest.raises(ValueError, match=r"^layer must be in 0..0, not 1$"):
        gru_gate_rows(model, 1, 0)
    with pytest.raises(ValueError, match=r"^direction must be in 0..0, not 1$"):
        gru_gate_rows(model, 0, 1)
    with pytest.raises(TypeError, match=r"^direction must be an integer, not True$"):
        gru_gate_rows(model, 0, True)


def _mvu_beats(rows, vectors, S):
    """Beats of a one-lane MVU for ``rows`` times each of ``vectors`` (``(cols,)`` codes):
    per vector, per row, ``ceil(cols / S)`` beats of ``S`` columns (zeros past the last)."""
    cols, chunks = rows.cols, -(-rows.cols // S)
    col_seg = np.concatenate([np.full(seg.length, seg.shift_index) for seg in rows.segments])
    beats = []
    for vector in vectors:
        for row in range(rows.rows):
            for c in range(chunks):
                idx = [c * S + k for k in range(S)]
                w = [int(rows.codes[row, i]) if i < cols else 0 for i in idx]
                v = [int(vector[i]) if i < cols else 0 for i in idx]
                sel = [int(col_seg[i]) if i < cols else 0 for i in idx]
                beats.append({
                    "weights": w, "vector": v[0] if S == 1 else v,
                    "shift_sel": sel[0] if S == 1 else sel, "bias": [int(rows.bias[row])],
                    "target_sel": int(rows.row_targets[row]), "first": c == 0,
                    "last": c == chunks - 1,
                })  # fmt: skip
    return beats


@pytest.mark.parametrize(("name", "simd"), [("w8a8-saturating-h0", 1), ("q16-2-layers-bidir", 3)])
def test_the_mvu_with_one_lane_computes_the_rows(name, simd):
    """With ``P = 1`` each row is its own row group, so the MVU's per-group target is the
    row's: the unit computes the arrangement as it stands (``P > 1`` needs a target per lane)."""
    model, x_codes, h0 = _case(name)
    _, steps = step_inputs(model, x_codes, h0)
    layer, d = model.num_layers - 1, model.num_directions - 1  # layer input: hidden codes
    s, rows = steps[(layer, d)], gru_gate_rows(model, layer, d)
    picks = [(0, 0), (1, 2), (2, 4)]  # (batch, t) pairs
    vectors = [np.concatenate([s["u"][b, t], s["h_prev"][b, t]]) for b, t in picks]
    want, want_sat = gru_rows_reference(rows, np.array([s["u"][b, t] for b, t in picks]),
                                        np.array([s["h_prev"][b, t] for b, t in picks]),
                                        model.rounding, model.overflow)  # fmt: skip
    q = model.layers[layer][d]
    f = model.formats
    dut = MatrixVectorUnit(1, max(q.w_ih.fmt.bits, q.w_hh.fmt.bits),
                           max(f["x"].bits, f["hidden"].bits), model.acc, rows.product_shifts,
                           rows.targets, model.rounding, model.overflow, simd)  # fmt: skip
    beats = _mvu_beats(rows, vectors, simd)
    seed = 5 + simd
    rng_in, rng_out = (np.random.default_rng(k) for k in np.random.SeedSequence(seed).spawn(2))
    got = []

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, rng=rng_in, idle=0.2)

    async def consumer(ctx):
        got.extend(await get_all(ctx, dut.o, want.size, rng=rng_out, stall=0.3))
        await expect_quiet(ctx, dut.o, 2 * dut.latency)

    simulate(Harness(dut), producer, consumer)
    assert [g["data"][0] for g in got] == want.reshape(-1).tolist(), f"seed={seed}"
    assert [g["saturated"] for g in got] == want_sat.reshape(-1).astype(int).tolist()
