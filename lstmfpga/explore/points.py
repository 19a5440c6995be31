"""The points of a sweep: their fields and their Pareto fronts."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["FRONTS", "POINT_FIELDS", "pareto_mask", "with_fronts"]

#: The fields of every point in ``explore.json`` (``error`` is None for a finished point).
POINT_FIELDS = (
    "lanes",
    "simd",
    "cells",
    "preset",
    "cell",
    "target",
    "device",
    "seed",
    "bit_exact",
    "luts",
    "ffs",
    "dsps",
    "brams",
    "fmax_mhz",
    "cycles",
    "latency_us",
    "throughput",
    "accuracy",
    "weight_bits",
    "pareto",
    "error",
)

#: The Pareto fronts: name → (x field, y field, x sense, y sense); "min" or "max".
FRONTS = {
    "latency_luts": ("luts", "latency_us", "min", "min"),
    "latency_dsps": ("dsps", "latency_us", "min", "min"),
    "accuracy_bits": ("weight_bits", "accuracy", "min", "max"),
}


def pareto_mask(x: Sequence[float], y: Sequence[float], senses=("min", "min")) -> np.ndarray:
    """True for the points no other point dominates (at least as good in both, better in one).

    ``senses`` says for each axis whether smaller (``"min"``) or larger (``"max"``) is better.
    NaN marks a point without a value: it is never on the front.
    """
    a = np.asarray(x, dtype=np.float64) * (1 if senses[0] == "min" else -1)
    b = np.asarray(y, dtype=np.float64) * (1 if senses[1] == "min" else -1)
    valid = ~(np.isnan(a) | np.isnan(b))
    a, b = np.where(valid, a, np.inf), np.where(valid, b, np.inf)
    no_worse = (a[:, None] <= a[None, :]) & (b[:, None] <= b[None, :])  # [j, i]: j vs i
    better = (a[:, None] < a[None, :]) | (b[:, None] < b[None, :])
    dominated = (no_worse & better & valid[:, None]).any(axis=0)
    return valid & ~dominated


def with_fronts(points: list[dict]) -> list[dict]:
    for name, (xf, yf, xs, ys) in FRONTS.items():

        def value(p, f):
            v = p.get(f)
            return math.nan if v is None or p.get("error") else float(v)

        mask = pareto_mask([value(p, xf) for p in points], [value(p, yf) for p in points], (xs, ys))
        for p, on in zip(points, mask, strict=True):
            p["pareto"][name] = bool(on)
    return points
