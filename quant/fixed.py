"""Fixed-point formats, rounding and overflow: the integer arithmetic everything else uses.

A value ``v`` in format ``Q(signed, bits, frac)`` is stored as the integer code
``round(v * 2**frac)``, limited to the range of a ``bits``-wide two's-complement (or unsigned)
integer. All functions work on NumPy ``int64`` arrays, vectorized; widths up to 62 bits.

``shift_round(code, shift, rounding)`` is the one requantization primitive: an arithmetic
right shift by ``shift`` bits with one of the rounding modes below. The hardware implements
exactly this function (see ``docs/numerics.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "OVERFLOW_MODES",
    "ROUNDING_MODES",
    "FixedFormat",
    "FormatError",
    "bits_for_range",
    "check_codes",
    "requantize",
    "saturate",
    "shift_round",
    "wrap",
]

#: ``half_even``: round to nearest, ties to even (IEEE default, unbiased).
#: ``half_up``: round to nearest, ties towards +infinity (add half an LSB, then floor).
#: ``truncate``: floor (drop the low bits of the two's-complement code; rounds towards -inf).
ROUNDING_MODES = ("half_even", "half_up", "truncate")
#: ``saturate``: clamp to the format's range; ``wrap``: keep the low ``bits`` (two's complement).
OVERFLOW_MODES = ("saturate", "wrap")

MAX_BITS = 62


class FormatError(ValueError):
    """An impossible fixed-point format or quantization setting."""


@dataclass(frozen=True)
class FixedFormat:
    """A fixed-point number format.

    Parameters
    ----------
    bits : int
        Total width including the sign bit, 1..62 (2..62 when signed).
    frac : int
        Fraction bits (position of the binary point). May be negative (coarse steps) or larger
        than ``bits`` (a range below one LSB of the integer part).
    signed : bool
        Two's complement when true (the default).
    """

    bits: int
    frac: int
    signed: bool = True

    def __post_init__(self):
        if not isinstance(self.bits, int | np.integer) or isinstance(self.bits, bool):
            raise FormatError(f"bits must be an integer, not {self.bits!r}")
        if not isinstance(self.frac, int | np.integer) or isinstance(self.frac, bool):
            raise FormatError(f"frac must be an integer, not {self.frac!r}")
        minimum = 2 if self.signed else 1
        if not minimum <= self.bits <= MAX_BITS:
            raise FormatError(f"bits must be in {minimum}..{MAX_BITS}, not {self.bits!r}")
        if not -MAX_BITS <= self.frac <= 2 * MAX_BITS:
            raise FormatError(f"frac must be in -{MAX_BITS}..{2 * MAX_BITS}, not {self.frac!r}")
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "frac", int(self.frac))
        object.__setattr__(self, "signed", bool(self.signed))

    # -- range ------------------------------------------------------------------------------
    @property
    def min_code(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def int_bits(self) -> int:
        """Integer bits excluding the sign bit: ``bits - frac - signed``."""
        return self.bits - self.frac - int(self.signed)

    @property
    def lsb(self) -> float:
        return 2.0**-self.frac

    @property
    def min_value(self) -> float:
        return self.min_code * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_code * self.lsb

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}"

    @classmethod
    def parse(cls, text: str) -> FixedFormat:
        """Parse ``"s16.12"`` / ``"u8.8"`` (the :meth:`__str__` form)."""
        try:
            kind, rest = text[0], text[1:]
            bits, frac = rest.split(".")
            if kind not in "su":
                raise ValueError
            return cls(int(bits), int(frac), kind == "s")
        except (ValueError, IndexError):
            raise FormatError(f"format must look like 's16.12' or 'u8.8', not {text!r}") from None

    def to_dict(self) -> dict:
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed}

    @classmethod
    def from_dict(cls, data: dict) -> FixedFormat:
        try:
            return cls(data["bits"], data["frac"], data.get("signed", True))
        except (KeyError, TypeError):
            raise FormatError(f"format must have 'bits' and 'frac', not {data!r}") from None

    # -- conversion -------------------------------------------------------------------------
    def quantize(
        self, values, rounding: str = "half_even", overflow: str = "saturate"
    ) -> np.ndarray:
        """Float values → integer codes (``int64``) with ``rounding`` and ``overflow``."""
        _check_mode(rounding, overflow)
        return self.fit(self.round_codes(values, rounding), overflow)

    def round_codes(self, values, rounding: str = "half_even") -> np.ndarray:
        """Float values → integer codes (``int64``) rounded per ``rounding``, before overflow.

        The codes are exact: ``round(v * 2**frac)`` computed without double rounding. Codes
        beyond ``±2**62`` are clipped to ``±2**62`` (far outside any format). Raises
        :class:`FormatError` for NaN or infinite values.
        """
        _check_mode(rounding)
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise FormatError("cannot quantize non-finite values (NaN or Inf)")
        limit = float(2**MAX_BITS)
        with np.errstate(over="ignore"):  # overflow to inf: clipped below
            scaled = np.clip(np.ldexp(values, self.frac), -limit, limit)
        if rounding == "half_even":
            codes = np.rint(scaled)
        elif rounding == "half_up":
            # floor(scaled + 0.5) would round 0.49999999999999994 up (the sum rounds to 1.0);
            # ``scaled - floor(scaled)`` is exact, so compare the fraction instead.
            codes = np.floor(scaled)
            codes = codes + (scaled - codes >= 0.5)
        elif rounding == "truncate":
            codes = np.floor(scaled)
            # ldexp may underflow a tiny negative value to -0.0: its floor is still -1.
            codes = codes - ((scaled == 0) & (values < 0))
        else:  # pragma: no cover - _check_mode guards
            raise FormatError(f"rounding must be one of {ROUNDING_MODES}, not {rounding!r}")
        return codes.astype(np.int64)

    def dequantize(self, codes) -> np.ndarray:
        """Integer codes → float64 values."""
        return np.ldexp(np.asarray(codes, dtype=np.float64), -self.frac)

    def fit(self, codes, overflow: str = "saturate") -> np.ndarray:
        """Bring integer ``codes`` into range: :func:`saturate` or :func:`wrap`."""
        if overflow == "saturate":
            return saturate(codes, self)
        if overflow == "wrap":
            return wrap(codes, self)
        raise FormatError(f"overflow must be one of {OVERFLOW_MODES}, not {overflow!r}")

    def overflows(self, codes) -> np.ndarray:
        """Boolean mask of codes outside the format's range."""
        codes = np.asarray(codes, dtype=np.int64)
        return (codes < self.min_code) | (codes > self.max_code)


def _check_mode(rounding: str, overflow: str = "saturate") -> None:
    if rounding not in ROUNDING_MODES:
        raise FormatError(f"rounding must be one of {ROUNDING_MODES}, not {rounding!r}")
    if overflow not in OVERFLOW_MODES:
        raise FormatError(f"overflow must be one of {OVERFLOW_MODES}, not {overflow!r}")


def saturate(codes, fmt: FixedFormat) -> np.ndarray:
    """Clamp integer codes to ``fmt``'s range."""
    return np.clip(np.asarray(codes, dtype=np.int64), fmt.min_code, fmt.max_code)


def wrap(codes, fmt: FixedFormat) -> np.ndarray:
    """Keep the low ``fmt.bits`` bits, reinterpreted in ``fmt``'s signedness."""
    codes = np.asarray(codes, dtype=np.int64)
    mask = (1 << fmt.bits) - 1
    low = codes & mask
    if fmt.signed:
        low = np.where(low >= (1 << (fmt.bits - 1)), low - (1 << fmt.bits), low)
    return low.astype(np.int64)


def shift_round(codes, shift: int, rounding: str = "half_even") -> np.ndarray:
    """Arithmetic shift of integer codes by ``shift`` bits with rounding.

    ``shift > 0`` divides by ``2**shift`` and rounds per ``rounding``; ``shift <= 0``
    multiplies by ``2**-shift`` (exact while the result fits ``int64``). ``shift`` is in
    ``-62..62``. Codes and results are ``int64``. With ``q = floor(code / 2**shift)`` and
    ``r = code - q * 2**shift`` (``0 <= r < 2**shift``):

    * ``truncate``: ``q``;
    * ``half_up``: ``q + (r >= 2**(shift-1))``;
    * ``half_even``: ``q + (r > 2**(shift-1) or (r == 2**(shift-1) and q is odd))``.
    """
    _check_mode(rounding)
    if not isinstance(shift, int | np.integer) or isinstance(shift, bool):
        raise FormatError(f"shift must be an integer, not {shift!r}")
    if not -MAX_BITS <= shift <= MAX_BITS:
        raise FormatError(f"shift must be in -{MAX_BITS}..{MAX_BITS}, not {shift!r}")
    shift = int(shift)
    codes = np.asarray(codes, dtype=np.int64)
    if shift <= 0:
        return codes << -shift
    floor = codes >> shift
    if rounding == "truncate":
        return floor
    remainder = codes & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rounding == "half_up":
        return floor + (remainder >= half)
    # half_even: up when above half, or exactly half and the floor is odd.
    up = (remainder > half) | ((remainder == half) & ((floor & 1) == 1))
    return floor + up


def requantize(
    codes,
    shift: int,
    fmt: FixedFormat,
    rounding: str = "half_even",
    overflow: str = "saturate",
) -> tuple[np.ndarray, int]:
    """``shift_round`` then fit into ``fmt``; returns ``(codes, overflow_count)``.

    ``overflow_count`` is the number of rounded codes outside ``fmt``'s range (the ones that
    were saturated or wrapped).
    """
    shifted = shift_round(codes, shift, rounding)
    if overflow == "saturate":
        fitted = saturate(shifted, fmt)
        return fitted, int(np.count_nonzero(fitted != shifted))
    return fmt.fit(shifted, overflow), int(np.count_nonzero(fmt.overflows(shifted)))


def bits_for_range(low: int, high: int) -> int:
    """Smallest two's-complement width holding every integer in ``[low, high]``."""
    low, high = int(low), int(high)
    bits = 1
    while not (-(1 << (bits - 1)) <= low and high <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def check_codes(
    name: str, codes, shape: tuple, fmt: FixedFormat, error: type[Exception] = FormatError
) -> np.ndarray:
    """``codes`` as ``int64`` (not copied if already ``int64``: read, do not modify) if it is
    an integer array of ``shape`` whose every value fits ``fmt``; else ``error`` (one line
    naming ``name``). The check the golden model and the host runtime apply to codes they
    are given."""
    codes = np.asarray(codes)
    if codes.shape != shape:
        raise error(f"{name} must have shape {shape}, not {codes.shape}")
    if codes.dtype.kind not in "iu":
        raise error(f"{name} must be integer codes, not dtype {codes.dtype}")
    # min/max of the given dtype: a uint64 code above 2**63 does not wrap into range.
    if codes.size and (codes.min() < fmt.min_code or codes.max() > fmt.max_code):
        raise error(f"{name} has codes outside {fmt}")
    return codes.astype(np.int64, copy=False)
