"""Helpers shared by the commands: artifact format dispatch and NumPy file I/O.

Artifacts are directories holding ``manifest.json`` whose ``"format"`` field names what
they are (``lstmfpga.spec`` from ``lstmfpga export``; ``lstmfpga.qmodel`` to come).
Commands dispatch on :func:`artifact_format` with an ``if``/``elif`` chain that ends in
``else: raise CLIError(...)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lstmfpga.errors import CLIError

__all__ = [
    "artifact_format",
    "description",
    "load_npy",
    "load_npz",
    "save_npy",
    "save_npz",
]


def description(doc: str) -> str:
    """A command's ``--help`` text: its module docstring minus the first line, plain text."""
    return doc.split("\n\n", 1)[-1].replace("``", "")


def artifact_format(path: str | Path) -> str:
    """The ``"format"`` field of ``path/manifest.json`` (nothing else is read)."""
    path = Path(path)
    if not path.exists():
        raise CLIError(f"{path}: no such file or directory")
    manifest = path / "manifest.json"
    if not path.is_dir() or not manifest.is_file():
        raise CLIError(
            f"{path}: not an lstmfpga artifact (expected a directory with manifest.json)"
        )
    try:
        data = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CLIError(f"{manifest} is not valid JSON: {error}") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str):
        raise CLIError(f"{manifest} must have a string 'format' field, not {fmt!r}")
    return fmt


def _load(path: str | Path, what: str):
    path = Path(path)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "no such file"
        raise CLIError(f"{what} {path}: {problem}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CLIError(f"{what} {path}: not a NumPy file ({reason})") from None


def load_npy(path: str | Path, what: str) -> np.ndarray:
    """Load one array from a ``.npy`` file (never unpickles); ``what`` names it in errors."""
    value = _load(path, what)
    if not isinstance(value, np.ndarray):
        value.close()
        raise CLIError(f"{what} {path} must be a .npy array file, not a zip/.npz archive")
    return value


def load_npz(path: str | Path, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load exactly the arrays ``keys`` from a ``.npz`` archive (never unpickles)."""
    value = _load(path, what)
    if isinstance(value, np.ndarray):
        raise CLIError(f"{what} {path} must be an .npz archive, not a .npy array file")
    with value:
        found = sorted(value.files)
        if found != sorted(keys):
            raise CLIError(f"{what} {path} must hold arrays {list(keys)}, not {found}")
        try:
            return {key: value[key] for key in keys}
        except ValueError as error:
            raise CLIError(f"{what} {path}: {error}") from None


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` to exactly ``path`` (NumPy would append ``.npy`` to a bare name)."""
    with open(path, "wb") as file:
        np.save(file, array, allow_pickle=False)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to exactly ``path`` (NumPy would append ``.npz`` to a bare name)."""
    with open(path, "wb") as file:
        np.savez(file, **arrays)
