"""Requantization logic: the hardware form of :func:`lstmfpga.quant.fixed.requantize`.

``shift_round`` (arithmetic right shift with ``half_even``, ``half_up`` or ``truncate``
rounding, or an exact left shift for negative shifts) followed by ``saturate`` or ``wrap`` into
a :class:`~lstmfpga.quant.fixed.FixedFormat`. Purely combinational; callers register the
result. The shift is a constant (selected per use by the caller).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value

from ..quant.fixed import FixedFormat, FormatError

__all__ = ["requantize", "requantize_offset", "rounding_offset", "shift_round"]


def shift_round(value: Value, shift: int, rounding: str) -> Value:
    """``value`` (signed) divided by ``2**shift`` with ``rounding``; exact when ``shift <= 0``."""
    value = value.as_signed()
    if shift <= 0:
        return value << -shift
    value = _sign_extend(value, shift + 1)  # the remainder needs shift bits of the code
    floor = value >> shift  # arithmetic: floor division
    if rounding == "truncate":
        return floor
    remainder = value[:shift]
    half = 1 << (shift - 1)
    if rounding == "half_up":
        up = remainder >= half
    elif rounding == "half_even":
        up = (remainder > half) | ((remainder == half) & floor[0])
    else:
        raise FormatError(f"rounding must be half_even, half_up or truncate, not {rounding!r}")
    return floor + up


def _sign_extend(value: Value, width: int) -> Value:
    """``value`` (signed) sign-extended to at least ``width`` bits."""
    value = value.as_signed()
    return Cat(value, *([value[-1]] * (width - len(value)))).as_signed()


def requantize(
    value: Value, shift: int, fmt: FixedFormat, rounding: str, overflow: str
) -> tuple[Value, Value]:
    """``shift_round`` then saturate (or wrap) into ``fmt``: returns ``(code, overflowed)``.

    ``code`` has shape ``signed(fmt.bits)``; ``overflowed`` is 1 when the rounded value did
    not fit ``fmt``. Bit for bit :func:`lstmfpga.quant.fixed.requantize`, built for a short
    critical path: instead of comparing the rounded
    value with ``fmt``'s bounds (synthesis maps each comparison to a carry chain, in series
    with the rounding adder), the range checks are bit reductions on the floor
    ``f = value >> shift`` that run beside the rounding increment ``f + up``: ``f`` fits
    ``fmt`` when its bits from ``fmt.bits - 1`` up are all equal; ``f + up`` is too high
    when ``f`` is positive and does not fit, or ``up`` and ``f == max_code``; too low when
    ``f`` is negative and does not fit, unless ``up`` and ``f == min_code - 1``. Only the
    ``fmt.bits``-wide increment remains a carry chain.
    """
    if not fmt.signed:
        raise FormatError(f"hardware formats must be signed, not {fmt}")
    value = Value.cast(value).as_signed()
    b = fmt.bits
    if shift > 0:
        value = _sign_extend(value, shift + 1)
        floor, remainder = value[shift:].as_signed(), value[:shift]  # floor division
        if rounding == "truncate":
            up = Const(0, 1)
        elif rounding == "half_up":
            up = remainder[-1]
        elif rounding == "half_even":
            rest = remainder[:-1].any() if shift > 1 else Const(0, 1)
            up = remainder[-1] & (rest | floor[0])
        else:
            raise FormatError(f"rounding must be half_even, half_up or truncate, not {rounding!r}")
    else:
        floor, up = value << -shift, Const(0, 1)
    f = _sign_extend(floor, b + 1)
    upper = f[b - 1 :]
    negative = f[-1]
    fits = upper.all() | ~upper.any()
    is_max = ~upper.any() & f[: b - 1].all()
    is_min_minus_1 = f[b:].all() & ~f[b - 1] & f[: b - 1].all()
    too_high = (~negative & ~fits) | (up & is_max)
    too_low = negative & ~fits & ~(up & is_min_minus_1)
    rounded = (f[:b] + up)[:b].as_signed()
    if overflow == "saturate":
        code = Mux(too_high, fmt.max_code, Mux(too_low, fmt.min_code, rounded))
    elif overflow == "wrap":
        code = rounded
    else:
        raise FormatError(f"overflow must be saturate or wrap, not {overflow!r}")
    return code.as_signed()[:b].as_signed(), too_high | too_low


def rounding_offset(shift: int, rounding: str) -> int:
    """The constant ``h`` that :func:`requantize_offset` expects added to its value: half of
    the last dropped bit (``2**(shift-1)``) for ``half_even`` and ``half_up``, else 0."""
    if rounding not in ("half_even", "half_up", "truncate"):
        raise FormatError(f"rounding must be half_even, half_up or truncate, not {rounding!r}")
    return 1 << (shift - 1) if shift > 0 and rounding != "truncate" else 0


def requantize_offset(
    value: Value, shift: int, fmt: FixedFormat, rounding: str, overflow: str
) -> tuple[Value, Value]:
    """:func:`requantize` of ``value - rounding_offset(shift, rounding)``, bit for bit, for a
    ``value`` that already holds the rounding offset (e.g. added to a bias ahead of time).

    Then the rounded value is the floor ``f = value >> shift`` itself (``half_even``: with bit
    0 cleared on a tie, i.e. when the ``shift`` dropped bits of ``value`` are all zero; a tie
    makes ``f`` one above the true floor, and clearing bit 0 of an odd ``f`` is ``f - 1``),
    and ``f`` fits ``fmt`` exactly when that rounded value does (the tie correction never
    crosses a bound: ``min_code`` is even and ``max_code + 1`` is even). So no carry chain is
    left: the range check is a bit reduction on ``f`` and the code a multiplexer.
    """
    if not fmt.signed:
        raise FormatError(f"hardware formats must be signed, not {fmt}")
    if overflow not in ("saturate", "wrap"):
        raise FormatError(f"overflow must be saturate or wrap, not {overflow!r}")
    rounding_offset(shift, rounding)  # validates rounding
    value = Value.cast(value).as_signed()
    if shift <= 0:
        return requantize(value, shift, fmt, rounding, overflow)
    b = fmt.bits
    value = _sign_extend(value, shift + 1)
    floor = value[shift:].as_signed()
    f = _sign_extend(floor, b + 1)
    low = f[:b]
    if rounding == "half_even":
        tie = ~value[:shift].any()
        low = Cat(low[0] & ~tie, low[1:])
    upper = f[b - 1 :]
    fits = upper.all() | ~upper.any()
    negative = f[-1]
    if overflow == "saturate":
        code = Mux(fits, low.as_signed(), Mux(negative, fmt.min_code, fmt.max_code))
    else:
        code = low.as_signed()
    return code.as_signed()[:b].as_signed(), ~fits
