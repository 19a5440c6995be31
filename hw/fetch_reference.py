"""What :class:`~.fetch.VectorFetch` must do, as plain Python: the reference its tests compare
the hardware with, beat by beat."""

from __future__ import annotations

from .layout import WeightLayout
from .schedule import Schedule

__all__ = ["fetch_reference"]


def fetch_reference(model, layout: WeightLayout, schedule: Schedule, T: int, buffers: dict,
                    *, initial_state: bool):  # fmt: skip
    """What :class:`~.fetch.VectorFetch` does with a sequence of ``T`` steps, beat by beat in
    schedule order: ``(position, group, col, vector, needs, early)`` with ``position`` the
    item's ``(p, s, sub)``, ``vector`` the ``S`` elements read from ``buffers`` (``{name: list
    of codes}``, names as :attr:`~.fetch.VectorFetch.buffers`), ``needs`` the write-back
    position the beat waits for (``(p,)``, ``(p, s)`` or ``(p, s, sub)``; ``None``: nothing)
    and ``early`` ``(position, count)`` or None: the beat may also go while the write-back is
    at ``position`` (the item writing the results it reads, in index order) with at least
    ``count`` of them written (recurrent ``h``, a projection's ``m``, a unidirectional
    model's head; a beat whose last slot is padding waits for ``needs``)."""
    S, out = layout.simd, []
    for p, s, sub, t in schedule.items(T):
        ps = schedule.passes[p]
        mx = layout.matrices[ps.matrices[sub]]
        columns = [_element(model, buffers, ps, mx.kind, s, t, T, col, initial_state)
                   for col in range(mx.chunks * S)]  # fmt: skip
        in_len = model.input_size if ps.layer <= 0 else model.num_directions * model.output_size
        last_sub = len(ps.matrices) - 1
        for g in range(mx.groups):
            for chunk in range(mx.chunks):
                col = chunk * S
                end = col + S - 1  # the beat's last column
                early = None
                if mx.kind == "proj" and end < mx.cols:
                    early = ((p, s, 0), end + 1)
                elif mx.kind == "gates" and s > 0 and in_len <= end < mx.cols:
                    early = ((p, s - 1, last_sub), end - in_len + 1)
                elif mx.kind == "head" and model.num_directions == 1 and end < mx.cols:
                    top = schedule.passes[p - 1]  # the top layer's pass, its last step
                    early = ((p - 1, T - 1, len(top.matrices) - 1), end + 1)
                if mx.kind == "proj":
                    needs = (p, s, 1)
                elif mx.kind == "head":
                    needs = (schedule.head_pass,)
                elif col + S - 1 >= in_len and s > 0:
                    needs = (p, s)
                elif col < in_len and ps.layer > 0:
                    needs = (schedule.first_pass_of_layer(ps.layer),)
                else:
                    needs = None
                out.append(((p, s, sub), g, col, columns[col : col + S], needs, early))
    return out


def _element(q, buffers, ps, kind, s, t, T, col, initial_state) -> int:
    """Column ``col`` of the input vector of a ``kind`` item of pass ``ps`` at step ``s``."""
    I, Ho, H, L = q.input_size, q.output_size, q.hidden_size, q.num_layers
    DHo, layer, d = q.num_directions * Ho, max(ps.layer, 0), ps.direction
    in_len = I if layer == 0 else DHo
    if col >= {"gates": in_len + Ho, "proj": H, "head": DHo}[kind]:
        return 0
    if kind == "proj":
        return buffers["mbuf"][col]
    if kind == "head":
        return buffers[f"obuf{(L - 1) % 2}"][t * DHo + col]
    if col < in_len:
        if layer == 0:
            return buffers["xbuf"][t * I + col]
        return buffers[f"obuf{(layer - 1) % 2}"][t * DHo + col]
    k = col - in_len
    if s == 0:
        return buffers["h0buf"][layer * DHo + d * Ho + k] if initial_state else 0
    t_prev = T - s if ps.reverse else s - 1
    return buffers[f"obuf{layer % 2}"][t_prev * DHo + d * Ho + k]
