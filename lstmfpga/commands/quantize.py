"""``lstmfpga quantize SPEC --calib X.npy [--preset q16|w8a16] [--config FILE.toml] -o QMODEL``.

Quantizes the spec directory SPEC (``lstmfpga export``) to fixed point. X is a
``(batch, seq, features)`` float array (``.npy``, read without pickle) of representative
inputs: the float reference runs on it and the observed ranges choose the data formats.
``--preset`` picks the base configuration (default q16); ``--config`` reads a TOML file of
overrides (see docs/numerics.md), based on the preset it names, else on ``--preset``.
QMODEL is a directory (created) holding ``manifest.json`` and ``tensors.npz``.

Prints the chosen formats, the activation-table errors, and how many values saturated
when the bit-exact golden model runs on the calibration data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lstmfpga.commands._common import description, load_npy
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
    parser = subparsers.add_parser(
        "quantize",
        help="quantize a spec to fixed point, calibrated on sample inputs",
        description=description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="spec directory (lstmfpga export)")
    parser.add_argument(
        "--calib",
        required=True,
        metavar="X.npy",
        help="(batch, seq, features) float array of representative inputs",
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lstmfpga.export.spec import ModelSpec
    from lstmfpga.quant import golden
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import load_config
    from lstmfpga.quant.model import QMODEL_FORMAT

    check_output_dir(args.output, "-o", QMODEL_FORMAT)
    spec = ModelSpec.load(args.spec)
    calib = load_npy(args.calib, "--calib")
    config = load_config(args.config, args.preset)
    model = quantize(spec, calib, config)
    _, result = golden.predict(model, calib)
    model.save(args.output)
    print(model.describe())
    reasons = model.calibration.get("roles", {})
    print(
        "why: "
        + ", ".join(
            f"{role}={note['format']} ({note['why']})"
            for role, note in reasons.items()
            if isinstance(note, dict) and "why" in note
        )
    )
    counts = ", ".join(f"{role}={result.saturation.get(role, 0)}" for role in _ROLES)
    total = sum(result.saturation.values())
    print(f"saturation on the calibration data ({calib.shape[0]} sequences): {counts}")
    if total:
        print(
            f"warning: {total} value(s) saturated on the calibration data; raise the "
            "config's headroom or the widths of the roles above"
        )
    print(f"wrote {args.output}")
    return 0


_ROLES = ("x", "preact", "cell", "hidden", "head_out")
