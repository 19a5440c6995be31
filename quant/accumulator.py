"""Accumulator alignment: the one accumulator format every dot product of a model adds in.

Every dot product (see ``docs/numerics.md``) accumulates in one format with ``acc_frac =
max`` over all products of ``frac(w) + frac(v)`` (and the bias fractions); a product
``w * v`` enters shifted left by ``acc_frac - frac(w) - frac(v)``, a bias code by ``acc_frac -
frac(b)``. :func:`describe_products` lists a model's dot products, :func:`accumulator_format`
sizes the accumulator that holds them all, and :func:`cell_sum_bits` bounds the aligned cell
update (an LSTM's ``f*c + i*g``, a GRU's ``(1 - z)*n + z*h``).
"""

from __future__ import annotations

from .fixed import FixedFormat, FormatError, bits_for_range

__all__ = ["accumulator_format", "cell_sum_bits", "describe_products"]


def accumulator_format(
    products: list[tuple[list[tuple[int, int, int]], tuple[int, int] | None]],
    requested_bits: int | None = None,
) -> FixedFormat:
    """The accumulator format for ``products``.

    Each product is ``(segments, bias)``: ``segments`` a list of
    ``(length, weight_fmt, vector_fmt)``-derived ``(length, frac_sum, magnitude)`` with
    ``magnitude`` the largest ``|w*v|`` code product; ``bias`` ``(frac, magnitude)``.
    """
    frac = max(
        max([f for _, f, _ in segments] + ([bias[0]] if bias else []))
        for segments, bias in products
    )
    bound = 0
    for segments, bias in products:
        total = sum(n * mag << (frac - f) for n, f, mag in segments)
        if bias is not None:
            total += bias[1] << (frac - bias[0])
        bound = max(bound, total)
    bits = bits_for_range(-bound, bound)
    if requested_bits is not None:
        if requested_bits < bits:
            raise FormatError(
                f"accumulator of {requested_bits} bits cannot hold a dot product: needs {bits} bits"
            )
        bits = requested_bits
    if bits > 62:
        raise FormatError(f"accumulator would need {bits} bits (> 62): use narrower formats")
    return FixedFormat(bits, frac)


def cell_sum_bits(gate: FixedFormat, cell: FixedFormat) -> int:
    """Signed width of the aligned cell sum ``(f*c_prev << fc) + (i*g << ig)``.

    Gate activations lie in ``[-ONE, ONE]`` (``ONE = 2**gate.frac``) whatever the gate width;
    ``c_prev`` is any ``cell`` code. Shifts as in :class:`lstmfpga.quant.golden.CellArithmetic`.
    A GRU's update ``((ONE - z)*n << zn) + (z*h_prev << zh)`` has the same bound with
    ``hidden`` for ``cell`` (``ONE - z`` and ``z`` lie in ``[0, ONE]``).
    """
    sum_frac = gate.frac + max(cell.frac, gate.frac)
    one = 1 << gate.frac
    bound = (one * _magnitude(cell) << (sum_frac - gate.frac - cell.frac)) + (
        one * one << (sum_frac - 2 * gate.frac)
    )
    return bits_for_range(-bound, bound)


def _magnitude(fmt: FixedFormat) -> int:
    return max(abs(fmt.min_code), abs(fmt.max_code))


def describe_products(model) -> list:
    """Every dot product of ``model`` as ``(segments, bias)`` for ``accumulator_format``.

    A GRU has three per (layer, direction): the r and z rows ``W_ih u + W_hh h + b``, the
    recurrent n sum ``W_hn h + b_hn`` and the n pre-activation ``W_in u + b_in + r * hn``
    (``r`` in ``[0, ONE]``, ``hn`` any ``hn`` code)."""
    h = model.formats["hidden"]
    gru = getattr(model, "cell", "lstm") == "gru"
    products = []
    for index, directions in enumerate(model.layers):
        u = model.input_format(index)
        for q in directions:
            w_u = (q.w_ih.codes.shape[1], q.w_ih.fmt.frac + u.frac,
                   _magnitude(q.w_ih.fmt) * _magnitude(u))  # fmt: skip
            w_h = (q.w_hh.codes.shape[1], q.w_hh.fmt.frac + h.frac,
                   _magnitude(q.w_hh.fmt) * _magnitude(h))  # fmt: skip
            bias = None if q.bias is None else (q.bias.fmt.frac, _magnitude(q.bias.fmt))
            products.append(([w_u, w_h], bias))
            if gru:
                hn, gate = model.formats["hn"], model.formats["gate"]
                b_hn = None if q.b_hn is None else (q.b_hn.fmt.frac, _magnitude(q.b_hn.fmt))
                products.append(([w_h], b_hn))
                r_hn = (1, gate.frac + hn.frac, (1 << gate.frac) * _magnitude(hn))
                products.append(([w_u, r_hn], bias))
            if q.w_hr is not None:
                products.append(
                    ([(q.w_hr.codes.shape[1], q.w_hr.fmt.frac + h.frac,
                       _magnitude(q.w_hr.fmt) * _magnitude(h))], None)
                )  # fmt: skip
    if model.head is not None:
        w, b = model.head.weight, model.head.bias
        segments = [(w.codes.shape[1], w.fmt.frac + h.frac, _magnitude(w.fmt) * _magnitude(h))]
        products.append((segments, None if b is None else (b.fmt.frac, _magnitude(b.fmt))))
    return products
