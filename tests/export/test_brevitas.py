"""Brevitas QuantLSTM import: formats taken over, codes equal, golden vs Brevitas, refusals.

The models are real ``brevitas.nn.QuantLSTM`` modules with power-of-two (fixed-point)
quantizers and random weights (fixed seeds). Where lstmfpga and Brevitas define the arithmetic
the same way the codes are compared bit for bit (weights, biases, inputs, pre-activations,
gate activations on every table input code, ``h = io_quant(o * tanh(c))``); the cell update,
where Brevitas rounds ``f*c`` and ``i*g`` separately before adding them, is allowed one cell
LSB per step; the whole forward pass within a stated number of output LSBs.
"""

import numpy as np
import pytest
import torch
from brevitas.nn import QuantLinear, QuantLSTM
from brevitas.quant import (
    Int8ActPerTensorFloatMinMaxInit,
    Int8WeightPerTensorFixedPoint,
    Int8WeightPerTensorFloat,
    Int16Bias,
    ShiftedUint8WeightPerTensorFloat,
    Uint8ActPerTensorFixedPoint,
)
from brevitas.quant.fixed_point import (
    Int8ActPerTensorFixedPointMinMaxInit,
    Int8WeightPerChannelFixedPoint,
    Uint8ActPerTensorFixedPointMaxInit,
)
from helpers.sim_cache import cache_root

from lstmfpga.export.brevitas_loader import GATES, from_brevitas
from lstmfpga.export.spec import SpecError
from lstmfpga.pipeline import simulate_model
from lstmfpga.quant import golden
from lstmfpga.quant.fixed import FixedFormat, FormatError
from lstmfpga.quant.given_formats import quantize_with_formats, tensor_names
from lstmfpga.quant.model import QuantizedModel, Tensor
from lstmfpga.testing import random_qmodel


class IO8(Int8ActPerTensorFixedPointMinMaxInit):
    """x and h: signed 8 bits, scale 2**-6 (2 / 127 rounded up to a power of two)."""

    min_val, max_val = -2.0, 2.0


class Preact10(Int8ActPerTensorFixedPointMinMaxInit):
    """Gate pre-activations: signed 10 bits, scale 2**-6."""

    bit_width, min_val, max_val = 10, -8.0, 8.0


class Gate10(Int8ActPerTensorFixedPointMinMaxInit):
    """Sigmoid and tanh outputs: signed 10 bits, scale 2**-8 (holds 1.0)."""

    bit_width, min_val, max_val = 10, -2.0, 2.0


class Sigmoid8(Uint8ActPerTensorFixedPointMaxInit):
    """Brevitas's usual sigmoid output: unsigned 8 bits, scale 2**-8 (stops at 255/256)."""

    max_val = 1.0


class Tanh8(Int8ActPerTensorFixedPointMinMaxInit):
    """Signed 8 bits, scale 2**-7."""

    min_val, max_val = -1.0, 1.0


class IOFloat(Int8ActPerTensorFloatMinMaxInit):
    """A float scale: 1.5 / 127."""

    min_val, max_val = -1.5, 1.5


class Preact16(Int8ActPerTensorFixedPointMinMaxInit):
    """Wide pre-activations: signed 16 bits, scale 2**-12."""

    bit_width, min_val, max_val = 16, -8.0, 8.0


class NarrowIO(IO8):
    narrow_range = True


class FloorIO(IO8):
    float_to_int_impl_type = "floor"


class Wide40(IO8):
    bit_width = 40


SEED = 7


#: The weight and bias quantizers of every Brevitas layer here (float64, as the reference).
WEIGHTS = dict(
    weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias, dtype=torch.float64
)


def make_lstm(seed=SEED, *, input_size=3, hidden_size=4, **options):
    torch.manual_seed(seed)
    kwargs = dict(
        **WEIGHTS,
        io_quant=IO8,
        gate_acc_quant=Preact10,
        sigmoid_quant=Gate10,
        tanh_quant=Gate10,
        cell_state_quant=IO8,
        batch_first=True,
        shared_intra_layer_weight_quant=True,
        shared_intra_layer_gate_acc_quant=True,
    )
    kwargs.update(options)
    return QuantLSTM(input_size, hidden_size, **kwargs).eval()


def inputs(seed, batch, seq, features):
    return np.random.default_rng(seed).normal(0, 0.8, (batch, seq, features))


def brevitas_forward(module, x):
    with torch.no_grad():
        y, _ = module(torch.from_numpy(x))
    return y.numpy()


# -- formats and codes ---------------------------------------------------------------------------
def test_formats_come_from_the_quantizers():
    spec, q = from_brevitas(make_lstm())
    assert {r: str(f) for r, f in q.formats.items()} == {
        "x": "s8.6",
        "hidden": "s8.6",
        "preact": "s10.6",
        "gate": "s10.8",
        "cell": "s8.6",
        "head_out": "s8.6",
    }
    layer = q.layers[0][0]
    assert layer.w_ih.fmt == layer.w_hh.fmt == FixedFormat(8, 8)  # max |w| < 0.5: 2**-8
    assert layer.bias.fmt == FixedFormat(16, 14)  # Int16Bias: scale(x) * scale(w)
    assert q.config.name == "brevitas" and q.rounding == "half_even"
    # Tables of at most 12-bit inputs hold one entry per code.
    assert all(t.shift == 0 and not t.interpolate for t in q.tables.values())
    assert spec.source == "brevitas module QuantLSTM"
    why = {role: note["why"] for role, note in q.calibration["roles"].items()}
    assert why["x"] == why["hidden"] == "from layers.0.0.cell.output_quant"
    assert why["preact"] == "from layers.0.0.cell.input_acc_quant"


def test_unsigned_sigmoid_and_coarser_tanh_share_one_gate_format():
    _, q = from_brevitas(make_lstm(sigmoid_quant=Sigmoid8, tanh_quant=Tanh8))
    assert q.formats["gate"] == FixedFormat(10, 8)  # both grids and 1.0


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_weight_and_bias_codes_are_brevitas_integers(layers, bidirectional):
    module = make_lstm(num_layers=layers, bidirectional=bidirectional)
    spec, q = from_brevitas(module)
    H = q.hidden_size
    for index, directions in enumerate(module.layers):
        for d, layer in enumerate(directions):
            ql, lw = q.layers[index][d], spec.layers[index][d]
            qi = layer.io_quant(torch.zeros(1, layer.input_size, dtype=torch.float64))
            for k, gate in enumerate(GATES):
                params = getattr(layer, f"{gate}_gate_params")
                rows = slice(k * H, (k + 1) * H)
                qw = params.input_weight()
                assert np.array_equal(ql.w_ih.codes[rows], qw.int().numpy())
                assert np.array_equal(ql.w_hh.codes[rows], params.hidden_weight().int().numpy())
                qb = params.bias_quant(params.bias, qi, qw)
                assert np.array_equal(ql.bias.codes[rows], qb.int().numpy())
                # The spec holds the float weights; b_hh is zero (Brevitas has one bias).
                w = params.input_weight.weight.detach().numpy()
                assert np.array_equal(lw.w_ih[rows], w)
                assert np.array_equal(lw.b_ih[rows], params.bias.detach().numpy())
            assert not lw.b_hh.any()


def test_a_model_without_biases_has_none():
    module = make_lstm(bias=False)
    spec, q = from_brevitas(module)
    assert not spec.bias and q.layers[0][0].bias is None
    x = inputs(0, 2, 5, 3)
    got, _ = golden.predict(q, x)
    assert np.abs(got - brevitas_forward(module, x)).max() <= 3 * q.formats["hidden"].lsb


def test_imported_qmodel_saves_and_loads(tmp_path):
    _, q = from_brevitas(make_lstm(num_layers=2))
    loaded = QuantizedModel.load(q.save(tmp_path / "q"))
    x = golden.quantize_inputs(q, inputs(1, 2, 4, 3))
    assert np.array_equal(golden.run(loaded, x).output, golden.run(q, x).output)
    assert loaded.formats == q.formats


# -- arithmetic ----------------------------------------------------------------------------------
def test_every_stage_matches_brevitas_where_defined_alike():
    """Each step of the golden trace, recomputed with Brevitas's own quantizers."""
    module = make_lstm(hidden_size=5)
    _, q = from_brevitas(module)
    x = inputs(2, 4, 8, 3) * 2  # some inputs saturate
    layer = module.layers[0][0]
    qx = layer.io_quant(torch.from_numpy(x))
    x_codes = golden.quantize_inputs(q, x)
    assert np.array_equal(x_codes, qx.int().numpy())  # inputs: round half even, saturate
    rec = golden.run(q, x_codes, trace=True).trace[(0, 0)]
    fmt = q.formats
    H, cell = q.hidden_size, layer.cell
    qi = layer.io_quant(torch.zeros(1, 3, dtype=torch.float64))
    gate_params = [getattr(layer, f"{g}_gate_params") for g in GATES]
    weights = [(p.input_weight().value, p.hidden_weight().value) for p in gate_params]
    biases = [p.bias_quant(p.bias, qi, p.input_weight()).value for p in gate_params]
    accs = [getattr(cell, f"{g}_acc_quant") for g in GATES]
    acts = [
        cell.input_sigmoid_quant,
        cell.forget_sigmoid_quant,
        cell.cell_tanh_quant,
        cell.output_sigmoid_quant,
    ]
    B, T = x.shape[:2]
    h_prev, c_prev = np.zeros((B, H)), np.zeros((B, H))
    cell_diff = []
    for t in range(T):
        x_t = torch.from_numpy(fmt["x"].dequantize(x_codes[:, t]))
        h_t = torch.from_numpy(h_prev)
        gates = []
        for k in range(4):
            w_ih, w_hh = weights[k]
            acc = accs[k](x_t @ w_ih.T + h_t @ w_hh.T + biases[k])
            rows = slice(k * H, (k + 1) * H)
            assert np.array_equal(rec["preact"][:, t, rows], acc.int().numpy()), (t, k)
            pre = torch.from_numpy(fmt["preact"].dequantize(rec["preact"][:, t, rows]))
            act = acts[k](pre)
            assert np.array_equal(rec["gates"][:, t, rows], act.int().numpy()), (t, k)
            gates.append(act.value)
        i, f, g, o = gates
        q_cell = cell.cell_state_quant
        c_brevitas = q_cell(q_cell(f * torch.from_numpy(c_prev)).value + q_cell(i * g).value)
        cell_diff.append(np.abs(rec["c"][:, t] - c_brevitas.int().numpy()))
        c = torch.from_numpy(fmt["cell"].dequantize(rec["c"][:, t]))
        h = cell.output_quant(o * cell.hidden_state_tanh_quant(c).value)
        assert np.array_equal(rec["h"][:, t], h.int().numpy()), t
        h_prev, c_prev = fmt["hidden"].dequantize(rec["h"][:, t]), c.numpy()
    # Brevitas rounds f*c and i*g separately: at most one cell LSB apart, and mostly equal.
    cell_diff = np.stack(cell_diff)
    assert cell_diff.max() <= 1
    assert 0 < np.count_nonzero(cell_diff) < cell_diff.size / 4


def test_tables_equal_brevitas_activations_on_every_code():
    module = make_lstm(sigmoid_quant=Sigmoid8, tanh_quant=Tanh8)
    _, q = from_brevitas(module)
    cell = module.layers[0][0].cell
    fmt = q.formats["preact"]
    p = np.arange(fmt.min_code, fmt.max_code + 1)
    pre = torch.from_numpy(fmt.dequantize(p))
    sig = cell.input_sigmoid_quant(pre).int().numpy()
    ours = q.tables["sigmoid"].lookup(p)
    # Same grid (2**-8); Brevitas's unsigned 8-bit sigmoid stops at 255, ours reaches 256.
    assert np.array_equal(np.minimum(ours, 255), sig)
    assert p[ours == 256].min() * fmt.lsb >= np.log(511)  # only where sigmoid > 255.5/256
    # tanh: Brevitas rounds to 2**-7 (and stops at 127/128), lstmfpga to 2**-8.
    tanh = cell.cell_tanh_quant(pre).int().numpy().astype(np.int64) * 2  # in 2**-8 LSBs
    ours = q.tables["tanh_gate"].lookup(p)
    clamped = np.abs(np.tanh(pre.numpy())) * 128 >= 127.5  # Brevitas stops at 127
    assert np.abs(ours - tanh)[~clamped].max() == 1  # half a Brevitas LSB
    assert np.all(np.abs(ours[clamped]) >= 255)


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_golden_model_follows_brevitas_forward(layers, bidirectional):
    """Only the cell's double rounding differs: over 12 steps within 3 output LSBs (2 seen
    over five seeds), most outputs equal."""
    module = make_lstm(num_layers=layers, bidirectional=bidirectional)
    x = inputs(3, 6, 12, 3)
    want = brevitas_forward(module, x)  # before the import: a module that has run is fine
    _, q = from_brevitas(module)
    got, _ = golden.predict(q, x)
    lsb = np.abs(got - want) / q.formats["hidden"].lsb
    assert lsb.max() <= 3, lsb.max()
    assert np.mean(lsb == 0) > 0.7


def test_wide_preacts_use_the_w8a8_interpolated_tables():
    module = make_lstm(gate_acc_quant=Preact16)
    _, q = from_brevitas(module)
    assert q.formats["preact"] == FixedFormat(16, 12)
    sigmoid, rule = q.tables["sigmoid"], q.config.sigmoid
    assert sigmoid.interpolate and sigmoid.shift == 12 + rule.step_log2
    x = inputs(3, 6, 12, 3)
    lsb = np.abs(golden.predict(q, x)[0] - brevitas_forward(module, x)) / q.formats["hidden"].lsb
    assert lsb.max() <= 3  # 1 seen over five seeds


@pytest.mark.parametrize("mode", ["last", "all"])
def test_quant_linear_head_is_imported(mode):
    class Model(torch.nn.Module):
        head_mode = mode

        def __init__(self):
            super().__init__()
            self.lstm = make_lstm(hidden_size=6)
            torch.manual_seed(3)
            self.fc = QuantLinear(6, 2, bias=True, input_quant=IO8, output_quant=IO8, **WEIGHTS)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.fc(y[:, -1] if mode == "last" else y)

    model = Model().eval()
    spec, q = from_brevitas(model)
    assert spec.head.mode == mode and q.formats["head_out"] == FixedFormat(8, 6)
    assert np.array_equal(q.head.weight.codes, model.fc.quant_weight().int().numpy())
    x = inputs(4, 5, 6, 3)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got, _ = golden.predict(q, x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() / q.formats["head_out"].lsb <= 3


def test_given_formats_reproduce_a_calibrated_model():
    """quantize_with_formats with a calibrated model's own formats gives that model back."""
    geometry = dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, head="all")
    spec, calibrated = random_qmodel(5, preset="w8a8", head_out=2, **geometry)
    tensors = dict(calibrated.named_tensors())
    formats = {name: tensors[name].fmt for name in tensor_names(spec)}
    q = quantize_with_formats(spec, dict(calibrated.formats), formats, calibrated.config)
    for name, tensor in q.named_tensors():
        assert tensor is None or np.array_equal(tensor.codes, tensors[name].codes), name
    assert q.acc == calibrated.acc
    x = golden.quantize_inputs(q, inputs(6, 3, 4, 3))
    assert np.array_equal(golden.run(q, x).head, golden.run(calibrated, x).head)


def test_given_formats_are_checked_against_the_config():
    spec, calibrated = random_qmodel(5, preset="w8a8", input_size=3, hidden_size=4)
    tensors = {n: t.fmt for n, t in calibrated.named_tensors() if t is not None}
    formats = dict(calibrated.formats)
    with pytest.raises(FormatError, match=r"^format of x s16\.\d+ must have the config's 8 bits"):
        quantize_with_formats(
            spec, {**formats, "x": FixedFormat(16, 8)}, tensors, calibrated.config
        )
    with pytest.raises(SpecError, match=r"^tensors must name exactly w_ih_l0, w_hh_l0, bias_l0"):
        quantize_with_formats(spec, formats, {"w_ih_l0": tensors["w_ih_l0"]}, calibrated.config)
    wrong = {**tensors, "w_hh_l0": Tensor(np.zeros((2, 2), np.int64), FixedFormat(8, 6))}
    with pytest.raises(SpecError, match=r"^tensor w_hh_l0 must have shape \(16, 4\), not \(2, 2\)"):
        quantize_with_formats(spec, formats, wrong, calibrated.config)


# -- refusals ------------------------------------------------------------------------------------
W0 = "layers.0.0.input_gate_params.input_weight.weight_quant"
OUT = r"^layers\.0\.0\.cell\.output_quant"
REFUSED = [
    (dict(weight_quant=Int8WeightPerTensorFloat), rf"^{W0}: scale 0\.\d+ is not a power of two$"),
    (dict(io_quant=IOFloat), rf"{OUT}: scale 0\.0117\d* is not a power of two$"),
    (dict(weight_quant=Int8WeightPerChannelFixedPoint), rf"^{W0}: per-channel scale \(4 values\)"),
    (dict(weight_quant=ShiftedUint8WeightPerTensorFloat), rf"^{W0}: zero point -?\d+; lstmfpga"),
    (dict(io_quant=Uint8ActPerTensorFixedPoint), rf"{OUT}: unsigned quantizer where lstmfpga"),
    (dict(cell_state_quant=None), r"^layers\.0\.0\.cell\.cell_state_quant: not quantized"),
    (dict(coupled_input_forget_gates=True), r"^layers\.0\.0: coupled input-forget gates"),
    (dict(io_quant=NarrowIO), rf"{OUT}: narrow range; the lstmfpga datapath saturates"),
    (dict(io_quant=FloorIO), rf"{OUT}: rounding mode floor; lstmfpga rounds half to even"),
    (dict(cell_state_quant=Wide40), r"cell_state_quant: bit width 40 must be in 2\.\.32$"),
]


@pytest.mark.parametrize(("options", "match"), REFUSED)
def test_unrepresentable_quantizers_are_refused_naming_them(options, match):
    with pytest.raises(SpecError, match=match) as info:
        from_brevitas(make_lstm(**options))
    assert "\n" not in str(info.value)


def test_separate_but_equal_gate_quantizers_are_accepted():
    _, q = from_brevitas(make_lstm(shared_intra_layer_gate_acc_quant=False))
    assert q.formats["preact"] == FixedFormat(10, 6)


def test_gates_with_different_weight_scales_are_refused():
    module = make_lstm(shared_intra_layer_weight_quant=False)
    with torch.no_grad():
        module.layers[0][0].cell_gate_params.input_weight.weight.mul_(4)  # scale 2**-6
    match = (
        r"cell_gate_params\.input_weight\.weight_quant: signed 8-bit, scale 2\*\*-6 "
        r"differs from .*input_gate_params.*2\*\*-8"
    )
    with pytest.raises(SpecError, match=match):
        from_brevitas(module)


def test_more_fraction_bits_than_bits_is_refused():
    module = make_lstm(hidden_size=4)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(0.25)  # max |w| < 1/8: scale 2**-10 for 8 bits
    with pytest.raises(SpecError, match=rf"^{W0}: scale 2\*\*-1\d needs 1\d fraction bits in 8"):
        from_brevitas(module)


def test_a_module_in_training_mode_is_refused():
    with pytest.raises(SpecError, match=r"^layers\.0\.0\.\S+: in training mode; call module\.eval"):
        from_brevitas(make_lstm().train())


def test_float_linear_head_and_foreign_modules_are_refused():
    model = torch.nn.Sequential(make_lstm(), torch.nn.Linear(4, 2))
    with pytest.raises(SpecError, match=r"^layer '1' is a float nn.Linear: use brevitas"):
        from_brevitas(model)
    with pytest.raises(SpecError, match=r"^no brevitas.nn.QuantLSTM found in LSTM$"):
        from_brevitas(torch.nn.LSTM(3, 4))
    with pytest.raises(SpecError, match=r"^head='all' given, but QuantLSTM has no QuantLinear$"):
        from_brevitas(make_lstm(), head="all")
    with pytest.raises(TypeError, match=r"^module must be a torch\.nn\.Module"):
        from_brevitas("model.pt")


# -- hardware ------------------------------------------------------------------------------------
def test_imported_qmodel_is_bit_exact_in_verilator(tmp_path_factory):
    spec, q = from_brevitas(make_lstm(num_layers=2))
    x = inputs(5, 3, 5, 3) * 2
    report, arrays = simulate_model(
        q,
        x,
        simulator="verilator",
        lanes=4,
        seed=1,
        spec=spec,
        build_dir=cache_root(tmp_path_factory),  # the tests/sim builds
    )
    assert report["bit_exact"] is True, report["outputs"]
    assert np.array_equal(arrays["rtl"], arrays["golden"])
    assert np.array_equal(arrays["golden"], golden.run(q, golden.quantize_inputs(q, x)).output)
