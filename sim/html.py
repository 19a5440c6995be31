"""Reports as self-contained HTML pages with inline SVG plots (no scripts, no resources).

:func:`render_html` is one report's page, :func:`render_compare_html` several reports side
by side; :class:`Plot` is the small SVG plotter both use (and the explore page).
"""

from __future__ import annotations

import html
import math

from .render import (
    COMPARE_ROWS,
    cycle_rows,
    fmt,
    render_text,
    report_label,
    report_value,
    synthesis_rows,
)

__all__ = ["COLORS", "Plot", "empty_svg", "render_compare_html", "render_html"]


_W, _H = 520, 260
_PAD = (56, 16, 22, 40)  # left, right, top, bottom
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


class Plot:
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


def empty_svg(title: str, note: str) -> str:
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
    plot = Plot(
        title,
        "|error| (LSB)",
        "outputs",
        (edges[0], edges[-1]),
        (0, max(heights) * 1.1 or 1),
    )
    plot.bars(edges[:-1], edges[1:], heights, COLORS[0])
    return plot.svg()


def _svg_timesteps(report: dict) -> str:
    f = report["fixed_vs_float"]
    per_step = f.get("per_timestep_max_abs") or []
    mism = report["outputs"].get("mismatches_per_timestep") or []
    if not per_step and not any(mism):
        return empty_svg(
            "Error per timestep",
            "no per-timestep outputs (a 'last' head) or no float reference, and no mismatches",
        )
    if per_step:
        lsb = f["output_lsb"]
        ys = [v / lsb for v in per_step]
        plot = Plot("Max |fixed - float| per timestep", "timestep", "LSB",
                     (0, max(1, len(ys) - 1)), (0, max(ys) * 1.1 or 1))  # fmt: skip
        plot.line(range(len(ys)), ys, COLORS[0], "fixed vs float")
        if any(mism):
            plot.dots(range(len(mism)), [min(m, plot.ylim[1]) for m in mism], COLORS[1],
                      "RTL mismatches")  # fmt: skip
        return plot.svg()
    plot = Plot("RTL mismatches per timestep", "timestep", "mismatches",
                 (0, max(1, len(mism) - 1)), (0, max(mism) * 1.1))  # fmt: skip
    plot.line(range(len(mism)), mism, COLORS[1], "RTL mismatches")
    return plot.svg()


def _svg_tables(report: dict) -> str:
    curves = {k: c for k, c in report.get("activation_tables", {}).items() if c["x"]}
    if not curves:
        return empty_svg("Activation tables", "no curve data in this report")
    xs = [x for c in curves.values() for x in c["x"]]
    ys = [y for c in curves.values() for y in c["error_lsb"]]
    lim = max(1e-9, max(abs(y) for y in ys))
    plot = Plot("Activation table error vs exact function", "input", "error (output LSB)",
                 (min(xs), max(xs)), (-lim * 1.1, lim * 1.1))  # fmt: skip
    for n, (name, c) in enumerate(curves.items()):
        plot.line(c["x"], c["error_lsb"], COLORS[n % len(COLORS)], name)
    return plot.svg()


def _svg_scatter(report: dict) -> str:
    f = report["fixed_vs_float"]
    if not f.get("available"):
        return empty_svg("Fixed vs float", f.get("note", "no float reference"))
    xs, ys = f["scatter"]["float"], f["scatter"]["fixed"]
    lo, hi = min(xs + ys), max(xs + ys)
    plot = Plot("Fixed (golden) vs float outputs", "float", "fixed", (lo, hi), (lo, hi))
    plot.line([lo, hi], [lo, hi], "#aaa")
    plot.dots(xs, ys, COLORS[0])
    return plot.svg()


def render_html(report: dict) -> str:
    """One self-contained HTML page: the text summary, the key numbers and four inline SVG
    plots (error histogram in LSBs, per-timestep error, activation-table error curves,
    fixed vs float scatter). No scripts, no external resources."""
    e = html.escape
    rows = "".join(
        f"<tr><th>{e(label)}</th><td>{e(fmt(report_value(report, path)))}</td></tr>"
        for label, path in COMPARE_ROWS
        if report_value(report, path) is not None
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
    header = ["", *(report_label(r, i) for i, r in enumerate(reports))]

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
            [
                "",
                *("" if i == 0 or row[i + 1] == row[1] else "diff" for i in range(len(reports))),
            ]
            for row in table
        ]
        return f"<h2>{e(title)}</h2>" + _table(header, table, classes)

    def summary(r):
        return [(label, fmt(report_value(r, path))) for label, path in COMPARE_ROWS
                if report_value(r, path) is not None]  # fmt: skip

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
