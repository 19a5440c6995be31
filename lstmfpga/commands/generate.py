"""``lstmfpga generate QMODEL [--lanes P] [--simd S] [--cells V] [--max-seq-len T]
[--mode sequence|stream] -o OUTDIR``: Verilog for a quantized model (``P`` rows x ``S``
columns per cycle: ``P * S`` MVU multipliers; ``V`` parallel activation + cell units,
default the fewest that keep the MVU busy).

Writes into OUTDIR the top-level Verilog ``<name>.v`` (AXI4-Stream ports ``s_axis_t*`` /
``m_axis_t*``, ``clk``, synchronous ``rst``), the weight and table contents (inline, or as
``$readmemh`` files with ``--memories readmemh``), and ``manifest.json`` / ``manifest.md``
(ports, formats, latency and cycle model, memory sizes, multipliers, RAM bits).
``--mode stream`` builds the streaming accelerator (unidirectional models): each step's
output leaves as soon as it is computed, sequences of any length (no ``--max-seq-len``),
state kept across sequences with the ``keep_state`` input, reset before a step by
``s_axis_tuser`` (docs/accelerator.md); the manifest records ``mode`` and ``stream_cycles``
(per-step latency and steady interval).
``--beat-elements K`` (with ``--top axi``): K elements per stream beat (docs/registers.md).
``--top axi`` wraps the accelerator in :class:`lstmfpga.hw.axi_top.AXITop` instead (top
``lstm_axi``: whole-byte AXI4-Stream data, an AXI4-Lite register block with ID, counters,
sticky errors and soft reset, ``docs/registers.md``), which ``lstmfpga.runtime`` drives.

Refused before the design is built: ``--lanes`` outside 1..4*hidden_size, a
``--simd`` outside 1..the longest matrix row, ``--cells`` outside 1..hidden_size,
``--max-seq-len`` outside 1..2**24, a ``--name`` that is not an identifier, an OUTDIR that
is a file or holds another artifact, and a design whose memories need more RAM bits than
the largest supported device has. An OUTDIR holding an earlier design is reused: the
earlier design's Verilog and .hex files are removed once the new ones are written.
"""

from __future__ import annotations

import argparse

from lstmfpga.commands._common import (
    add_buffers,
    add_command,
    add_datapath,
    add_mode,
    add_qmodel_argument,
    check_buffers,
    check_mode,
)
from lstmfpga.errors import CLIError, SynthesisError


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "generate", "generate Verilog for a quantized model", __doc__, run
    )
    add_qmodel_argument(parser)
    add_datapath(parser, cells=True)
    parser.add_argument(
        "--max-seq-len", type=int, default=None, metavar="T",
        help="longest sequence (default 64; sequence mode only)",
    )  # fmt: skip
    add_mode(parser)
    add_buffers(parser)
    parser.add_argument(
        "--memories", choices=("inline", "readmemh"), default="inline",
        help="memory contents inline in the Verilog, or in $readmemh files (default inline)",
    )  # fmt: skip
    for flag, text in (("--with-states", "also stream out h_n, c_n"),
                       ("--initial-state", "every sequence starts with h0, c0")):  # fmt: skip
        parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument(
        "--top",
        choices=("stream", "axi"),
        default="stream",
        help="stream: the accelerator's AXI4-Stream ports (default); axi: with AXI4-Lite "
        "registers and whole-byte streams (docs/registers.md)",
    )
    parser.add_argument(
        "--beat-elements",
        type=int,
        default=1,
        metavar="K",
        help="with --top axi: elements per s_axis/m_axis beat, in byte-aligned lanes, tkeep "
        "on a sequence's partial last beat (1..64, default 1)",
    )
    parser.add_argument(
        "--name", help="top module name (default lstm_accel, or lstm_axi with --top axi)"
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR")


#: Longest ``--max-seq-len`` accepted before any other check (the RAM check refuses far
#: shorter ones for all but the smallest models).
MAX_SEQ_LEN = 1 << 24


def run(args: argparse.Namespace) -> None:
    from lstmfpga.hw.verilog import check_output, write_design
    from lstmfpga.quant.model import QuantizedModel

    # Cheap checks first: options, the output folder, then the model and its RAM budget,
    # all before the design is elaborated (which takes minutes for a large memory).
    max_seq_len, name = _check_options(args)
    try:
        check_output(args.output)
    except ValueError as error:
        raise CLIError(f"-o: {error}") from None
    model = QuantizedModel.load(args.qmodel)
    check_mode(args.mode, model)
    acc = _accelerator(args, model, max_seq_len)
    if args.top == "axi":
        from lstmfpga.hw.axi_top import write_axi_design

        info = write_axi_design(acc, args.output, memories=args.memories, name=name,
                                beat_elements=args.beat_elements)  # fmt: skip
    else:
        info = write_design(acc, args.output, memories=args.memories, name=name)
    _print_summary(info, acc.mode, args.output, model.cell)


def _check_options(args: argparse.Namespace) -> tuple[int, str]:
    """``(max_seq_len, top name)`` once every option that needs no model is checked
    (``args.buffers`` becomes an integer or ``None``)."""
    from lstmfpga.hw.accelerator import MODES
    from lstmfpga.hw.beat_format import MAX_BEAT_ELEMENTS
    from lstmfpga.synth import check_identifier

    if not 1 <= args.lanes:
        raise CLIError(f"--lanes must be a positive integer, not {args.lanes}")
    if not 1 <= args.simd:
        raise CLIError(f"--simd must be a positive integer, not {args.simd}")
    if args.mode not in MODES:
        raise CLIError(f"--mode must be 'sequence' or 'stream', not {args.mode!r}")
    if args.max_seq_len is not None and args.mode == "stream":
        raise CLIError(
            f"--max-seq-len {args.max_seq_len} does not apply to --mode stream (sequences of "
            "any length)"
        )
    args.buffers = check_buffers(args.buffers, args.mode)
    max_seq_len = 64 if args.max_seq_len is None else args.max_seq_len
    if not 1 <= max_seq_len <= MAX_SEQ_LEN:
        raise CLIError(f"--max-seq-len must be an integer in 1..{MAX_SEQ_LEN}, not {max_seq_len}")
    if not 1 <= args.beat_elements <= MAX_BEAT_ELEMENTS:
        raise CLIError(
            f"--beat-elements must be an integer in 1..{MAX_BEAT_ELEMENTS}, not "
            f"{args.beat_elements}"
        )
    if args.beat_elements != 1 and args.top != "axi":
        raise CLIError(
            f"--beat-elements {args.beat_elements} needs --top axi (the plain top carries one "
            "element per beat)"
        )
    name = args.name or ("lstm_axi" if args.top == "axi" else "lstm_accel")
    check_identifier(name, "--name")
    return max_seq_len, name


def _accelerator(args: argparse.Namespace, model, max_seq_len: int):
    """The accelerator the options ask for, once its lanes, SIMD and cells fit the model and
    its memories fit the RAM budget (still not elaborated)."""
    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.layout import WeightLayout
    from lstmfpga.synth import check_ram_fits

    try:
        WeightLayout.of(model, args.lanes)  # the lanes rule of the hardware
    except ValueError as error:
        raise CLIError(f"--lanes: {error}") from None
    try:
        WeightLayout.of(model, args.lanes, args.simd)  # the simd rule
    except ValueError as error:
        raise CLIError(f"--simd: {error}") from None
    try:
        acc = LSTMAccelerator(
            model,
            lanes=args.lanes,
            simd=args.simd,
            cells=args.cells,
            max_seq_len=max_seq_len,
            with_states=args.with_states,
            initial_state=args.initial_state,
            mode=args.mode,
            buffers=args.buffers,
        )
    except ValueError as error:
        raise CLIError(f"--cells: {error}") from None
    ram_bits = sum(mem["width"] * mem["depth"] for mem in acc.memory_plan())
    try:
        check_ram_fits(
            ram_bits,
            f"a design for {args.qmodel} with --max-seq-len {max_seq_len}"
            if args.mode == "sequence"
            else f"a stream-mode design for {args.qmodel}",
        )
    except SynthesisError:
        acc._MustUse__silence = True  # refused before elaboration: not an unused design
        raise
    return acc


def _print_summary(info: dict, mode: str, output, cell: str = "lstm") -> None:
    """The design in three lines: datapath and resources (a GRU's top named with its cell),
    cycles, the files written."""
    multipliers = sum(m["count"] for m in info["multipliers"])
    top = info["top"] + (" (GRU)" if cell == "gru" else "")
    if mode == "stream":
        stream = info["stream_cycles"]
        print(
            f"{top}: stream mode, {info['lanes']} lanes x simd {info['simd']}, "
            f"{info['cells']} cell units, {info['ram_bits']} RAM bits, {multipliers} multipliers"
        )
        print(
            f"per-step latency {stream['latency']} cycles (input in -> output out), steady "
            f"{stream['interval']} cycles per step"
        )
    else:
        cycles = info["cycles"]
        print(
            f"{top}: {info['lanes']} lanes x simd {info['simd']}, {info['cells']} cell "
            f"units, max_seq_len {info['max_seq_len']}, {info['ram_bits']} RAM bits, "
            f"{multipliers} multipliers"
        )
        print(
            f"layer-0 step: {cycles['step']['0']} cycles "
            f"(ideal {cycles['ideal_step']['0']}); per sequence: "
            + ", ".join(f"T={T}: {n}" for T, n in cycles["per_sequence"].items())
        )
    print(f"wrote {', '.join(info['files'])} to {output}")
