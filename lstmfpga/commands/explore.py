"""``lstmfpga explore QMODEL --inputs X.npy [--labels Y.npy] --lanes 1,2,4,8 [--simd 1]
[--cells 1,2] [--preset q16,w8a16 --spec SPEC] --target ecp5[:25k|:85k],ice40
[--seeds 1,2,3] -o DIR``.

Design-space exploration on Dask: every combination of lanes, simd, cells, presets, targets
and nextpnr seeds is generated, simulated (bit-exact check against the golden model, cycles,
accuracy with --labels) and synthesized, as Dask tasks on a local cluster (--workers N,
default 2) or an existing one (--scheduler tcp://HOST:PORT). Finished tasks are cached in
DIR/cache by content hash, so a rerun or an extended sweep recomputes nothing already done;
a failed point is recorded with its one-line error. Writes DIR/explore.json (every point,
with its Pareto flags) and DIR/explore.html (Pareto fronts: latency vs LUTs, latency vs
DSPs, accuracy vs bits; a sortable table). One progress line per finished task goes to
stderr.
"""

from __future__ import annotations

import argparse
import sys

from lstmfpga.commands._common import add_command, add_inputs_argument, add_qmodel_argument
from lstmfpga.errors import CLIError


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers, not {text!r}"
        ) from None
    return values


def _str_list(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list, not {text!r}")
    return values


#: The swept axes, each a :class:`~lstmfpga.explore.Sweep` field: a comma-separated list
#: (required where the default is None).
_AXES = (
    ("lanes", "--lanes", _int_list, None, "P,P,...", "MAC lane counts, e.g. 1,2,4,8"),
    ("simd", "--simd", _int_list, (1,), "S,...", "columns per lane and cycle (default 1)"),
    ("cells", "--cells", _int_list, (None,), "V,...", "cell units (default: as the MVU needs)"),
    ("presets", "--preset", _str_list, (), "NAME,...", "presets to requantize with (needs --spec)"),
    ("targets", "--target", _str_list, None, "T[:DEV],...", "e.g. ecp5, ecp5:85k, ice40:up5k"),
    ("seeds", "--seeds", _int_list, (1,), "N,...", "nextpnr placement seeds (default 1)"),
)  # fmt: skip


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "explore",
        "sweep lanes x presets x devices x seeds on Dask (Pareto fronts)",
        __doc__,
        run,
    )
    add_qmodel_argument(parser, "quantized model (lstmfpga quantize)")
    add_inputs_argument(parser, "(batch, seq, features) float inputs to simulate")
    parser.add_argument("--labels", metavar="Y.npy", help="class per sequence (accuracy)")
    for field, flag, kind, default, metavar, text in _AXES:
        parser.add_argument(
            flag,
            dest=field,
            type=kind,
            required=default is None,
            default=default,
            metavar=metavar,
            help=text,
        )
    parser.add_argument("--spec", metavar="SPEC", help="the float model QMODEL came from")
    parser.add_argument("--calib", metavar="X.npy", help="calibration inputs (default --inputs)")
    parser.add_argument(
        "--freq",
        type=float,
        default=100.0,
        metavar="MHZ",
        help="target clock for place and route (default 100)",
    )
    parser.add_argument(
        "--sim",
        default="verilator",
        metavar="SIM",
        help="amaranth, icarus or verilator (default verilator)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N", help="local Dask workers (default 2)")
    group.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler")
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from lstmfpga.explore import Sweep, explore

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"-o {out} must be a directory, not a file")
    sweep = Sweep(**{field: getattr(args, field) for field, *_ in _AXES})

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # The options named as explore's parameters, passed through as given.
    same_names = {k: getattr(args, k) for k in ("labels", "spec", "calib", "workers", "scheduler")}
    result = explore(
        args.qmodel,
        args.inputs,
        sweep,
        out,
        simulator=args.sim,
        freq_mhz=args.freq,
        progress=None if args.quiet else progress,
        **same_names,
    )
    failed = sum(1 for p in result.points if p["error"])
    print(
        f"{len(result.points)} points ({failed} failed; {result.computed} tasks computed, "
        f"{result.cached} cached) in {result.wall_seconds:.1f} s: "
        f"{result.paths['json']}, {result.paths['html']}"
    )
    best = [p for p in result.points if p["pareto"]["latency_luts"]]
    for p in sorted(best, key=lambda p: p["latency_us"]):
        print(
            f"  pareto: {p['preset']} lanes {p['lanes']} {p['target']} {p['device']} seed "
            f"{p['seed']}: {p['latency_us']:.2f} us, {p['luts']} LUTs, {p['dsps']} DSPs, "
            f"{p['fmax_mhz']:.1f} MHz"
        )
