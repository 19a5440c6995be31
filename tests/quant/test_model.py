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
from lstmfpga.quant.accumulator import cell_sum_bits
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.fixed import FixedFormat, FormatError
from lstmfpga.quant.model import (
    QMODEL_FORMAT,
    QMODEL_VERSION,
    QuantizedModel,
    Tensor,
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
    with pytest.raises(
        SpecError, match=exactly(f"{path}: tensor head_w must hold integer codes, not float64")
    ):
        QuantizedModel.load(path)


def _drop_formats(m):
    m["tensor_formats"].pop("w_ih_l0")


# Each case edits a saved qmodel's manifest; the load must fail with this message (after the
# artifact path).
MALFORMED = {
    "missing formats": (lambda m: m.pop("formats"),
                        "quantized model manifest lacks the field 'formats'"),
    "a layer without its format": (_drop_formats, "tensor_formats lacks tensor w_ih_l0"),
    "formats not an object": (lambda m: m.update(formats=[1, 2]),
                              "formats must be a JSON object, not [1, 2]"),
    "a role missing": (lambda m: m["formats"].pop("cell"),
                       "formats must name exactly the roles x, preact"),
    "format bits a string": (lambda m: m["formats"]["x"].update(bits="16"),
                             "format of x bits must be an integer, not '16'"),
    "format without frac": (lambda m: m["formats"]["x"].pop("frac"),
                            "format of x must be an object with 'bits', 'frac'"),
    "unsigned format": (lambda m: m["formats"]["x"].update(signed=False),
                        "format of x must be signed, not False"),
    "frac above bits": (lambda m: m["formats"]["hidden"].update(frac=17),
                        "format of hidden s16.17: frac must be at most bits (16), not 17"),
    "width unlike the config": (lambda m: m["formats"]["cell"].update(bits=12),
                                "format of cell s12."),
    "weight width unlike the config": (lambda m: m["tensor_formats"]["head_w"].update(bits=8),
                                       "tensor head_w format s8."),
    "num_layers 0": (lambda m: m.update(num_layers=0), "num_layers must be an integer >= 1, not 0"),
    "num_layers huge": (lambda m: m.update(num_layers=10**12),
                        "num_layers 1000000000000 needs at least 2000000000000 weight tensors"),
    "num_layers a float": (lambda m: m.update(num_layers=1.0),
                           "num_layers must be an integer >= 1, not 1.0"),
    "hidden_size a bool": (lambda m: m.update(hidden_size=True),
                           "hidden_size must be an integer >= 1, not True"),
    "bidirectional a string": (lambda m: m.update(bidirectional="no"),
                               "bidirectional must be true or false, not 'no'"),
    "proj_size too large": (lambda m: m.update(proj_size=4),
                            "proj_size must be smaller than hidden_size (4), not 4"),
    "unknown head mode": (lambda m: m["head"].update(mode="first"),
                          "head mode must be 'last' or 'all', not 'first'"),
    "head not an object": (
        lambda m: m.update(head="last"),
        "head must be null or an object with 'mode' and 'out_features', not 'last'",
    ),
    "head out_features wrong": (lambda m: m["head"].update(out_features=7),
                                "head out_features 7 does not match head_w (3, 4)"),
    "no head but head tensors": (
        lambda m: m.update(head=None),
        "tensor_formats names tensor(s) this geometry lacks: ['head_b', 'head_w']",
    ),
    "bias flag off": (lambda m: m.update(bias=False),
                      "tensor bias_l0 must not exist in this geometry"),
    "tables not an object": (lambda m: m.update(tables=None),
                             "tables must be a JSON object, not None"),
    "table description changed": (lambda m: m["tables"]["sigmoid"].update(size=3),
                                  "activation table sigmoid (manifest) does not match its rule"),
    "config not an object": (lambda m: m.update(config=3), "config must be a JSON object, not 3"),
    "config with an unknown rounding": (lambda m: m["config"].update(rounding="up"),
                                        "config: rounding must be one of"),
    "calibration a list": (lambda m: m.update(calibration=[]),
                           "calibration must be a JSON object, not []"),
    "unknown field": (lambda m: m.update(extra=1),
                      "quantized model manifest has unknown field(s) extra"),
    "bad spec_hash": (lambda m: m.update(spec_hash="abc"),
                      "spec_hash must be a 64-digit hex SHA-256, not 'abc'"),
    "version a bool": (lambda m: m.update(version=True),
                       "lstmfpga.qmodel version True is not supported"),
    "accumulator wider than derived": (lambda m: m["acc"].update(bits=m["acc"]["bits"] + 1),
                                       "accumulator s"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_manifest_is_refused_with_one_line(tmp_path, case):
    edit, message = MALFORMED[case]
    path = _saved(tmp_path)
    _edit_manifest(path, edit)
    with pytest.raises((SpecError, FormatError)) as info:
        QuantizedModel.load(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {message}"), text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("w_hh_l0"), "tensors.npz lacks tensor w_hh_l0"),
        (
            lambda t: t.update(extra=np.zeros(2, np.int64)),
            "tensors.npz holds unexpected array(s) ['extra']",
        ),
        (
            lambda t: t.update(w_ih_l0=t["w_ih_l0"].reshape(-1)),
            "tensor w_ih_l0 must be 2-dimensional, not of shape (48,)",
        ),
        (lambda t: t.update(bias_l0=t["bias_l0"][:-1]), "layer 0 bias has shape (15,)"),
        (
            lambda t: t.update(head_w=t["head_w"].astype(np.uint64) + np.uint64(2**63)),
            "tensor head_w: tensor codes do not fit",
        ),
        (
            lambda t: t.update(head_w=t["head_w"] > 0),
            "tensor head_w must hold integer codes, not bool",
        ),
        (
            lambda t: t.pop("table_tanh_cell_slopes"),
            "activation table tanh_cell (slopes) does not match its rule",
        ),
    ],
)
def test_malformed_tensors_are_refused_with_one_line(tmp_path, edit, message):
    path = _saved(tmp_path)
    _edit_tensors(path, edit)
    with pytest.raises(SpecError) as info:
        QuantizedModel.load(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_a_truncated_tensor_archive_is_refused(tmp_path):
    path = _saved(tmp_path)
    data = (path / "tensors.npz").read_bytes()
    (path / "tensors.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"qmodel tensors .*tensors\.npz"):
        QuantizedModel.load(path)


def test_a_deeply_nested_manifest_is_refused(tmp_path):
    path = _saved(tmp_path)
    (path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nests 100000 levels deep"):
        QuantizedModel.load(path)


def test_save_writes_through_temporary_files(tmp_path):
    path = _saved(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "tensors.npz"]
    (tmp_path / "file").write_text("x")
    _, model = random_qmodel(1, "q16", head="last")
    with pytest.raises(SpecError, match="exists and is not a directory"):
        model.save(tmp_path / "file")


def test_a_manifest_with_a_too_narrow_accumulator_is_refused(tmp_path):
    path = _saved(tmp_path)
    _edit_manifest(path, lambda m: m["acc"].update(bits=m["acc"]["bits"] - 1))
    with pytest.raises(SpecError, match=exactly(f"{path}: accumulator s", whole=False)):
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


def test_an_interrupted_save_leaves_no_artifact_that_looks_valid(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    _, other = random_qmodel(2, "q16", head="last")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lstmfpga.export.files.save_npz", interrupted)
    with pytest.raises(KeyboardInterrupt):
        other.save(path)
    assert not (path / "manifest.json").exists()  # not the old manifest beside new tensors
    with pytest.raises(SpecError, match="not an lstmfpga artifact"):
        QuantizedModel.load(path)
    monkeypatch.undo()
    assert QuantizedModel.load(other.save(path)).describe() == other.describe()


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_geometry_dict_is_the_manifest_geometry(geometry, tmp_path):
    _, model = random_qmodel(3, **geometry)
    shape = model.geometry_dict()
    head = None if model.head is None else {"mode": model.head.mode,
                                            "out_features": model.head.out_features}  # fmt: skip
    assert shape == {
        "input_size": model.input_size, "hidden_size": model.hidden_size,
        "num_layers": model.num_layers, "bidirectional": model.bidirectional,
        "proj_size": model.proj_size, "bias": model.has_bias, "head": head,
    }  # fmt: skip
    manifest = json.loads((model.save(tmp_path / "q") / "manifest.json").read_text())
    assert {key: manifest[key] for key in shape} == shape
