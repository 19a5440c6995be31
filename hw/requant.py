"""Requantization logic: the hardware form of :func:`lstmfpga.quant.fixed.requantize`.

``shift_round`` (arithmetic right shift with ``half_even``, ``half_up`` or ``truncate``
rounding, or an exact left shift for negative shifts) followed by ``saturate`` or ``wrap`` into
a :class:`~lstmfpga.quant.fixed.FixedFormat`. Purely combinational; callers register the
result. The shift is a constant (selected per use by the caller).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value
from amaranth.lib import data

from ..quant.fixed import FixedFormat, FormatError

__all__ = [
    "requant_parts_layout",
    "requantize",
    "requantize_finish",
    "requantize_offset",
    "requantize_parts",
    "rounding_offset",
    "rounding_up",
    "shift_round",
]


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


def _floor_up(value: Value, shift: int, rounding: str) -> tuple[Value, Value]:
    """The floor ``value >> shift`` (an exact left shift when ``shift <= 0``) and the
    rounding increment ``up`` of :func:`requantize`."""
    if shift <= 0:
        return value << -shift, Const(0, 1)
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
    return floor, up


def requant_parts_layout(bits: int) -> data.StructLayout:
    """The layout of :func:`requantize_parts` for codes of at most ``bits`` bits: ``low``
    (the floor's low bits), ``up`` (the rounding increment), ``all1``/``any1`` (all / any of
    the floor's bits from ``b - 1`` up set), ``high_all1`` (all of them from ``b`` up set),
    ``low_all1`` (the floor's bits below ``b - 1`` all set), ``negative``."""
    return data.StructLayout(
        {"low": bits, "up": 1, "all1": 1, "any1": 1, "high_all1": 1, "low_all1": 1,
         "negative": 1}
    )  # fmt: skip


def rounding_up(value: Value, shift: int, rounding: str) -> Value:
    """The rounding increment of :func:`requantize` (1 bit) alone: it reads only the low
    ``shift + 1`` bits of ``value``, so a pipeline can compute it beside the adder that makes
    ``value`` and pass it to :func:`requantize_parts` (``up=``) one stage later."""
    return _floor_up(Value.cast(value).as_signed(), shift, rounding)[1]


def requantize_parts(
    value: Value, shift: int, fmt: FixedFormat, rounding: str, up: Value | None = None
) -> dict:
    """The first half of :func:`requantize`: the floor's low ``fmt.bits`` bits, the rounding
    increment (``up`` when given: :func:`rounding_up` of the same value) and the bit
    reductions of the range checks (fields of :func:`requant_parts_layout`), no carry chain.
    Register them and finish with :func:`requantize_finish`."""
    if not fmt.signed:
        raise FormatError(f"hardware formats must be signed, not {fmt}")
    b = fmt.bits
    floor, computed_up = _floor_up(Value.cast(value).as_signed(), shift, rounding)
    up = computed_up if up is None else up
    f = _sign_extend(floor, b + 1)
    upper = f[b - 1 :]
    return {
        "low": f[:b],
        "up": up,
        "all1": upper.all(),
        "any1": upper.any(),
        "high_all1": f[b:].all(),
        "low_all1": f[: b - 1].all() if b > 1 else Const(1, 1),
        "negative": f[-1],
    }


def requantize_finish(parts, fmt: FixedFormat, overflow: str) -> tuple[Value, Value]:
    """The second half of :func:`requantize` from the (registered) ``parts`` of
    :func:`requantize_parts` (a :func:`requant_parts_layout` view or the dict itself): ``(code,
    overflowed)``, the rounding increment (one ``fmt.bits``-wide carry chain) and the
    saturation multiplexer."""
    b = fmt.bits

    def get(name):
        return parts[name] if isinstance(parts, dict) else getattr(parts, name)

    low, up, negative = Value.cast(get("low"))[:b], get("up"), get("negative")
    fits = get("all1") | ~get("any1")
    is_max = ~get("any1") & get("low_all1")
    is_min_minus_1 = get("high_all1") & ~low[b - 1] & get("low_all1")
    too_high = (~negative & ~fits) | (up & is_max)
    too_low = negative & ~fits & ~(up & is_min_minus_1)
    rounded = (low + up)[:b].as_signed()
    if overflow == "saturate":
        code = Mux(too_high, fmt.max_code, Mux(too_low, fmt.min_code, rounded))
    elif overflow == "wrap":
        code = rounded
    else:
        raise FormatError(f"overflow must be saturate or wrap, not {overflow!r}")
    return code.as_signed()[:b].as_signed(), too_high | too_low


def requantize(
    value: Value,
    shift: int,
    fmt: FixedFormat,
    rounding: str,
    overflow: str,
    up: Value | None = None,
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
    ``fmt.bits``-wide increment remains a carry chain. It is
    :func:`requantize_finish` of :func:`requantize_parts` (a pipeline registers between the
    two); ``up`` as there (the increment computed ahead, :func:`rounding_up`).
    """
    if overflow not in ("saturate", "wrap"):
        raise FormatError(f"overflow must be saturate or wrap, not {overflow!r}")
    return requantize_finish(requantize_parts(value, shift, fmt, rounding, up), fmt, overflow)


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
