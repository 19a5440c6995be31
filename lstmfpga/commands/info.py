"""``lstmfpga info FILE``: architecture and parameter counts of an artifact or model file.

FILE is an lstmfpga artifact directory (dispatched on its manifest ``format``:
``lstmfpga.spec``, ``lstmfpga.qmodel``: LSTM or GRU) or a PyTorch model file (state_dict,
TorchScript, ``.pt2``), which is read like ``lstmfpga export`` reads it (``--cell`` as there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lstmfpga.commands._common import add_command, artifact_format
from lstmfpga.errors import CLIError
from lstmfpga.export.spec import SPEC_FORMAT, ModelSpec
from lstmfpga.quant.model import QMODEL_FORMAT


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "info", "describe a spec directory or a PyTorch model file", __doc__, run
    )
    parser.add_argument("file", metavar="FILE", help="artifact directory or model file")
    parser.add_argument(
        "--cell",
        choices=("lstm", "gru"),
        help="a model file's recurrent cell (default: inferred from the weight shapes)",
    )


def tensor_table(tensors: dict) -> list[str]:
    """One line per tensor: name, shape and element count, aligned."""
    width = max((len(name) for name in tensors), default=0)
    return [f"  {name:<{width}}  {tuple(t.shape)!s:<12} {t.size}" for name, t in tensors.items()]


def describe_spec(spec: ModelSpec) -> str:
    lines = [spec.describe()]
    if spec.source:
        lines.append(f"source: {spec.source}")
    lines.append("tensors:")
    lines += tensor_table(spec.tensors())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    path = Path(args.file)
    if path.is_dir():
        fmt = artifact_format(path)
        if fmt == SPEC_FORMAT:
            spec = ModelSpec.load(path)
            print(f"{path}: {SPEC_FORMAT} artifact")
            print(describe_spec(spec))
        elif fmt == QMODEL_FORMAT:
            from lstmfpga.quant.describe import describe_qmodel

            print(f"{path}: {QMODEL_FORMAT} artifact")
            print(describe_qmodel(path))
        else:
            raise CLIError(
                f"{path}: unknown artifact format {fmt!r} "
                f"(this lstmfpga reads: {SPEC_FORMAT}, {QMODEL_FORMAT})"
            )
    else:
        from lstmfpga.export.model_files import detect_format, load_model

        kind = detect_format(path)
        spec = load_model(path, cell=args.cell)
        print(f"{path}: PyTorch {kind} file")
        print(describe_spec(spec))
