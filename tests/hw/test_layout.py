"""WeightLayout: unit-major gate rows, padding, word addresses, shifts and targets."""

import numpy as np
import pytest
from helpers.lstm_models import make_model

from lstmfpga.hw.layout import Target, WeightLayout, at_least, pack, select_bits, unit_major

MODELS = {
    "plain": {"input_size": 3, "hidden_size": 3, "head": 0},
    "stack": {"input_size": 1, "hidden_size": 2, "num_layers": 2, "bidirectional": True,
              "head": 3},
    "proj": {"input_size": 8, "hidden_size": 5, "num_layers": 2, "proj_size": 3, "head": 2,
             "bias": False},
    "biproj": {"input_size": 3, "hidden_size": 4, "bidirectional": True, "proj_size": 1},
}  # fmt: skip


def lanes_for(model):
    """Divisors of the gate rows ``4H`` and other lane counts up to ``4H`` (padded groups)."""
    H = model.hidden_size
    return sorted({p for p in (1, 2, 3, 4, 5, 7, 8, 4 * H - 1, 4 * H) if 1 <= p <= 4 * H})


def expected_matrices(model):
    """(name, kind, layer, direction, torch-order rows, bias, [(cols, shift)], role), by hand."""
    H = model.hidden_size
    out = []
    for l, directions in enumerate(model.layers):
        for d, q in enumerate(directions):
            name = f"l{l}" + ("_reverse" if d else "")
            s_in, s_rec, _ = model.gate_shifts(l, d)
            full = np.concatenate([q.w_ih.codes, q.w_hh.codes], axis=1)
            bias = model.aligned_gate_bias(l, d)
            rows = np.empty_like(full)
            brows = np.empty_like(bias)
            for j in range(H):
                for gate in range(4):  # i, f, g, o
                    rows[4 * j + gate] = full[gate * H + j]
                    brows[4 * j + gate] = bias[gate * H + j]
            segs = [(q.w_ih.codes.shape[1], s_in), (q.w_hh.codes.shape[1], s_rec)]
            out.append((f"{name}_gates", "gates", l, d, rows, brows, segs, "preact"))
            if q.w_hr is not None:
                out.append((f"{name}_proj", "proj", l, d, q.w_hr.codes,
                            np.zeros(model.output_size, np.int64),
                            [(H, model.proj_shift(l, d))], "hidden"))  # fmt: skip
    if model.head is not None:
        out.append(("head", "head", None, None, model.head.weight.codes,
                    model.aligned_head_bias(), [(model.head.weight.codes.shape[1],
                                                 model.head_shifts()[0])], "head_out"))  # fmt: skip
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_layout_matches_model(name):
    model, _ = make_model(**MODELS[name], seed=3)
    for P in lanes_for(model):
        layout = WeightLayout.of(model, P)
        assert layout.lanes == P
        assert layout.acc == model.acc and layout.acc_bits == model.acc.bits
        assert (layout.rounding, layout.overflow) == (model.rounding, model.overflow)
        expected = expected_matrices(model)
        assert [m.name for m in layout.matrices] == [e[0] for e in expected]
        shifts = sorted({s for e in expected for _, s in e[6]})
        assert layout.product_shifts == tuple(shifts)
        roles = [r for r in ("preact", "hidden", "head_out") if r in {e[7] for e in expected}]
        assert layout.targets == tuple(
            Target(r, model.requant_shift(r), model.formats[r]) for r in roles
        )
        base = bias_base = 0
        for m, (_, kind, l, d, rows, bias, segs, role) in zip(
            layout.matrices, expected, strict=True
        ):
            assert (m.kind, m.layer, m.direction) == (kind, l, d)
            assert layout.index(kind, l, d) == layout.matrices.index(m)
            assert m.rows == len(rows) and m.cols == rows.shape[1]
            assert m.groups == -(-m.rows // P) and m.padded_rows == m.groups * P
            assert (m.base, m.bias_base) == (base, bias_base)
            assert layout.targets[m.target].role == role
            start = 0
            for seg, (length, shift) in zip(m.segments, segs, strict=True):
                assert (seg.start, seg.length, seg.shift) == (start, length, shift)
                assert layout.product_shifts[seg.shift_index] == shift
                start += length
            # every word: lane p of word base + g*cols + k is row g*P + p, column k
            for g in range(m.groups):
                for k in range(m.cols):
                    for p in range(P):
                        r = g * P + p
                        want = rows[r, k] if r < m.rows else 0
                        assert layout.weight_words[m.base + g * m.cols + k, p] == want
                        assert m.shift_index(k) == m.segments[0 if k < segs[0][0] else 1
                                                             ].shift_index  # fmt: skip
                for p in range(P):
                    r = g * P + p
                    want = bias[r] if r < m.rows else 0
                    assert layout.bias_words[m.bias_base + g, p] == want
            # padding rows are zero
            assert not m.codes[m.rows :].any() and not m.bias[m.rows :].any()
            base += m.groups * m.cols
            bias_base += m.groups
        assert layout.depth == base and layout.bias_depth == bias_base
        assert layout.weight_words.shape == (base, P)
        assert layout.bias_words.shape == (bias_base, P)


def test_widths():
    model, _ = make_model(**MODELS["proj"], preset="w8a16")
    layout = WeightLayout.of(model, 4)
    assert layout.weight_bits == 8
    assert layout.vector_bits == 16
    model16, _ = make_model(**MODELS["proj"], preset="q16")
    assert WeightLayout.of(model16, 4).weight_bits == 16


def test_unit_major():
    H = 3
    rows = np.arange(4 * H)
    # layout row 4*j + q holds PyTorch row q*H + j
    assert unit_major(rows, H).tolist() == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    assert unit_major(rows, 1).tolist() == [0, 1, 2, 3]


def test_gate_group_holds_whole_units():
    model, _ = make_model(**MODELS["plain"])
    layout = WeightLayout.of(model, 4)
    gates = layout.matrices[0]
    H = model.hidden_size
    w_ih = model.layers[0][0].w_ih.codes
    for j in range(H):  # group j holds the i, f, g, o rows of unit j
        word = layout.weight_words[gates.base + j * gates.cols]
        assert word.tolist() == [w_ih[q * H + j, 0] for q in range(4)]


def test_pack():
    words = np.array([[1, -1, -2], [0, 3, -4]])
    assert pack(words, 4) == [0x1 | 0xF << 4 | 0xE << 8, 0x0 | 0x3 << 4 | 0xC << 8]
    model, _ = make_model(**MODELS["stack"])
    layout = WeightLayout.of(model, 8)
    packed = layout.packed_weights()
    bits = layout.weight_bits
    assert len(packed) == layout.depth
    for value, word in zip(packed, layout.weight_words, strict=True):
        lanes = [(value >> (p * bits)) & ((1 << bits) - 1) for p in range(8)]
        lanes = [v - (1 << bits) if v >> (bits - 1) else v for v in lanes]
        assert lanes == word.tolist()
    assert len(layout.packed_biases()) == layout.bias_depth
    with pytest.raises(ValueError, match=r"^words must be a 2-D array, not 1-D$"):
        pack(np.zeros(3), 4)


def test_at_least():
    assert at_least("n", 3, 1) == 3 and at_least("n", 0, 0) == 0
    for bad in (0, True, 2.0, "4"):
        with pytest.raises(ValueError, match=rf"^n must be an integer >= 1, not {bad!r}$"):
            at_least("n", bad, 1)


def test_select_bits():
    assert [select_bits(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 1, 2, 2, 3, 3, 4]


def test_lookup_errors():
    model, _ = make_model(**MODELS["plain"])
    layout = WeightLayout.of(model, 2)
    with pytest.raises(KeyError):
        layout.index("head")
    with pytest.raises(KeyError):
        layout.matrix("nope")
    assert layout.matrix("l0_gates") is layout.matrices[0]
    with pytest.raises(ValueError, match=r"^col must be in 0..5, not 6$"):
        layout.matrices[0].shift_index(6)


@pytest.mark.parametrize(
    ("lanes", "error", "message"),
    [
        (17, ValueError, r"^lanes must be in 1\.\.16 \(4\*hidden_size\), not 17$"),
        (32, ValueError, r"^lanes must be in 1\.\.16 \(4\*hidden_size\), not 32$"),
        (0, ValueError, r"^lanes must be in 1\.\.16 \(4\*hidden_size\), not 0$"),
        ("4", TypeError, r"^lanes must be an integer, not '4'$"),
        (True, TypeError, r"^lanes must be an integer, not True$"),
    ],
)
def test_bad_lanes(lanes, error, message):
    model, _ = make_model(**MODELS["biproj"])
    with pytest.raises(error, match=message):
        WeightLayout.of(model, lanes)


def test_bad_model():
    with pytest.raises(TypeError, match=r"^model must be a QuantizedModel, not None$"):
        WeightLayout.of(None, 4)
