"""``lstmfpga report R.json [--html OUT.html]``: show a bit-accuracy report.

Prints the summary of a report written by ``lstmfpga simulate`` (see docs/report.md);
``--html`` also writes it as one self-contained HTML page with inline SVG plots (error
histogram in LSBs, error per timestep, activation-table error curves, fixed vs float).
"""

from __future__ import annotations

import argparse

from lstmfpga.commands._common import add_command
from lstmfpga.export.files import write_text


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "report", "show a simulation report (text, or HTML with plots)", __doc__, run
    )
    parser.add_argument("report", metavar="R.json", help="report from lstmfpga simulate")
    parser.add_argument("--html", metavar="OUT.html", help="also write an HTML page")


def run(args: argparse.Namespace) -> None:
    from lstmfpga.commands.simulate import check_output
    from lstmfpga.sim.report import load_report, render_html, render_text

    if args.html is not None:
        check_output(args.html, "--html")
    report = load_report(args.report)
    print(render_text(report), end="")
    if args.html is not None:
        write_text(args.html, render_html(report))
        print(f"wrote {args.html}")
