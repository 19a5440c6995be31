"""QuantizedModel: alignment and accumulator derivation, the saved artifact, and its checks."""

from __future__ import annotations

import dataclasses
import json
from itertools import product

import numpy as np
import pytest
from quant_helpers import exactly

from lstmfpga.export.spec import SpecError
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.fixed import FixedFormat, FormatError
from lstmfpga.quant.model import (
    QMODEL_FORMAT,
    QMODEL_VERSION,
    QuantizedModel,
    Tensor,
    cell_sum_bits,
)
from lstmfpga.testing import random_inputs, random_qmodel, random_spec

GEOMETRIES = [
    {},
    {"head": "last"},
    {"num_layers": 2, "bidirectional": True, "proj_size": 2, "head": "all"},
    {"bias": False, "head": "last", "head_bias": False},
]


@pytest.fixture(params=GEOMETRIES, ids=["plain", "head-last", "stacked-bi-proj", "no-bias"])
def qmodel(request):
    return random_qmodel(5, "w8a16", **request.param)[1]


def _tensors(model: QuantizedModel) -> dict[str, Tensor]:
    out = {}
    for index, directions in enumerate(model.layers):
        for d, q in enumerate(directions):
            for name in ("w_ih", "w_hh", "bias", "w_hr"):
                if getattr(q, name) is not None:
                    out[f"{name}_{index}_{d}"] = getattr(q, name)
    if model.head is not None:
        out["head_w"] = model.head.weight
        if model.head.bias is not None:
            out["head_b"] = model.head.bias
    return out


def test_save_load_round_trip(qmodel, tmp_path):
    path = qmodel.save(tmp_path / "q")
    loaded = QuantizedModel.load(path)
    assert loaded.describe() == qmodel.describe()
    assert loaded.formats == qmodel.formats and loaded.acc == qmodel.acc
    assert loaded.config == qmodel.config
    assert loaded.calibration == json.loads(json.dumps(qmodel.calibration))
    a, b = _tensors(qmodel), _tensors(loaded)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].fmt == b[name].fmt and np.array_equal(a[name].codes, b[name].codes)
    for name, table in qmodel.tables.items():
        assert np.array_equal(table.entries, loaded.tables[name].entries)
        assert np.array_equal(table.slopes, loaded.tables[name].slopes)
    x = random_inputs(9, 3, 7, qmodel.input_size)
    first, second = golden.predict(qmodel, x)[1], golden.predict(loaded, x)[1]
    assert np.array_equal(first.prediction, second.prediction)
    assert np.array_equal(first.h_n, second.h_n) and np.array_equal(first.c_n, second.c_n)


def test_round_trip_keeps_custom_rules(tmp_path):
    spec = random_spec(2, head="last")
    config = dataclasses.replace(
        QuantConfig.preset("q16"),
        name="custom",
        rounding="half_up",
        overflow="wrap",
        acc_bits=50,
        tanh=dataclasses.replace(QuantConfig.preset("q16").tanh, range_log2=None, step_log2=-6),
    )
    model = quantize(spec, random_inputs(2, 4, 6, 3), config)
    loaded = QuantizedModel.load(model.save(tmp_path / "q"))
    assert loaded.config == config and loaded.acc.bits == 50


def _saved(tmp_path, **kwargs):
    _, model = random_qmodel(1, "q16", head="last", **kwargs)
    return model.save(tmp_path / "q")


def _edit_manifest(path, edit):
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _edit_tensors(path, edit):
    with np.load(path / "tensors.npz") as npz:
        tensors = dict(npz)
    edit(tensors)
    np.savez(path / "tensors.npz", **tensors)


def test_version_mismatch_is_refused(tmp_path):
    path = _saved(tmp_path)
    _edit_manifest(path, lambda m: m.update(version=QMODEL_VERSION + 1))
    message = (
        f"{path}: {QMODEL_FORMAT} version {QMODEL_VERSION + 1} is not supported "
        f"(this lstmfpga reads version {QMODEL_VERSION})"
    )
    with pytest.raises(SpecError, match=exactly(message)):
        QuantizedModel.load(path)


def test_a_spec_is_not_a_quantized_model(tmp_path):
    path = random_spec(0).save(tmp_path / "spec")
    with pytest.raises(
        SpecError,
        match=exactly(f"{path}: expected a {QMODEL_FORMAT} artifact, found 'lstmfpga.spec'"),
    ):
        QuantizedModel.load(path)


@pytest.mark.parametrize("part", ["entries", "slopes"])
@pytest.mark.parametrize("table", ["sigmoid", "tanh_gate", "tanh_cell"])
def test_a_tampered_table_is_refused(tmp_path, table, part):
    path = _saved(tmp_path)

    def tamper(tensors):
        values = tensors[f"table_{table}_{part}"].copy()
        values[3] += 1
        tensors[f"table_{table}_{part}"] = values

    _edit_tensors(path, tamper)
    message = f"{path}: activation table {table} ({part}) does not match its rule"
    with pytest.raises(SpecError, match=exactly(message)):
        QuantizedModel.load(path)


def test_a_changed_table_rule_is_refused(tmp_path):
    path = _saved(tmp_path)
    _edit_manifest(path, lambda m: m["config"]["activation"]["tanh"].update(step_log2=-4))
    with pytest.raises(
        SpecError, match=exactly(f"{path}: activation table tanh_gate", whole=False)
    ):
        QuantizedModel.load(path)


def test_tampered_tensors_are_refused(tmp_path):
    path = _saved(tmp_path)
    _edit_tensors(path, lambda t: t.update(w_ih_l0=t["w_ih_l0"] * 1000))
    with pytest.raises(
        SpecError, match=exactly(f"{path}: tensor w_ih_l0: tensor codes do not", whole=False)
    ):
        QuantizedModel.load(path)
    path = _saved(tmp_path / "2")
    _edit_tensors(path, lambda t: t.update(head_w=t["head_w"] + 0.5))
    with pytest.raises(SpecError, match=exactly(f"{path}: tensor head_w must hold integer codes")):
        QuantizedModel.load(path)


def test_a_malformed_manifest_is_refused(tmp_path):
    path = _saved(tmp_path)
    _edit_manifest(path, lambda m: m.pop("formats"))
    with pytest.raises(
        SpecError, match=exactly(f"{path}: quantized model manifest is malformed", whole=False)
    ):
        QuantizedModel.load(path)


def test_a_manifest_with_a_too_narrow_accumulator_is_refused(tmp_path):
    path = _saved(tmp_path)
    _edit_manifest(path, lambda m: m["acc"].update(bits=m["acc"]["bits"] - 1))
    with pytest.raises(SpecError, match=exactly("accumulator s", whole=False)):
        QuantizedModel.load(path)


# -- alignment and the accumulator ---------------------------------------------------------------
def test_shifts_align_every_product_to_the_accumulator(qmodel):
    acc = qmodel.acc.frac
    for index, directions in enumerate(qmodel.layers):
        u = qmodel.input_format(index)
        for d, q in enumerate(directions):
            s_in, s_rec, s_b = qmodel.gate_shifts(index, d)
            assert s_in == acc - q.w_ih.fmt.frac - u.frac >= 0
            assert s_rec == acc - q.w_hh.fmt.frac - qmodel.formats["hidden"].frac >= 0
            if q.bias is not None:
                assert s_b == acc - q.bias.fmt.frac >= 0
                assert np.array_equal(qmodel.aligned_gate_bias(index, d), q.bias.codes << s_b)
            else:
                assert not qmodel.aligned_gate_bias(index, d).any()
            if q.w_hr is not None:
                assert qmodel.proj_shift(index, d) >= 0
    for role in ("preact", "hidden", "head_out"):
        assert qmodel.requant_shift(role) == acc - qmodel.formats[role].frac


def _worst_case_sum(model: QuantizedModel) -> int:
    """Largest |accumulator| over every dot product with every operand at its worst code."""

    def mag(fmt):
        return max(-fmt.min_code, fmt.max_code)

    acc, hidden, worst = model.acc.frac, model.formats["hidden"], 0
    for index, directions in enumerate(model.layers):
        u = model.input_format(index)
        for q in directions:
            total = q.w_ih.codes.shape[1] * mag(q.w_ih.fmt) * mag(u) << (
                acc - q.w_ih.fmt.frac - u.frac
            )
            total += q.w_hh.codes.shape[1] * mag(q.w_hh.fmt) * mag(hidden) << (
                acc - q.w_hh.fmt.frac - hidden.frac
            )
            if q.bias is not None:
                total += mag(q.bias.fmt) << (acc - q.bias.fmt.frac)
            worst = max(worst, total)
            if q.w_hr is not None:
                worst = max(
                    worst,
                    q.w_hr.codes.shape[1] * mag(q.w_hr.fmt) * mag(hidden)
                    << (acc - q.w_hr.fmt.frac - hidden.frac),
                )
    if model.head is not None:
        w, b = model.head.weight, model.head.bias
        total = w.codes.shape[1] * mag(w.fmt) * mag(hidden) << (acc - w.fmt.frac - hidden.frac)
        worst = max(worst, total + (0 if b is None else mag(b.fmt) << (acc - b.fmt.frac)))
    return worst


def test_the_accumulator_is_the_narrowest_that_never_overflows(qmodel):
    worst = _worst_case_sum(qmodel)
    bits = qmodel.acc.bits
    assert worst <= 2 ** (bits - 1) - 1
    assert worst > 2 ** (bits - 2) - 1  # one bit fewer would overflow


def test_worst_case_operands_do_not_overflow_the_accumulator():
    """Drive every input and state to its most negative code: the int path stays exact."""
    spec, model = random_qmodel(3, "q16", num_layers=2, head="last")
    config = dataclasses.replace(model.config, acc_bits=60)
    wide = quantize(spec, random_inputs(3, 16, 12, spec.input_size), config)
    assert wide.acc.frac == model.acc.frac
    x = np.full((2, 4, spec.input_size), model.formats["x"].min_code, dtype=np.int64)
    a, b = golden.run(model, x), golden.run(wide, x)
    assert np.array_equal(a.prediction, b.prediction)


GATES = [FixedFormat(16, 14), FixedFormat(8, 6)]
CELLS = [FixedFormat(16, 12), FixedFormat(16, 15), FixedFormat(8, 2)]


@pytest.mark.parametrize(("gate", "cell"), list(product(GATES, CELLS)))
def test_cell_sum_bits_bounds_the_cell_update(gate, cell):
    one = 1 << gate.frac
    sum_frac = gate.frac + max(cell.frac, gate.frac)
    worst = (one * -cell.min_code << (sum_frac - gate.frac - cell.frac)) + (
        one * one << (sum_frac - 2 * gate.frac)
    )
    bits = cell_sum_bits(gate, cell)
    assert worst <= 2 ** (bits - 1) - 1 < 2 * worst


def test_validate_rejects_inconsistent_models(qmodel):
    with pytest.raises(SpecError, match=exactly("quantized model lacks formats for x")):
        dataclasses.replace(
            qmodel, formats={k: v for k, v in qmodel.formats.items() if k != "x"}
        ).validate()
    with pytest.raises(SpecError, match=exactly("accumulator s", whole=False)):
        dataclasses.replace(
            qmodel, acc=FixedFormat(qmodel.acc.bits - 1, qmodel.acc.frac)
        ).validate()
    with pytest.raises(
        FormatError, match=exactly("gate format s16.15 cannot hold 1.0", whole=False)
    ):
        dataclasses.replace(
            qmodel, formats={**qmodel.formats, "gate": FixedFormat(16, 15)}
        ).validate()


def test_tensor_codes_must_fit_their_format():
    with pytest.raises(FormatError, match=exactly("tensor codes do not fit s4.0")):
        Tensor(np.array([8]), FixedFormat(4, 0))
    t = Tensor(np.array([7, -8]), FixedFormat(4, 2))
    assert not t.codes.flags.writeable
    assert t.values.tolist() == [1.75, -2.0]


def test_describe_names_formats_and_table_errors(qmodel):
    text = qmodel.describe()
    assert text.startswith(f"quantized LSTM (w8a16) input_size={qmodel.input_size} ")
    assert f"acc={qmodel.acc}" in text
    assert text.count("table ") == 3 and "max error " in text
    assert qmodel.weight_count == sum(t.codes.size for t in _tensors(qmodel).values())
