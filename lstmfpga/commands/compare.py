"""``lstmfpga compare R1.json R2.json [...]``: simulation reports side by side.

Prints one column per report (simulator, lanes, preset, bit-exactness, errors, accuracy,
cycles, speed); numbers in later columns carry their difference to the first report.
``--html OUT.html`` also writes them side by side (with synthesis and the cycle breakdown)
as one self-contained page, cells that differ from the first report highlighted.
"""

from __future__ import annotations

import argparse

from lstmfpga.commands._common import add_command
from lstmfpga.errors import CLIError


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "compare", "compare simulation reports side by side", __doc__, run
    )
    parser.add_argument("reports", nargs="+", metavar="R.json", help="two or more reports")
    parser.add_argument(
        "--html", metavar="OUT.html", help="also write the comparison as an HTML page"
    )


def run(args: argparse.Namespace) -> None:
    from lstmfpga.commands.simulate import check_output
    from lstmfpga.export.files import write_text
    from lstmfpga.sim.report import compare, load_report, render_compare_html

    if len(args.reports) < 2:
        raise CLIError(f"compare needs at least two reports, not {len(args.reports)}")
    if getattr(args, "html", None) is not None:
        check_output(args.html, "--html")
    reports = [load_report(path) for path in args.reports]
    print(compare(reports), end="")
    if getattr(args, "html", None) is not None:
        write_text(args.html, render_compare_html(reports))
        print(f"wrote {args.html}")
