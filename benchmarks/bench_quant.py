"""Quantization benchmarks: accuracy on a real task, table errors, tolerance, golden-model speed.

    python benchmarks/bench_quant.py            # full sizes; rewrites the "quant" section
                                                # of benchmarks/RESULTS.md
    python benchmarks/bench_quant.py --smoke    # tiny sizes, prints only (what CI runs)
    python benchmarks/bench_quant.py --speed    # only the speed case (about a minute);
                                                # rewrites only the speed part of "quant"

Sections (all measured in one run, on this machine):

* digits: the ``lstmfpga.digits`` LSTM classifier (seed 0, hidden 32), test accuracy of
  the float64 reference and of the golden model with every preset (``q16``, ``w8a16``,
  ``w8a8``, ``w4a8``; calibrated on 256 training images);
* activation tables: max/mean error in output LSBs over every input code, per preset and
  table, for the formats the digits model calibrated, and the worst over every
  ``s16.f`` input format (``f`` = 0..15) that calibration can choose;
* tolerance: ``max |golden - float| / max(1, max |float|)`` over random models
  (``lstmfpga.testing.random_spec``: 1-3 layers, uni/bidirectional, projections, with and
  without bias, head last/all/none, initial states or zeros, inputs N(0, 1), calibrated on
  the data they run on), per preset: median, 99th percentile and maximum;
* speed: ``golden.run`` against ``torch.nn.LSTM`` (float32, ``inference_mode``) on the same
  inputs, batch 256, 50 steps, input 16, hidden 64: the median of interleaved runs, and the
  BLAS kernel NumPy ran (OpenBLAS picks it from the CPU unless ``OPENBLAS_CORETYPE`` is set;
  the benchmark reports the setting and changes nothing).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from results_md import (  # benchmarks/results_md.py
    benchmark_parser,
    command_line,
    publish_run,
    results_path,
    update_section,
)

from lstmfpga.export.reference import forward
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.fixed import FixedFormat
from lstmfpga.testing import random_geometry, random_inputs, random_spec

SECTION = "quant"
PRESETS = ("q16", "w8a16", "w8a8", "w4a8")


# -- digits ----------------------------------------------------------------------------------------
def bench_digits(smoke: bool) -> tuple[list[str], dict]:
    from lstmfpga import digits
    from lstmfpga.export.torch_loader import from_module

    epochs = 2 if smoke else 30
    start = time.perf_counter()
    model, (x_train, _, x_test, y_test) = digits.train_digits_model(
        seed=0, hidden=32, epochs=epochs
    )
    train_time = time.perf_counter() - start
    spec = from_module(model, head="last")
    float_acc = digits.accuracy(forward(spec, x_test).head, y_test)
    lines = [
        "### Digits classifier (lstmfpga.digits)",
        "",
        (
            f"LSTM(8 -> 32) + Linear(32 -> 10) on the last of 8 row steps, seed 0, {epochs} epochs "
            f"({train_time:.1f} s to train); {len(y_test)} test images; calibration on 256 "
            "training images."
        ),
        "",
        "| model | test accuracy | drop vs float | saturated values |",
        "|---|---|---|---|",
        f"| float64 reference | {float_acc:.2f}% | | |",
    ]
    models = {}
    for preset in PRESETS:
        qmodel = quantize(spec, x_train[:256], QuantConfig.preset(preset))
        logits, result = golden.predict(qmodel, x_test)
        acc = digits.accuracy(logits, y_test)
        lines.append(
            f"| golden {preset} | {acc:.2f}% | {float_acc - acc:.2f} points | "
            f"{sum(result.saturation.values())} |"
        )
        models[preset] = qmodel
    return lines, models


# -- tables ----------------------------------------------------------------------------------------
def bench_tables(models: dict) -> list[str]:
    lines = [
        "### Activation tables",
        "",
        (
            "Error against float64 sigmoid/tanh over every input code, in output LSBs (gate "
            "format s16.14, LSB 2^-14). Top: the digits model's tables; bottom: the worst over "
            "every input format s16.0 .. s16.15."
        ),
        "",
        "| preset | table | input -> output | entries | ROM bits | max LSB | mean LSB |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset, model in models.items():
        for name, table in model.tables.items():
            err = table.error()
            lines.append(
                f"| {preset} | {name} | {table.in_fmt} -> {table.out_fmt} | {table.size + 1} | "
                f"{table.rom_bits} | {err.max_lsb:.3f} | {err.mean_lsb:.3f} |"
            )
    lines += [
        "",
        "| preset | function | worst max LSB | at input | mean LSB there |",
        "|---|---|---|---|---|",
    ]
    for preset in PRESETS:
        config = QuantConfig.preset(preset)
        for function in ("sigmoid", "tanh"):
            rule = getattr(config, function)
            worst = None
            for frac in range(16):
                table = rule.table(function, FixedFormat(16, frac), FixedFormat(16, 14))
                err = table.error()
                if worst is None or err.max_lsb > worst[0].max_lsb:
                    worst = (err, table.in_fmt)
            lines.append(
                f"| {preset} | {function} | {worst[0].max_lsb:.3f} | {worst[1]} | "
                f"{worst[0].mean_lsb:.3f} |"
            )
    return lines


# -- tolerance -------------------------------------------------------------------------------------
def tolerance_sweep(count: int, max_seq: int, seed: int = 123) -> dict[str, np.ndarray]:
    """Relative errors ``max |golden - float| / max(1, max |float|)`` per preset."""
    rng = np.random.default_rng(seed)
    errors = {preset: [] for preset in PRESETS}
    for index in range(count):
        kwargs = random_geometry(rng, max_input_size=8, max_hidden_size=16, max_layers=3)
        spec = random_spec(index, **kwargs)
        batch, seq = 8, int(rng.integers(1, max_seq + 1))
        x = random_inputs(index, batch, seq, spec.input_size)
        h0 = c0 = None
        if rng.integers(2):
            LD = spec.num_layers * spec.num_directions
            h0 = np.tanh(rng.normal(0, 0.5, (LD, batch, spec.output_size)))
            c0 = rng.normal(0, 0.5, (LD, batch, spec.hidden_size))
        ref = forward(spec, x, h0, c0).prediction
        for preset in PRESETS:
            model = quantize(spec, x, QuantConfig.preset(preset), h0=h0, c0=c0)
            y, _ = golden.predict(model, x, h0, c0)
            errors[preset].append(np.abs(y - ref).max() / max(1.0, np.abs(ref).max()))
    return {preset: np.array(v) for preset, v in errors.items()}


def bench_tolerance(smoke: bool) -> list[str]:
    count, max_seq = (20, 8) if smoke else (1000, 30)
    start = time.perf_counter()
    errors = tolerance_sweep(count, max_seq)
    elapsed = time.perf_counter() - start
    lines = [
        "### Golden model vs float64 reference",
        "",
        (
            f"`max |golden - float| / max(1, max |float|)` over {count} random models "
            f"(sequences of 1..{max_seq} steps, batch 8; {elapsed:.0f} s)."
        ),
        "",
        "| preset | median | 99th percentile | max |",
        "|---|---|---|---|",
    ]
    for preset, e in errors.items():
        lines.append(
            f"| {preset} | {np.median(e):.2e} | {np.quantile(e, 0.99):.2e} | {e.max():.2e} |"
        )
    return lines


# -- speed -----------------------------------------------------------------------------------------
def bench_speed(smoke: bool) -> tuple[list[str], float, dict]:
    """Golden model vs torch, interleaved; also, in the same loop, the golden model on the
    w8a8 preset (float32 gate product), with NumPy's BLAS instead of torch's for its float64
    product, on the NumPy path, and the exact float64 gate product alone on either BLAS (the
    floor: one ``(B, K + H + 1) x (K + H + 1, 4H)`` product per step, what every q16 step
    does)."""
    import torch
    from threadpoolctl import threadpool_limits

    from lstmfpga.quant import datapath_jit

    batch, seq, inputs, hidden, repeats = (8, 5, 4, 8, 3) if smoke else (256, 50, 16, 64, 21)
    spec = random_spec(0, input_size=inputs, hidden_size=hidden)
    x = random_inputs(0, batch, seq, inputs)
    model = quantize(spec, x[:32])
    codes = golden.quantize_inputs(model, x)
    model8 = quantize(spec, x[:32], QuantConfig.preset("w8a8"))
    codes8 = golden.quantize_inputs(model8, x)
    lstm = torch.nn.LSTM(inputs, hidden, batch_first=True)
    xt = torch.as_tensor(x, dtype=torch.float32)
    rng = np.random.default_rng(0)
    v = rng.integers(-(2**15), 2**15, (batch, inputs + hidden + 1)).astype(np.float64)
    wt = rng.integers(-(2**15), 2**15, (inputs + hidden + 1, 4 * hidden)).astype(np.float64)
    acc = np.empty((batch, 4 * hidden))
    tv, twt, tacc = torch.from_numpy(v), torch.from_numpy(wt), torch.from_numpy(acc)

    def product():
        for _ in range(seq):
            np.matmul(v, wt, out=acc)

    def torch_product():
        for _ in range(seq):
            torch.mm(tv, twt, out=tacc)

    def numpy_path():
        os.environ["LSTMFPGA_NO_JIT"] = "1"
        try:
            golden.run(model, codes)
        finally:
            del os.environ["LSTMFPGA_NO_JIT"]

    def openblas():
        datapath_jit.TORCH_BLAS = False
        try:
            golden.run(model, codes)
        finally:
            datapath_jit.TORCH_BLAS = True

    runs = {
        "golden": lambda: golden.run(model, codes),
        "torch": lambda: lstm(xt),
        "golden w8a8": lambda: golden.run(model8, codes8),
        "float64 product": product,
        "float64 product torch": torch_product,
        "golden openblas": openblas,
        "golden numpy": numpy_path,
    }
    path = type(golden.datapath(model, batch * seq * hidden)).__name__
    default_threads = torch.get_num_threads()
    load_before = _load()
    rows, ratios, floors = [], {}, {}
    for threads in sorted({1, default_threads}):
        wall = {name: [] for name in runs}
        cpu = {name: [] for name in runs}
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads), torch.inference_mode():
            for _ in range(2):  # warm up all
                for run in runs.values():
                    run()
            for _ in range(repeats):
                for name, run in runs.items():
                    start, start_cpu = time.perf_counter(), time.process_time()
                    run()
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
        torch.set_num_threads(default_threads)
        med = {name: statistics.median(t) for name, t in wall.items()}
        cmed = {name: statistics.median(t) for name, t in cpu.items()}
        g, t, gc, tc = med["golden"], med["torch"], cmed["golden"], cmed["torch"]
        ratios[threads] = g / t
        floors[threads] = {name: (med[name] / t, cmed[name] / tc) for name in runs}
        extra = " | ".join(
            f"{cmed[name] * 1e3:.1f} ms ({cmed[name] / tc:.1f}x)"
            for name in ("float64 product", "float64 product torch", "golden w8a8",
                         "golden openblas", "golden numpy")
        )  # fmt: skip
        rows.append(
            f"| {threads} | {g * 1e3:.1f} ms | {t * 1e3:.1f} ms | **{g / t:.1f}x** | "
            f"{min(wall['golden']) * 1e3:.1f} ms | {min(wall['torch']) * 1e3:.1f} ms | "
            f"{min(wall['golden']) / min(wall['torch']):.1f}x | {gc * 1e3:.1f} ms | "
            f"{tc * 1e3:.1f} ms | {gc / tc:.1f}x | {extra} |"
        )
    load = f"load averages (1, 5, 15 min) {load_before} before, {_load()} after"
    lines = _speed_lines(rows, batch, seq, inputs, hidden, repeats, path, smoke, load)
    return lines, ratios[1], floors[1]


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _speed_lines(rows, batch, seq, inputs, hidden, repeats, path, smoke, load) -> list[str]:
    """The "Golden model speed" section: what was timed, and the table ``rows``."""
    import torch

    blas = _blas_kernel()
    return [
        "### Golden model speed",
        "",
        (
            f"`golden.run` (q16, integer codes in and out) against `torch.nn.LSTM` (float32, "
            f"`inference_mode`): batch {batch}, {seq} steps, input {inputs}, hidden {hidden}; "
            f"{repeats} interleaved runs after 2 warm-up runs each, with the BLAS (NumPy and "
            f"torch) and torch thread counts limited alike; torch {torch.__version__}, NumPy "
            f"{np.__version__}, {os.cpu_count()} CPUs ({platform.machine()}), {load} (the "
            f"machine is shared with other engineers' jobs, so single runs vary; the medians "
            f"of interleaved runs are the comparison; the CPU columns are process CPU time, "
            f"less disturbed by other jobs). NumPy's BLAS: {blas}; torch's: MKL. The golden "
            "model's element-wise work is single-threaded in any case. In the same loop, as "
            "CPU medians and their ratio to torch's: the exact float64 gate product alone "
            f"({seq} products of {batch} x {inputs + hidden + 1} by {inputs + hidden + 1} x "
            f"{4 * hidden}, what the q16 steps multiply: the floor of any exact float64 "
            "datapath) with NumPy's `matmul` and with `torch.mm`; `golden.run` on the same "
            "model quantized with `w8a8` (its accumulator has at most 25 bits, so its gate "
            "product is float32, in NumPy); `golden.run` on q16 with its float64 product on "
            "NumPy's BLAS (`datapath_jit.TORCH_BLAS = False`: what a process that has not "
            "imported torch gets); and with `LSTMFPGA_NO_JIT=1` (the NumPy float path). The "
            f"golden columns ran {path} (numba {_numba_version()})."
        ),
        "",
        (
            "| threads | golden (median) | torch (median) | ratio | golden (fastest) | torch "
            "(fastest) | ratio | golden CPU (median) | torch CPU (median) | CPU ratio | "
            "float64 product alone, NumPy (CPU) | float64 product alone, torch.mm (CPU) | "
            "golden w8a8 (CPU) | golden, NumPy's BLAS (CPU) | golden NumPy path (CPU) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "First call: not measured (--smoke)." if smoke else _first_call(),
    ]


def _numba_version() -> str:
    try:
        import numba
    except ImportError:
        return "not installed"
    return numba.__version__


FIRST_CALL = """
import resource, time
import numpy as np
from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.testing import random_inputs, random_spec
spec = random_spec(0, input_size=16, hidden_size=64)
x = random_inputs(0, 256, 50, 16)
model = quantize(spec, x[:32])
codes = golden.quantize_inputs(model, x)
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
start = cpu(); golden.run(model, codes); first = cpu() - start
start = cpu(); golden.run(model, codes); print(first, cpu() - start)
"""


def _first_call() -> str:
    """The first ``golden.run`` of a process (numba's import, and its compilation or the
    loading of its cache) against the second, in fresh processes, as a sentence."""
    import subprocess
    import tempfile

    def measure(env: dict) -> tuple[float, float]:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **env}
        out = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        first, second = (float(v) for v in out.split())
        return first, second

    with tempfile.TemporaryDirectory() as cache:
        cold = measure({"NUMBA_CACHE_DIR": cache})
        warm = measure({"NUMBA_CACHE_DIR": cache})
    plain = measure({"LSTMFPGA_NO_JIT": "1"})
    return (
        "First `golden.run` of a process against its second (the same q16 run, fresh "
        "processes, one BLAS thread, CPU time): the compiled path costs "
        f"{cold[0] - cold[1]:.2f} s more with an empty numba cache (numba's import and the "
        f"compilation), {warm[0] - warm[1]:.2f} s more with the cache written (import and "
        f"loading; the cache lives in `quant/__pycache__` or `NUMBA_CACHE_DIR`), the NumPy "
        f"path {plain[0] - plain[1]:.2f} s more; runs smaller than `golden.JIT_MIN_CELLS` "
        "cell updates take the NumPy path and do not import numba."
    )


def _blas_kernel() -> str:
    """NumPy's BLAS library, its kernel and the OPENBLAS_CORETYPE setting, in words."""
    from threadpoolctl import threadpool_info

    numpy_dir = Path(np.__file__).parent
    found = [
        i
        for i in threadpool_info()
        if i.get("user_api") == "blas"
        and Path(i["filepath"]).parent.name.startswith(numpy_dir.name)
    ]  # numpy's own library (numpy/ or numpy.libs/), not torch's
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    setting = f"OPENBLAS_CORETYPE={coretype}" if coretype else "OPENBLAS_CORETYPE unset"
    if not found:
        return f"not identified ({setting})"
    info = found[0]
    return (
        f"{info.get('internal_api')} {info.get('version')}, kernel "
        f"{info.get('architecture')} ({setting})"
    )


# -- RESULTS.md ------------------------------------------------------------------------------------
SPEED_HEADING = "### Golden model speed"


def speed_section(args) -> list[str]:
    """The speed part of the section: :func:`bench_speed`'s table, the command that wrote it
    (with ``--speed``, apart from the rest) and the verdict on issue 13's target."""
    speed, ratio, floors = bench_speed(args.smoke)
    verdict = "met" if ratio <= 2 else "missed"
    floor_cpu = floors["float64 product"][1]
    torch_floor_cpu = floors["float64 product torch"][1]
    cpu_ratio = floors["golden"][1]
    openblas_wall, openblas_cpu = floors["golden openblas"]
    openblas_verdict = "met" if openblas_wall <= 2 else "missed"
    written = []
    if args.speed:
        command = command_line("bench_quant.py", args, "--speed")
        written = ["", f"(Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M')}.)"]
    return [
        speed[0],
        *written,
        *speed[1:],
        "",
        (
            f"Target (issue 13): median ratio <= 2x on one thread ({verdict}). The two cases "
            "users meet, side by side in this run: in a process that has imported torch (this "
            "benchmark, training and QAT scripts) the compiled path's float64 product runs on "
            f"torch's MKL: {ratio:.1f}x wall median, {cpu_ratio:.1f}x CPU ({verdict}); in one "
            "that never imported torch (`lstmfpga predict` or `simulate` on a qmodel) on NumPy's "
            "OpenBLAS: "
            f"{openblas_wall:.1f}x wall median, {openblas_cpu:.1f}x CPU ({openblas_verdict}); "
            "the codes are the same either way (tests/quant/test_golden_jit.py runs both). "
            "One thread each is the fair and stable comparison: on a busy machine "
            "multi-threaded torch stalls on small matrices. The floor of an exact datapath in "
            "float64 is its gate "
            f"product alone, {floor_cpu:.1f}x torch's whole LSTM in CPU time here with "
            f"NumPy's OpenBLAS and {torch_floor_cpu:.1f}x with torch's MKL (`torch.mm`, which "
            "the compiled path uses when the process has imported torch, as here: exact "
            "either way, every partial sum is an integer multiple of a power of two below "
            "2^52): the same shapes in float32, torch's precision, run about twice as fast, "
            "but a q16 sum needs 39 bits (float32 holds 24), and splitting its 16-bit "
            "operands into float32-exact parts costs at least three float32 products (8-bit "
            "halves, Karatsuba). The narrower presets do use a float32 product (w8a8 "
            "column). The rest of a step is one compiled pass per batch row "
            "(quant/datapath_jit.py, numba: rounding, saturation counts, table reads, cell "
            "update; about fifteen element-wise passes and four table reads on the NumPy "
            "path, its column), writing each step's `h` as int16 into a time-major layer "
            "buffer (one contiguous 32 KB block per step; the int64 result, four times the "
            "bytes, is written once at the end by one widening copy: writing it a row per "
            "batch row and step cost about 2 ms more). Measured while developing it "
            "(interleaved CPU medians, load 7-13): the kernel about 5-6 ms of the run, of "
            "which about 2 ms are the five scalar table reads per cell (int16 maps; the "
            "compiler vectorizes the arithmetic loops but not the reads: a gather beside a "
            "store it cannot prove apart), the widening copy 0.4 ms idle (1-2 ms loaded), "
            "the product 8-10 ms."
        ),
    ]


def replace_speed(path: Path, speed: str) -> None:
    """Replace the speed part of ``path``'s quant section (from its ``### Golden model
    speed`` heading to the section's end) with ``speed``, keeping the rest."""
    begin, end = f"<!-- {SECTION}:begin -->", f"<!-- {SECTION}:end -->"
    text = path.read_text() if path.exists() else ""
    if begin not in text or end not in text:
        raise SystemExit(f"bench_quant.py: --speed needs a quant section in {path}: run without it")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    if SPEED_HEADING not in body:
        raise SystemExit(f"bench_quant.py: no {SPEED_HEADING!r} in the quant section of {path}")
    update_section(path, SECTION, body.split(SPEED_HEADING, 1)[0].lstrip("\n") + speed)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "tiny sizes, seconds (CI)")
    parser.add_argument(
        "--speed",
        action="store_true",
        help="only the golden-model speed case (about a minute): rewrites the speed part of "
        "the quant section, keeping the rest",
    )
    args = parser.parse_args(argv)
    if args.speed:
        speed = "\n".join(speed_section(args))
        print(speed)
        results = results_path(args)
        if results is not None:
            replace_speed(results, speed)
            print(
                f"\nupdated the speed part of the {SECTION} section of {results}", file=sys.stderr
            )
        return 0
    command = command_line("bench_quant.py", args)
    digits, models = bench_digits(args.smoke)
    sections = [
        "## Quantization",
        "",
        (
            f"Written by `{command}` on {time.strftime('%Y-%m-%d')} (Python "
            f"{platform.python_version()}). Definitions: docs/numerics.md."
        ),
        "",
        *digits,
        "",
        *bench_tables(models),
        "",
        *bench_tolerance(args.smoke),
        "",
        *speed_section(args),
    ]
    return publish_run(args, SECTION, "\n".join(sections))


if __name__ == "__main__":
    sys.exit(main())
