"""``lstmfpga generate QMODEL [--lanes P] [--max-seq-len T] -o OUTDIR``: Verilog for a
quantized model.

Writes into OUTDIR the top-level Verilog ``<name>.v`` (AXI4-Stream ports ``s_axis_t*`` /
``m_axis_t*``, ``clk``, synchronous ``rst``), the weight and table contents (inline, or as
``$readmemh`` files with ``--memories readmemh``), and ``manifest.json`` / ``manifest.md``
(ports, formats, latency and cycle model, memory sizes, multipliers, RAM bits).
"""

from __future__ import annotations

import argparse

from lstmfpga.commands._common import description
from lstmfpga.errors import CLIError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate Verilog for a quantized model",
        description=description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("qmodel", metavar="QMODEL", help="quantized model directory")
    parser.add_argument("--lanes", type=int, default=8, metavar="P", help="MAC lanes (default 8)")
    parser.add_argument(
        "--max-seq-len", type=int, default=64, metavar="T", help="longest sequence (default 64)"
    )
    parser.add_argument(
        "--memories",
        choices=("inline", "readmemh"),
        default="inline",
        help="memory contents inline in the Verilog, or in $readmemh files (default inline)",
    )
    parser.add_argument("--with-states", action="store_true", help="also stream out h_n, c_n")
    parser.add_argument(
        "--initial-state", action="store_true", help="every sequence starts with h0, c0"
    )
    parser.add_argument("--name", default="lstm_accel", help="top module name")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from lstmfpga.hw.verilog import generate
    from lstmfpga.quant.model import QuantizedModel

    if args.lanes < 1:
        raise CLIError(f"--lanes must be a positive integer, not {args.lanes}")
    if args.max_seq_len < 1:
        raise CLIError(f"--max-seq-len must be a positive integer, not {args.max_seq_len}")
    model = QuantizedModel.load(args.qmodel)
    info = generate(
        model,
        args.output,
        lanes=args.lanes,
        max_seq_len=args.max_seq_len,
        with_states=args.with_states,
        initial_state=args.initial_state,
        memories=args.memories,
        name=args.name,
    )
    cycles = info["cycles"]
    print(
        f"{info['top']}: {info['lanes']} lanes, max_seq_len {info['max_seq_len']}, "
        f"{info['ram_bits']} RAM bits, "
        f"{sum(m['count'] for m in info['multipliers'])} multipliers"
    )
    print(
        f"layer-0 step: {cycles['step']['0']} cycles "
        f"(ideal {cycles['ideal_step']['0']}); per sequence: "
        + ", ".join(f"T={T}: {n}" for T, n in cycles["per_sequence"].items())
    )
    print(f"wrote {', '.join(info['files'])} to {args.output}")
