"""Helpers shared by the commands: the parser boilerplate and common options, artifact
format dispatch and NumPy file I/O.

Artifacts are directories holding ``manifest.json`` whose ``"format"`` field names what
they are (``lstmfpga.spec`` from ``lstmfpga export``; ``lstmfpga.qmodel`` to come).
Commands dispatch on :func:`artifact_format` with an ``if``/``elif`` chain that ends in
``else: raise CLIError(...)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lstmfpga.errors import CLIError
from lstmfpga.export import files

__all__ = [
    "add_buffers",
    "add_command",
    "add_datapath",
    "add_inputs_argument",
    "add_mode",
    "add_qmodel_argument",
    "artifact_format",
    "check_buffers",
    "check_mode",
    "description",
    "load_npy",
    "load_npz",
    "save_npy",
    "save_npz",
]


def description(doc: str) -> str:
    """A command's ``--help`` text: its module docstring minus the first line, plain text."""
    return doc.split("\n\n", 1)[-1].replace("``", "")


def add_command(subparsers, name: str, summary: str, doc: str, run) -> argparse.ArgumentParser:
    """The parser of command ``name``: ``summary`` in ``lstmfpga --help``, the module
    docstring ``doc`` as its ``--help`` text (:func:`description`), ``run(args)`` its action."""
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=description(doc),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run)
    return parser


def add_qmodel_argument(parser: argparse.ArgumentParser, help: str = "quantized model directory"):
    """The positional ``QMODEL`` (``args.qmodel``): a directory written by ``lstmfpga quantize``."""
    parser.add_argument("qmodel", metavar="QMODEL", help=help)


def add_inputs_argument(
    parser: argparse.ArgumentParser, help: str = "(batch, seq, features) float array"
):
    """The required ``--inputs X.npy`` (``args.inputs``): float inputs ``(batch, seq,
    features)``."""
    parser.add_argument("--inputs", required=True, metavar="X.npy", help=help)


def add_datapath(
    parser: argparse.ArgumentParser, *, typed: bool = True, cells: bool = False
) -> None:
    """``--lanes P`` (MAC lanes, default 8) and ``--simd S`` (columns per lane and beat,
    default 1); with ``cells``, also ``--cells V`` (parallel activation + cell units, default
    ``None``: :func:`lstmfpga.hw.accelerator.default_cells`, the fewest that keep the MVU
    from waiting). ``typed=False`` keeps the values as text for the command to parse itself
    (its own one-line message for a bad value). A command passes ``cells=True`` only when it
    hands ``args.cells`` on to the accelerator (an option that is accepted and ignored would
    build other hardware than asked for)."""
    kind, lanes, simd = (int, 8, 1) if typed else (None, "8", "1")
    parser.add_argument(
        "--lanes",
        type=kind,
        default=lanes,
        metavar="P",
        help="MAC lanes P, 1..4*hidden_size (default 8)",
    )
    parser.add_argument(
        "--simd",
        type=kind,
        default=simd,
        metavar="S",
        help="columns per lane and beat, P x S multipliers (default 1)",
    )
    if cells:
        parser.add_argument(
            "--cells",
            type=kind,
            default=None,
            metavar="V",
            help="parallel activation + cell units V, 1..hidden_size (default: the fewest "
            "that keep the MVU from waiting on them, 1 unless ceil(P/4) exceeds a gate "
            "row's beats)",
        )


def add_mode(parser: argparse.ArgumentParser) -> None:
    """``--mode sequence|stream`` (the accelerator's ``mode``; checked by :func:`check_mode`)."""
    parser.add_argument(
        "--mode",
        default="sequence",
        metavar="MODE",
        help="sequence: whole sequences buffered, up to --max-seq-len (default); stream: each "
        "step's output as soon as it is computed, any length, unidirectional models",
    )


def add_buffers(parser: argparse.ArgumentParser) -> None:
    """``--buffers 1|2`` (the accelerator's ``buffers``; default its default; checked by the
    command: it does not apply to ``--mode stream``)."""
    parser.add_argument(
        "--buffers",
        metavar="N",
        help="sequence mode: 2 overlaps the next sequence's load and the previous one's drain "
        "with the compute (twice the input/result buffer RAM; the default), 1 one sequence "
        "at a time",
    )


def check_buffers(text, mode: str) -> int | None:
    """``--buffers`` as an integer (``None`` when not given), else a one-line CLIError: 1 or
    2, and not with ``--mode stream``."""
    if text is None:
        return None
    if mode == "stream":
        raise CLIError(f"--buffers {text} does not apply to --mode stream")
    if text not in ("1", "2"):
        raise CLIError(f"--buffers must be 1 or 2, not {text!r}")
    return int(text)


def check_mode(mode: str, model) -> str:
    """``mode`` if it is a mode the model can be built in, else a one-line CLIError."""
    from lstmfpga.hw.accelerator import check_mode as check

    try:
        return check(mode, model, "--mode")
    except ValueError as error:
        raise CLIError(str(error)) from None


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
    data = files.read_json(manifest, "artifact manifest", require_object=False)
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str):
        raise CLIError(f"{manifest} must have a string 'format' field, not {fmt!r}")
    return fmt


def load_npy(path: str | Path, what: str) -> np.ndarray:
    """Load one array from a ``.npy`` file (header checked first, never unpickles)."""
    return files.load_array(path, what)


def load_npz(path: str | Path, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load exactly the arrays ``keys`` from a ``.npz`` archive (members checked first)."""
    return files.load_arrays(path, what, keys)


save_npy = files.save_npy
save_npz = files.save_npz
