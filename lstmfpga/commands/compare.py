"""``lstmfpga compare R1.json R2.json [...]``: simulation reports side by side.

Prints one column per report (simulator, lanes, preset, bit-exactness, errors, accuracy,
cycles, speed); numbers in later columns carry their difference to the first report.
"""

from __future__ import annotations

import argparse

from lstmfpga.commands._common import description
from lstmfpga.errors import CLIError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare simulation reports side by side",
        description=description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reports", nargs="+", metavar="R.json", help="two or more reports")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from lstmfpga.sim.report import compare, load_report

    if len(args.reports) < 2:
        raise CLIError(f"compare needs at least two reports, not {len(args.reports)}")
    print(compare([load_report(path) for path in args.reports]), end="")
