"""``lstmfpga export MODEL [--head last|all] [--cell lstm|gru] -o SPEC``: a PyTorch model → a
spec directory.

MODEL is a state_dict (``.pt``/``.pth``), a TorchScript archive or a ``torch.export``
archive (``.pt2``) of one nn.LSTM or nn.GRU (+ optional nn.Linear head), read by
``lstmfpga.export.model_files.load_model``, which never runs code stored in the file. The
cell is inferred from the weight shapes (a GRU's weight_hh has 3*hidden rows, an LSTM's
4*hidden); ``--cell`` says it where the shapes cannot. An archive's forward must be exactly
LSTM or GRU -> optional last timestep (y[:, -1], y[-1] time-major, h_n[-1]) -> optional
nn.Linear; anything else is refused naming the op. SPEC is a directory (created; an existing
file or another kind of artifact there is refused) holding ``manifest.json`` and
``tensors.npz``. Prints the spec summary.

With ``--brevitas PACKAGE.MODULE:FACTORY --qmodel QMODEL`` the model is a Brevitas
``QuantLSTM`` (+ optional ``QuantLinear``) module built by calling FACTORY (this imports and
runs that code: name only code you trust), with MODEL an optional state_dict loaded into it;
its power-of-two quantizers become the formats of QMODEL directly (no calibration), next to
the float spec in SPEC (``lstmfpga.export.brevitas_loader``).
"""

from __future__ import annotations

import argparse

from lstmfpga.commands._common import add_command
from lstmfpga.errors import CLIError

HEAD_CHOICES = ("last", "all")
CELL_CHOICES = ("lstm", "gru")


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "export",
        "convert a PyTorch LSTM or GRU model file into an lstmfpga spec",
        __doc__,
        run,
    )
    parser.add_argument(
        "model", metavar="MODEL", nargs="?", help="state_dict .pt/.pth, TorchScript or .pt2"
    )
    parser.add_argument(
        "--head",
        choices=HEAD_CHOICES,
        help="apply the nn.Linear head to the last timestep or to all timesteps "
        "(default: last, or the model's head_mode)",
    )
    parser.add_argument(
        "--cell",
        choices=CELL_CHOICES,
        help="the recurrent cell, nn.LSTM or nn.GRU (default: inferred from the weight shapes)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="SPEC", help="spec directory")
    parser.add_argument(
        "--brevitas", metavar="PKG.MOD:FACTORY", help="build a Brevitas QuantLSTM model"
    )
    parser.add_argument("--qmodel", metavar="QMODEL", help="with --brevitas: the quantized model")


def run(args: argparse.Namespace) -> None:
    from lstmfpga.commands.quantize import check_output_dir
    from lstmfpga.export.spec import SPEC_FORMAT

    # The output folder is checked before the model is read: an existing file or another
    # kind of artifact there (a qmodel, a design) is refused, never overwritten.
    check_output_dir(args.output, "-o", SPEC_FORMAT)
    if args.brevitas is not None or args.qmodel is not None:
        return _run_brevitas(args)
    if args.model is None:
        raise CLIError("MODEL is required (or --brevitas FACTORY --qmodel QMODEL)")
    from lstmfpga.export.model_files import load_model  # imports torch: only when needed

    spec = load_model(args.model, head=args.head, cell=args.cell)
    spec.save(args.output)
    print(spec.describe())
    print(f"wrote {args.output}")


def _run_brevitas(args: argparse.Namespace) -> None:
    from lstmfpga.commands.quantize import check_output_dir
    from lstmfpga.quant.model import QMODEL_FORMAT

    if args.brevitas is None or args.qmodel is None:
        raise CLIError("--brevitas and --qmodel go together")
    if args.cell not in (None, "lstm"):
        raise CLIError(f"--brevitas imports a QuantLSTM: --cell must be lstm, not {args.cell!r}")
    check_output_dir(args.qmodel, "--qmodel", QMODEL_FORMAT)
    from lstmfpga.export.brevitas_loader import build_module, from_brevitas

    spec, qmodel = from_brevitas(build_module(args.brevitas, args.model), head=args.head)
    spec.save(args.output)
    qmodel.save(args.qmodel)
    print(spec.describe())
    print(qmodel.describe())
    print(f"wrote {args.output} and {args.qmodel}")
