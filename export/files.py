"""Bounded, non-executing readers and atomic writers for every file lstmfpga touches.

Every artifact, input and report that lstmfpga reads may be malformed or hostile. The
readers here check what a file *declares* before allocating anything, and raise
:class:`FileFormatError` (a ``ValueError``, reported by the CLI as one line) naming the file
and the problem:

* JSON: at most :data:`MAX_JSON_BYTES` bytes and :data:`MAX_JSON_DEPTH` levels of nesting
  (checked before parsing, so no ``RecursionError``); the top level must be an object where
  the caller says so.
* ``.npy``: the header is parsed first; object dtypes (pickles) are refused; the declared
  shape must fit :data:`MAX_ARRAY_BYTES` and the bytes actually present in the file.
* ``.npz``: a zip whose members are ``.npy`` files. Each member's *declared* uncompressed size
  must fit :data:`MAX_ARRAY_BYTES` (the total :data:`MAX_ARCHIVE_BYTES`), its compression ratio
  at most :data:`MAX_COMPRESSION_RATIO` (deflate bombs), and its header is checked as for
  ``.npy`` before the data is read. Truncated or corrupt archives are refused, never a
  ``BadZipFile`` traceback.

Writers (:func:`atomic_write`, :func:`write_text`, :func:`write_json`, :func:`save_npy`,
:func:`save_npz`) write to a temporary file in the destination folder and rename it over the
destination only when the write completed, so an interrupted run never leaves a file that
looks valid.

Limits are module constants (documented in the README); tests may lower them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "MAX_ARRAY_BYTES",
    "MAX_COMPRESSION_RATIO",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "FileFormatError",
    "atomic_write",
    "check_zip_members",
    "json_depth",
    "load_array",
    "load_arrays",
    "parse_json",
    "read_json",
    "save_npy",
    "save_npz",
    "write_json",
    "write_text",
]

#: Largest array any file may declare (bytes). Weights, inputs and results are far smaller.
MAX_ARRAY_BYTES = 256 << 20
#: Largest total uncompressed size of one archive (bytes).
MAX_ARCHIVE_BYTES = 1 << 30
#: Largest ratio of declared uncompressed size to compressed size of one zip member. Deflate
#: cannot exceed about 1032:1, so a larger declared ratio is a lying header or a bzip2/lzma
#: bomb. Reads are bounded by the declared size as well.
MAX_COMPRESSION_RATIO = 1100
#: Largest JSON file (bytes) and deepest nesting of objects/arrays.
MAX_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = 64


class FileFormatError(ValueError):
    """A file is missing, malformed, oversized or unsafe; the message names it."""


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# -- JSON -----------------------------------------------------------------------------------------
def json_depth(text: str | bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``text`` (brackets inside strings ignored)."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == 0:
        return 0
    # Mask out string contents: a quote toggles "in string" unless it is escaped (preceded by
    # an odd number of backslashes).
    backslash = raw == ord("\\")
    quote = raw == ord('"')
    if backslash.any():
        # run length of backslashes ending just before each position
        idx = np.arange(raw.size)
        not_bs = np.where(~backslash, idx, -1)
        last_not_bs = np.maximum.accumulate(not_bs)
        run_before = np.empty(raw.size, dtype=np.int64)
        run_before[0] = 0
        run_before[1:] = idx[:-1] - last_not_bs[:-1]
        quote &= run_before % 2 == 0
    in_string = (np.cumsum(quote) % 2).astype(bool) & ~quote
    outside = ~in_string & ~quote
    opens = outside & ((raw == ord("[")) | (raw == ord("{")))
    closes = outside & ((raw == ord("]")) | (raw == ord("}")))
    level = np.cumsum(opens.astype(np.int64) - closes.astype(np.int64))
    return int(level.max(initial=0))


def read_json(path: str | Path, what: str, *, require_object: bool = True) -> Any:
    """Parse the JSON file ``path`` within the size and depth limits.

    ``what`` names the file in errors (``"qmodel manifest"``). With ``require_object`` the top
    level must be a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "no such file"
        raise FileFormatError(f"{what} {path}: {problem}")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise FileFormatError(
            f"{what} {path} is {size} bytes, more than the {MAX_JSON_BYTES}-byte limit"
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileFormatError(f"{what} {path}: {_reason(error)}") from None
    return parse_json(data, f"{what} {path}", require_object=require_object)


def parse_json(data: bytes | str, where: str, *, require_object: bool = False) -> Any:
    """Parse JSON ``data`` (e.g. an archive member) within the size and depth limits.

    ``where`` names the data in errors (``"model.pt2: models/model.json"``).
    """
    if len(data) > MAX_JSON_BYTES:
        raise FileFormatError(
            f"{where} is {len(data)} bytes, more than the {MAX_JSON_BYTES}-byte limit"
        )
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise FileFormatError(
            f"{where} nests {depth} levels deep, more than the limit of {MAX_JSON_DEPTH}"
        )
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FileFormatError(f"{where} is not valid JSON: {_reason(error)}") from None
    if require_object and not isinstance(value, dict):
        raise FileFormatError(f"{where} must hold a JSON object, not {type(value).__name__}")
    return value


# -- NumPy ----------------------------------------------------------------------------------------
def _check_header(stream: IO[bytes], where: str) -> tuple:
    """Read and check a ``.npy`` header from ``stream``; return ``(shape, fortran, dtype)``."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:  # pragma: no cover - read_magic only returns these
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as error:
        raise FileFormatError(f"{where}: not a NumPy file ({_reason(error)})") from None
    if dtype.hasobject:
        raise FileFormatError(f"{where}: object arrays (pickles) are refused")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise FileFormatError(f"{where}: invalid shape {shape!r}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise FileFormatError(
            f"{where} declares shape {shape} of {dtype} ({nbytes} bytes), more than the "
            f"{MAX_ARRAY_BYTES}-byte limit"
        )
    return shape, fortran, dtype


def _read_checked(stream: IO[bytes], where: str, size: int | None) -> np.ndarray:
    start = stream.tell() if size is not None else 0
    shape, _, dtype = _check_header(stream, where)
    if size is not None:
        header_len = stream.tell() - start
        _check_header_fit(shape, dtype, size - header_len, where)
    stream.seek(start)
    try:
        return np.lib.format.read_array(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise FileFormatError(f"{where}: not a readable NumPy array ({_reason(error)})") from None


def _check_header_fit(shape, dtype, available: int, where: str) -> None:
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > available:
        raise FileFormatError(
            f"{where} declares shape {shape} of {dtype} ({nbytes} bytes) but holds only "
            f"{max(available, 0)} bytes of data (truncated?)"
        )


def check_zip_members(archive: zipfile.ZipFile, where: str) -> None:
    """Refuse an archive whose members declare oversized or bomb-like uncompressed sizes."""
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if info.file_size > MAX_ARRAY_BYTES:
            raise FileFormatError(
                f"{where}: member {info.filename!r} declares {info.file_size} bytes, more than "
                f"the {MAX_ARRAY_BYTES}-byte limit"
            )
        if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            raise FileFormatError(
                f"{where}: member {info.filename!r} expands {info.file_size // info.compress_size}"
                f"-fold, more than the limit of {MAX_COMPRESSION_RATIO} (a deflate bomb?)"
            )
    if total > MAX_ARCHIVE_BYTES:
        raise FileFormatError(
            f"{where}: members declare {total} bytes in all, more than the "
            f"{MAX_ARCHIVE_BYTES}-byte limit"
        )


def _missing(path: Path, what: str) -> None:
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "no such file"
        raise FileFormatError(f"{what} {path}: {problem}")


def load_array(path: str | Path, what: str) -> np.ndarray:
    """Load one array from the ``.npy`` file ``path`` after checking its header."""
    path = Path(path)
    _missing(path, what)
    where = f"{what} {path}"
    if zipfile.is_zipfile(path):
        raise FileFormatError(f"{where} must be a .npy array file, not a zip/.npz archive")
    size = path.stat().st_size
    with open(path, "rb") as stream:
        return _read_checked(stream, where, size)


def load_arrays(
    path: str | Path, what: str, keys: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """Load the arrays of the ``.npz`` archive ``path`` after checking every member.

    With ``keys``, the archive must hold exactly those arrays. Member names are the array
    names plus ``.npy``; anything else in the archive is refused.
    """
    path = Path(path)
    _missing(path, what)
    where = f"{what} {path}"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        if _is_npy(path):
            raise FileFormatError(
                f"{where} must be an .npz archive, not a .npy array file"
            ) from None
        raise FileFormatError(f"{where} is not an .npz archive ({_reason(error)})") from None
    with archive:
        check_zip_members(archive, where)
        names = {}
        for info in archive.infolist():
            if not info.filename.endswith(".npy") or info.is_dir():
                raise FileFormatError(f"{where}: unexpected member {info.filename!r}")
            names[info.filename[:-4]] = info
        if keys is not None and sorted(names) != sorted(keys):
            raise FileFormatError(f"{where} must hold arrays {list(keys)}, not {sorted(names)}")
        arrays = {}
        for name, info in names.items():
            member = f"{where} [{name}]"
            try:
                with archive.open(info) as stream:
                    data = stream.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as error:
                raise FileFormatError(
                    f"{member}: corrupt archive member ({_reason(error)})"
                ) from None
            if len(data) != info.file_size:
                raise FileFormatError(f"{member}: archive member size does not match its header")
            arrays[name] = _read_checked(io.BytesIO(data), member, len(data))
        return arrays


def _is_npy(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(6) == b"\x93NUMPY"


# -- atomic writers -------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block succeeds.

    On any exception (or interruption) the temporary file is removed and ``path`` is left as
    it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as file:
        file.write(text)


def write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON (no NaN/Inf) to ``path`` atomically."""
    write_text(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` to exactly ``path`` atomically (NumPy would append ``.npy``)."""
    with atomic_write(path) as file:
        np.save(file, np.asarray(array), allow_pickle=False)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to exactly ``path`` atomically (NumPy would append ``.npz``)."""
    with atomic_write(path) as file:
        np.savez(file, **arrays)
