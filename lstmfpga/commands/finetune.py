"""``lstmfpga finetune SPEC --train X.npy (--labels Y.npy | --targets Y.npy --loss mse)
[--preset NAME] [--config FILE.toml] [--epochs N] [--lr LR] [--batch-size N] [--val X.npy
Y.npy] [--formats hold|recalibrate] [--calib X.npy] [--seed N] -o QMODEL [--spec-out SPEC]``.

Fine-tunes the float model SPEC while its forward pass computes exactly the integers of the
golden model (and so of the hardware) under the chosen quantization: same formats, rounding,
saturation, activation tables and accumulator alignment, with straight-through gradients
(lstmfpga.quant.qat). Classifiers (a Linear head on the last step) train with cross-entropy
on --labels (class per sequence); regressors with --loss mse on --targets (the prediction's
shape, e.g. (batch, seq, out) for a head on every step). --formats hold keeps the formats of
the initial calibration (on --calib, default --train); recalibrate chooses them again after
each epoch. With --val, the epoch with the best validation accuracy (or loss) is kept.
Prints one line per epoch; deterministic for a given --seed. Writes the quantized model to
QMODEL and, with --spec-out, the fine-tuned float weights as a spec.
"""

from __future__ import annotations

import argparse

from lstmfpga.commands._common import add_command, load_npy
from lstmfpga.errors import CLIError


def register(subparsers) -> None:
    from lstmfpga.quant.config import PRESETS

    parser = add_command(
        subparsers,
        "finetune",
        "quantization-aware fine-tuning, bit-exact with the hardware",
        __doc__,
        run,
    )
    parser.add_argument("spec", metavar="SPEC", help="spec directory (lstmfpga export)")
    parser.add_argument("--train", required=True, metavar="X.npy", help="training inputs")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--labels", metavar="Y.npy", help="class per training sequence")
    target.add_argument("--targets", metavar="Y.npy", help="regression targets (--loss mse)")
    parser.add_argument(
        "--loss", choices=("ce", "mse"), help="default: ce with --labels, mse with --targets"
    )
    parser.add_argument("--preset", choices=PRESETS, help="base configuration (default q16)")
    parser.add_argument("--config", metavar="FILE.toml", help="configuration overrides")
    parser.add_argument("--epochs", type=int, default=10, metavar="N", help="default 10")
    parser.add_argument("--lr", type=float, default=2e-3, metavar="LR", help="Adam, default 2e-3")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="default 64")
    parser.add_argument("--val", nargs=2, metavar=("X.npy", "Y.npy"), help="validation data")
    parser.add_argument(
        "--formats",
        choices=("hold", "recalibrate"),
        default="hold",
        help="keep the initial formats (default) or recalibrate each epoch",
    )
    parser.add_argument("--calib", metavar="X.npy", help="calibration inputs (default --train)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="default 0")
    parser.add_argument("-o", "--output", required=True, metavar="QMODEL", help="output qmodel")
    parser.add_argument("--spec-out", metavar="SPEC", help="also write the fine-tuned spec")


def run(args: argparse.Namespace) -> int:
    from lstmfpga.commands.quantize import check_output_dir
    from lstmfpga.export.spec import SPEC_FORMAT, ModelSpec
    from lstmfpga.quant.config import load_config
    from lstmfpga.quant.model import QMODEL_FORMAT
    from lstmfpga.quant.qat import finetune

    check_output_dir(args.output, "-o", QMODEL_FORMAT)
    if args.spec_out is not None:
        check_output_dir(args.spec_out, "--spec-out", SPEC_FORMAT)
    loss = args.loss or ("ce" if args.labels is not None else "mse")
    if loss == "ce" and args.labels is None:
        raise CLIError("--loss ce needs --labels (class per sequence), not --targets")
    if loss == "mse" and args.targets is None:
        raise CLIError("--loss mse needs --targets, not --labels")
    spec = ModelSpec.load(args.spec)
    config = load_config(args.config, args.preset)
    x = load_npy(args.train, "--train")
    y = load_npy(
        args.labels if loss == "ce" else args.targets, "--labels" if loss == "ce" else "--targets"
    )
    val = None
    if args.val is not None:
        val = (load_npy(args.val[0], "--val inputs"), load_npy(args.val[1], "--val targets"))
    calib = None if args.calib is None else load_npy(args.calib, "--calib")
    # The options named as finetune's parameters, passed through as given.
    same_names = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "seed", "formats")}
    result = finetune(
        spec, config, x, y, loss=loss, calib=calib, val=val, progress=print, **same_names
    )
    result.qmodel.save(args.output)
    print(result.qmodel.describe())
    print(f"wrote {args.output}")
    if args.spec_out is not None:
        result.spec.save(args.spec_out)
        print(f"wrote {args.spec_out}")
    return 0
