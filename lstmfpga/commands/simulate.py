"""``lstmfpga simulate QMODEL --inputs X.npy --sim amaranth|icarus|verilator --report R.json``:
run the accelerator's hardware on every input sequence and check it against the golden model.

X is a ``(batch, seq, features)`` float array (``.npy``, read without pickle), quantized
with the model's rules. The accelerator (``--lanes P``, ``--max-seq-len T``, default the
length of X) is simulated in Amaranth's simulator, or as generated Verilog under cocotb with
Icarus Verilog or Verilator (builds cached by content; ``--build-dir`` moves the cache).
Every output element is compared with the golden model by integer equality.

Writes the bit-accuracy report R.json (see docs/report.md; ``lstmfpga report R.json``
renders it). ``--spec SPEC`` adds the float reference (fixed-vs-float error, float accuracy);
``--labels Y.npy`` (one class per sequence, models with a ``last`` head) adds accuracies.
``--stall P`` idles ``tvalid`` and drops ``tready`` with probability P (seeded by
``--seed``). ``--waves FILE.vcd|.fst`` writes a waveform (amaranth: VCD only). ``--dump
OUT.npz`` writes ``rtl`` and ``golden`` codes (sequence x element), ``float`` (with --spec)
and ``scale`` (value = code * scale). Exits 1 after writing the report if any output
mismatched or the design raised its error flag.
"""

from __future__ import annotations

import argparse
import sys

from lstmfpga.commands._common import description, load_npy, save_npz
from lstmfpga.errors import CLIError
from lstmfpga.pipeline import SIMULATORS, simulate_model

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate the hardware on inputs and write a bit-accuracy report",
        description=description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("qmodel", metavar="QMODEL", help="quantized model directory")
    parser.add_argument(
        "--inputs", required=True, metavar="X.npy", help="(batch, seq, features) float array"
    )
    parser.add_argument("--labels", metavar="Y.npy", help="class per sequence (last heads)")
    parser.add_argument("--spec", metavar="SPEC", help="float spec for fixed-vs-float errors")
    parser.add_argument("--sim", required=True, choices=SIMULATORS, help="simulator")
    parser.add_argument("--lanes", type=int, default=8, metavar="P", help="MAC lanes (default 8)")
    parser.add_argument(
        "--max-seq-len", type=int, metavar="T", help="longest sequence (default: that of X)"
    )
    parser.add_argument(
        "--stall", type=float, default=0.0, metavar="P",
        help="probability of an idle/back-pressured beat on both streams (default 0)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="stall seed")
    parser.add_argument("--waves", metavar="FILE", help="write a .vcd or .fst waveform")
    parser.add_argument("--dump", metavar="OUT.npz", help="write rtl/golden/float/scale arrays")
    parser.add_argument("--build-dir", metavar="DIR", help="simulator build cache directory")
    parser.add_argument("--report", required=True, metavar="R.json", help="report to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lstmfpga.quant.model import QuantizedModel
    from lstmfpga.sim.report import render_text, save_report

    if args.lanes < 1:
        raise CLIError(f"--lanes must be a positive integer, not {args.lanes}")
    if args.max_seq_len is not None and args.max_seq_len < 1:
        raise CLIError(f"--max-seq-len must be a positive integer, not {args.max_seq_len}")
    model = QuantizedModel.load(args.qmodel)
    x = load_npy(args.inputs, "--inputs")
    labels = None
    if args.labels is not None:
        labels = load_npy(args.labels, "--labels")
        if labels.dtype.kind not in "iu" or labels.ndim != 1 or labels.size != len(x):
            raise CLIError(
                f"--labels must be {len(x)} integer class indices, not {labels.dtype} "
                f"{labels.shape}"
            )
        if model.head is None or model.head.mode != "last":
            raise CLIError("--labels needs a model with a 'last' head")
    spec = None
    if args.spec is not None:
        from lstmfpga.export.spec import ModelSpec

        spec = ModelSpec.load(args.spec)
    report, arrays = simulate_model(
        model,
        x,
        simulator=args.sim,
        lanes=args.lanes,
        max_seq_len=args.max_seq_len,
        stall=args.stall,
        seed=args.seed,
        waves=args.waves,
        build_dir=args.build_dir,
        spec=spec,
        labels=labels,
        progress=True if sys.stderr.isatty() else None,
    )
    save_report(report, args.report)
    if args.dump is not None:
        save_npz(args.dump, **arrays)
    print(render_text(report), end="")
    print(f"wrote {args.report}" + (f" and {args.dump}" if args.dump else ""))
    return 0 if report["bit_exact"] else 1
