"""Design-space exploration on Dask: lanes × presets × devices × placement seeds.

:func:`explore` evaluates every point of a :class:`Sweep` as Dask tasks and writes
``DIR/explore.json`` (every point, with its Pareto flags) and ``DIR/explore.html`` (a
self-contained page: the Pareto fronts and a sortable table). A point is

* a **design** task per ``(preset, lanes, simd, cells)``: write the Verilog (``lstmfpga generate``),
  simulate the inputs (``lstmfpga simulate``: bit-exact check against the golden model,
  cycles per sequence, accuracy with labels);
* a **synthesis** task per ``(design, target, seed)``: Yosys and nextpnr on a private copy of
  the design's files (``lstmfpga synth``): LUTs, FFs, DSPs, BRAMs and Fmax.

Tasks run on ``distributed.LocalCluster`` (``workers`` processes, one thread each) or on an
existing cluster (``scheduler="tcp://HOST:PORT"``: a real ``dask scheduler`` with ``dask
worker`` processes that can import lstmfpga and see ``DIR``). Every finished task is cached in
``DIR/cache/`` under a content hash of everything that determines its result (the quantized
model's tensors and formats, the geometry options, the inputs and labels, the target, device,
seed and clock, the lstmfpga version), so a rerun or an extended sweep recomputes nothing that
is done. A failed task is recorded with its one-line error (and retried on the next run, since
failures are not cached); the other points go on.

Latency is ``cycles / fmax``: ``cycles`` is the measured mean per sequence (first input beat
to last output beat, no back-pressure), ``latency_us = cycles / fmax_mhz``, ``throughput``
sequences per second at Fmax (the accelerator runs one sequence at a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lstmfpga.export import files

from .page import render_html
from .points import FRONTS, POINT_FIELDS, pareto_mask, with_fronts
from .sweep import ExploreError, Sweep, Target
from .tasks import artifact_hash, design_task, digest, one_line, synth_task, version

__all__ = [
    "EXPLORE_FORMAT",
    "EXPLORE_VERSION",
    "FRONTS",
    "POINT_FIELDS",
    "ExploreError",
    "ExploreResult",
    "Sweep",
    "Target",
    "explore",
    "pareto_mask",
    "render_html",
]

EXPLORE_FORMAT = "lstmfpga.explore"
EXPLORE_VERSION = 1


# -- the driver -----------------------------------------------------------------------------------
@dataclass
class ExploreResult:
    """``points`` as written to ``explore.json``; ``computed``/``cached`` task counts."""

    points: list[dict]
    computed: int
    cached: int
    wall_seconds: float
    paths: dict[str, Path] = field(default_factory=dict)


def _client(workers: int | None, scheduler: str | None):
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler is not None:
        if not str(scheduler).startswith("tcp://"):
            raise ExploreError(f"scheduler must be an address tcp://HOST:PORT, not {scheduler!r}")
        try:
            return Client(scheduler, timeout="10s"), None
        except OSError as error:
            raise ExploreError(
                f"cannot reach the Dask scheduler at {scheduler}: {one_line(error)}"
            ) from None
    n = workers if workers is not None else 2
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ExploreError(f"workers must be a positive integer, not {workers!r}")
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


def _quantize_presets(qmodel_dir: Path, spec_dir, presets, calib, out: Path) -> dict[str, Path]:
    """The quantized model of every preset (the given one, and the spec requantized) and the
    model's cell (``"lstm"`` or ``"gru"``; every preset quantizes the same spec)."""
    from lstmfpga.export.spec import ModelSpec
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import QuantConfig
    from lstmfpga.quant.model import QuantizedModel

    base = QuantizedModel.load(qmodel_dir)
    models = {base.config.name: qmodel_dir}
    todo = [p for p in presets if p not in models]
    if todo:
        if spec_dir is None:
            raise ExploreError("preset needs the float model: pass spec (explore --spec SPEC)")
        spec = ModelSpec.load(spec_dir)
        if base.spec_hash is not None and spec.content_hash() != base.spec_hash:
            raise ExploreError(f"spec {spec_dir} is not the model {qmodel_dir} was quantized from")
        for preset in todo:
            config = QuantConfig.preset(preset)
            models[preset] = quantize(spec, calib, config).save(out / "qmodels" / preset)
    return {p: models[p] for p in (presets or (base.config.name,))}, base.cell


def _point(design_job, synth_job, design, synth, cell: str) -> dict:
    error = design.get("error") or synth.get("error")
    cycles, fmax = design.get("cycles"), synth.get("fmax_mhz")
    latency = cycles / fmax if cycles and fmax else None
    point = {
        "lanes": design_job["lanes"],
        "simd": design_job["simd"],
        "cells": design.get("cells", design_job["cells"]),  # the number used (None: default)
        "preset": design_job["preset"],
        "cell": cell,
        "target": synth_job["family"],
        "device": synth.get("device") or synth_job["device"],
        "seed": synth_job["seed"],
        "bit_exact": design.get("bit_exact"),
        **{k: synth.get(k) for k in ("luts", "ffs", "dsps", "brams", "fmax_mhz")},
        "cycles": cycles,
        "latency_us": None if latency is None else round(latency, 4),
        "throughput": None if latency is None else round(1e6 / latency, 1),
        "accuracy": design.get("accuracy"),
        "weight_bits": design.get("weight_bits"),
        "pareto": {name: False for name in FRONTS},
        "error": error,
    }
    return point


def explore(
    qmodel: str | Path,
    inputs: str | Path,
    sweep: Sweep,
    out: str | Path,
    *,
    labels: str | Path | None = None,
    spec: str | Path | None = None,
    calib: str | Path | None = None,
    simulator: str = "verilator",
    freq_mhz: float = 100.0,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExploreResult:
    """Run ``sweep`` for the quantized model ``qmodel`` on ``inputs``; write ``out/``.

    ``labels`` (class per sequence) adds accuracy; ``spec`` (the float model) is needed for
    ``sweep.presets`` other than the qmodel's own, calibrated on ``calib`` (default
    ``inputs``). ``progress`` receives one line per finished task.
    """
    from lstmfpga.simulation import SIMULATORS

    wall = time.perf_counter()
    if simulator not in SIMULATORS:
        raise ExploreError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    out = Path(out).resolve()  # workers may run elsewhere: every path they get is absolute
    out.mkdir(parents=True, exist_ok=True)
    qmodel, inputs = Path(qmodel).resolve(), Path(inputs).resolve()
    x = files.load_array(inputs, "inputs")
    if x.ndim != 3:
        raise ExploreError(f"inputs must be (batch, seq, features), not shape {x.shape}")
    calib_x = x if calib is None else files.load_array(calib, "calibration inputs")
    models, cell = _quantize_presets(qmodel, spec, sweep.presets, calib_x, out)
    data_hash = digest(x, None if labels is None else files.load_array(labels, "labels"))
    say = progress or (lambda line: None)

    labels = None if labels is None else Path(labels).resolve()
    design_jobs, synth_jobs = _jobs(
        models, sweep, inputs, labels, data_hash, simulator, freq_mhz, out
    )
    client, cluster = _client(workers, scheduler)
    try:
        results, computed, cached = _run(client, design_jobs, synth_jobs, say)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    points = with_fronts(
        [_point(dj, sj, results[dj["key"]], results[sj["key"]], cell) for dj, sj in synth_jobs]
    )
    wall_seconds = time.perf_counter() - wall
    doc = {
        "format": EXPLORE_FORMAT,
        "version": EXPLORE_VERSION,
        "qmodel": str(qmodel),
        "inputs": str(inputs),
        "sweep": {
            "lanes": list(sweep.lanes),
            "simd": list(sweep.simd),
            "cells": list(sweep.cells),
            "presets": list(models),
            "targets": [str(t) for t in sweep.targets],
            "seeds": list(sweep.seeds),
            "freq_mhz": freq_mhz,
            "simulator": simulator,
        },
        "computed": computed,
        "cached": cached,
        "wall_seconds": round(wall_seconds, 2),
        "points": points,
    }
    paths = {"json": out / "explore.json", "html": out / "explore.html"}
    files.write_json(paths["json"], doc)
    files.write_text(paths["html"], render_html(doc))
    return ExploreResult(points, computed, cached, wall_seconds, paths)


def _jobs(models, sweep, inputs, labels, data_hash, simulator, freq_mhz, out):
    """The design jobs (one per preset, lanes, simd and cells) and the ``(design job, synth job)``
    pairs (one per design, target and seed); each job keyed by the content hash of what
    determines its result."""
    cache = out / "cache"
    design_jobs, synth_jobs = [], []
    for preset, path in models.items():
        model_hash = artifact_hash(Path(path))
        for lanes in sweep.lanes:
            for simd, cells in ((s, v) for s in sweep.simd for v in sweep.cells):
                key = (
                    "design-"
                    + digest(version(), model_hash, data_hash, lanes, simd, cells, simulator)[:24]
                )
                dj = {
                    "key": key,
                    "preset": preset,
                    "lanes": lanes,
                    "simd": simd,
                    "cells": cells,
                    "qmodel": str(path),
                    "inputs": str(inputs),
                    "labels": None if labels is None else str(labels),
                    "sim": simulator,
                    "cache": str(cache),
                    "rtl": str(out / "designs" / key),
                    "build_dir": str(out / "sim_builds"),
                }
                design_jobs.append(dj)
                for target in sweep.targets:
                    for seed in sweep.seeds:
                        skey = "synth-" + digest(key, str(target), seed, freq_mhz)[:24]
                        sj = {
                            "key": skey,
                            "preset": preset,
                            "lanes": lanes,
                            "family": target.family,
                            "device": target.device,
                            "seed": seed,
                            "freq": freq_mhz,
                            "cache": str(cache),
                            "work": str(out / "synth" / skey),
                        }
                        synth_jobs.append((dj, sj))
    return design_jobs, synth_jobs


def _run(client, design_jobs, synth_jobs, say) -> tuple[dict[str, dict], int, int]:
    """Submit every job (a synthesis after its design) and collect the records by key, with
    the counts of computed and cached tasks; ``say`` gets one line per finished task."""
    from distributed import as_completed

    design_futures = {
        dj["key"]: client.submit(design_task, dj, key=dj["key"], pure=False) for dj in design_jobs
    }
    synth_futures = [
        client.submit(synth_task, design_futures[dj["key"]], sj, key=sj["key"], pure=False)
        for dj, sj in synth_jobs
    ]
    labels_of = {f.key: dj for f, dj in zip(design_futures.values(), design_jobs, strict=True)}
    labels_of.update({f.key: sj for f, (_, sj) in zip(synth_futures, synth_jobs, strict=True)})
    total, done, computed, cached = len(design_jobs) + len(synth_jobs), 0, 0, 0
    results: dict[str, dict] = {}
    for future in as_completed([*design_futures.values(), *synth_futures]):
        value = future.result()
        results[future.key] = value
        done += 1
        if value.get("cached"):
            cached += 1
        elif not value.get("error"):
            computed += 1
        say(_progress_line(done, total, labels_of[future.key], value))
    return results, computed, cached


def _progress_line(done: int, total: int, job: dict, value: dict) -> str:
    if "family" in job:
        device = f":{job['device']}" if job["device"] else ""
        what = (
            f"synth {job['preset']} lanes {job['lanes']} {job['family']}{device} seed {job['seed']}"
        )
    else:
        what = f"design {job['preset']} lanes {job['lanes']}"
    if value.get("error"):
        status = f"FAILED: {value['error']}"
    elif "fmax_mhz" in value:
        fmax = value["fmax_mhz"]
        status = f"{value['device']}: {value['luts']} LUTs, {value['dsps']} DSPs" + (
            "" if fmax is None else f", {fmax:.1f} MHz"
        )
    else:
        exact = "bit-exact" if value["bit_exact"] else "MISMATCH"
        status = f"{exact}, {value['cycles']:.0f} cycles/sequence"
    origin = "cached" if value.get("cached") else f"{value.get('seconds', 0):.1f} s"
    return f"[{done}/{total}] {what}: {status} ({origin})"
