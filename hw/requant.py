"""Requantization logic: the hardware form of :func:`lstmfpga.quant.fixed.requantize`.

``shift_round`` (arithmetic right shift with ``half_even``, ``half_up`` or ``truncate``
rounding, or an exact left shift for negative shifts) followed by ``saturate`` or ``wrap`` into
a :class:`~lstmfpga.quant.fixed.FixedFormat`. Purely combinational; callers register the
result. The shift is a constant (selected per use by the caller).
"""

from __future__ import annotations

from amaranth.hdl import Mux, Value

from ..quant.fixed import FixedFormat, FormatError

__all__ = ["requantize", "shift_round"]


def shift_round(value: Value, shift: int, rounding: str) -> Value:
    """``value`` (signed) divided by ``2**shift`` with ``rounding``; exact when ``shift <= 0``."""
    value = value.as_signed()
    if shift <= 0:
        return value << -shift
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


def requantize(
    value: Value, shift: int, fmt: FixedFormat, rounding: str, overflow: str
) -> tuple[Value, Value]:
    """Return ``(code, overflowed)``: ``code`` has shape ``signed(fmt.bits)``.

    ``overflowed`` is 1 when the rounded value did not fit ``fmt`` (then saturated or
    wrapped, per ``overflow``).
    """
    if not fmt.signed:
        raise FormatError(f"hardware formats must be signed, not {fmt}")
    rounded = shift_round(value, shift, rounding)
    low, high = fmt.min_code, fmt.max_code
    too_high = rounded > high
    too_low = rounded < low
    overflowed = too_high | too_low
    if overflow == "saturate":
        code = Mux(too_high, high, Mux(too_low, low, rounded))
    elif overflow == "wrap":
        code = rounded
    else:
        raise FormatError(f"overflow must be saturate or wrap, not {overflow!r}")
    return code[: fmt.bits].as_signed(), overflowed
