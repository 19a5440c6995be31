"""Reports as text: the summary of one report, and several side by side.

:func:`render_text` is the one text summary of a report (printed by ``lstmfpga simulate``,
``lstmfpga report``, the demo and :meth:`lstmfpga.design.Design.report`); :func:`compare`
puts reports side by side with deltas against the first. Both are pure functions of
reports (schema: ``docs/report.md``).
"""

from __future__ import annotations

import math

__all__ = [
    "COMPARE_ROWS",
    "compare",
    "cycle_rows",
    "fmt",
    "render_text",
    "report_label",
    "report_value",
    "synthesis_rows",
]


def fmt(value, digits: int = 4) -> str:
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
    o, c, q, m = (
        report["outputs"],
        report["cycles"],
        report["quantization"],
        report["model"],
    )
    sim = report["simulator"]
    head = m["head"]
    lines = [
        (
            f"bit-exact: {fmt(report['bit_exact'])} "
            f"({o['total']:,} outputs of {o['sequences']} sequences x {o['timesteps']} steps, "
            f"{o['mismatched']:,} mismatched, max error {o['max_lsb_error']} LSB"
            + (", design error flag set" if o.get("error_flag") else "")
            + ")"
        ),
        (
            f"simulator: {sim['name']} {sim['version']}; lanes {report['lanes']}, "
            f"max_seq_len {report['max_seq_len']}"
        ),
        f"model: {'GRU ' if m.get('cell') == 'gru' else ''}I={m['input_size']} "
        f"H={m['hidden_size']} L={m['num_layers']}"
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
    lines.append(
        "fixed vs float: "
        + (
            f"max abs {fmt(f['max_abs'])} ({fmt(f['max_lsb'])} LSB), rmse {fmt(f['rmse'])}, "
            f"SNR {fmt(f['snr_db'])} dB"
            if f.get("available")
            else f"n/a ({f.get('note', '')})"
        )
    )
    a = report["accuracy"]
    if a.get("available"):
        lines.append(
            f"accuracy ({a['count']} labels): float {fmt(a['float'])}, "
            f"fixed {fmt(a['fixed'])}, rtl {fmt(a['rtl'])}"
        )
    cyc = f"cycles: total {fmt(c['total'])}"
    if "per_timestep" in c:
        cyc += f", per sequence {fmt(c.get('per_sequence'))}, per timestep {fmt(c['per_timestep'])}"
    if "model_per_timestep" in c:
        cyc += f" (model: {fmt(c['model_per_timestep'])} per timestep on average"
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
            f"speed: {fmt(report['cycles_per_second'])} cycles/s "
            f"(simulated cycles / {fmt(report['wall_seconds'])} s of simulation"
        )
        t = report.get("timing")
        if t:
            build = "cached" if t["build_cached"] else f"{fmt(t['build_seconds'])} s"
            speed += f"; build {build}"
            if "end_to_end_seconds" in t:
                speed += f", end to end {fmt(t['end_to_end_seconds'])} s"
            speed += f", {t['jobs']} job{'s' if t['jobs'] != 1 else ''}"
        lines.append(speed + ")")
    lines += _synthesis_lines(report)
    return "\n".join(lines) + "\n"


def _synthesis_lines(report: dict) -> list[str]:
    """Cross-checks in other simulators; resources, Fmax and the latency it gives."""
    lines = [
        f"cross-check in {check['simulator']}: {check['sequences']} sequences, "
        f"bit-exact: {fmt(check['bit_exact'])}"
        for check in report.get("cross_checks", [])
    ]
    rows = synthesis_rows(report)
    if rows:
        lines.append("synthesis: " + "; ".join(f"{label} {value}" for label, value in rows))
        fmax, per_sequence = (
            report["synthesis"].get("fmax_mhz"),
            report["cycles"].get("per_sequence"),
        )
        if fmax and per_sequence:
            lines.append(
                f"latency at {fmax:.1f} MHz: {per_sequence / fmax:.2f} us per sequence "
                f"({fmax * 1e6 / per_sequence:,.0f} sequences/s)"
            )
    return lines


def synthesis_rows(report: dict) -> list[tuple[str, str]]:
    """``(label, value)`` rows of a report's ``synthesis`` (:func:`lstmfpga.synth.synthesize`'s
    result merged in): resources against the device's capacity, Fmax, critical path, and a
    note for the cache and for each input fed on chip (not pins)."""
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
        asked = fmt(syn.get("freq_mhz"))
        rows.append(("Fmax", f"{fmt(syn['fmax_mhz'])} MHz (asked {asked} MHz{verdict})"))
    path = syn.get("critical_path")
    if isinstance(path, dict):
        rows.append(("critical path", ", ".join(f"{k} {fmt(v)}" for k, v in path.items()
                                                 if not isinstance(v, list | dict))))  # fmt: skip
    if syn.get("cached"):
        rows.append(("note", "reused from the synthesis cache"))
    if syn.get("serial_inputs"):
        from lstmfpga.synth import serial_notes  # its wording, one owner

        rows += [("note", line) for line in serial_notes(syn)]
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
            rows.append((label, fmt(c[key])))
    for layer, cycles in (c.get("model_step") or {}).items():
        rows.append((f"model step, layer {layer}", fmt(cycles)))
    return rows


#: What :func:`compare` shows: (label, path in the report).
COMPARE_ROWS = (
    ("bit-exact", ("bit_exact",)),
    ("cell", ("model", "cell")),
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


#: Values a report leaves out because they are the default: an LSTM report's ``model`` section
#: has no ``cell`` key (its format predates GRUs).
DEFAULTS = {("model", "cell"): "lstm"}


def report_value(report: dict, path: tuple[str, ...]):
    """The value at ``path`` in ``report``, its default if the report leaves it out (see
    :data:`DEFAULTS`), or None."""
    if path in DEFAULTS and isinstance(report.get(path[0]), dict):
        return report[path[0]].get(path[1], DEFAULTS[path])
    value = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def report_label(report: dict, index: int) -> str:
    sim, preset = report["simulator"]["name"], report["quantization"]["preset"]
    cell = report_value(report, ("model", "cell"))
    suffix = " GRU" if cell == "gru" else ""
    return f"#{index + 1} {sim} P={report['lanes']} {preset}{suffix}"


def compare(reports: list[dict]) -> str:
    """A side-by-side table of ``reports``; numbers after the first carry their difference to
    the first (``+12 (+3.1%)``). Works across simulators, lane counts and presets."""
    if len(reports) < 1:
        raise ValueError("compare needs at least one report")
    header = ["", *(report_label(r, i) for i, r in enumerate(reports))]
    rows = [header]
    for label, path in COMPARE_ROWS:
        values = [report_value(r, path) for r in reports]
        if all(v is None for v in values):
            continue
        base = values[0]
        cells = [label, fmt(base)]
        for value in values[1:]:
            cell = fmt(value)
            numeric = (int, float)
            if (
                isinstance(value, numeric) and isinstance(base, numeric)
                and not isinstance(value, bool) and not isinstance(base, bool)
            ):  # fmt: skip
                delta = value - base
                if delta:
                    cell += f" ({'+' if delta > 0 else ''}{fmt(delta)}"
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
