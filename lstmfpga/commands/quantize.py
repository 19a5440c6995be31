"""``lstmfpga quantize SPEC --calib X.npy [--preset PRESET] [--config FILE.toml] -o QMODEL``
or ``lstmfpga quantize SPEC --formats-from QMODEL0 [--calib X.npy] -o QMODEL``.

Quantizes the spec directory SPEC (``lstmfpga export``, an LSTM or a GRU) to fixed point. X is a
``(batch, seq, features)`` float array (``.npy``, read without pickle) of representative
inputs: the float reference runs on it and the observed ranges choose the data formats.
``--preset`` picks the base configuration (default q16); ``--config`` reads a TOML file of
overrides (see docs/numerics.md), based on the preset it names, else on ``--preset``.
QMODEL is a directory (created) holding ``manifest.json`` and ``tensors.npz``.

``--formats-from QMODEL0`` takes every format (data, weights, accumulator) and the config of
another qmodel instead of calibrating: a retrained model then runs on the hardware generated
from QMODEL0 (weights reloaded, same bitstream). A weight that does not fit its format is
refused, naming the tensor; ``--calib`` is then optional (it only reports saturation).

Prints the chosen formats, the activation-table errors, and how many values saturated
when the bit-exact golden model runs on the calibration data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lstmfpga.commands._common import add_command, load_npy
from lstmfpga.errors import CLIError
from lstmfpga.export import files
from lstmfpga.quant.config import PRESETS
from lstmfpga.quant.describe import describe_qmodel
from lstmfpga.quant.inference import QPrediction, predict_qmodel

__all__ = [
    "QPrediction",
    "check_output_dir",
    "describe_qmodel",
    "predict_qmodel",
    "register",
    "run",
]


def check_output_dir(path: str | Path, option: str, kind: str) -> Path:
    """Refuse an output folder that cannot hold a ``kind`` artifact: an existing file, or a
    folder holding another kind of artifact (its ``manifest.json`` would be overwritten)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {path} must be a directory, not an existing file")
    manifest = path / "manifest.json"
    if manifest.is_symlink() or (manifest.exists() and not manifest.is_file()):
        raise CLIError(f"{option} {path}: manifest.json must be a regular file")
    if manifest.is_file():
        found = files.read_json(manifest, "existing manifest", require_object=False)
        found = found.get("format") if isinstance(found, dict) else None
        if found != kind:
            raise CLIError(
                f"{option} {path} holds a {found!r} artifact, not {kind!r}: choose another folder"
            )
    return path


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "quantize",
        "quantize a spec to fixed point, calibrated on sample inputs",
        __doc__,
        run,
    )
    parser.add_argument("spec", metavar="SPEC", help="spec directory (lstmfpga export)")
    parser.add_argument(
        "--calib",
        metavar="X.npy",
        help="(batch, seq, features) float array of representative inputs "
        "(required unless --formats-from)",
    )
    parser.add_argument(
        "--formats-from",
        metavar="QMODEL",
        help="every format (data, weights, accumulator) and the config of this qmodel: "
        "the result runs on the hardware generated from it",
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        help="base configuration (default: q16, or the preset named by --config)",
    )
    parser.add_argument("--config", metavar="FILE.toml", help="configuration overrides")
    parser.add_argument(
        "-o", "--output", required=True, metavar="QMODEL", help="quantized model directory"
    )


def run(args: argparse.Namespace) -> int:
    from lstmfpga.export.spec import ModelSpec
    from lstmfpga.quant import golden
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import load_config
    from lstmfpga.quant.model import QMODEL_FORMAT

    check_output_dir(args.output, "-o", QMODEL_FORMAT)
    if args.formats_from is not None and (args.preset is not None or args.config is not None):
        raise CLIError("--formats-from takes its qmodel's config: drop --preset and --config")
    if args.formats_from is None and args.calib is None:
        raise CLIError("--calib X.npy is required unless --formats-from QMODEL is given")
    spec = ModelSpec.load(args.spec)
    calib = load_npy(args.calib, "--calib") if args.calib is not None else None
    if args.formats_from is not None:
        from lstmfpga.quant.given_formats import quantize_like
        from lstmfpga.quant.model import QuantizedModel

        reference = QuantizedModel.load(args.formats_from)
        model = quantize_like(spec, reference, source=str(args.formats_from))
    else:
        model = quantize(spec, calib, load_config(args.config, args.preset))
    model.save(args.output)
    print(model.describe())
    if calib is None:
        print(f"formats and config from {args.formats_from} (no calibration)")
        print(f"wrote {args.output}")
        return 0
    if model.cell == "gru":
        from lstmfpga.quant import gru_golden as golden
    _, result = golden.predict(model, calib)
    reasons = model.calibration.get("roles", {})
    print(
        "why: "
        + ", ".join(
            f"{role}={note['format']} ({note['why']})"
            for role, note in reasons.items()
            if isinstance(note, dict)
            and "why" in note
            and (role != "head_out" or model.head is not None)
        )
    )
    roles = [role for role in model.data_roles if role != "gate"]
    counts = ", ".join(f"{role}={result.saturation.get(role, 0)}" for role in roles)
    total = sum(result.saturation.values())
    print(f"saturation on the calibration data ({calib.shape[0]} sequences): {counts}")
    if total:
        print(
            f"warning: {total} value(s) saturated on the calibration data; raise the "
            "config's headroom or the widths of the roles above"
        )
    print(f"wrote {args.output}")
    return 0
