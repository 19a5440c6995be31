"""The golden pipeline restated with the public primitives, one timestep at a time: the
reference the optimized ``golden.run`` is compared with (tests/quant/test_golden*.py).

Written from ``docs/numerics.md`` with :func:`~lstmfpga.quant.golden.dot_accumulate`,
:func:`~lstmfpga.quant.fixed.requantize`, ``ActivationTable.lookup`` and
:class:`~lstmfpga.quant.golden.CellArithmetic` on int64 codes, batch-major throughout, with
no fast path of its own.
"""

from __future__ import annotations

import numpy as np

from lstmfpga.quant import golden
from lstmfpga.quant.fixed import requantize


def restated_run(model, x_codes, h0, c0):
    """The golden pipeline written out with the public primitives, one timestep at a time."""
    f, r, o = model.formats, model.rounding, model.overflow
    counts = Counts()
    cell = golden.CellArithmetic.of(model)
    sig, tanh_g = model.tables["sigmoid"], model.tables["tanh_gate"]
    H, D = model.hidden_size, model.num_directions
    T = x_codes.shape[1]
    layer_input, traces = x_codes, {}
    for index, directions in enumerate(model.layers):
        outputs = []
        for d, q in enumerate(directions):
            s_in, s_rec, s_b = model.gate_shifts(index, d)
            h, c = h0[index * D + d], c0[index * D + d]
            rec = {k: [None] * T for k in ("preact", "gates", "c", "m", "h")}
            for t in range(T - 1, -1, -1) if d else range(T):
                u = layer_input[:, t]
                shifts = np.r_[np.full(u.shape[1], s_in), np.full(h.shape[1], s_rec)]
                weights = np.concatenate([q.w_ih.codes, q.w_hh.codes], axis=1)
                bias = None if q.bias is None else q.bias.codes
                acc = golden.dot_accumulate(weights, np.concatenate([u, h], 1), shifts, bias, s_b)
                pre, n = requantize(acc, model.requant_shift("preact"), f["preact"], r, o)
                counts.add("preact", n)
                gates = sig.lookup(pre)
                gates[:, 2 * H : 3 * H] = tanh_g.lookup(pre[:, 2 * H : 3 * H])
                i_, f_, g_, o_ = (gates[:, k * H : (k + 1) * H] for k in range(4))
                c, m = cell.update(i_, f_, g_, o_, c, counts)
                h = m
                if q.w_hr is not None:
                    acc = golden.dot_accumulate(q.w_hr.codes, m, model.proj_shift(index, d))
                    h, n = requantize(acc, model.requant_shift("hidden"), f["hidden"], r, o)
                    counts.add("hidden", n)
                for key, value in zip(rec, (pre, gates, c, m, h), strict=True):
                    rec[key][t] = value
            traces[(index, d)] = {k: np.stack(v, axis=1) for k, v in rec.items()}
            outputs.append(traces[(index, d)]["h"])
        layer_input = np.concatenate(outputs, axis=2)
    head = None
    if model.head is not None:
        source = layer_input[:, -1] if model.head.mode == "last" else layer_input
        s_w, s_b = model.head_shifts()
        bias = None if model.head.bias is None else model.head.bias.codes
        acc = golden.dot_accumulate(model.head.weight.codes, source, s_w, bias, s_b)
        head, n = requantize(acc, model.requant_shift("head_out"), f["head_out"], r, o)
        counts.add("head_out", n)
    return layer_input, traces, head, dict(counts)


class Counts(dict):
    """Saturation counts per role (``CellArithmetic.update`` calls ``add``)."""

    def add(self, role: str, count: int) -> None:
        self[role] = self.get(role, 0) + count


def random_states(model, batch: int, rng):
    """Random ``(h0, c0)`` codes over the whole ``hidden`` and ``cell`` ranges."""
    LD = len(model.layers) * model.num_directions
    return tuple(
        rng.integers(fmt.min_code, fmt.max_code + 1, (LD, batch, size))
        for fmt, size in (
            (model.formats["hidden"], model.output_size),
            (model.formats["cell"], model.hidden_size),
        )
    )
