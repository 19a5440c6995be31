"""The bit-accuracy report: what a simulation run proves, as versioned JSON.

:func:`check_outputs` compares hardware outputs with the golden model (integer equality) and
locates every mismatch by sequence, tensor, timestep and index. :func:`build_report`
assembles the whole report (schema in ``docs/report.md``); :func:`render_text`,
:func:`render_html` (one self-contained file with inline SVG plots) and :func:`compare`
(side by side, deltas against the first report) present it. All of them are pure functions
of their arguments; :func:`save_report`/:func:`load_report` do the file I/O.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from ..errors import CLIError
from ..export.files import read_json, write_json
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
    "render_html",
    "render_text",
    "save_report",
    "validate_report",
]

REPORT_FORMAT = "lstmfpga.report"
REPORT_VERSION = 1
#: Mismatches listed in ``outputs.first_mismatches``.
MISMATCH_LIMIT = 20
#: Points kept for the fixed-vs-float scatter plot.
SCATTER_POINTS = 400
#: Samples per activation-table error curve.
CURVE_POINTS = 256


# -- checking -----------------------------------------------------------------------------------
def _locate(geom: StreamGeometry, T: int, k: int) -> tuple[str, int | None, int]:
    """``(tensor, timestep, index)`` of element ``k`` of one sequence's ``m_axis`` stream."""
    shape = geom.prediction_shape(T)
    n = int(np.prod(shape))
    if k < n:
        if len(shape) == 2:
            return "prediction", k // shape[1], k % shape[1]
        return "prediction", None, k
    k -= n
    nh = geom.states * geom.output_size
    if k < nh:
        return "h_n", None, k
    return "c_n", None, k - nh


def check_outputs(rtl, golden, geometry: StreamGeometry, T: int, *, limit: int = MISMATCH_LIMIT):
    """Compare per-sequence ``m_axis`` elements ``rtl`` with ``golden`` (lists of int arrays,
    or 2-D arrays) by integer equality.

    Returns the report's ``outputs`` section: ``total`` elements compared, ``mismatched``,
    ``max_lsb_error`` (largest ``|rtl - golden|`` in codes), ``lsb_error_counts``
    (``{error: count}``), ``missing`` (golden elements with no hardware counterpart, counted
    as mismatches), ``first_mismatches`` (up to ``limit`` of ``{sequence, tensor, timestep,
    index, rtl, golden}``; ``timestep`` is null for tensors without a time axis) and
    ``mismatches_per_timestep``.
    """
    if len(rtl) != len(golden):
        raise ValueError(f"rtl has {len(rtl)} sequences, golden has {len(golden)}")
    total = mismatched = missing = 0
    worst = 0
    counts: dict[int, int] = {}
    first: list[dict] = []
    per_step = [0] * T
    for b, (got, want) in enumerate(zip(rtl, golden, strict=True)):
        got = np.asarray(got, dtype=np.int64).reshape(-1)
        want = np.asarray(want, dtype=np.int64).reshape(-1)
        n = min(got.size, want.size)
        total += want.size
        missing += want.size - n
        mismatched += want.size - n
        error = np.abs(got[:n] - want[:n])
        values, freq = np.unique(error, return_counts=True)
        for v, f in zip(values.tolist(), freq.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + f
        bad = np.flatnonzero(error)
        mismatched += bad.size
        if bad.size:
            worst = max(worst, int(error.max()))
        for k in bad.tolist():
            tensor, step, index = _locate(geometry, T, k)
            if step is not None:
                per_step[step] += 1
            if len(first) < limit:
                first.append(
                    {"sequence": b, "tensor": tensor, "timestep": step, "index": index,
                     "rtl": int(got[k]), "golden": int(want[k])}
                )  # fmt: skip
    return {
        "total": total,
        "mismatched": mismatched,
        "missing": missing,
        "max_lsb_error": worst,
        "lsb_error_counts": {str(k): v for k, v in sorted(counts.items())},
        "first_mismatches": first,
        "mismatches_per_timestep": per_step,
    }


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
        exact = 0.5 * (1 + np.tanh(0.5 * x)) if table.function == "sigmoid" else np.tanh(x)
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

    report: dict = {"format": REPORT_FORMAT, "version": REPORT_VERSION, "bit_exact": bit_exact}
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

    accuracy: dict = {"available": False}
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if model.head is None or model.head.mode != "last":
            accuracy["note"] = "labels need a model with a 'last' head"
        elif labels.size != B:
            raise ValueError(f"labels must have one entry per sequence ({B}), not {labels.size}")
        else:
            n = model.head.out_features
            rtl_pred = np.stack([np.asarray(o)[:n] for o in rtl]) if B else np.zeros((0, n))
            accuracy = {
                "available": True,
                "count": int(B),
                "fixed": _argmax_accuracy(golden.prediction, labels),
                "rtl": _argmax_accuracy(rtl_pred, labels),
                "float": None
                if float_prediction is None
                else _argmax_accuracy(float_prediction, labels),
            }
            if B:
                truth = labels.astype(np.int64)
                guess = np.argmax(rtl_pred, axis=-1).astype(np.int64)
                if truth.min() >= 0 and truth.max() < n:
                    counts = np.bincount(truth * n + guess, minlength=n * n)
                    accuracy["confusion"] = counts.reshape(n, n).tolist()
    report["accuracy"] = accuracy

    run_cycles = list(run_cycles)
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
        multipliers = lanes * int((settings or {}).get("simd", 1))  # P x S in the MVU
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
    report["cycles"] = cycles

    saturation = {role: int(n) for role, n in sorted(golden.saturation.items())}
    saturation["x"] = saturation.get("x", 0) + int(input_saturation)
    report["saturation"] = saturation

    head = model.head
    report["model"] = {
        "input_size": model.input_size,
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "bidirectional": model.bidirectional,
        "proj_size": model.proj_size,
        "bias": model.has_bias,
        "head": None if head is None else {"mode": head.mode, "out_features": head.out_features},
        "weights": model.weight_count,
    }
    curves = activation_curves(model)
    report["quantization"] = {
        "preset": model.config.name,
        "rounding": model.rounding,
        "overflow": model.overflow,
        "formats": {role: str(fmt) for role, fmt in model.formats.items()},
        "acc": str(model.acc),
        "output_format": str(model.output_format),
        "tables": {
            name: {
                k: c[k]
                for k in (
                    "function",
                    "in_fmt",
                    "out_fmt",
                    "entries",
                    "interpolate",
                    "max_lsb",
                    "mean_lsb",
                )
            }
            for name, c in curves.items()
        },
    }
    report["activation_tables"] = {
        name: {"x": c["x"], "error_lsb": c["error_lsb"]} for name, c in curves.items()
    }
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


# -- the schema (docs/report.md) ------------------------------------------------------------------
# Rules: a type name ("int": a non-negative integer, "code": any integer, "num": a finite
# number, "bool", "str", "dict": any object), a trailing "?" allows null; a dict rule is an
# object with those keys (a key ending in "?" is optional); a one-element list is a list
# of that rule; ("map", rule) is an object whose values follow rule.
_MISMATCH = {
    "sequence": "int", "tensor": "str", "timestep": "int?", "index": "int", "rtl": "code",
    "golden": "code",
}  # fmt: skip
_SCHEMA = {
    "format": "str",
    "version": "int",
    "bit_exact": "bool",
    "outputs": {
        "total": "int", "mismatched": "int", "missing": "int", "max_lsb_error": "int",
        "lsb_error_counts": ("map", "int"), "first_mismatches": [_MISMATCH],
        "mismatches_per_timestep": ["int"], "sequences": "int", "timesteps": "int",
        "error_flag": "bool",
    },
    "spec?": {"checked": "bool", "hash": "str?", "note": "str"},
    "fixed_vs_float": {"available": "bool", "note?": "str"},
    "accuracy": {"available": "bool", "note?": "str", "confusion?": [["int"]]},
    "ports?": [{"name": "str", "direction": "str", "bits": "int",
                "elements_per_sequence": "int"}],
    "cycles": {
        "total": "int", "per_sequence?": "num", "compute?": "num", "per_timestep?": "num",
        "load?": "num", "drain?": "num",
        "macs_per_sequence?": "int", "mac_efficiency?": "num", "model_compute?": "int",
        "model_per_timestep?": "num", "model_step?": ("map", "int"), "model_exact?": "bool",
    },
    "saturation": ("map", "int"),
    "model": {
        "input_size": "int", "hidden_size": "int", "num_layers": "int", "bidirectional": "bool",
        "proj_size": "int", "bias": "bool", "head": "head?", "weights": "int",
    },
    "quantization": {
        "preset": "str", "rounding": "str", "overflow": "str", "formats": ("map", "str"),
        "acc": "str", "output_format": "str",
        "tables": ("map", {"function": "str", "in_fmt": "str", "out_fmt": "str",
                           "entries": "int", "interpolate": "bool", "max_lsb": "num",
                           "mean_lsb": "num"}),
    },
    "activation_tables": ("map", {"x": ["num"], "error_lsb": ["num"]}),
    "lanes": "int",
    "max_seq_len": "int",
    "simulator": {"name": "str", "version": "str"},
    "settings": "dict",
    "wall_seconds": "num",
    "cycles_per_second": "num?",
    "timing?": {"simulation_seconds": "num", "build_seconds": "num", "build_cached": "bool",
                "jobs": "int", "chunks": "int", "end_to_end_seconds?": "num"},
    "cross_checks?": [{"simulator": "str", "sequences": "int", "bit_exact": "bool",
                       "cycles_per_sequence": "num"}],
    "stages_seconds?": ("map", "num"),
    "synthesis?": "dict",
}  # fmt: skip
_FIXED_VS_FLOAT = {
    "max_abs": "num", "mean_abs": "num", "rmse": "num", "snr_db": "num?", "max_lsb": "num",
    "output_lsb": "num", "histogram_lsb": {"edges": ["num"], "counts": ["int"]},
    "per_timestep_max_abs": ["num"], "scatter": {"float": ["num"], "fixed": ["num"]},
}  # fmt: skip
_ACCURACY = {"count": "int", "float": "num?", "fixed": "num", "rtl": "num"}
_HEAD = {"mode": "str", "out_features": "int"}
_WHAT = {
    "int": "a non-negative integer", "code": "an integer", "num": "a finite number",
    "bool": "true or false", "str": "a string", "dict": "an object", "head": "an object",
}  # fmt: skip


class _Invalid(Exception):
    pass


def _shown(value) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(value, rule, where: str) -> None:
    if isinstance(rule, str):
        optional = rule.endswith("?")
        kind = rule.rstrip("?")
        if value is None and optional:
            return
        number = isinstance(value, int | float) and not isinstance(value, bool)
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            "code": isinstance(value, int) and not isinstance(value, bool),
            "num": number and math.isfinite(value),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
            "dict": isinstance(value, dict),
            "head": isinstance(value, dict),
        }[kind]
        if not ok:
            null = " or null" if optional else ""
            raise _Invalid(f"{where} must be {_WHAT[kind]}{null}, not {_shown(value)}")
        if kind == "head":
            _check(value, _HEAD, where)
    elif isinstance(rule, dict):
        if not isinstance(value, dict):
            raise _Invalid(f"{where} must be an object, not {_shown(value)}")
        for key, sub in rule.items():
            name = key.rstrip("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                raise _Invalid(f"{where or 'the report'} has no field {name!r}")
            _check(value[name], sub, f"{where}.{name}" if where else name)
    elif isinstance(rule, list):
        if not isinstance(value, list):
            raise _Invalid(f"{where} must be a list, not {_shown(value)}")
        for index, item in enumerate(value):
            _check(item, rule[0], f"{where}[{index}]")
    elif isinstance(rule, tuple) and rule[0] == "map":
        if not isinstance(value, dict):
            raise _Invalid(f"{where} must be an object, not {_shown(value)}")
        for key, item in value.items():
            _check(item, rule[1], f"{where}.{key}")
    else:  # pragma: no cover - the schema is fixed
        raise TypeError(f"unknown schema rule {rule!r}")


def _same_length(where: str, a: str, b: str, xs: list, ys: list, offset: int = 0) -> None:
    if len(xs) != len(ys) + offset:
        more = f" + {offset}" if offset else ""
        raise _Invalid(
            f"{where}: {a} must have len({b}){more} = {len(ys) + offset} entries, not {len(xs)}"
        )


def validate_report(data, where: str = "report") -> None:
    """Check that ``data`` is a version-1 report with every field the renderers read, of
    the right type (schema: ``docs/report.md``); unknown fields are allowed. Raises a
    one-line ``CLIError`` naming the first bad field (``report R.json: outputs.total must
    be a non-negative integer, not "12"``)."""
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise CLIError(f"{where} is not an lstmfpga report (format must be {REPORT_FORMAT!r})")
    if data.get("version") != REPORT_VERSION:
        raise CLIError(
            f"{where}: report version must be {REPORT_VERSION}, not {_shown(data.get('version'))}"
        )
    try:
        _check(data, _SCHEMA, "")
        if data["fixed_vs_float"]["available"]:
            _check(data["fixed_vs_float"], _FIXED_VS_FLOAT, "fixed_vs_float")
            f = data["fixed_vs_float"]
            hist, scatter = f["histogram_lsb"], f["scatter"]
            _same_length("fixed_vs_float.histogram_lsb", "edges", "counts", hist["edges"],
                         hist["counts"], 1)  # fmt: skip
            _same_length("fixed_vs_float.scatter", "fixed", "float", scatter["fixed"],
                         scatter["float"])  # fmt: skip
        if data["accuracy"]["available"]:
            _check(data["accuracy"], _ACCURACY, "accuracy")
        for name, curve in data["activation_tables"].items():
            _same_length(f"activation_tables.{name}", "error_lsb", "x", curve["error_lsb"],
                         curve["x"])  # fmt: skip
    except _Invalid as error:
        raise CLIError(f"{where}: {error}") from None


# -- text ---------------------------------------------------------------------------------------
def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def render_text(report: dict) -> str:
    """A human-readable summary of a report."""
    o, c, q, m = report["outputs"], report["cycles"], report["quantization"], report["model"]
    sim = report["simulator"]
    head = m["head"]
    lines = [
        (
            f"bit-exact: {_fmt(report['bit_exact'])} "
            f"({o['total']:,} outputs of {o['sequences']} sequences x {o['timesteps']} steps, "
            f"{o['mismatched']:,} mismatched, max error {o['max_lsb_error']} LSB"
            + (", design error flag set" if o.get("error_flag") else "")
            + ")"
        ),
        (
            f"simulator: {sim['name']} {sim['version']}; lanes {report['lanes']}, "
            f"max_seq_len {report['max_seq_len']}"
        ),
        f"model: I={m['input_size']} H={m['hidden_size']} L={m['num_layers']}"
        + (" bidirectional" if m["bidirectional"] else "")
        + (f" proj={m['proj_size']}" if m["proj_size"] else "")
        + (f" head={head['mode']}x{head['out_features']}" if head else "")
        + f"; preset {q['preset']} ({q['rounding']}, {q['overflow']}), output {q['output_format']}",
    ]
    for mismatch in o["first_mismatches"]:
        step = "-" if mismatch["timestep"] is None else mismatch["timestep"]
        lines.append(
            f"  mismatch: sequence {mismatch['sequence']} {mismatch['tensor']} timestep {step} "
            f"index {mismatch['index']}: rtl {mismatch['rtl']} golden {mismatch['golden']}"
        )
    spec = report.get("spec")
    if spec is not None:
        lines.append(f"spec: {'checked' if spec['checked'] else 'NOT checked'} ({spec['note']})")
    f = report["fixed_vs_float"]
    if f.get("available"):
        lines.append(
            f"fixed vs float: max abs {_fmt(f['max_abs'])} ({_fmt(f['max_lsb'])} LSB), "
            f"rmse {_fmt(f['rmse'])}, SNR {_fmt(f['snr_db'])} dB"
        )
    else:
        lines.append(f"fixed vs float: n/a ({f.get('note', '')})")
    a = report["accuracy"]
    if a.get("available"):
        lines.append(
            f"accuracy ({a['count']} labels): float {_fmt(a['float'])}, "
            f"fixed {_fmt(a['fixed'])}, rtl {_fmt(a['rtl'])}"
        )
    cyc = f"cycles: total {_fmt(c['total'])}"
    if "per_timestep" in c:
        cyc += (
            f", per sequence {_fmt(c.get('per_sequence'))}, per timestep {_fmt(c['per_timestep'])}"
        )
    if "model_per_timestep" in c:
        cyc += f" (model: {_fmt(c['model_per_timestep'])} per timestep on average"
        if "model_compute" in c:
            cyc += f", compute {c['model_compute']:,} cycles per sequence"
        cyc += ", exact)" if c.get("model_exact") else ")"
    if "mac_efficiency" in c:
        cyc += f", MAC efficiency {c['mac_efficiency']:.1%}"
    lines.append(cyc)
    sat = {k: v for k, v in report["saturation"].items() if v}
    lines.append(
        "saturation: " + (", ".join(f"{k} {v:,}" for k, v in sat.items()) if sat else "none")
    )
    if report.get("cycles_per_second"):
        speed = (
            f"speed: {_fmt(report['cycles_per_second'])} cycles/s "
            f"(simulated cycles / {_fmt(report['wall_seconds'])} s of simulation"
        )
        t = report.get("timing")
        if t:
            build = "cached" if t["build_cached"] else f"{_fmt(t['build_seconds'])} s"
            speed += f"; build {build}"
            if "end_to_end_seconds" in t:
                speed += f", end to end {_fmt(t['end_to_end_seconds'])} s"
            speed += f", {t['jobs']} job{'s' if t['jobs'] != 1 else ''}"
        lines.append(speed + ")")
    return "\n".join(lines) + "\n"


#: What :func:`compare` shows: (label, path in the report).
COMPARE_ROWS = (
    ("bit-exact", ("bit_exact",)),
    ("simulator", ("simulator", "name")),
    ("version", ("simulator", "version")),
    ("preset", ("quantization", "preset")),
    ("lanes", ("lanes",)),
    ("sequences", ("outputs", "sequences")),
    ("timesteps", ("outputs", "timesteps")),
    ("outputs", ("outputs", "total")),
    ("mismatched", ("outputs", "mismatched")),
    ("max LSB error", ("outputs", "max_lsb_error")),
    ("fixed-float max abs", ("fixed_vs_float", "max_abs")),
    ("fixed-float rmse", ("fixed_vs_float", "rmse")),
    ("fixed-float SNR dB", ("fixed_vs_float", "snr_db")),
    ("accuracy float", ("accuracy", "float")),
    ("accuracy fixed", ("accuracy", "fixed")),
    ("accuracy rtl", ("accuracy", "rtl")),
    ("cycles total", ("cycles", "total")),
    ("cycles/timestep", ("cycles", "per_timestep")),
    ("model cycles/timestep", ("cycles", "model_per_timestep")),
    ("MAC efficiency", ("cycles", "mac_efficiency")),
    ("wall s", ("wall_seconds",)),
    ("cycles/s", ("cycles_per_second",)),
)


def _get(report: dict, path: tuple[str, ...]):
    value = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _label(report: dict, index: int) -> str:
    sim, preset = report["simulator"]["name"], report["quantization"]["preset"]
    return f"#{index + 1} {sim} P={report['lanes']} {preset}"


def compare(reports: list[dict]) -> str:
    """A side-by-side table of ``reports``; numbers after the first carry their difference to
    the first (``+12 (+3.1%)``). Works across simulators, lane counts and presets."""
    if len(reports) < 1:
        raise ValueError("compare needs at least one report")
    header = ["", *(_label(r, i) for i, r in enumerate(reports))]
    rows = [header]
    for label, path in COMPARE_ROWS:
        values = [_get(r, path) for r in reports]
        if all(v is None for v in values):
            continue
        base = values[0]
        cells = [label, _fmt(base)]
        for value in values[1:]:
            cell = _fmt(value)
            numeric = (int, float)
            if (
                isinstance(value, numeric) and isinstance(base, numeric)
                and not isinstance(value, bool) and not isinstance(base, bool)
            ):  # fmt: skip
                delta = value - base
                if delta:
                    cell += f" ({'+' if delta > 0 else ''}{_fmt(delta)}"
                    cell += f", {delta / base:+.1%})" if base else ")"
            elif value != base:
                cell += " (*)"
            cells.append(cell)
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


# -- HTML ---------------------------------------------------------------------------------------
_W, _H = 520, 260
_PAD = (56, 16, 22, 40)  # left, right, top, bottom
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


class _Plot:
    """A tiny SVG plot: linear axes with ticks, then marks added in data coordinates."""

    def __init__(self, title, xlabel, ylabel, xlim, ylim):
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        (x0, x1), (y0, y1) = xlim, ylim
        if x1 <= x0:
            x0, x1 = x0 - 1, x1 + 1
        if y1 <= y0:
            y0, y1 = y0 - 1, y1 + 1
        self.xlim, self.ylim = (x0, x1), (y0, y1)
        self.marks: list[str] = []
        self.legend: list[tuple[str, str]] = []

    def x(self, v: float) -> float:
        left, right = _PAD[0], _W - _PAD[1]
        return left + (v - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (right - left)

    def y(self, v: float) -> float:
        top, bottom = _PAD[2], _H - _PAD[3]
        return bottom - (v - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (bottom - top)

    def line(self, xs, ys, color, label=None):
        points = " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in zip(xs, ys, strict=True))
        self.marks.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
        )
        if label:
            self.legend.append((label, color))

    def dots(self, xs, ys, color, label=None):
        for a, b in zip(xs, ys, strict=True):
            self.marks.append(
                f'<circle cx="{self.x(a):.1f}" cy="{self.y(b):.1f}" r="2" fill="{color}" '
                'fill-opacity="0.6"/>'
            )
        if label:
            self.legend.append((label, color))

    def bars(self, lefts, rights, heights, color):
        for a, b, h in zip(lefts, rights, heights, strict=True):
            x0, x1, y = self.x(a), self.x(b), self.y(h)
            self.marks.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(0.5, x1 - x0 - 1):.1f}" '
                f'height="{max(0.0, self.y(self.ylim[0]) - y):.1f}" fill="{color}"/>'
            )

    def svg(self) -> str:
        e = html.escape
        left, right, top, bottom = _PAD[0], _W - _PAD[1], _PAD[2], _H - _PAD[3]
        parts = [
            (
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
                f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="10">'
            ),
            f'<text x="{_W / 2}" y="13" text-anchor="middle" font-size="12">{e(self.title)}</text>',
            (
                f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
                'fill="none" stroke="#888"/>'
            ),
        ]
        for t in _ticks(*self.xlim):
            parts.append(
                f'<line x1="{self.x(t):.1f}" y1="{bottom}" x2="{self.x(t):.1f}" y2="{bottom + 4}" '
                f'stroke="#888"/><text x="{self.x(t):.1f}" y="{bottom + 14}" '
                f'text-anchor="middle">{t:g}</text>'
            )
        for t in _ticks(*self.ylim):
            parts.append(
                f'<line x1="{left - 4}" y1="{self.y(t):.1f}" x2="{right}" y2="{self.y(t):.1f}" '
                f'stroke="#eee"/><text x="{left - 6}" y="{self.y(t) + 3:.1f}" '
                f'text-anchor="end">{t:g}</text>'
            )
        parts.append(
            f'<text x="{(left + right) / 2}" y="{_H - 6}" text-anchor="middle">'
            f"{e(self.xlabel)}</text>"
        )
        parts.append(
            f'<text x="12" y="{(top + bottom) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 12 {(top + bottom) / 2})">{e(self.ylabel)}</text>'
        )
        parts += self.marks
        if self.legend:
            parts.append(
                f'<rect x="{right - 124}" y="{top + 2}" width="120" '
                f'height="{13 * len(self.legend) + 4}" fill="#fff" fill-opacity="0.85"/>'
            )
        for n, (label, color) in enumerate(self.legend):
            y = top + 12 + 13 * n
            parts.append(
                f'<rect x="{right - 120}" y="{y - 8}" width="10" height="10" fill="{color}"/>'
                f'<text x="{right - 106}" y="{y + 1}">{e(label)}</text>'
            )
        parts.append("</svg>")
        return "".join(parts)


def _empty_svg(title: str, note: str) -> str:
    e = html.escape
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="60" '
        f'font-family="sans-serif" font-size="11"><text x="4" y="16" font-size="12">{e(title)}'
        f'</text><text x="4" y="40" fill="#666">{e(note)}</text></svg>'
    )


def _svg_histogram(report: dict) -> str:
    f = report["fixed_vs_float"]
    title = "Fixed vs float error (output LSBs)"
    if not f.get("available"):
        counts = report["outputs"]["lsb_error_counts"]
        title = "RTL vs golden error (LSBs)"
        keys = sorted(int(k) for k in counts)
        edges = [*keys, keys[-1] + 1] if keys else [0, 1]
        heights = [counts[str(k)] for k in keys] or [0]
    else:
        edges, heights = f["histogram_lsb"]["edges"], f["histogram_lsb"]["counts"]
    plot = _Plot(
        title, "|error| (LSB)", "outputs", (edges[0], edges[-1]), (0, max(heights) * 1.1 or 1)
    )
    plot.bars(edges[:-1], edges[1:], heights, _COLORS[0])
    return plot.svg()


def _svg_timesteps(report: dict) -> str:
    f = report["fixed_vs_float"]
    per_step = f.get("per_timestep_max_abs") or []
    mism = report["outputs"].get("mismatches_per_timestep") or []
    if not per_step and not any(mism):
        return _empty_svg(
            "Error per timestep",
            "no per-timestep outputs (a 'last' head) or no float reference, and no mismatches",
        )
    if per_step:
        lsb = f["output_lsb"]
        ys = [v / lsb for v in per_step]
        plot = _Plot("Max |fixed - float| per timestep", "timestep", "LSB",
                     (0, max(1, len(ys) - 1)), (0, max(ys) * 1.1 or 1))  # fmt: skip
        plot.line(range(len(ys)), ys, _COLORS[0], "fixed vs float")
        if any(mism):
            plot.dots(range(len(mism)), [min(m, plot.ylim[1]) for m in mism], _COLORS[1],
                      "RTL mismatches")  # fmt: skip
        return plot.svg()
    plot = _Plot("RTL mismatches per timestep", "timestep", "mismatches",
                 (0, max(1, len(mism) - 1)), (0, max(mism) * 1.1))  # fmt: skip
    plot.line(range(len(mism)), mism, _COLORS[1], "RTL mismatches")
    return plot.svg()


def _svg_tables(report: dict) -> str:
    curves = {k: c for k, c in report.get("activation_tables", {}).items() if c["x"]}
    if not curves:
        return _empty_svg("Activation tables", "no curve data in this report")
    xs = [x for c in curves.values() for x in c["x"]]
    ys = [y for c in curves.values() for y in c["error_lsb"]]
    lim = max(1e-9, max(abs(y) for y in ys))
    plot = _Plot("Activation table error vs exact function", "input", "error (output LSB)",
                 (min(xs), max(xs)), (-lim * 1.1, lim * 1.1))  # fmt: skip
    for n, (name, c) in enumerate(curves.items()):
        plot.line(c["x"], c["error_lsb"], _COLORS[n % len(_COLORS)], name)
    return plot.svg()


def _svg_scatter(report: dict) -> str:
    f = report["fixed_vs_float"]
    if not f.get("available"):
        return _empty_svg("Fixed vs float", f.get("note", "no float reference"))
    xs, ys = f["scatter"]["float"], f["scatter"]["fixed"]
    lo, hi = min(xs + ys), max(xs + ys)
    plot = _Plot("Fixed (golden) vs float outputs", "float", "fixed", (lo, hi), (lo, hi))
    plot.line([lo, hi], [lo, hi], "#aaa")
    plot.dots(xs, ys, _COLORS[0])
    return plot.svg()


def render_html(report: dict) -> str:
    """One self-contained HTML page: the text summary, the key numbers and four inline SVG
    plots (error histogram in LSBs, per-timestep error, activation-table error curves,
    fixed vs float scatter). No scripts, no external resources."""
    e = html.escape
    rows = "".join(
        f"<tr><th>{e(label)}</th><td>{e(_fmt(_get(report, path)))}</td></tr>"
        for label, path in COMPARE_ROWS
        if _get(report, path) is not None
    )
    verdict = "bit-exact" if report["bit_exact"] else "MISMATCH"
    color = "#2ca02c" if report["bit_exact"] else "#d62728"
    plots = "".join(
        f'<div class="plot">{svg}</div>'
        for svg in (_svg_histogram(report), _svg_timesteps(report), _svg_tables(report),
                    _svg_scatter(report))
    )  # fmt: skip
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>lstmfpga report: {e(verdict)}</title><style>"
        ".diff{background:#fff3b0}.diag{background:#d8f0d8;font-weight:bold}"
        "body{font-family:sans-serif;margin:24px;max-width:1120px}"
        "table{border-collapse:collapse}th,td{padding:2px 10px;text-align:left;"
        "border-bottom:1px solid #eee}pre{background:#f6f6f6;padding:10px;overflow:auto}"
        ".plot{display:inline-block;margin:6px}"
        "</style></head><body>"
        f'<h1>lstmfpga report: <span style="color:{color}">{e(verdict)}</span></h1>'
        f"<pre>{e(render_text(report))}</pre>"
        f"{html_sections(report)}"
        f"<h2>Plots</h2>{plots}"
        f"<h2>Numbers</h2><table>{rows}</table>"
        "</body></html>\n"
    )


def _table(header: list[str], rows: list[list[str]], classes=None) -> str:
    """An HTML table of already-formatted cells; ``classes[r][c]`` (optional) a CSS class."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = ""
    for r, row in enumerate(rows):
        cells = ""
        for c, cell in enumerate(row):
            css = classes[r][c] if classes else ""
            attr = f' class="{css}"' if css else ""
            cells += f"<td{attr}>{e(cell)}</td>"
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def synthesis_rows(report: dict) -> list[tuple[str, str]]:
    """``(label, value)`` rows of a report's ``synthesis`` (:func:`lstmfpga.synth.synthesize`'s
    result merged in): resources against the device's capacity, Fmax, critical path."""
    syn = report.get("synthesis")
    if not isinstance(syn, dict):
        return []
    rows = [("target", f"{syn.get('target', '?')} {syn.get('device', '')}".strip())]
    capacity = syn.get("capacity") or {}
    for key in ("luts", "ffs", "dsps", "brams"):
        if key in syn:
            cap = capacity.get(key)
            share = f" of {cap:,} ({syn[key] / cap:.1%})" if isinstance(cap, int) and cap else ""
            rows.append((key.upper().rstrip("S") + "s", f"{syn[key]:,}{share}"))
    if syn.get("fmax_mhz") is not None:
        met = syn.get("timing_met")
        verdict = ", met" if met else ", not met" if met is not None else ""
        asked = _fmt(syn.get("freq_mhz"))
        rows.append(("Fmax", f"{_fmt(syn['fmax_mhz'])} MHz (asked {asked} MHz{verdict})"))
    path = syn.get("critical_path")
    if isinstance(path, dict):
        rows.append(("critical path", ", ".join(f"{k} {_fmt(v)}" for k, v in path.items()
                                                 if not isinstance(v, list | dict))))  # fmt: skip
    if syn.get("cached"):
        rows.append(("note", "reused from the synthesis cache"))
    return rows


def cycle_rows(report: dict) -> list[tuple[str, str]]:
    """The cycle breakdown of one sequence: load, compute, drain, per step."""
    c = report["cycles"]
    rows = []
    for label, key in (("load (input beats)", "load"), ("compute (tlast in to first result)",
                       "compute"), ("drain (results)", "drain"),
                       ("per sequence", "per_sequence"), ("compute per timestep (average)",
                       "per_timestep"), ("model compute (exact)", "model_compute")):  # fmt: skip
        if key in c:
            rows.append((label, _fmt(c[key])))
    for layer, cycles in (c.get("model_step") or {}).items():
        rows.append((f"model step, layer {layer}", _fmt(cycles)))
    return rows


def html_sections(report: dict) -> str:
    """The synthesis, cycle, port and confusion-matrix sections of the HTML page."""
    parts = []
    syn = synthesis_rows(report)
    if syn:
        parts.append("<h2>Synthesis</h2>" + _table(["", "value"], [list(r) for r in syn]))
    parts.append("<h2>Cycles per sequence</h2>"
                 + _table(["", "cycles"], [list(r) for r in cycle_rows(report)]))  # fmt: skip
    ports = report.get("ports")
    if ports:
        parts.append("<h2>Ports (AXI4-Stream)</h2>" + _table(
            ["port", "direction", "bits", "elements per sequence"],
            [[p["name"], p["direction"], str(p["bits"]), f"{p['elements_per_sequence']:,}"]
             for p in ports],
        ))  # fmt: skip
    confusion = report.get("accuracy", {}).get("confusion")
    if confusion:
        n = len(confusion)
        rows = [[str(i), *(str(v) for v in row)] for i, row in enumerate(confusion)]
        classes = [["", *("diag" if i == j else "" for j in range(n))] for i in range(n)]
        parts.append("<h2>Confusion matrix (rows: label, columns: hardware's class)</h2>"
                     + _table(["label", *map(str, range(n))], rows, classes))  # fmt: skip
    return "".join(parts)


def render_compare_html(reports: list[dict]) -> str:
    """The reports side by side as one self-contained HTML page: the compare rows, synthesis
    and cycle breakdown; a cell that differs from the first report's is highlighted."""
    if len(reports) < 1:
        raise ValueError("compare needs at least one report")
    e = html.escape
    header = ["", *(_label(r, i) for i, r in enumerate(reports))]

    def section(title, getter):
        labels: list[str] = []
        per_report = []
        for r in reports:
            rows = dict(getter(r))
            per_report.append(rows)
            labels += [k for k in rows if k not in labels]
        if not labels:
            return ""
        table = [[label, *(d.get(label, "-") for d in per_report)] for label in labels]
        classes = [
            ["", *("" if i == 0 or row[i + 1] == row[1] else "diff" for i in range(len(reports)))]
            for row in table
        ]
        return f"<h2>{e(title)}</h2>" + _table(header, table, classes)

    def summary(r):
        return [(label, _fmt(_get(r, path))) for label, path in COMPARE_ROWS
                if _get(r, path) is not None]  # fmt: skip

    body = (section("Summary", summary) + section("Synthesis", synthesis_rows)
            + section("Cycles per sequence", cycle_rows))  # fmt: skip
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>lstmfpga compare: {len(reports)} reports</title><style>"
        "body{font-family:sans-serif;margin:24px}"
        "table{border-collapse:collapse}th,td{padding:2px 10px;text-align:left;"
        "border-bottom:1px solid #eee}.diff{background:#fff3b0}"
        "</style></head><body>"
        f"<h1>lstmfpga compare: {len(reports)} reports</h1>"
        "<p>Highlighted: differs from the first report.</p>"
        f"{body}</body></html>\n"
    )
