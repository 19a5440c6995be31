"""The bit-accuracy report: what a simulation run proves, as versioned JSON.

:func:`build_report` assembles the report of one run (schema in ``docs/report.md``) from the
hardware's outputs, checked against the golden model by :func:`lstmfpga.sim.check.check_outputs`;
:func:`save_report` / :func:`load_report` do the file I/O (a loaded report is checked by
:func:`lstmfpga.sim.report_schema.validate_report`). Reports are presented by
:mod:`lstmfpga.sim.render` (text, compare) and :mod:`lstmfpga.sim.html` (HTML with SVG plots);
those names are importable from here too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..export.files import read_json, write_json
from .check import MISMATCH_LIMIT, check_outputs
from .html import render_compare_html, render_html
from .render import compare, render_text
from .report_schema import REPORT_FORMAT, REPORT_VERSION, validate_report
from .streams import StreamGeometry, pack_outputs

__all__ = [
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "activation_curves",
    "build_report",
    "check_outputs",
    "compare",
    "load_report",
    "mac_count",
    "render_compare_html",
    "render_html",
    "render_text",
    "save_report",
    "validate_report",
]

#: Points kept for the fixed-vs-float scatter plot.
SCATTER_POINTS = 400
#: Samples per activation-table error curve.
CURVE_POINTS = 256


# -- pieces of the report -----------------------------------------------------------------------
def mac_count(model, T: int) -> int:
    """Multiply-accumulates one sequence of ``T`` steps needs (gates, projection, head)."""
    H, Ho, D = model.hidden_size, model.output_size, model.num_directions
    n = 0
    for layer in range(model.num_layers):
        per_step = 4 * H * (model.layer_input_size(layer) + Ho)
        if model.proj_size:
            per_step += Ho * H
        n += D * T * per_step
    if model.head is not None:
        rows = model.head.out_features * D * Ho
        n += rows * (T if model.head.mode == "all" else 1)
    return n


def activation_curves(model, points: int = CURVE_POINTS) -> dict:
    """Error of each activation table against the exact function, over its input range:
    ``{name: {function, in_fmt, out_fmt, x, error_lsb, max_lsb, mean_lsb}}`` (``x`` as real
    values, errors in output LSBs, ``points`` evenly spaced input codes)."""
    curves = {}
    for name, table in model.tables.items():
        fmt = table.in_fmt
        codes = np.unique(np.linspace(fmt.min_code, fmt.max_code, points).round().astype(np.int64))
        x = fmt.dequantize(codes)
        exact = table.exact(x)
        error = (table.lookup(codes) - exact * 2.0**table.out_fmt.frac).astype(float)
        summary = table.error()
        curves[name] = {
            "function": table.function,
            "in_fmt": str(table.in_fmt),
            "out_fmt": str(table.out_fmt),
            "entries": int(table.size + 1),
            "interpolate": bool(table.interpolate),
            "x": _floats(x),
            "error_lsb": _floats(error),
            "max_lsb": float(summary.max_lsb),
            "mean_lsb": float(summary.mean_lsb),
        }
    return curves


def _floats(values, digits: int = 6) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=float).reshape(-1)]


def _fixed_vs_float(model, golden_prediction, float_prediction) -> dict:
    fmt = model.output_format
    fixed = fmt.dequantize(np.asarray(golden_prediction))
    ref = np.asarray(float_prediction, dtype=float)
    if ref.shape != fixed.shape:
        raise ValueError(
            f"float outputs must have the golden prediction's shape {fixed.shape}, not {ref.shape}"
        )
    error = fixed - ref
    abs_error = np.abs(error)
    signal = float(np.mean(ref**2))
    noise = float(np.mean(error**2))
    snr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    lsb = abs_error / fmt.lsb
    hi = max(1, math.ceil(float(lsb.max())))
    step = max(1, math.ceil(hi / 40))
    edges = list(range(0, hi + step + 1, step))
    counts, _ = np.histogram(lsb, bins=edges)
    per_step = []
    if fixed.ndim == 3:  # (B, T, n): error by timestep
        per_step = _floats(abs_error.max(axis=(0, 2)))
    rng = np.random.default_rng(0)
    pick = np.arange(ref.size)
    if ref.size > SCATTER_POINTS:
        pick = np.sort(rng.choice(ref.size, SCATTER_POINTS, replace=False))
    return {
        "available": True,
        "max_abs": float(abs_error.max()),
        "mean_abs": float(abs_error.mean()),
        "rmse": float(math.sqrt(noise)),
        "snr_db": snr if math.isfinite(snr) else None,
        "max_lsb": float(lsb.max()),
        "output_lsb": fmt.lsb,
        "histogram_lsb": {"edges": edges, "counts": [int(c) for c in counts]},
        "per_timestep_max_abs": per_step,
        "scatter": {
            "float": _floats(ref.reshape(-1)[pick]),
            "fixed": _floats(fixed.reshape(-1)[pick]),
        },
    }


def _argmax_accuracy(prediction, labels) -> float:
    return float(np.mean(np.argmax(np.asarray(prediction), axis=-1) == labels))


def rtl_in_lengths(geometry: StreamGeometry, T: int) -> tuple[int, int, int]:
    """``s_axis`` elements of one sequence: ``(h0, c0, x)``."""
    h0 = geometry.states * geometry.output_size if geometry.initial_state else 0
    c0 = geometry.states * geometry.hidden_size if geometry.initial_state else 0
    return h0, c0, T * geometry.input_size


def build_report(
    *,
    model,
    geometry: StreamGeometry,
    T: int,
    rtl: list,
    golden,
    simulator: str,
    simulator_version: str,
    lanes: int,
    max_seq_len: int,
    run_cycles=(),
    total_cycles: int = 0,
    wall_seconds: float = 0.0,
    cycle_model=None,
    rtl_error: bool = False,
    float_prediction=None,
    labels=None,
    input_saturation: int = 0,
    settings: dict | None = None,
    spec_check: dict | None = None,
    limit: int = MISMATCH_LIMIT,
    timing: dict | None = None,
) -> dict:
    """The report of one simulation run (see ``docs/report.md`` for every field).

    ``rtl``: per-sequence ``m_axis`` elements from the simulator; ``golden``: the
    :class:`~lstmfpga.quant.golden.GoldenResult` of the same input codes; ``run_cycles``: the
    run's :class:`~lstmfpga.sim.amaranth_sim.SequenceCycles`; ``cycle_model``: the design's
    :class:`~lstmfpga.hw.cycles.CycleModel` (for the model's cycle counts);
    ``float_prediction``: the float reference's prediction of the same inputs (else
    ``fixed_vs_float`` says it is unavailable); ``labels``: class per sequence (accuracy of
    ``last`` heads); ``input_saturation``: inputs clipped by quantization; ``settings``:
    free-form run settings (stalls, seed) recorded as given; ``spec_check``: the result of
    :func:`lstmfpga.pipeline.check_spec` (the report's ``spec`` section, when a spec was
    given).
    """
    B = len(rtl)
    expected = [
        pack_outputs(geometry, golden.prediction, b, golden.h_n, golden.c_n) for b in range(B)
    ]
    outputs = check_outputs(rtl, expected, geometry, T, limit=limit)
    outputs["sequences"] = B
    outputs["timesteps"] = T
    outputs["error_flag"] = bool(rtl_error)
    bit_exact = outputs["mismatched"] == 0 and not rtl_error

    report: dict = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "bit_exact": bit_exact,
    }
    report["outputs"] = outputs
    if spec_check is not None:
        report["spec"] = dict(spec_check)
    if float_prediction is not None:
        report["fixed_vs_float"] = _fixed_vs_float(model, golden.prediction, float_prediction)
    else:
        report["fixed_vs_float"] = {
            "available": False,
            "note": "no float reference given (pass the spec: simulate --spec SPEC)",
        }
    report["accuracy"] = _accuracy(model, rtl, golden.prediction, float_prediction, labels)
    multipliers = lanes * int((settings or {}).get("simd", 1))  # P x S in the MVU
    report["cycles"] = _cycles(model, T, list(run_cycles), total_cycles, cycle_model, multipliers)
    saturation = {role: int(n) for role, n in sorted(golden.saturation.items())}
    saturation["x"] = saturation.get("x", 0) + int(input_saturation)
    report["saturation"] = saturation
    report["model"] = model.geometry_dict() | {"weights": model.weight_count}
    report["quantization"], report["activation_tables"] = _quantization(model)
    report["ports"] = [
        {"name": "s_axis", "direction": "in", "bits": int(model.formats["x"].bits),
         "elements_per_sequence": int(sum(rtl_in_lengths(geometry, T)))},
        {"name": "m_axis", "direction": "out", "bits": int(model.output_format.bits),
         "elements_per_sequence": int(geometry.output_length(T))},
    ]  # fmt: skip
    report["lanes"] = int(lanes)
    report["max_seq_len"] = int(max_seq_len)
    report["simulator"] = {"name": simulator, "version": simulator_version}
    report["settings"] = dict(settings or {})
    report["wall_seconds"] = float(wall_seconds)
    report["cycles_per_second"] = float(total_cycles) / wall_seconds if wall_seconds > 0 else None
    if timing is not None:
        report["timing"] = {"simulation_seconds": float(wall_seconds), **timing}
    return report


def _accuracy(model, rtl: list, golden_prediction, float_prediction, labels) -> dict:
    """The ``accuracy`` section: argmax accuracy of float, fixed and RTL against ``labels``."""
    accuracy: dict = {"available": False}
    if labels is None:
        return accuracy
    B = len(rtl)
    labels = np.asarray(labels).reshape(-1)
    if model.head is None or model.head.mode != "last":
        accuracy["note"] = "labels need a model with a 'last' head"
        return accuracy
    if labels.size != B:
        raise ValueError(f"labels must have one entry per sequence ({B}), not {labels.size}")
    n = model.head.out_features
    rtl_pred = np.stack([np.asarray(o)[:n] for o in rtl]) if B else np.zeros((0, n))
    accuracy = {
        "available": True,
        "count": int(B),
        "fixed": _argmax_accuracy(golden_prediction, labels),
        "rtl": _argmax_accuracy(rtl_pred, labels),
        "float": None if float_prediction is None else _argmax_accuracy(float_prediction, labels),
    }
    if B:
        truth = labels.astype(np.int64)
        guess = np.argmax(rtl_pred, axis=-1).astype(np.int64)
        if truth.min() >= 0 and truth.max() < n:
            counts = np.bincount(truth * n + guess, minlength=n * n)
            accuracy["confusion"] = counts.reshape(n, n).tolist()
    return accuracy


def _cycles(model, T: int, run_cycles: list, total_cycles: int, cycle_model, multipliers: int):
    """The ``cycles`` section: measured per-sequence phases, and the cycle model's counts."""
    cycles: dict = {"total": int(total_cycles)}
    if run_cycles:
        compute = [c.first_out - c.last_in for c in run_cycles]
        per_sequence = [c.last_out - c.first_in + 1 for c in run_cycles]
        cycles["per_sequence"] = float(np.mean(per_sequence))
        cycles["load"] = float(np.mean([c.last_in - c.first_in + 1 for c in run_cycles]))
        cycles["drain"] = float(np.mean([c.last_out - c.first_out + 1 for c in run_cycles]))
        cycles["compute"] = float(np.mean(compute))
        cycles["per_timestep"] = float(np.mean(compute)) / T
        macs = mac_count(model, T)
        cycles["macs_per_sequence"] = macs
        cycles["mac_efficiency"] = macs / (multipliers * float(np.mean(compute)))
    if cycle_model is not None:
        model_compute = cycle_model.compute(T)
        cycles["model_compute"] = model_compute
        cycles["model_per_timestep"] = model_compute / T
        cycles["model_step"] = {str(k): v for k, v in cycle_model.to_dict()["step"].items()}
        if run_cycles:
            cycles["model_exact"] = all(
                c.first_out - c.last_in == model_compute for c in run_cycles
            )
    return cycles


#: What ``quantization.tables`` keeps of each :func:`activation_curves` entry.
_TABLE_FIELDS = (
    "function",
    "in_fmt",
    "out_fmt",
    "entries",
    "interpolate",
    "max_lsb",
    "mean_lsb",
)


def _quantization(model) -> tuple[dict, dict]:
    """The ``quantization`` and ``activation_tables`` sections."""
    curves = activation_curves(model)
    quantization = {
        "preset": model.config.name,
        "rounding": model.rounding,
        "overflow": model.overflow,
        "formats": {role: str(fmt) for role, fmt in model.formats.items()},
        "acc": str(model.acc),
        "output_format": str(model.output_format),
        "tables": {name: {k: c[k] for k in _TABLE_FIELDS} for name, c in curves.items()},
    }
    tables = {name: {"x": c["x"], "error_lsb": c["error_lsb"]} for name, c in curves.items()}
    return quantization, tables


# -- files --------------------------------------------------------------------------------------
def save_report(report: dict, path: str | Path) -> None:
    """Write ``report`` as JSON, atomically (an interrupted write leaves no report)."""
    write_json(path, report)


def load_report(path: str | Path) -> dict:
    """Read a report (bounded, :func:`lstmfpga.export.files.read_json`) and check its
    structure (:func:`validate_report`); any problem is a one-line ``CLIError``."""
    data = read_json(path, "report")
    validate_report(data, f"report {path}")
    return data


def __getattr__(name: str):
    """The SVG plotter's old private names (now public in :mod:`lstmfpga.sim.html`)."""
    moved = {"_COLORS": "COLORS", "_Plot": "Plot", "_empty_svg": "empty_svg"}
    if name in moved:
        from . import html

        return getattr(html, moved[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
