"""``explore.html``: one self-contained page, the Pareto plots and a sortable table."""

from __future__ import annotations

import html

from .points import FRONTS, POINT_FIELDS

__all__ = ["render_html"]

# -- the page -------------------------------------------------------------------------------------
_TABLE_SCRIPT = """
document.querySelectorAll('th[data-col]').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var col = +th.dataset.col, asc = th.dataset.sort !== 'asc';
    th.dataset.sort = asc ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

#: The table's columns: every field of a point but its Pareto flags and error.
_COLUMNS = tuple(f for f in POINT_FIELDS if f not in ("pareto", "error"))


def _front_svg(points: list[dict], name: str) -> str:
    from lstmfpga.sim.html import COLORS, Plot, empty_svg  # one SVG plotter

    xf, yf, _, _ = FRONTS[name]
    ok = [p for p in points if not p["error"] and p[xf] is not None and p[yf] is not None]
    title = f"{yf} vs {xf} (Pareto front in red)"
    if not ok:
        return empty_svg(title, f"no point has both {xf} and {yf}")
    xs, ys = [float(p[xf]) for p in ok], [float(p[yf]) for p in ok]
    pad = lambda lo, hi: (lo - 0.05 * (hi - lo or 1), hi + 0.05 * (hi - lo or 1))  # noqa: E731
    plot = Plot(title, xf, yf, pad(min(xs), max(xs)), pad(min(ys), max(ys)))
    plot.dots(xs, ys, COLORS[0], "points")
    front = sorted((float(p[xf]), float(p[yf])) for p in ok if p["pareto"][name])
    if front:
        plot.line([a for a, _ in front], [b for _, b in front], COLORS[1], "Pareto front")
        plot.dots([a for a, _ in front], [b for _, b in front], COLORS[1])
    return plot.svg()


def render_html(doc: dict) -> str:
    """``explore.json`` as one self-contained page: three Pareto plots, a sortable table."""
    e = html.escape
    points = doc["points"]

    def cell(p, col):
        v = p[col]
        shown = "" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
        return f'<td data-v="{e(str("" if v is None else v))}">{e(shown)}</td>'

    head = "".join(f'<th data-col="{i}">{e(c)}</th>' for i, c in enumerate(_COLUMNS))
    head += f'<th data-col="{len(_COLUMNS)}">pareto</th><th>error</th>'
    rows = []
    for p in points:
        fronts = ", ".join(k for k, on in p["pareto"].items() if on)
        style = ' class="front"' if fronts else ""
        rows.append(
            f"<tr{style}>"
            + "".join(cell(p, c) for c in _COLUMNS)
            + f'<td data-v="{e(fronts)}">{e(fronts)}</td><td>{e(p["error"] or "")}</td></tr>'
        )
    plots = "".join(f'<div class="plot">{_front_svg(points, n)}</div>' for n in FRONTS)
    sweep = doc["sweep"]
    summary = (
        f"{len(points)} points ({sum(1 for p in points if p['error'])} failed), "
        f"{doc['computed']} tasks computed, {doc['cached']} cached, "
        f"{doc['wall_seconds']:.1f} s; sweep: "
        + "; ".join(
            f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sweep.items()
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>lstmfpga explore</title><style>"
        "body{font-family:sans-serif;margin:24px}table{border-collapse:collapse}"
        "th,td{padding:2px 8px;text-align:right;border-bottom:1px solid #eee}"
        "th[data-col]{cursor:pointer;background:#f3f3f3}tr.front td{background:#fff3f3}"
        ".plot{display:inline-block;margin:6px}"
        "</style></head><body><h1>lstmfpga explore</h1>"
        f"<p>{e(summary)}</p><h2>Pareto fronts</h2>{plots}"
        f'<h2>Points</h2><table id="points"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"<script>{_TABLE_SCRIPT}</script></body></html>\n"
    )
