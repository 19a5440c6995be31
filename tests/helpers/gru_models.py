"""Seeded GRU specs and qmodels, an independent integer GRU step (tests of export/ and
quant/), and the per-step inputs of a golden trace (tests of the GRU hardware blocks)."""

from __future__ import annotations

import numpy as np

from lstmfpga.export.spec import HeadSpec, LayerWeights, ModelSpec
from lstmfpga.quant import gru_golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig
from lstmfpga.quant.golden import quantize_inputs


def random_gru_spec(
    seed: int,
    input_size: int = 3,
    hidden_size: int = 4,
    num_layers: int = 1,
    bidirectional: bool = False,
    bias: bool = True,
    head: str | None = None,
    scale: float = 1.0,
    head_out: int = 2,
) -> ModelSpec:
    """A GRU spec with weights uniform in ``[-scale, scale]`` and an optional head of
    ``head_out`` outputs (weights uniform in ``[-1, 1]``)."""
    rng = np.random.default_rng(seed)
    H, D = hidden_size, 2 if bidirectional else 1
    layers = []
    for index in range(num_layers):
        width = input_size if index == 0 else D * H
        directions = []
        for _ in range(D):
            b = (lambda: rng.uniform(-scale, scale, 3 * H)) if bias else (lambda: None)
            directions.append(
                LayerWeights(
                    w_ih=rng.uniform(-scale, scale, (3 * H, width)),
                    w_hh=rng.uniform(-scale, scale, (3 * H, H)),
                    b_ih=b(),
                    b_hh=b(),
                )
            )
        layers.append(tuple(directions))
    head_spec = None
    if head is not None:
        head_spec = HeadSpec(
            rng.uniform(-1, 1, (head_out, D * H)), rng.uniform(-1, 1, head_out), head
        )
    return ModelSpec(
        input_size, hidden_size, num_layers, bidirectional, 0, bias, tuple(layers), head_spec,
        cell="gru",
    )  # fmt: skip


def random_gru_qmodel(
    seed: int,
    config: dict,
    *,
    batch: int = 3,
    steps: int = 5,
    calib_scale: float = 0.5,
    **spec_kwargs,
):
    """``(qmodel, x_codes)``: :func:`random_gru_spec` (weights in ``[-2, 2]``) quantized with
    ``config`` (a :meth:`QuantConfig.from_dict` dict), calibrated on ``calib_scale`` times
    inputs uniform in ``[-1, 1]``, and those inputs (``(batch, steps, I)``) as codes, so that
    the golden run on them saturates a little when ``calib_scale < 1``."""
    spec = random_gru_spec(seed, scale=2.0, **spec_kwargs)
    x = np.random.default_rng(seed).uniform(-1, 1, (batch, steps, spec.input_size))
    model = quantize(spec, calib_scale * x, QuantConfig.from_dict(config))
    return model, quantize_inputs(model, x)


def step_inputs(model, x_codes, h0=None):
    """Run the golden GRU with a trace; return ``(result, steps)`` with ``steps[(l, d)]`` the
    dict ``{"u": (B, T, I_l), "h_prev": (B, T, H), **trace}`` by time: the layer input and the
    previous hidden state each step of that direction saw (``h0``, or zeros, at its first
    step: ``t = 0`` forward, ``t = T - 1`` reverse)."""
    result = gru_golden.run(model, x_codes, h0, trace=True)
    B = np.shape(x_codes)[0]
    H, D = model.hidden_size, model.num_directions
    steps = {}
    u = np.asarray(x_codes, np.int64)
    for layer in range(model.num_layers):
        for d in range(D):
            tr = result.trace[(layer, d)]
            start = np.zeros((B, H), np.int64) if h0 is None else np.asarray(h0)[layer * D + d]
            h = tr["h"]
            if d == 0:
                h_prev = np.concatenate([start[:, None], h[:, :-1]], axis=1)
            else:
                h_prev = np.concatenate([h[:, 1:], start[:, None]], axis=1)
            steps[(layer, d)] = {"u": u, "h_prev": h_prev, **tr}
        u = np.concatenate([result.trace[(layer, d)]["h"] for d in range(D)], axis=2)
    return result, steps


def mvu_beats(rows, vectors, P, S):
    """Beats of a ``P``-lane, ``S``-slot MVU for ``rows`` times each of ``vectors`` (``(cols,)``
    codes): per vector, per group of ``P`` rows (zero rows past the last), ``ceil(cols / S)``
    beats of ``S`` columns (zeros past the last)."""
    cols, chunks, groups = rows.cols, -(-rows.cols // S), -(-rows.rows // P)
    codes = np.zeros((groups * P, chunks * S), np.int64)
    codes[: rows.rows, :cols] = rows.codes
    bias = np.zeros(groups * P, np.int64)
    bias[: rows.rows] = rows.bias
    col_seg = np.zeros(chunks * S, np.int64)
    col_seg[:cols] = np.concatenate([np.full(seg.length, seg.shift_index) for seg in rows.segments])
    beats = []
    for vector in vectors:
        v = np.zeros(chunks * S, np.int64)
        v[:cols] = vector
        for g in range(groups):
            for c in range(chunks):
                w = codes[g * P : (g + 1) * P, c * S : (c + 1) * S].reshape(-1).tolist()
                vs, sel = v[c * S : (c + 1) * S].tolist(), col_seg[c * S : (c + 1) * S].tolist()
                beats.append({
                    "weights": w, "vector": vs[0] if S == 1 else vs,
                    "shift_sel": sel[0] if S == 1 else sel,
                    "bias": bias[g * P : (g + 1) * P].tolist(), "target_sel": 0,
                    "first": c == 0, "last": c == chunks - 1,
                })  # fmt: skip
    return beats, groups


# -- an independent, straightforward integer GRU (Python ints, one value at a time) ------------
def _shift_round(value: int, shift: int, rounding: str) -> int:
    if shift <= 0:
        return value << -shift
    q, r, half = value >> shift, value & ((1 << shift) - 1), 1 << (shift - 1)
    if rounding == "truncate":
        return q
    if rounding == "half_up":
        return q + (r >= half)
    return q + (r > half or (r == half and q % 2 == 1))


def _fit(value: int, fmt, overflow: str) -> tuple[int, bool]:
    low, high = fmt.min_code, fmt.max_code
    if low <= value <= high:
        return value, False
    if overflow == "saturate":
        return min(max(value, low), high), True
    return (value - low) % (1 << fmt.bits) + low, True


def reference_run(model, x_codes, h0=None):
    """``(output, h_n, head, saturation)`` of ``model`` on ``x_codes``, computed element by
    element from the equations of docs/numerics.md ("GRU"), independently of quant/."""
    f, acc = model.formats, model.acc
    rounding, overflow = model.rounding, model.overflow
    sat = {}

    def requant(value: int, target: str, role: str, frac: int | None = None) -> int:
        shift = (acc.frac if frac is None else frac) - f[target].frac
        code, over = _fit(_shift_round(value, shift, rounding), f[target], overflow)
        sat[role] = sat.get(role, 0) + over
        return code

    B, T, _ = np.shape(x_codes)
    H, D = model.hidden_size, model.num_directions
    sig, tanh = model.tables["sigmoid"], model.tables["tanh_gate"]
    one = 1 << f["gate"].frac
    sum_frac = f["gate"].frac + max(f["gate"].frac, f["hidden"].frac)
    seq = [[[int(v) for v in x_codes[b, t]] for t in range(T)] for b in range(B)]
    h_n = []
    for index, directions in enumerate(model.layers):
        u_fmt = f["x"] if index == 0 else f["hidden"]
        outputs = []
        for d, q in enumerate(directions):
            s_in = acc.frac - q.w_ih.fmt.frac - u_fmt.frac
            s_rec = acc.frac - q.w_hh.fmt.frac - f["hidden"].frac
            w_i, w_h = q.w_ih.codes.tolist(), q.w_hh.codes.tolist()
            bias = (
                [0] * 3 * H
                if q.bias is None
                else [c << (acc.frac - q.bias.fmt.frac) for c in q.bias.codes.tolist()]
            )
            b_hn = [0] * H if q.b_hn is None else [c << (acc.frac - q.b_hn.fmt.frac)
                                                   for c in q.b_hn.codes.tolist()]  # fmt: skip
            out = [[None] * T for _ in range(B)]
            finals = []
            for b in range(B):
                state = index * D + d
                h = [0] * H if h0 is None else [int(v) for v in h0[state, b]]
                for t in range(T - 1, -1, -1) if d else range(T):
                    u = seq[b][t]

                    def dot(w, v, j, s):
                        return sum((w[j][k] * v[k]) << s for k in range(len(v)))

                    new = []
                    for j in range(H):
                        r_j = int(sig.lookup(np.array([requant(
                            dot(w_i, u, j, s_in) + dot(w_h, h, j, s_rec) + bias[j],
                            "preact", "preact")]))[0])  # fmt: skip
                        z_j = int(sig.lookup(np.array([requant(
                            dot(w_i, u, H + j, s_in) + dot(w_h, h, H + j, s_rec) + bias[H + j],
                            "preact", "preact")]))[0])  # fmt: skip
                        hn_j = requant(dot(w_h, h, 2 * H + j, s_rec) + b_hn[j], "hn", "hn")
                        s_rn = acc.frac - f["gate"].frac - f["hn"].frac
                        pre_n = requant(dot(w_i, u, 2 * H + j, s_in) + bias[2 * H + j]
                                        + ((r_j * hn_j) << s_rn), "preact", "preact")  # fmt: skip
                        n_j = int(tanh.lookup(np.array([pre_n]))[0])
                        total = (((one - z_j) * n_j) << (sum_frac - 2 * f["gate"].frac)) + (
                            (z_j * h[j]) << (sum_frac - f["gate"].frac - f["hidden"].frac)
                        )
                        new.append(requant(total, "hidden", "hidden", frac=sum_frac))
                    h = new
                    out[b][t] = h
                finals.append(h)
            h_n.append(finals)
            outputs.append(out)
        seq = [[[v for o in outputs for v in o[b][t]] for t in range(T)] for b in range(B)]
    output = np.array(seq, dtype=np.int64)
    head = None
    if model.head is not None:
        w = model.head.weight
        s_w = acc.frac - w.fmt.frac - f["hidden"].frac
        rows = [seq[b][-1] for b in range(B)] if model.head.mode == "last" else None
        vectors = rows if rows is not None else [v for b in range(B) for v in seq[b]]
        codes = []
        for v in vectors:
            line = []
            for j, weights in enumerate(w.codes.tolist()):
                total = sum((wk * vk) << s_w for wk, vk in zip(weights, v, strict=True))
                if model.head.bias is not None:
                    total += int(model.head.bias.codes[j]) << (acc.frac - model.head.bias.fmt.frac)
                line.append(requant(total, "head_out", "head_out"))
            codes.append(line)
        head = np.array(codes, dtype=np.int64)
        if rows is None:
            head = head.reshape(B, T, -1)
    return output, np.array(h_n, dtype=np.int64), head, sat
