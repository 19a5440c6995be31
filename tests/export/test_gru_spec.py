"""``ModelSpec(cell="gru")``: PyTorch's ``nn.GRU`` layout (gates r, z, n, 3*hidden_size rows).

The cell type is recorded, saved, loaded and hashed; GRU shapes are validated with one-line
errors; specs written before ``cell`` existed load as LSTMs with unchanged hashes.
NumPy only: the spec never needs torch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.gru_models import random_gru_spec
from spec_artifacts import (
    assert_edit_refused,
    assert_same_tensors,
    edit_manifest,
    save_in_gate_order,
)

from lstmfpga.export.spec import (
    GRU_GATE_ORDER,
    HeadSpec,
    LayerWeights,
    ModelSpec,
    SpecError,
)

GRU_NOTE = r" for a GRU \(3\*hidden_size rows: gates r, z, n\)"


def gru_spec(seed: int = 0, **geometry) -> ModelSpec:
    """A seeded random GRU spec (weights uniform in [-0.5, 0.5])."""
    return random_gru_spec(seed, scale=0.5, **geometry)


ROUND_TRIP = {
    "minimal": dict(input_size=1, hidden_size=1),
    "odd-sizes-head-last": dict(input_size=5, hidden_size=3, head="last"),
    "no-bias-head-all": dict(bias=False, head="all"),
    "4-layers-bidir": dict(num_layers=4, bidirectional=True, hidden_size=2, head="last"),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_gru_save_load_round_trip_is_exact(name, tmp_path):
    spec = gru_spec(1, **ROUND_TRIP[name])
    loaded = ModelSpec.load(spec.save(tmp_path / name))
    assert loaded.cell == "gru" and loaded.gate_order == GRU_GATE_ORDER == ("r", "z", "n")
    assert loaded.num_gates == 3 and loaded.proj_size == 0
    assert sorted(loaded.tensors()) == sorted(spec.tensors())
    for key, array in spec.tensors().items():
        assert loaded.tensors()[key].dtype == np.float64
        assert np.array_equal(loaded.tensors()[key], array), key
    assert loaded.content_hash() == spec.content_hash()
    assert loaded.describe() == spec.describe()


def test_gru_manifest_records_cell_and_gate_order(tmp_path):
    spec = gru_spec(0, num_layers=2, bidirectional=True, head="all")
    manifest = json.loads((spec.save(tmp_path / "s") / "manifest.json").read_text())
    assert manifest["cell"] == "gru"
    assert manifest["gate_order"] == ["r", "z", "n"]
    assert manifest["proj_size"] == 0
    gate_tensors = {
        f"{kind}_l{layer}{rev}"
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        for layer in (0, 1)
        for rev in ("", "_reverse")
    }
    assert set(spec.tensors()) == gate_tensors | {"head.weight", "head.bias"}
    assert spec.describe().splitlines()[:2] == [
        "GRU input_size=3 hidden_size=4 num_layers=2 bidirectional=True bias=True",
        "gates: r, z, n (PyTorch's order)",
    ]
    assert spec.parameter_count == 2 * (12 * 3 + 12 * 4 + 24) + 2 * (12 * 8 + 12 * 4 + 24) + 18


def _lstm_spec() -> ModelSpec:
    """A fixed LSTM (I=2, H=3, one layer, biases, a last head) with arange-based weights."""
    w_ih = np.arange(24.0).reshape(12, 2) / 32
    w_hh = np.arange(36.0).reshape(12, 3) / -64
    b = np.linspace(-1, 1, 12)
    head = HeadSpec(np.arange(6.0).reshape(2, 3) / 8, np.array([0.5, -0.5]), "last")
    return ModelSpec(2, 3, 1, False, 0, True, ((LayerWeights(w_ih, w_hh, b, b / 2),),), head)


def test_lstm_specs_keep_cell_lstm_and_their_hash(tmp_path):
    """An LSTM records ``cell: lstm``; its hash is the one from before ``cell`` existed.

    The literal is the hash this spec had with the previous spec format (no ``cell``), so
    qmodels quantized before keep matching their specs in ``simulate --spec``.
    """
    spec = _lstm_spec()
    assert spec.cell == "lstm" and spec.num_gates == 4
    assert spec.content_hash() == (
        "dd4a3386b1d38c053d934806554526fe5c70b40764a93d520ffb0990dbbc1f9a"
    )
    path = spec.save(tmp_path / "lstm")
    assert json.loads((path / "manifest.json").read_text())["cell"] == "lstm"
    edit_manifest(path, cell=...)  # a spec saved before specs recorded the cell type
    old = ModelSpec.load(path)
    assert old.cell == "lstm" and old.gate_order == ("i", "f", "g", "o")
    assert old.content_hash() == spec.content_hash()


def test_content_hash_covers_the_cell_type():
    """A GRU's hash includes ``cell``: the same numbers hashed as an 'lstm' manifest differ."""
    spec = gru_spec(2)
    relabelled = dict(spec.manifest(), cell="lstm")

    class Relabelled(ModelSpec):
        def manifest(self):
            return relabelled

    twin = Relabelled(**{f: getattr(spec, f) for f in spec.__dataclass_fields__})
    assert twin.tensors().keys() == spec.tensors().keys()
    assert twin.content_hash() != spec.content_hash()


def test_gru_gate_order_of_an_artifact_is_honoured(tmp_path):
    """A GRU artifact whose rows are in another order of r, z, n loads as the same model."""
    spec = gru_spec(3, num_layers=2, head="last")
    loaded = ModelSpec.load(save_in_gate_order(spec, tmp_path / "spec", ["n", "r", "z"]))
    assert loaded.gate_order == ("r", "z", "n")
    assert_same_tensors(loaded, spec)
    assert loaded.content_hash() == spec.content_hash()


BAD_MANIFESTS = {
    "cell rnn": (dict(cell="rnn"), r"spec: cell must be 'lstm' or 'gru', not 'rnn'$"),
    "cell number": (dict(cell=3), r"spec: cell must be 'lstm' or 'gru', not 3$"),
    "lstm gate order": (
        dict(gate_order=["i", "f", "g", "o"]),
        r"spec: gate_order must be a permutation of \['r', 'z', 'n'\], not \['i', 'f', 'g', 'o'\]$",
    ),
    "gate repeated": (
        dict(gate_order=["r", "r", "n"]),
        r"spec: gate_order must be a permutation of \['r', 'z', 'n'\], not ",
    ),
    "projection": (
        dict(proj_size=2),
        r"spec: proj_size must be 0 for a GRU \(nn.GRU has none\), not 2$",
    ),
    "hidden size": (
        dict(hidden_size=5),
        rf"spec: weight_ih_l0 must have shape \(15, 3\){GRU_NOTE}, not \(12, 3\)$",
    ),
}


@pytest.mark.parametrize("name", list(BAD_MANIFESTS))
def test_bad_gru_manifests_are_refused(name, tmp_path):
    assert_edit_refused(gru_spec(0), tmp_path, edit_manifest, *BAD_MANIFESTS[name])


def test_lstm_tensors_labelled_gru_are_refused_by_shape(tmp_path):
    """An LSTM's 4*hidden_size rows under ``cell: gru`` name the GRU's expected shape."""
    path = _lstm_spec().save(tmp_path / "spec")
    edit_manifest(path, cell="gru", gate_order=["r", "z", "n"])
    with pytest.raises(
        SpecError,
        match=rf"spec: weight_ih_l0 must have shape \(9, 2\){GRU_NOTE}, not \(12, 2\)$",
    ):
        ModelSpec.load(path)


def _layer(**changes):
    rng = np.random.default_rng(0)
    fields = dict(
        w_ih=rng.normal(size=(12, 3)),
        w_hh=rng.normal(size=(12, 4)),
        b_ih=rng.normal(size=12),
        b_hh=rng.normal(size=12),
    )
    fields.update(changes)
    return LayerWeights(**fields)


BAD_CONSTRUCTIONS = {
    "w_ih with 4H rows": (
        dict(layers=((_layer(w_ih=np.zeros((16, 3))),),)),
        rf"^weight_ih_l0 must have shape \(12, 3\){GRU_NOTE}, not \(16, 3\)$",
    ),
    "w_ih columns": (
        dict(layers=((_layer(w_ih=np.zeros((12, 2))),),)),
        rf"^weight_ih_l0 must have shape \(12, 3\){GRU_NOTE}, not \(12, 2\)$",
    ),
    "w_hh": (
        dict(layers=((_layer(w_hh=np.zeros((12, 3))),),)),
        rf"^weight_hh_l0 must have shape \(12, 4\){GRU_NOTE}, not \(12, 3\)$",
    ),
    "b_ih": (
        dict(layers=((_layer(b_ih=np.zeros(16)),),)),
        rf"^bias_ih_l0 must have shape \(12,\){GRU_NOTE}, not \(16,\)$",
    ),
    "b_hh missing": (
        dict(layers=((_layer(b_hh=None),),)),
        r"^bias_ih_l0/bias_hh_l0 missing \(bias=True\)$",
    ),
    "NaN": (
        dict(layers=((_layer(w_hh=np.full((12, 4), np.nan)),),)),
        r"^weight_hh_l0 contains 48 non-finite value\(s\) \(NaN or Inf\)$",
    ),
    "Inf": (
        dict(layers=((_layer(b_hh=np.r_[np.inf, np.zeros(11)]),),)),
        r"^bias_hh_l0 contains 1 non-finite value\(s\) \(NaN or Inf\)$",
    ),
    "projection": (
        dict(proj_size=2),
        r"^proj_size must be 0 for a GRU \(nn.GRU has none\), not 2$",
    ),
    "projection weight": (
        dict(layers=((_layer(w_hr=np.zeros((4, 4))),),)),
        r"^weight_hr_l0 given although proj_size=0$",
    ),
    "lstm gate order": (
        dict(gate_order=("i", "f", "g", "o")),
        r"^gate_order must be \('r', 'z', 'n'\), not \('i', 'f', 'g', 'o'\)$",
    ),
    "unknown cell": (dict(cell="GRU"), r"^cell must be 'lstm' or 'gru', not 'GRU'$"),
}


@pytest.mark.parametrize("name", list(BAD_CONSTRUCTIONS))
def test_constructor_validates_gru_shapes(name):
    changes, message = BAD_CONSTRUCTIONS[name]
    fields = dict(
        input_size=3, hidden_size=4, num_layers=1, bidirectional=False, proj_size=0,
        bias=True, layers=((_layer(),),), cell="gru",
    )  # fmt: skip
    fields.update(changes)
    with pytest.raises(SpecError, match=message):
        ModelSpec(**fields)


def test_a_second_layer_reads_both_directions():
    """Layer 1 of a bidirectional GRU takes 2*hidden_size inputs."""
    first = LayerWeights(np.zeros((6, 1)), np.zeros((6, 2)))
    wrong = LayerWeights(np.zeros((6, 2)), np.zeros((6, 2)))  # one direction's width
    right = LayerWeights(np.zeros((6, 4)), np.zeros((6, 2)))
    ModelSpec(1, 2, 2, True, 0, False, ((first, first), (right, right)), cell="gru")
    with pytest.raises(
        SpecError,
        match=rf"^weight_ih_l1_reverse must have shape \(6, 4\){GRU_NOTE}, not \(6, 2\)$",
    ):
        ModelSpec(1, 2, 2, True, 0, False, ((first, first), (right, wrong)), cell="gru")


def test_stages_without_gru_support_refuse_by_name():
    with pytest.raises(SpecError, match=r"^quantization supports LSTM specs only, not cell 'gru'$"):
        gru_spec(0).require_lstm("quantization")
    _lstm_spec().require_lstm("quantization")  # an LSTM passes
