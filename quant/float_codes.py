"""Integer codes held in float64, exactly: rounding in place, codes to table indices in one
addition, and activation tables as index-ordered maps (the tools of
:mod:`lstmfpga.quant.datapath_float`)."""

from __future__ import annotations

import weakref

import numpy as np

from .fixed import FixedFormat

#: float64 holds every integer below 2**53; the fast datapath keeps magnitudes below 2**52.
EXACT_FLOAT_BITS = 53


class CodeIndex:
    """Rounded float codes of a format → indices ``code - min_code`` into a code map.

    For ``y`` an exact float with ``|y| < 2**52``, ``y + (2**52 + A)`` (``A = 2**bits``)
    is one IEEE addition: for ``y >= -A`` the sum lies in ``[2**52, 2**53)``, where floats are
    the integers, so it is rounded half-even to ``2**52 + A + rint(y)`` (``A`` is even), whose
    bit pattern as ``int64`` is ``bits(2**52) + A + rint(y)``. Subtracting the constant
    ``bits(2**52) + A + min_code`` leaves ``rint(y) - min_code``. Rounding is monotonic, so
    ``y < -A`` (far below ``min_code``) gives a negative index and ``y + A >= 2**52`` an index
    far beyond the map: an index outside ``[0, size)`` is exactly a code outside the format.
    An integer ``y`` comes through unchanged, whatever the rounding mode.
    """

    def __init__(self, fmt: FixedFormat):
        offset = 1 << fmt.bits
        self.size = offset
        self.magic = 2.0**52 + offset
        self.key = int(np.float64(2.0**52).view(np.int64)) + offset + fmt.min_code
        self.min_code = fmt.min_code

    def __call__(self, y: np.ndarray, index: np.ndarray) -> int:
        """Add the magic to ``y`` in place and write the indices; return how many codes fall
        outside the format."""
        np.add(y, self.magic, out=y)
        np.subtract(y.view(np.int64), self.key, out=index)
        return self.count_outside(index)

    def count_outside(self, index: np.ndarray) -> int:
        """How many of ``index`` fall outside ``[0, size)``: codes outside the format."""
        wide = index.view(np.uint64)  # negative indices are huge unsigned ones
        if wide.max() < self.size:
            return 0
        return int(np.count_nonzero(wide >= self.size))

    def codes(self, index: np.ndarray) -> np.ndarray:
        """The saturated codes of ``index`` (for traces)."""
        return np.clip(index, 0, self.size - 1) + self.min_code


#: index_map results per table (tables are immutable), by (scale, dtype).
_MAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def index_map(table, scale: int, dtype=np.float64) -> np.ndarray:
    """``table``'s output codes times ``2**scale``, indexed by ``code - min_code``, as
    ``dtype`` (which must hold every value exactly: see :func:`fits_float32`). Read-only,
    cached per table."""
    cache = _MAPS.setdefault(table, {})
    key = (scale, np.dtype(dtype).str)
    if key not in cache:
        code_map = table._code_map()  # negative codes at the end
        split = len(code_map) + table.in_fmt.min_code
        values = np.concatenate([code_map[split:], code_map[:split]]).astype(np.float64)
        if scale:
            values *= 2.0**scale
        values = values.astype(dtype)
        values.setflags(write=False)
        cache[key] = values
    return cache[key]


def fits_float32(values: np.ndarray) -> bool:
    """Whether float32 holds every value of ``values`` exactly."""
    return bool(np.array_equal(values.astype(np.float32), values))


def round_half_even(y: np.ndarray) -> None:
    np.rint(y, out=y)


def round_half_up(y: np.ndarray) -> None:
    y += 0.5
    np.floor(y, out=y)


def round_truncate(y: np.ndarray) -> None:
    np.floor(y, out=y)


#: In-place rounding of exact floats ``y = x * 2**-shift`` to integers, per rounding mode:
#: ``rint`` is half_even, ``floor`` truncate and ``floor(y + 1/2)`` half_up (exact too).
ROUNDERS = {"half_even": round_half_even, "half_up": round_half_up, "truncate": round_truncate}
