"""``lstmfpga predict SPEC|QMODEL --inputs X.npy -o Y.npy [--states S.npz] [--h0c0 INIT.npz]
[--raw]``.

X is a ``(batch, seq, features)`` float array (``.npy``, read without pickle). Y is the
head output, ``(batch, out)`` for a ``last`` head or ``(batch, seq, out)`` for ``all``;
without a head, the recurrent layers' output sequence ``(batch, seq, D*H_out)``. ``--states`` writes
the final states ``h_n`` ``(L*D, batch, H_out)`` and ``c_n`` ``(L*D, batch, H)`` to an
``.npz``; ``--h0c0`` reads initial states from an ``.npz`` holding ``h0`` and ``c0`` of
those shapes (default: zeros). A GRU has no cell state: ``--states`` writes ``h_n`` only
and ``--h0c0`` holds ``h0`` only. A spec is run with the float64 NumPy reference; a quantized
model with the bit-exact golden model (dequantized floats, or integer codes with ``--raw``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lstmfpga.commands._common import (
    add_command,
    add_inputs_argument,
    artifact_format,
    load_npy,
    load_npz,
    save_npy,
    save_npz,
)
from lstmfpga.errors import CLIError
from lstmfpga.export import files, reference
from lstmfpga.export.spec import SPEC_FORMAT, ModelSpec
from lstmfpga.quant.model import QMODEL_FORMAT

__all__ = ["Prediction", "predict_artifact"]


class Prediction(NamedTuple):
    """What ``predict`` writes: ``output`` (head output, else output sequence), final states."""

    output: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray | None  # None for a GRU


def predict_artifact(path: str | Path, x, h0=None, c0=None, raw: bool = False) -> Prediction:
    """Run the artifact at ``path`` on ``x``, dispatching on its manifest ``format``.

    ``x`` is ``(batch, seq, features)``; ``h0``/``c0`` are initial states or ``None`` for
    zeros. Each format validates ``x`` and the states itself (one-line errors). A quantized
    model runs the bit-exact golden model: dequantized floats, or integer codes with
    ``raw=True`` (a float spec has no codes: ``raw`` is an error there).
    """
    fmt = artifact_format(path)
    if fmt == SPEC_FORMAT:
        if raw:
            raise CLIError(f"{path}: --raw needs a quantized model (lstmfpga quantize)")
        return _predict_spec(path, x, h0, c0)
    elif fmt == QMODEL_FORMAT:
        from lstmfpga.quant.inference import predict_qmodel

        result = predict_qmodel(path, x, h0, c0, raw=raw)
        return Prediction(result.output, result.h_n, result.c_n)
    else:
        raise CLIError(
            f"{path}: cannot predict with a {fmt!r} artifact (this lstmfpga predicts with: "
            f"{SPEC_FORMAT}, {QMODEL_FORMAT})"
        )


def _predict_spec(path: str | Path, x, h0, c0) -> Prediction:
    spec = ModelSpec.load(path)
    result = reference.forward(spec, x, h0, c0)
    return Prediction(result.prediction, result.h_n, result.c_n)


def _artifact_cell(path: str | Path) -> str:
    """The ``cell`` its manifest records (``"lstm"`` when absent: artifacts before GRUs);
    the loader checks the rest of the artifact later."""
    artifact_format(path)  # exists, is an artifact folder, has a format
    manifest = files.read_json(Path(path) / "manifest.json", "artifact manifest")
    return str(manifest.get("cell", "lstm"))


def _initial_states(path: str | Path, cell: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``h0`` and ``c0`` (None for a GRU) from the ``--h0c0`` archive, its keys checked
    against the cell."""
    states = load_npz(path, "--h0c0", None)
    if set(states) not in ({"h0", "c0"}, {"h0"}):
        raise CLIError(
            f"--h0c0 {path} must hold arrays ['h0', 'c0'] (an LSTM) or ['h0'] (a GRU), "
            f"not {sorted(states)}"
        )
    if cell == "gru" and "c0" in states:
        raise CLIError(f"--h0c0 {path}: a GRU has no cell state: drop c0")
    if cell != "gru" and "c0" not in states:
        raise CLIError(f"--h0c0 {path}: an LSTM needs c0 beside h0")
    return states["h0"], states.get("c0")


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "predict", "run an exported model on inputs from a .npy file", __doc__, run
    )
    parser.add_argument(
        "artifact",
        metavar="SPEC",
        help="spec directory (lstmfpga export) or quantized model (lstmfpga quantize)",
    )
    add_inputs_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="Y.npy", help="prediction")
    parser.add_argument("--states", metavar="S.npz", help="write final states h_n, c_n")
    parser.add_argument("--h0c0", metavar="INIT.npz", help="initial states h0, c0")
    parser.add_argument(
        "--raw", action="store_true", help="quantized model: write integer codes, not floats"
    )


def run(args: argparse.Namespace) -> None:
    from lstmfpga.commands.simulate import check_output

    check_output(args.output, "-o")
    if args.states is not None:
        check_output(args.states, "--states")
    x = load_npy(args.inputs, "--inputs")
    h0 = c0 = None
    if args.h0c0 is not None:
        h0, c0 = _initial_states(args.h0c0, _artifact_cell(args.artifact))
    prediction = predict_artifact(args.artifact, x, h0, c0, raw=args.raw)
    gru = prediction.c_n is None
    save_npy(args.output, prediction.output)
    print(f"wrote {args.output}: {prediction.output.shape} {prediction.output.dtype}")
    if args.states is not None:
        if gru:
            save_npz(args.states, h_n=prediction.h_n)
            print(f"wrote {args.states}: h_n {prediction.h_n.shape}")
        else:
            save_npz(args.states, h_n=prediction.h_n, c_n=prediction.c_n)
            print(f"wrote {args.states}: h_n {prediction.h_n.shape}, c_n {prediction.c_n.shape}")
