"""Edited spec artifacts for the tests of ``ModelSpec.load``: a saved spec with its manifest
or tensors changed, and the check that loading it is refused with a given message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lstmfpga.export.spec import ModelSpec, SpecError
from lstmfpga.testing import with_changes


def edit_manifest(path, **changes):
    """Change fields of ``path/manifest.json`` (a value ``...`` removes the field)."""
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps(with_changes(manifest, changes, delete=...)))


def save_tensors(path, **changes):
    """Replace arrays of ``path/tensors.npz`` (``None`` removes one; ``head__weight`` names
    ``head.weight``)."""
    tensors = with_changes(np.load(path / "tensors.npz"), changes)
    np.savez(path / "tensors.npz", **tensors)


def assert_edit_refused(spec: ModelSpec, tmp_path, edit, changes: dict, message: str):
    """``spec`` saved, then changed by ``edit(path, **changes)``: loading it raises a
    :class:`SpecError` matching ``message``."""
    path = spec.save(tmp_path / "spec")
    edit(path, **changes)
    with pytest.raises(SpecError, match=message):
        ModelSpec.load(path)


def save_in_gate_order(spec: ModelSpec, path, order) -> object:
    """``spec`` saved to ``path`` with the gate blocks of its gate tensors (``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh``) permuted into ``order`` (a permutation of
    ``spec.gate_order``) and its manifest's ``gate_order`` saying so; returns ``path``."""
    path = spec.save(path)
    G, H = spec.num_gates, spec.hidden_size
    permuted = {}
    for name, array in spec.tensors().items():
        if name.startswith(("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
            blocks = array.reshape(G, H, *array.shape[1:])
            array = blocks[[spec.gate_order.index(g) for g in order]].reshape(array.shape)
        permuted[name] = array
    np.savez(path / "tensors.npz", **permuted)
    edit_manifest(path, gate_order=order)
    return path


def assert_same_tensors(loaded: ModelSpec, spec: ModelSpec):
    """Every tensor of ``spec`` is in ``loaded``, bit for bit."""
    for name, array in spec.tensors().items():
        assert np.array_equal(loaded.tensors()[name], array), name
