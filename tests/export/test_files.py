"""Bounded readers and atomic writers (lstmfpga.export.files)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from lstmfpga.export import files
from lstmfpga.export.files import FileFormatError


def _header(path, shape, descr="<f8", body=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    path.write_bytes(buf.getvalue() + body)
    return path


@pytest.mark.parametrize(
    ("text", "depth"),
    [("1", 0), ("[]", 1), ('{"a": [1, {"b": 2}]}', 3), ('["[[[", "\\"[["]', 1), ("[" * 70, 70)],
)
def test_json_depth_ignores_brackets_in_strings(text, depth):
    assert files.json_depth(text) == depth


def test_read_json_refuses_deep_nesting_before_parsing(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(FileFormatError, match="nests 200000 levels deep"):
        files.read_json(path, "manifest", require_object=False)


def test_read_json_requires_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(FileFormatError, match="must hold a JSON object, not list"):
        files.read_json(path, "manifest")
    assert files.read_json(path, "manifest", require_object=False) == [1, 2]


def test_read_json_refuses_oversized_file(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_JSON_BYTES", 10)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"a": "x" * 20}))
    with pytest.raises(FileFormatError, match="more than the 10-byte limit"):
        files.read_json(path, "report")


def test_npy_round_trip_is_exact(tmp_path):
    array = np.arange(-5, 7, dtype=np.int64).reshape(3, 4)
    files.save_npy(tmp_path / "a", array)  # no suffix appended
    assert np.array_equal(files.load_array(tmp_path / "a", "codes"), array)


def test_npy_header_declaring_a_huge_shape_is_refused(tmp_path):
    path = _header(tmp_path / "huge.npy", (10**9, 10**6))
    with pytest.raises(FileFormatError, match="more than the"):
        files.load_array(path, "inputs")


def test_truncated_npy_is_refused(tmp_path):
    path = _header(tmp_path / "short.npy", (1000,), body=b"\0" * 80)
    with pytest.raises(FileFormatError, match=r"8000 bytes\) but holds only 80 bytes"):
        files.load_array(path, "inputs")


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match="object arrays"):
        files.load_array(path, "inputs")


def test_npz_round_trip_and_exact_keys(tmp_path):
    path = tmp_path / "s.npz"
    files.save_npz(path, h0=np.zeros((1, 2, 3)), c0=np.ones((1, 2, 3)))
    arrays = files.load_arrays(path, "states", ("h0", "c0"))
    assert np.array_equal(arrays["c0"], np.ones((1, 2, 3)))
    with pytest.raises(FileFormatError, match=r"must hold arrays \['h_n'\]"):
        files.load_arrays(path, "states", ("h_n",))


def test_truncated_npz_is_refused(tmp_path):
    path = tmp_path / "t.npz"
    files.save_npz(path, a=np.arange(1000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"t\.npz"):
        files.load_arrays(path, "tensors")


def test_npz_member_declaring_a_bomb_ratio_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as archive:
        buf = io.BytesIO()
        np.save(buf, np.zeros(20_000_000, dtype=np.uint8))
        archive.writestr("a.npy", buf.getvalue())
    with pytest.raises(FileFormatError, match="deflate bomb"):
        files.load_arrays(path, "tensors")


def test_npz_member_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    files.save_npz(path, a=np.zeros(1000))
    monkeypatch.setattr(files, "MAX_ARRAY_BYTES", 4000)
    with pytest.raises(FileFormatError, match="more than the 4000-byte limit"):
        files.load_arrays(path, "tensors")


def test_npz_object_member_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, a=np.array([object()], dtype=object))
    with pytest.raises(FileFormatError, match="object arrays"):
        files.load_arrays(path, "tensors")


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_write(path, "w") as file:
        file.write("partial")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
