"""Sigmoid and tanh lookup tables: generated here, used verbatim by the golden model and the
hardware ROMs.

Contract (also in ``docs/numerics.md``). For an input code ``p`` in ``in_fmt``:

1. fold: ``a = |p|`` (an unsigned magnitude of ``in_fmt.bits - 1`` bits, plus one for the
   most negative code);
2. index by bit-slice: ``k = a >> shift``, ``r = a & (2**shift - 1)``; when ``k >= size``
   (input beyond the table's range) ``k = size``, ``r = 0``;
3. look up: direct tables return ``y = entries[k]``; interpolating tables return
   ``y = shift_round((entries[k] << shift) + slopes[k] * r, shift + guard, "half_up")``;
4. unfold: sigmoid ``y = ONE - y`` and tanh ``y = -y`` when ``p < 0``
   (``ONE = 2**out_fmt.frac``), so only the non-negative half is stored.

Entries are integer codes with ``out_fmt.frac + guard`` fraction bits. Direct tables sample
``f`` at interval midpoints ``(k + 0.5) * step`` (halving the error of a bit-slice index);
interpolating tables sample knots ``k * step`` and ``slopes[k] = entries[k+1] - entries[k]``
(``slopes[size] = 0``). There are ``size + 1`` entries; the last one is used beyond the range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed import FixedFormat, FormatError, shift_round

__all__ = ["FUNCTIONS", "ActivationTable", "TableError", "exact_activation", "make_table"]

FUNCTIONS = ("sigmoid", "tanh")
#: Rounding of the interpolation (step 3 of the rule): fixed, whatever the model's
#: rounding mode.
LUT_ROUNDING = "half_up"
#: :meth:`ActivationTable.lookup` caches the result of every input code up to this width.
CODE_MAP_BITS = 18
#: :meth:`ActivationTable.error` checks every input code up to this width.
EXHAUSTIVE_BITS = 24
_CHUNK = 1 << 20


def exact_activation(function: str, x) -> np.ndarray:
    """The exact (float64) ``function`` the tables approximate: ``sigmoid(x)`` computed as
    ``0.5 * (1 + tanh(x / 2))`` (no overflow for large ``|x|``), or ``tanh(x)``. Table
    entries and :meth:`ActivationTable.error` are measured against it."""
    x = np.asarray(x, dtype=np.float64)
    if function == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))
    if function == "tanh":
        return np.tanh(x)
    raise FormatError(f"function must be one of {FUNCTIONS}, not {function!r}")


@dataclass(frozen=True)
class TableError:
    """Error of a table against the exact function, over every input code, in output LSBs."""

    max_lsb: float
    mean_lsb: float
    exhaustive: bool = True


@dataclass(frozen=True, eq=False)
class ActivationTable:
    """A folded sigmoid/tanh table and its indexing rule (see the module docstring).

    Members
    -------
    function : ``"sigmoid"`` or ``"tanh"``
    in_fmt, out_fmt : FixedFormat
    shift : int
        Low bits of ``|p|`` dropped to form the index (the interpolation fraction).
    size : int
        Number of intervals; ``entries`` has ``size + 1`` values.
    interpolate : bool
    guard : int
        Extra fraction bits of the entries (0 for direct tables).
    entries, slopes : int64 arrays of length ``size + 1`` (read-only)
    """

    function: str
    in_fmt: FixedFormat
    out_fmt: FixedFormat
    shift: int
    size: int
    interpolate: bool
    guard: int
    entries: np.ndarray
    slopes: np.ndarray

    # -- derived widths, for the hardware ----------------------------------------------------
    @property
    def magnitude_bits(self) -> int:
        """Width of ``a = |p|`` (``in_fmt.bits``, as ``-min_code`` needs one more bit)."""
        return self.in_fmt.bits

    @property
    def index_bits(self) -> int:
        """Width of the ROM address: enough for ``0..size``."""
        return max(1, int(self.size).bit_length())

    @property
    def entry_bits(self) -> int:
        """Signed width holding every entry."""
        return _signed_width(self.entries)

    @property
    def slope_bits(self) -> int:
        return _signed_width(self.slopes)

    @property
    def interpolates(self) -> bool:
        """Whether a lookup uses the slopes (step 3 interpolates): ``interpolate`` with a
        non-zero ``shift`` (with ``shift == 0`` the fraction ``r`` is always 0 and the rule is
        the direct one). The hardware has a slope ROM and a multiplier exactly when this holds.
        """
        return bool(self.interpolate) and self.shift > 0

    @property
    def rom_word_bits(self) -> int:
        """Width of one ROM word: an entry, plus its slope when the table :attr:`interpolates`."""
        return self.entry_bits + (self.slope_bits if self.interpolates else 0)

    @property
    def one(self) -> int:
        """The code of 1.0 in ``out_fmt`` (sigmoid's fold reference)."""
        return 1 << self.out_fmt.frac

    # -- evaluation --------------------------------------------------------------------------
    def exact(self, x) -> np.ndarray:
        """The exact function this table approximates, at real values ``x``
        (:func:`exact_activation`)."""
        return exact_activation(self.function, x)

    def lookup(self, codes) -> np.ndarray:
        """Apply the table to input codes (any shape), returning output codes (``int64``).

        Follows the rule in the module docstring for any ``int64`` code. For input formats of
        at most :data:`CODE_MAP_BITS` bits the results for every code are computed once by
        that rule and then read back (same values, faster).
        """
        p = np.asarray(codes, dtype=np.int64)
        code_map = self._code_map()
        if code_map is not None and p.ndim and p.size:
            if p.min() >= self.in_fmt.min_code and p.max() <= self.in_fmt.max_code:
                return code_map[p]
        return self._lookup_rule(p)

    def lookup_in_range(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`lookup` for ``int64`` codes already known to lie in ``in_fmt`` (no check)."""
        code_map = self._code_map()
        return self._lookup_rule(codes) if code_map is None else code_map[codes]

    def _code_map(self) -> np.ndarray | None:
        """Output code of every input code, indexed by the code itself (negative codes index
        from the end, as NumPy does), or None when ``in_fmt`` is wider than CODE_MAP_BITS."""
        if self.in_fmt.bits > CODE_MAP_BITS:
            return None
        cached = self.__dict__.get("_map")
        if cached is None:
            n = 1 << self.in_fmt.bits
            p = np.arange(n, dtype=np.int64)
            p[p > self.in_fmt.max_code] -= n  # p[j] = j, or j - n for negative codes
            cached = self._lookup_rule(p)
            cached.setflags(write=False)
            object.__setattr__(self, "_map", cached)
        return cached

    def _lookup_rule(self, p: np.ndarray) -> np.ndarray:
        a = np.abs(p)
        k = a >> self.shift
        r = a & ((1 << self.shift) - 1)
        beyond = k >= self.size
        k = np.where(beyond, self.size, k)
        r = np.where(beyond, 0, r)
        if self.interpolate:
            ext = (self.entries[k] << self.shift) + self.slopes[k] * r
            y = shift_round(ext, self.shift + self.guard, LUT_ROUNDING)
        else:
            y = shift_round(self.entries[k], self.guard, LUT_ROUNDING)
        negative = p < 0
        if self.function == "sigmoid":
            y = np.where(negative, self.one - y, y)
        else:
            y = np.where(negative, -y, y)
        return y.astype(np.int64)

    def error(self) -> TableError:
        """Max and mean error over every input code, in output LSBs, against float64 ``f``.

        Input formats wider than :data:`EXHAUSTIVE_BITS` bits are checked on every code of
        the table's range boundaries and interval ends plus an even sample of the rest
        (``TableError.exhaustive`` is then false).
        """
        fmt = self.in_fmt
        scale = 2.0**self.out_fmt.frac
        if fmt.bits <= EXHAUSTIVE_BITS:
            chunks = (
                np.arange(lo, min(lo + _CHUNK, fmt.max_code + 1), dtype=np.int64)
                for lo in range(fmt.min_code, fmt.max_code + 1, _CHUNK)
            )
            total = 1 << fmt.bits
            exhaustive = True
        else:
            # Interval ends (k << shift and the code before), the last in-range code, the
            # extremes, and an even sample in between; both signs.
            ends = np.arange(self.size + 1, dtype=np.int64) << self.shift
            sample = np.linspace(0, fmt.max_code, 1 << 20).astype(np.int64)
            mags = np.unique(np.concatenate([ends, ends - 1, sample, [0, fmt.max_code]]))
            mags = mags[(mags >= 0) & (mags <= fmt.max_code)]
            p = np.concatenate([mags, -mags, [fmt.min_code]])
            chunks, total, exhaustive = (p,), p.size, False
        worst, acc = 0.0, 0.0
        for p in chunks:
            exact = exact_activation(self.function, fmt.dequantize(p)) * scale
            err = np.abs(self.lookup(p) - exact)
            worst, acc = max(worst, float(err.max())), acc + float(err.sum())
        return TableError(worst, acc / total, exhaustive)

    @property
    def rom_bits(self) -> int:
        """ROM bits the table needs: ``size + 1`` words of :attr:`rom_word_bits`."""
        return (self.size + 1) * self.rom_word_bits

    def to_dict(self) -> dict:
        return {
            "function": self.function,
            "in_fmt": self.in_fmt.to_dict(),
            "out_fmt": self.out_fmt.to_dict(),
            "shift": self.shift,
            "size": self.size,
            "interpolate": self.interpolate,
            "guard": self.guard,
        }


def _signed_width(values: np.ndarray) -> int:
    low, high = int(values.min(initial=0)), int(values.max(initial=0))
    bits = 2
    while not (-(1 << (bits - 1)) <= low and high < (1 << (bits - 1))):
        bits += 1
    return bits


def make_table(
    function: str,
    in_fmt: FixedFormat,
    out_fmt: FixedFormat,
    *,
    step_log2: int = -7,
    range_log2: int | None = None,
    interpolate: bool = True,
    guard: int = 4,
) -> ActivationTable:
    """Build the folded table of ``function`` for ``in_fmt`` → ``out_fmt``.

    ``step_log2``: the table spacing is ``2**step_log2`` (never finer than one input LSB).
    ``range_log2``: inputs with ``|x| >= 2**range_log2`` use the last entry; ``None`` covers
    the whole input format. ``guard``: extra fraction bits of interpolating entries.
    """
    if function not in FUNCTIONS:
        raise FormatError(f"function must be one of {FUNCTIONS}, not {function!r}")
    if not in_fmt.signed:
        raise FormatError(f"activation input format must be signed, not {in_fmt}")
    if not out_fmt.signed or out_fmt.max_code < (1 << out_fmt.frac):
        raise FormatError(
            f"activation output format must be signed and hold 1.0, not {out_fmt} "
            f"(use frac <= bits - 2)"
        )
    if not 0 <= guard <= 16:
        raise FormatError(f"guard must be in 0..16, not {guard!r}")
    # Magnitude bits of |p| covering the table range, in input LSBs.
    full = in_fmt.bits - 1
    span = full if range_log2 is None else min(full, range_log2 + in_fmt.frac)
    if span < 0:
        raise FormatError(f"range_log2 {range_log2} is below one input LSB of {in_fmt}")
    shift = min(max(0, in_fmt.frac + step_log2), span)
    size = 1 << (span - shift)
    if size > 1 << 16:
        raise FormatError(
            f"{function} table would need {size} entries (step 2**{step_log2} over "
            f"{in_fmt}); raise step_log2 or lower range_log2"
        )
    if not interpolate or shift == 0:
        interpolate, guard = False, 0
    k = np.arange(size + 1, dtype=np.float64)
    step = 2.0 ** (shift - in_fmt.frac)
    points = k * step if interpolate else (k + 0.5) * step
    if not interpolate:
        points[-1] = size * step  # beyond the range: the value at the range end
        if shift == 0:  # one entry per code: exact samples, no midpoint
            points = k * step
    entries = np.floor(exact_activation(function, points) * 2.0 ** (out_fmt.frac + guard) + 0.5)
    entries = entries.astype(np.int64)
    slopes = np.zeros_like(entries)
    if interpolate:
        slopes[:-1] = np.diff(entries)
    entries.setflags(write=False)
    slopes.setflags(write=False)
    return ActivationTable(
        function, in_fmt, out_fmt, shift, size, interpolate, guard, entries, slopes
    )
