"""``lstmfpga demo [--out DIR]``: the whole flow on an embedded default, nothing to download.

Trains an LSTM classifier on scikit-learn's digits (each 8x8 image as 8 timesteps of 8
features; seed 0, a few seconds), exports it, quantizes it (``q16``), generates Verilog,
simulates every test image in Verilator and a few in Amaranth's simulator (bit-exact against
the golden model), synthesizes for ECP5 (Yosys + nextpnr), and prints one summary. Writes
``report.json``, ``report.html``, the Verilog and the intermediate artifacts into DIR.
Exits 1 if the hardware is not bit-exact.
"""

from __future__ import annotations

import argparse
import sys
import time

from lstmfpga.commands._common import description


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole flow on the embedded digits classifier",
        description=description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="out/demo", metavar="DIR", help="default out/demo")
    parser.add_argument("--lanes", type=int, default=8, metavar="P", help="MAC lanes (default 8)")
    parser.add_argument("--no-synth", action="store_true", help="skip ECP5 synthesis")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lstmfpga.pipeline import run_demo, summary

    started = time.perf_counter()
    result = run_demo(args.out, lanes=args.lanes, synthesize=not args.no_synth)
    print("\n== summary ==")
    print(summary(result.report))
    print(
        f"wrote {result.paths['report']}, {result.paths['html']} and Verilog in "
        f"{result.paths['verilog']} ({time.perf_counter() - started:.0f} s)"
    )
    sys.stdout.flush()
    return 0 if result.report["bit_exact"] else 1
