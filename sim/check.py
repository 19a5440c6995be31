"""Checking hardware outputs against the golden model, by integer equality.

:func:`check_outputs` compares the per-sequence ``m_axis`` elements a simulator produced with
the golden model's and locates every mismatch by sequence, tensor, timestep and index; its
result is the report's ``outputs`` section (``docs/report.md``).
"""

from __future__ import annotations

import numpy as np

from .streams import StreamGeometry

__all__ = ["MISMATCH_LIMIT", "check_outputs"]

#: Mismatches listed in ``outputs.first_mismatches``.
MISMATCH_LIMIT = 20


def _locate(geom: StreamGeometry, T: int, k: int) -> tuple[str, int | None, int]:
    """``(tensor, timestep, index)`` of element ``k`` of one sequence's ``m_axis`` stream."""
    shape = geom.prediction_shape(T)
    n = int(np.prod(shape))
    if k < n:
        if len(shape) == 2:
            return "prediction", k // shape[1], k % shape[1]
        return "prediction", None, k
    k -= n
    nh = geom.states * geom.output_size
    if k < nh:
        return "h_n", None, k
    return "c_n", None, k - nh


def check_outputs(rtl, golden, geometry: StreamGeometry, T: int, *, limit: int = MISMATCH_LIMIT):
    """Compare per-sequence ``m_axis`` elements ``rtl`` with ``golden`` (lists of int arrays,
    or 2-D arrays) by integer equality.

    Returns the report's ``outputs`` section: ``total`` elements compared, ``mismatched``,
    ``max_lsb_error`` (largest ``|rtl - golden|`` in codes), ``lsb_error_counts``
    (``{error: count}``), ``missing`` (golden elements with no hardware counterpart, counted
    as mismatches), ``first_mismatches`` (up to ``limit`` of ``{sequence, tensor, timestep,
    index, rtl, golden}``; ``timestep`` is null for tensors without a time axis) and
    ``mismatches_per_timestep``.
    """
    if len(rtl) != len(golden):
        raise ValueError(f"rtl has {len(rtl)} sequences, golden has {len(golden)}")
    total = mismatched = missing = 0
    worst = 0
    counts: dict[int, int] = {}
    first: list[dict] = []
    per_step = [0] * T
    for b, (got, want) in enumerate(zip(rtl, golden, strict=True)):
        got = np.asarray(got, dtype=np.int64).reshape(-1)
        want = np.asarray(want, dtype=np.int64).reshape(-1)
        n = min(got.size, want.size)
        total += want.size
        missing += want.size - n
        mismatched += want.size - n
        error = np.abs(got[:n] - want[:n])
        values, freq = np.unique(error, return_counts=True)
        for v, f in zip(values.tolist(), freq.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + f
        bad = np.flatnonzero(error)
        mismatched += bad.size
        if bad.size:
            worst = max(worst, int(error.max()))
        for k in bad.tolist():
            tensor, step, index = _locate(geometry, T, k)
            if step is not None:
                per_step[step] += 1
            if len(first) < limit:
                first.append(
                    {"sequence": b, "tensor": tensor, "timestep": step, "index": index,
                     "rtl": int(got[k]), "golden": int(want[k])}
                )  # fmt: skip
    return {
        "total": total,
        "mismatched": mismatched,
        "missing": missing,
        "max_lsb_error": worst,
        "lsb_error_counts": {str(k): v for k, v in sorted(counts.items())},
        "first_mismatches": first,
        "mismatches_per_timestep": per_step,
    }
