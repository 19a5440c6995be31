# amaranth: UnusedElaboratable=no
"""A GRU gate matrix in the LSTM MVU's geometry (``hw.gru_layout``): its integer product gives,
step by step, exactly the golden GRU's four sums per unit (r, z, n_x, n_h); followed by the GRU
cell arithmetic it gives the golden pre-activations, ``hn`` codes, hidden states and
saturation counts; and the real ``MatrixVectorUnit`` computes the same rows, unchanged, for
lane counts that do and do not divide a unit's four rows, under random stalls."""

import numpy as np
import pytest
from helpers.gru_models import mvu_beats, random_gru_qmodel, step_inputs
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
def test_rows_give_the_golden_sums(name):
    model, x_codes, h0 = _case(name)
    _, steps = step_inputs(model, x_codes, h0)
    H = model.hidden_size
    for (layer, d), s in steps.items():
        units = split_units(gru_rows_reference(gru_gate_rows(model, layer, d), s["u"], s["h_prev"]))
        golden = GRUStep(model, layer, d)
        gi, gh = golden.input_sums(s["u"]), golden.recurrent_sums(s["h_prev"])
        assert np.array_equal(units["r"], gi[..., :H] + gh[..., :H]), (name, layer, d)
        assert np.array_equal(units["z"], gi[..., H : 2 * H] + gh[..., H : 2 * H])
        assert np.array_equal(units["n_x"], gi[..., 2 * H :]), (name, layer, d)
        assert np.array_equal(units["n_h"], gh[..., 2 * H :] + golden.b_hn), (name, layer, d)


@pytest.mark.parametrize("name", list(CASES))
def test_rows_then_the_cell_arithmetic_give_the_golden_step(name):
    model, x_codes, h0 = _case(name)
    result, steps = step_inputs(model, x_codes, h0)
    arith = GRUCellArithmetic.of(model)
    H = model.hidden_size
    sat = {}
    for (layer, d), s in steps.items():
        units = split_units(gru_rows_reference(gru_gate_rows(model, layer, d), s["u"], s["h_prev"]))
        h, parts = arith.update_sums(*(units[k] for k in GRU_BLOCKS), s["h_prev"], sat)
        assert np.array_equal(h, s["h"]), (name, layer, d)
        for key, block in (("pre_r", 0), ("pre_z", 1), ("pre_n", 2)):
            assert np.array_equal(parts[key], s["preact"][..., block * H : (block + 1) * H])
        assert np.array_equal(parts["hn"], s["hn"]), (name, layer, d)
    for role in ("preact", "hn", "hidden"):
        assert sat[role] == result.saturation[role], (name, role)
    if name == "w8a8-saturating-h0":
        assert sat["preact"] > 0 and sat["hn"] > 0  # the case saturates both


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
    assert tuple(rows.target) == ("gru_sums", 0, model.acc)
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


@pytest.mark.parametrize(
    ("name", "lanes", "simd"),
    [("w8a8-saturating-h0", 3, 1), ("q16-2-layers-bidir", 8, 2), ("w8a16-no-bias", 6, 4)],
)
def test_the_mvu_computes_the_rows_for_any_lanes(name, lanes, simd):
    """The rows need one target (the identity), as an LSTM gates matrix: the MVU computes
    them as it stands, with ``P`` dividing 4 or not (a unit's rows split across groups)."""
    model, x_codes, h0 = _case(name)
    _, steps = step_inputs(model, x_codes, h0)
    layer, d = model.num_layers - 1, model.num_directions - 1  # layer input: hidden codes
    s, rows = steps[(layer, d)], gru_gate_rows(model, layer, d)
    picks = [(0, 0), (1, 2), (2, 4)]  # (batch, t) pairs
    u, h_prev = (np.array([s[k][b, t] for b, t in picks]) for k in ("u", "h_prev"))
    want = gru_rows_reference(rows, u, h_prev)
    q, f = model.layers[layer][d], model.formats
    dut = MatrixVectorUnit(lanes, max(q.w_ih.fmt.bits, q.w_hh.fmt.bits),
                           max(f["x"].bits, f["hidden"].bits), model.acc, rows.product_shifts,
                           (rows.target,), model.rounding, model.overflow, simd)  # fmt: skip
    beats, groups = mvu_beats(rows, np.concatenate([u, h_prev], axis=1), lanes, simd)
    seed = lanes * 10 + simd
    rng_in, rng_out = (np.random.default_rng(k) for k in np.random.SeedSequence(seed).spawn(2))
    got = []

    async def producer(ctx):
        await put_all(ctx, dut.i, beats, rng=rng_in, idle=0.2)

    async def consumer(ctx):
        got.extend(await get_all(ctx, dut.o, groups * len(picks), rng=rng_out, stall=0.3))
        await expect_quiet(ctx, dut.o, 2 * dut.latency)

    simulate(Harness(dut), producer, consumer)
    data = np.array([g["data"] for g in got]).reshape(len(picks), groups * lanes)
    assert np.array_equal(data[:, : rows.rows], want), f"seed={seed}"
    assert not any(g["saturated"] for g in got), "an exact sum never saturates"
