"""The tasks of a sweep, run on Dask workers: plain functions of paths and values.

:func:`design_task` generates and simulates one design, :func:`synth_task` synthesizes a
private copy of a design's files for one target and seed. Each returns a record (``error``
set, with the one-line message, on failure) and caches a finished one in the sweep's cache
folder under its job's ``key``, a content hash of everything that determines the result.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from lstmfpga.errors import REPORTED_ERRORS
from lstmfpga.export import files

__all__ = ["artifact_hash", "design_task", "digest", "one_line", "synth_task", "version"]


# -- hashing and the cache ------------------------------------------------------------------------
def version() -> str:
    try:
        return metadata.version("lstmfpga")
    except metadata.PackageNotFoundError:  # pragma: no cover - bare checkout
        return "unknown"


def digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def artifact_hash(path: Path) -> str:
    """Content hash of a qmodel directory: its manifest (canonical JSON) and tensors."""
    manifest = files.read_json(path / "manifest.json", "qmodel manifest")
    tensors = files.load_arrays(path / "tensors.npz", "qmodel tensors")
    return digest(manifest, *[x for k in sorted(tensors) for x in (k, tensors[k])])


def _cached(cache: Path, key: str) -> dict | None:
    path = cache / f"{key}.json"
    if not path.is_file():
        return None
    try:
        value = files.read_json(path, "explore cache entry")
    except files.FileFormatError:
        return None  # a damaged entry is recomputed
    return value if value.get("key") == key else None


def _store(cache: Path, key: str, value: dict) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    files.write_json(cache / f"{key}.json", {**value, "key": key})


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# -- the tasks (run on Dask workers; plain functions of paths and values) ------------------------
def _run_cached(job: dict, compute) -> dict:
    """``compute()``'s record for ``job``, from the cache when it is there; a finished record
    (with its ``seconds``) is stored, a failure (``error`` set to its one line) is not."""
    cache = Path(job["cache"])
    hit = _cached(cache, job["key"])
    if hit is not None:
        return {**hit, "cached": True}
    started = time.perf_counter()
    try:
        value = compute()
    except REPORTED_ERRORS as error:
        return {"error": one_line(error), "cached": False}
    value = {**value, "seconds": round(time.perf_counter() - started, 2), "error": None}
    _store(cache, job["key"], value)
    return {**value, "cached": False}


def design_task(job: dict) -> dict:
    """Generate and simulate one design; returns its record (``error`` set on failure)."""
    return _run_cached(job, lambda: _design(job))


def _design(job: dict) -> dict:
    from lstmfpga.hw.verilog import generate
    from lstmfpga.quant.model import QuantizedModel
    from lstmfpga.simulation import simulate_model

    model = QuantizedModel.load(job["qmodel"])
    x = files.load_array(job["inputs"], "inputs")
    labels = None if job["labels"] is None else files.load_array(job["labels"], "labels")
    rtl = Path(job["rtl"])
    if rtl.exists():
        shutil.rmtree(rtl)
    manifest = generate(
        model,
        rtl,
        lanes=job["lanes"],
        simd=job["simd"],
        cells=job["cells"],
        max_seq_len=x.shape[1],
        memories="readmemh",
    )  # the form Yosys maps reliably (lstmfpga.synth)
    report, _ = simulate_model(
        model,
        x,
        simulator=job["sim"],
        lanes=job["lanes"],
        simd=job["simd"],
        cells=job["cells"],
        labels=labels,
        build_dir=job.get("build_dir"),
    )
    accuracy = report["accuracy"]
    return {
        "bit_exact": bool(report["bit_exact"]),
        "mismatched": int(report["outputs"]["mismatched"]),
        "cycles": float(report["cycles"]["per_sequence"]),
        "compute_cycles": float(report["cycles"]["compute"]),
        "accuracy": accuracy["rtl"] if accuracy.get("available") else None,
        "weight_bits": model.widest_weight_bits(head=False),
        "cells": int(manifest["cells"]),
        "rtl": str(rtl),
    }


def synth_task(design: dict, job: dict) -> dict:
    """Synthesize a private copy of ``design``'s files for one target and seed."""
    if design.get("error"):
        return {"error": f"design failed: {design['error']}", "cached": False}
    return _run_cached(job, lambda: _synth(design, job))


def _synth(design: dict, job: dict) -> dict:
    from lstmfpga.synth import synthesize

    work = Path(job["work"])
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(design["rtl"], work)
    result = synthesize(
        work, target=job["family"], device=job["device"], freq_mhz=job["freq"], seed=job["seed"]
    )
    return {
        "device": result["device"],
        **{k: int(result[k]) for k in ("luts", "ffs", "dsps", "brams")},
        "fmax_mhz": result["fmax_mhz"],
    }
