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
import time

import numpy as np

from lstmfpga.commands._common import description, load_npy, save_npz
from lstmfpga.errors import CLIError

__all__ = ["SIMULATORS", "register", "run", "simulate_model"]

SIMULATORS = ("amaranth", "icarus", "verilator")


def simulate_model(
    model,
    x,
    *,
    simulator: str,
    lanes: int = 8,
    max_seq_len: int | None = None,
    stall: float = 0.0,
    seed: int = 0,
    waves=None,
    build_dir=None,
    spec=None,
    labels=None,
    progress=None,
):
    """Quantize ``x``, run ``simulator`` and the golden model, build the report.

    Returns ``(report, arrays)``; ``arrays`` holds ``rtl``, ``golden`` (per-sequence element
    codes, ``(B, n)``), ``float`` (the spec's prediction, when ``spec`` is given) and
    ``scale``.
    """
    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.cycles import CycleModel
    from lstmfpga.quant import golden
    from lstmfpga.sim.report import build_report
    from lstmfpga.sim.streams import StreamGeometry, pack_outputs

    if simulator not in SIMULATORS:
        raise CLIError(f"--sim must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if not 0 <= stall < 1:
        raise CLIError(f"--stall must be in [0, 1), not {stall}")
    if simulator == "amaranth" and waves is not None and not str(waves).endswith(".vcd"):
        raise CLIError(f"--waves with --sim amaranth must be a .vcd file, not {waves}")
    if simulator != "amaranth":
        from lstmfpga.sim.cocotb_flow import check_simulator

        check_simulator(simulator)  # before building anything
    sat: dict = {}
    x_codes = golden.quantize_inputs(model, x, sat)
    B, T, _ = x_codes.shape
    max_seq_len = T if max_seq_len is None else max_seq_len
    if max_seq_len < T:
        raise CLIError(f"--max-seq-len {max_seq_len} is shorter than the inputs' {T} steps")
    acc = LSTMAccelerator(model, lanes=lanes, max_seq_len=max_seq_len)
    expected = golden.run(model, x_codes)
    if simulator == "amaranth":
        from amaranth import __version__ as amaranth_version

        from lstmfpga.sim.amaranth_sim import run_amaranth

        started = time.perf_counter()
        result = run_amaranth(
            acc, x_codes, in_stall=stall, out_stall=stall, seed=seed,
            waves=None if waves is None else str(waves),
        )  # fmt: skip
        result.wall_seconds = time.perf_counter() - started
        version = amaranth_version
    else:
        from lstmfpga.sim.cocotb_flow import run_cocotb

        result = run_cocotb(
            acc, x_codes, simulator=simulator, in_stall=stall, out_stall=stall, seed=seed,
            waves=waves, build_dir=build_dir, progress=progress,
        )  # fmt: skip
        version = result.meta["simulator_version"]
    float_prediction = None
    if spec is not None:
        from lstmfpga.export import reference

        for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size"):
            if getattr(spec, name) != getattr(model, name):
                raise CLIError(
                    f"--spec does not match the quantized model: {name} is "
                    f"{getattr(spec, name)!r}, the model's {getattr(model, name)!r}"
                )
        float_prediction = reference.forward(spec, x).prediction
    geometry = StreamGeometry.of(model)
    report = build_report(
        model=model,
        geometry=geometry,
        T=T,
        rtl=result.outputs,
        golden=expected,
        simulator=simulator,
        simulator_version=version,
        lanes=lanes,
        max_seq_len=max_seq_len,
        run_cycles=result.cycles,
        total_cycles=result.total_cycles,
        wall_seconds=result.wall_seconds,
        cycle_model=CycleModel.of(acc),
        rtl_error=result.error,
        float_prediction=float_prediction,
        labels=labels,
        input_saturation=sat.get("x", 0),
        settings={"stall": stall, "seed": seed},
    )
    n = geometry.output_length(T)
    rtl = np.full((B, n), 0, dtype=np.int64)
    for b, out in enumerate(result.outputs):
        rtl[b, : min(n, out.size)] = out[:n]
    arrays = {
        "rtl": rtl,
        "golden": np.stack([pack_outputs(geometry, expected.prediction, b) for b in range(B)]),
        "scale": np.float64(model.output_format.lsb),
    }
    if float_prediction is not None:
        arrays["float"] = np.asarray(float_prediction, dtype=np.float64)
    return report, arrays


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
