"""``lstmfpga simulate QMODEL --inputs X.npy --sim amaranth|icarus|verilator --report R.json``:
run the accelerator's hardware on every input sequence and check it against the golden model.

X is a ``(batch, seq, features)`` float array (``.npy``, read without pickle), quantized
with the model's rules. The accelerator (``--lanes P``, ``--max-seq-len T``, default the
length of X) is simulated in Amaranth's simulator, or as generated Verilog under cocotb with
Icarus Verilog or Verilator (builds cached by content; ``--build-dir`` moves the cache).
Every output element is compared with the golden model by integer equality.

``--rtl RTLDIR`` runs already generated hardware instead (``lstmfpga generate``, either
``--top``; Icarus or Verilator, the folder's Verilog as it is): QMODEL must fit it (geometry,
every format and table, and the hardware it gives with the folder's options; e.g. a model
quantized ``--formats-from`` the design's qmodel), or the first mismatch is one line.
``--lanes``, ``--simd``, ``--cells`` and ``--max-seq-len`` default to the design's and must
equal them;
``--h0c0`` / ``--states`` need a design built with ``--initial-state`` / ``--with-states``.
When QMODEL's weights are not the ones built into the hardware, the bench streams them in
through the design's weight port before the first sequence (``pack-weights``' beats), and
the results must be those of QMODEL.

Writes the bit-accuracy report R.json (see docs/report.md; ``lstmfpga report R.json``
renders it). ``--spec SPEC`` adds the float reference (fixed-vs-float error, float
accuracy); it must be the spec the model was quantized from (its content hash is checked
against the model's spec_hash; a model quantized before hashes were recorded is accepted
and the report says the spec was not checked). ``--labels Y.npy`` (one integer class in
0..out-1 per sequence, models with a ``last`` head) adds accuracies.

``--h0c0 INIT.npz`` streams initial states ``h0`` ``(L*D, batch, H_out)`` and ``c0``
``(L*D, batch, H)`` (floats, as for ``predict --h0c0``) into hardware built with
``initial_state``; ``--states S.npz`` builds it with ``with_states``, checks its final
states too and writes them (integer codes ``h_n``, ``c_n``, as ``predict --raw --states``).

``--mode stream`` simulates the streaming accelerator (unidirectional models; each step's
output leaves as soon as it is computed; no ``--max-seq-len``); ``--stateful`` (with
``--mode stream``) treats the rows of X as consecutive segments of one
signal, the state carried from row b to row b+1 (``--h0c0``: row 0's initial state): the
result must equal the golden model on the concatenated signal. ``--beat-elements K`` (with
``--rtl``): must be the AXI design's elements per beat.

``--stall P`` idles ``tvalid`` and drops ``tready`` with probability P (seeded by
``--seed``). Each sequence may take a cycle budget derived from the cycle model (4 x its
expected cycles + 1000); a sequence over budget ends the run with a one-line error.
``--cycle-budget N`` sets the budget to N cycles per sequence instead. ``--waves
FILE.vcd|.fst`` writes a waveform (amaranth: VCD only). ``--dump OUT.npz`` writes ``rtl``
and ``golden`` prediction codes in the shape ``predict --raw`` writes (with ``--states``
also ``rtl_h_n``, ``rtl_c_n``, ``golden_h_n``, ``golden_c_n``), ``float`` (with --spec)
and ``scale`` (value = code * scale). Exits 1 after writing the report if any output
mismatched or the design raised its error flag.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lstmfpga.commands._common import (
    add_buffers,
    add_command,
    add_datapath,
    add_inputs_argument,
    add_mode,
    add_qmodel_argument,
    check_buffers,
    check_mode,
    load_npy,
    load_npz,
    save_npz,
)
from lstmfpga.errors import CLIError
from lstmfpga.pipeline import simulate_model
from lstmfpga.sim.cocotb_build import SIMULATORS

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "simulate",
        "simulate the hardware on inputs and write a bit-accuracy report",
        __doc__,
        run,
    )
    add_qmodel_argument(parser)
    add_inputs_argument(parser)
    parser.add_argument("--labels", metavar="Y.npy", help="class per sequence (last heads)")
    parser.add_argument("--spec", metavar="SPEC", help="float spec for fixed-vs-float errors")
    # Values are parsed in run() (not by argparse types), so that a bad one is a one-line
    # ``lstmfpga: error:`` like every other bad input.
    parser.add_argument(
        "--sim", required=True, metavar="SIM", help=f"simulator: {', '.join(SIMULATORS)}"
    )
    add_datapath(parser, typed=False, cells=True)
    parser.set_defaults(lanes=None, simd=None)  # 8 and 1, or the --rtl design's
    parser.add_argument(
        "--rtl", metavar="RTLDIR",
        help="run this generated design (its Verilog) instead of generating one; new weights "
        "are loaded through its weight port",
    )  # fmt: skip
    parser.add_argument(
        "--max-seq-len", metavar="T", help="longest sequence (default: that of X; sequence mode)"
    )
    add_mode(parser)
    add_buffers(parser)
    parser.add_argument(
        "--stateful", action="store_true",
        help="with --mode stream: the rows of X are consecutive segments of one signal",
    )  # fmt: skip
    parser.add_argument(
        "--beat-elements", type=int, default=None, metavar="K",
        help="with --rtl: must be the design's elements per beat (default: the design's)",
    )  # fmt: skip
    parser.add_argument("--h0c0", metavar="INIT.npz", help="initial states h0, c0 (floats)")
    parser.add_argument(
        "--states", metavar="S.npz", help="check the final states and write them (h_n, c_n codes)"
    )
    parser.add_argument(
        "--stall", default="0", metavar="P",
        help="probability of an idle/back-pressured beat on both streams (default 0)",
    )  # fmt: skip
    parser.add_argument("--seed", default="0", metavar="N", help="stall seed (default 0)")
    parser.add_argument(
        "--cycle-budget", metavar="N",
        help="cycles each sequence may take (default: 4 x the cycle model's + 1000)",
    )  # fmt: skip
    parser.add_argument("--waves", metavar="FILE", help="write a .vcd or .fst waveform")
    parser.add_argument(
        "--dump", metavar="OUT.npz", help="write rtl/golden codes (predict --raw shapes)"
    )
    parser.add_argument("--build-dir", metavar="DIR", help="simulator build cache directory")
    parser.add_argument(
        "--jobs", metavar="N",
        help="simulator processes sharing the sequences (default: the number of CPUs)",
    )  # fmt: skip
    parser.add_argument("--report", required=True, metavar="R.json", help="report to write")


def _integer(text, what: str, rule: str, low: int, high: int | None = None) -> int | None:
    """``text`` (an option's value, or None when not given) as an integer in ``low..high``."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise CLIError(f"{what} must be {rule}, not {text!r}")
    return value


def check_output(path: str | Path, what: str) -> Path:
    """``path`` can be written: its folder exists and it is not itself a folder (checked
    before any work, so that a typo does not cost a simulation)."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{what} {path} is a directory, not a file")
    if not path.parent.is_dir():
        raise CLIError(f"{what} {path}: no such directory {str(path.parent)!r}")
    return path


def _check_rtl(args: argparse.Namespace) -> None:
    """``--rtl`` is a design folder, simulated in Icarus or Verilator."""
    if args.sim == "amaranth":
        raise CLIError(
            "--rtl runs the design folder's Verilog: --sim must be icarus or verilator, "
            "not 'amaranth'"
        )
    if not (Path(args.rtl) / "manifest.json").is_file():
        raise CLIError(f"--rtl {args.rtl} must be a design folder with manifest.json")


def run(args: argparse.Namespace) -> int:
    from lstmfpga.quant.model import QuantizedModel
    from lstmfpga.sim.report import render_text, save_report

    options = _options(args)
    model = QuantizedModel.load(args.qmodel)
    check_mode(args.mode, model)
    inputs = _inputs(args, model, options["max_seq_len"])
    report, arrays = simulate_model(
        model,
        simulator=args.sim,
        waves=args.waves,
        build_dir=args.build_dir,
        with_states=args.states is not None,
        progress=True if sys.stderr.isatty() else None,
        rtl=args.rtl,
        mode=args.mode,
        stateful=args.stateful,
        beat_elements=args.beat_elements,
        **options,
        **inputs,
    )
    save_report(report, args.report)
    written = [args.report]
    if args.dump is not None:
        save_npz(args.dump, **arrays)
        written.append(args.dump)
    if args.states is not None:
        c_n = {"c_n": arrays["rtl_c_n"]} if "rtl_c_n" in arrays else {}  # a GRU: h_n only
        save_npz(args.states, h_n=arrays["rtl_h_n"], **c_n)
        written.append(args.states)
    print(render_text(report), end="")
    print(f"wrote {', '.join(map(str, written))}")
    return 0 if report["bit_exact"] else 1


def _options(args: argparse.Namespace) -> dict:
    """The options' values for :func:`simulate_model` (``lanes``, ``max_seq_len``, ``stall``,
    ...), once every option that needs no model or file is checked and the output paths can
    be written (one-line errors naming the option)."""
    if args.sim not in SIMULATORS:
        raise CLIError(f"--sim must be one of {', '.join(SIMULATORS)}, not {args.sim!r}")
    if args.rtl is not None:
        _check_rtl(args)
    if args.beat_elements is not None and not args.rtl:
        raise CLIError("--beat-elements needs --rtl (an AXI design generated with --beat-elements)")
    if args.mode not in ("sequence", "stream"):
        raise CLIError(f"--mode must be 'sequence' or 'stream', not {args.mode!r}")
    if args.mode == "stream" and args.max_seq_len is not None:
        raise CLIError(
            f"--max-seq-len {args.max_seq_len} does not apply to --mode stream (sequences of "
            "any length)"
        )
    if args.stateful and args.mode != "stream":
        raise CLIError("--stateful needs --mode stream (the state is carried across rows of X)")
    if args.stateful and args.spec is not None:
        raise CLIError("--stateful with --spec: the float reference runs whole sequences")
    options = {
        "lanes": _integer(args.lanes, "--lanes", "a positive integer", 1),
        "max_seq_len": _integer(args.max_seq_len, "--max-seq-len", "a positive integer", 1),
        "seed": _integer(args.seed, "--seed", "an integer in 0..2**32-1", 0, 2**32 - 1),
        "cycle_budget": _integer(
            args.cycle_budget, "--cycle-budget", "a positive number of cycles", 1
        ),
        "jobs": _integer(args.jobs, "--jobs", "a positive integer", 1),
        "simd": _integer(args.simd, "--simd", "a positive integer", 1),
        "cells": _integer(args.cells, "--cells", "a positive integer", 1),
        "buffers": check_buffers(args.buffers, args.mode),
    }
    try:
        stall = float(args.stall)
    except ValueError:
        stall = math.nan
    if not 0 <= stall < 1:  # NaN too
        raise CLIError(f"--stall must be a probability in [0, 1), not {args.stall!r}")
    outputs = {"--report": args.report, "--dump": args.dump, "--states": args.states}
    for what, path in outputs.items():
        if path is not None:
            check_output(path, what)
    if args.waves is not None:
        check_output(args.waves, "--waves")
        if args.sim == "amaranth" and not str(args.waves).endswith(".vcd"):
            raise CLIError(f"--waves with --sim amaranth must be a .vcd file, not {args.waves}")
    return options | {"stall": stall}


def _inputs(args: argparse.Namespace, model, max_seq_len: int | None) -> dict:
    """The arrays and the spec the options name (``x``, ``labels``, ``h0``, ``c0``,
    ``spec``), read and checked against ``max_seq_len``."""
    x = load_npy(args.inputs, "--inputs")
    if x.ndim == 3 and max_seq_len is not None and max_seq_len < x.shape[1]:
        raise CLIError(
            f"--max-seq-len {max_seq_len} is shorter than the inputs' {x.shape[1]} steps"
        )
    labels = None if args.labels is None else load_npy(args.labels, "--labels")
    h0 = c0 = None
    if args.h0c0 is not None:
        keys = ("h0",) if model.cell == "gru" else ("h0", "c0")  # a GRU has no c0
        states = load_npz(args.h0c0, "--h0c0", keys)
        h0, c0 = states["h0"], states.get("c0")
    spec = None
    if args.spec is not None:
        from lstmfpga.export.spec import ModelSpec

        spec = ModelSpec.load(args.spec)
    return {"x": x, "labels": labels, "h0": h0, "c0": c0, "spec": spec}
