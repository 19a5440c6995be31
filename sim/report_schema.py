"""The report's schema (``docs/report.md``) and the check a loaded report goes through.

:func:`validate_report` checks that a JSON object is a version-1 lstmfpga report with every
field the renderers read, of the right type; unknown fields are allowed.
"""

from __future__ import annotations

import json
import math

from ..errors import CLIError

__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "validate_report"]

REPORT_FORMAT = "lstmfpga.report"
REPORT_VERSION = 1


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
