# amaranth: UnusedElaboratable=no
"""quantize_like: a (retrained) spec quantized with another qmodel's formats fits the hardware
built for that qmodel, or is refused naming the tensor that does not fit."""

import numpy as np
import pytest

from lstmfpga.export.spec import SpecError
from lstmfpga.hw.layout import WeightLayout
from lstmfpga.quant import golden
from lstmfpga.quant.fixed import FormatError
from lstmfpga.quant.given_formats import quantize_like, tensor_formats
from lstmfpga.quant.model import QuantizedModel
from lstmfpga.testing import random_inputs, random_qmodel, random_spec

SEED = 23
GEOMETRIES = {
    "last": dict(input_size=3, hidden_size=4, head="last"),
    "bidir-proj-2layer": dict(input_size=2, hidden_size=4, num_layers=2, bidirectional=True,
                              proj_size=3, head="all", head_out=2),
    "no-bias-no-head": dict(input_size=2, hidden_size=3, bias=False),
}  # fmt: skip


@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("preset", ["q16", "w8a8"])
def test_the_reference_spec_gives_back_the_reference_codes(name, preset):
    spec, ref = random_qmodel(SEED, preset=preset, **GEOMETRIES[name])
    again = quantize_like(spec, ref, source="ref/")
    assert again.formats == ref.formats and again.acc == ref.acc
    assert tensor_formats(again) == tensor_formats(ref)
    for a, b in zip(again.layers, ref.layers, strict=True):
        for qa, qb in zip(a, b, strict=True):
            for ta, tb in ((qa.w_ih, qb.w_ih), (qa.w_hh, qb.w_hh), (qa.bias, qb.bias),
                           (qa.w_hr, qb.w_hr)):  # fmt: skip
                assert (ta is None) == (tb is None)
                if ta is not None:
                    np.testing.assert_array_equal(ta.codes, tb.codes)
    assert again.calibration["source"]["formats_from"] == "ref/"
    assert again.spec_hash == spec.content_hash()


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_retrained_weights_fit_the_same_hardware(name):
    _, ref = random_qmodel(SEED, **GEOMETRIES[name])
    retrained = random_spec(SEED, scale=0.45, **GEOMETRIES[name])  # every weight x 0.9
    new = quantize_like(retrained, ref)
    # Same hardware: the same formats, shifts, requantization targets and memory shapes.
    a, b = WeightLayout.of(ref, 2), WeightLayout.of(new, 2)
    assert (a.product_shifts, a.targets, a.weight_bits, a.acc) == (
        b.product_shifts, b.targets, b.weight_bits, b.acc)  # fmt: skip
    assert a.weight_words.shape == b.weight_words.shape
    assert not np.array_equal(a.weight_words, b.weight_words), "the weights did change"
    # The codes are the retrained floats rounded in the reference's formats.
    fmt = ref.layers[0][0].w_ih.fmt
    want = fmt.quantize(retrained.layers[0][0].w_ih, ref.rounding)
    np.testing.assert_array_equal(new.layers[0][0].w_ih.codes, want)
    # It is an ordinary qmodel: saved, loaded, run by the golden model.
    x = golden.quantize_inputs(new, random_inputs(SEED, 2, 3, new.input_size))
    assert golden.run(new, x).prediction.shape == golden.run(ref, x).prediction.shape


def test_the_saved_model_loads_back_with_the_reference_formats(tmp_path):
    _, ref = random_qmodel(SEED, **GEOMETRIES["last"])
    new = quantize_like(random_spec(SEED, scale=0.45, **GEOMETRIES["last"]), ref)
    loaded = QuantizedModel.load(new.save(tmp_path / "q"))
    assert loaded.formats == ref.formats and tensor_formats(loaded) == tensor_formats(ref)


def test_a_weight_outside_its_format_is_refused_naming_the_tensor():
    _, ref = random_qmodel(SEED, **GEOMETRIES["last"])
    grown = random_spec(SEED, scale=2.5, **GEOMETRIES["last"])  # every weight x 5
    with pytest.raises(FormatError, match=r"^tensor w_ih_l0 must fit s16\.\d+ \(") as error:
        quantize_like(grown, ref)
    assert "weights outside" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(hidden_size=5), "spec hidden_size must be the formats qmodel's 4, not 5"),
        (dict(input_size=2), "spec input_size must be the formats qmodel's 3, not 2"),
        (dict(num_layers=2), "spec num_layers must be the formats qmodel's 1, not 2"),
        (dict(bidirectional=True), "spec bidirectional must be the formats qmodel's False"),
        (dict(bias=False), "spec bias must be the formats qmodel's True, not False"),
        (dict(head="all"), r"spec head \(mode, out_features\) must be the formats qmodel's "),
        (dict(head_bias=False), "spec tensors must be the formats qmodel's, not differ in head_b"),
    ],
)
def test_another_geometry_is_refused_naming_it(change, match):
    _, ref = random_qmodel(SEED, **GEOMETRIES["last"])
    other = random_spec(SEED, **{**GEOMETRIES["last"], **change})
    with pytest.raises(SpecError, match=match):
        quantize_like(other, ref)


def test_arguments_are_type_checked():
    spec, ref = random_qmodel(SEED, **GEOMETRIES["last"])
    with pytest.raises(TypeError, match="reference must be a QuantizedModel, not 'q'"):
        quantize_like(spec, "q")
    with pytest.raises(TypeError, match="spec must be a ModelSpec, not 1"):
        quantize_like(1, ref)
