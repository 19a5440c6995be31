"""``ModelSpec`` artifacts: a save/load round trip is exact; bad artifacts are refused.

NumPy only: the spec never needs torch.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from spec_artifacts import (
    assert_edit_refused,
    assert_same_tensors,
    edit_manifest,
    save_in_gate_order,
    save_tensors,
)

from lstmfpga.export.spec import (
    SPEC_FORMAT,
    SPEC_VERSION,
    LayerWeights,
    ModelSpec,
    SpecError,
    read_artifact,
)
from lstmfpga.testing import random_spec

ROUND_TRIP = {
    "minimal": dict(input_size=1, hidden_size=1),
    "head-last": dict(head="last"),
    "head-all-no-bias": dict(head="all", head_bias=False, bias=False),
    "3-layers-bidir-proj": dict(num_layers=3, bidirectional=True, proj_size=2, head="last"),
    "dropout": dict(num_layers=2, dropout=0.25),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_save_load_round_trip_is_exact(name, tmp_path):
    spec = random_spec(1, **ROUND_TRIP[name])
    loaded = ModelSpec.load(spec.save(tmp_path / "spec"))
    assert loaded.manifest() == spec.manifest()
    tensors, expected = loaded.tensors(), spec.tensors()
    assert tensors.keys() == expected.keys()
    for key in expected:
        assert tensors[key].dtype == np.float64
        assert np.array_equal(tensors[key], expected[key]), key
    assert loaded.describe() == spec.describe()


def test_manifest_records_the_architecture(tmp_path):
    spec = random_spec(0, num_layers=2, bidirectional=True, proj_size=1, head="all", head_out=2)
    manifest = json.loads((spec.save(tmp_path / "s") / "manifest.json").read_text())
    assert manifest["format"] == SPEC_FORMAT and manifest["version"] == SPEC_VERSION
    assert manifest["gate_order"] == ["i", "f", "g", "o"]
    assert manifest["head"] == {"mode": "all", "out_features": 2, "bias": True}


def test_spec_tensors_are_read_only_copies():
    w = np.zeros((4, 1))
    spec = ModelSpec(1, 1, 1, False, 0, False, ((LayerWeights(w, np.zeros((4, 1))),),))
    w[0, 0] = 1.0
    assert spec.layers[0][0].w_ih[0, 0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        spec.layers[0][0].w_ih[0, 0] = 2.0


def test_version_mismatch_is_refused(tmp_path):
    path = random_spec(0).save(tmp_path / "spec")
    edit_manifest(path, version=SPEC_VERSION + 1)
    with pytest.raises(
        SpecError,
        match=rf"lstmfpga.spec version {SPEC_VERSION + 1} is not supported "
        rf"\(this lstmfpga reads version {SPEC_VERSION}\)$",
    ):
        ModelSpec.load(path)


def test_format_mismatch_is_refused(tmp_path):
    path = random_spec(0).save(tmp_path / "spec")
    edit_manifest(path, format="lstmfpga.qmodel")
    with pytest.raises(SpecError, match=r"expected a lstmfpga.spec artifact, found 'lstmfpga.q"):
        ModelSpec.load(path)


def test_bad_artifacts_are_refused(tmp_path):
    with pytest.raises(SpecError, match=r"nope: no such file or directory$"):
        ModelSpec.load(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpecError, match=r"not an lstmfpga artifact"):
        ModelSpec.load(tmp_path / "file")

    path = random_spec(0).save(tmp_path / "bad-json")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(SpecError, match=r"manifest.json is not valid JSON"):
        ModelSpec.load(path)

    path = random_spec(0).save(tmp_path / "no-tensors")
    (path / "tensors.npz").unlink()
    with pytest.raises(SpecError, match=r"^lstmfpga.spec tensors .*tensors.npz: no such file$"):
        ModelSpec.load(path)

    path = random_spec(0).save(tmp_path / "missing-key")
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["hidden_size"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        SpecError, match=r"missing-key: artifact manifest is missing 'hidden_size'$"
    ):
        ModelSpec.load(path)

    path = random_spec(0).save(tmp_path / "wrong-shape")
    edit_manifest(path, hidden_size=5)
    with pytest.raises(
        SpecError, match=r"wrong-shape: weight_ih_l0 must have shape \(20, 3\), not \(16, 3\)$"
    ):
        ModelSpec.load(path)


def test_pickled_tensors_are_never_loaded(tmp_path):
    path = random_spec(0).save(tmp_path / "spec")
    tensors = dict(np.load(path / "tensors.npz"))
    tensors["weight_ih_l0"] = np.array([object()], dtype=object)
    np.savez(path / "tensors.npz", **tensors)
    with pytest.raises(
        SpecError, match=r"\[weight_ih_l0\]: object arrays \(pickles\) are refused$"
    ):
        read_artifact(path, SPEC_FORMAT, SPEC_VERSION)


@pytest.mark.parametrize(
    "order", [["f", "i", "g", "o"], ["o", "g", "f", "i"], ["i", "f", "o", "g"]]
)
def test_gate_order_of_an_artifact_is_honoured(order, tmp_path):
    """An artifact whose rows are in another gate order loads as the same model."""
    spec = random_spec(3, num_layers=2, bidirectional=True, head="last")
    loaded = ModelSpec.load(save_in_gate_order(spec, tmp_path / "spec", order))
    assert loaded.gate_order == ("i", "f", "g", "o")
    assert_same_tensors(loaded, spec)
    assert loaded.content_hash() == spec.content_hash()


@pytest.mark.parametrize(
    "order", [["i", "f", "g"], ["i", "i", "g", "o"], "ifgo", ["i", "f", "g", "c"], None]
)
def test_bad_gate_order_is_refused(order, tmp_path):
    path = random_spec(0).save(tmp_path / "spec")
    edit_manifest(path, gate_order=order)
    with pytest.raises(
        SpecError, match=r"spec: gate_order must be a permutation of \['i', 'f', 'g', 'o'\], not "
    ):
        ModelSpec.load(path)


BAD_TENSORS = {
    "complex": (
        dict(weight_hh_l0=np.zeros((16, 4), np.complex128)),
        r"'weight_hh_l0' .*complex128$",
    ),
    "bool": (
        dict(bias_ih_l0=np.ones(16, bool)),
        r"spec: tensor 'bias_ih_l0' must be floating-point, not bool$",
    ),
    "string": (
        dict(weight_ih_l0=np.full((16, 3), "1.0")),
        r"spec: tensor 'weight_ih_l0' .*, not <U3$",
    ),
    "integer": (
        dict(weight_ih_l0=np.ones((16, 3), np.int64)),
        r"spec: tensor 'weight_ih_l0' .*, not int64$",
    ),
    "missing": (dict(bias_hh_l0=None), r"spec: artifact is missing tensor\(s\) 'bias_hh_l0'$"),
    "extra": (dict(bn__mean=np.zeros(3)), r"spec: artifact has unexpected tensor\(s\) 'bn.mean'$"),
    "NaN": (
        dict(weight_ih_l0=np.full((16, 3), np.nan)),
        r"spec: weight_ih_l0 contains 48 non-finite",
    ),
}


@pytest.mark.parametrize("name", list(BAD_TENSORS))
def test_bad_tensors_are_refused_by_name(name, tmp_path):
    assert_edit_refused(random_spec(0), tmp_path, save_tensors, *BAD_TENSORS[name])


BAD_MANIFESTS = {
    "num_layers 0": (dict(num_layers=0), r"spec: num_layers must be >= 1, not 0$"),
    "num_layers string": (dict(num_layers="1"), r"spec: num_layers must be an integer, not '1'$"),
    "num_layers float": (dict(num_layers=1.5), r"spec: num_layers must be an integer, not 1.5$"),
    "bias string": (dict(bias="false"), r"spec: bias must be true or false, not 'false'$"),
    "bidirectional int": (
        dict(bidirectional=0),
        r"spec: bidirectional must be true or false, not 0$",
    ),
    "dropout": (dict(dropout=2.0), r"spec: dropout must be between 0 and 1, not 2.0$"),
    "head": (
        dict(head={"mode": "last"}),
        r"spec: head must be null or an object with a string 'mode'",
    ),
    "head without tensors": (
        dict(head={"mode": "last", "bias": True}),
        r"spec: artifact is missing tensor\(s\) 'head.weight', 'head.bias'$",
    ),
}


@pytest.mark.parametrize("name", list(BAD_MANIFESTS))
def test_bad_manifest_fields_are_refused(name, tmp_path):
    assert_edit_refused(random_spec(0), tmp_path, edit_manifest, *BAD_MANIFESTS[name])


def test_truncated_tensors_and_deep_manifest_are_refused(tmp_path):
    path = random_spec(0).save(tmp_path / "truncated")
    data = (path / "tensors.npz").read_bytes()
    (path / "tensors.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        SpecError, match=r"^lstmfpga.spec tensors .*tensors.npz is not an .npz archive"
    ):
        ModelSpec.load(path)
    path = random_spec(0).save(tmp_path / "deep")
    (path / "manifest.json").write_text(
        '{"format": "lstmfpga.spec", "x": ' + "[" * 100000 + "]" * 100000 + "}"
    )
    with pytest.raises(
        SpecError, match=r"manifest.json nests 100001 levels deep, more than the limit"
    ):
        ModelSpec.load(path)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    spec = random_spec(1, head="all")
    path = spec.save(tmp_path / "spec")
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "tensors.npz"]
    assert ModelSpec.load(spec.save(path)).content_hash() == spec.content_hash()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(hidden_size=0), r"^hidden_size must be >= 1, not 0$"),
        (dict(num_layers=True), r"^num_layers must be an integer, not True$"),
        (dict(proj_size=4), r"^proj_size must be smaller than hidden_size \(4\), not 4$"),
        (dict(layers=()), r"^expected 1 layer\(s\), found 0$"),
    ],
)
def test_constructor_validates_geometry(changes, message):
    spec = random_spec(0)
    fields = dict(
        input_size=3, hidden_size=4, num_layers=1, bidirectional=False, proj_size=0,
        bias=True, layers=spec.layers,
    )  # fmt: skip
    fields.update(changes)
    with pytest.raises(SpecError, match=message):
        ModelSpec(**fields)


def test_spec_reference_and_cli_parser_never_import_torch():
    """Everything downstream of export/ works from the spec alone, without torch."""
    code = (
        "import sys\n"
        "import lstmfpga.export.spec, lstmfpga.export.reference, lstmfpga.cli\n"
        "lstmfpga.cli.build_parser()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
