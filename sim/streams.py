"""The accelerator's stream contract, as NumPy: what goes into ``s_axis`` and what comes out
of ``m_axis`` for one sequence. Every simulation flow packs and unpacks through here.

Input of sequence ``b`` (with ``initial_state``): ``h0[:, b, :]`` (state-major, ``L*D*H_out``
codes), ``c0[:, b, :]`` (``L*D*H``), then ``x[b]`` time-major (``T*I``).
Output: the prediction of sequence ``b`` flattened (head ``last``: ``out``; head ``all``:
``T*out``; no head: ``T*D*H_out``), then with ``with_states`` ``h_n[:, b, :]`` and
``c_n[:, b, :]`` flattened. The lengths are
:class:`~lstmfpga.hw.stream_geometry.StreamGeometry`'s (re-exported here).
"""

from __future__ import annotations

import numpy as np

from ..hw.stream_geometry import StreamGeometry

__all__ = ["StreamGeometry", "pack_inputs", "pack_outputs", "unpack_outputs"]


def pack_inputs(geom: StreamGeometry, x_codes, b: int, h0=None, c0=None) -> np.ndarray:
    """The ``s_axis`` elements of sequence ``b`` (int64); ``x_codes`` is ``(B, T, I)``."""
    parts = []
    if geom.initial_state:
        B = x_codes.shape[0]
        if h0 is None:
            h0 = np.zeros((geom.states, B, geom.output_size), np.int64)
        parts.append(np.asarray(h0)[:, b, :].reshape(-1))
        if geom.cell_state:  # a GRU has no c0
            if c0 is None:
                c0 = np.zeros((geom.states, B, geom.hidden_size), np.int64)
            parts.append(np.asarray(c0)[:, b, :].reshape(-1))
    parts.append(np.asarray(x_codes)[b].reshape(-1))
    return np.concatenate(parts).astype(np.int64)


def pack_outputs(geom: StreamGeometry, prediction, b: int, h_n=None, c_n=None) -> np.ndarray:
    """The ``m_axis`` elements expected for sequence ``b`` from golden-model arrays."""
    parts = [np.asarray(prediction)[b].reshape(-1)]
    if geom.with_states:
        parts.append(np.asarray(h_n)[:, b, :].reshape(-1))
        if geom.cell_state:  # a GRU has no c_n
            parts.append(np.asarray(c_n)[:, b, :].reshape(-1))
    return np.concatenate(parts).astype(np.int64)


def unpack_outputs(geom: StreamGeometry, elements, T: int) -> dict[str, np.ndarray]:
    """Split one sequence's ``m_axis`` elements into ``prediction`` (and ``h_n``, ``c_n``)."""
    elements = np.asarray(elements, dtype=np.int64)
    if elements.size != geom.output_length(T):
        raise ValueError(
            f"expected {geom.output_length(T)} output elements for T={T}, got {elements.size}"
        )
    shape = geom.prediction_shape(T)
    n = int(np.prod(shape))
    out = {"prediction": elements[:n].reshape(shape)}
    if geom.with_states:
        nh = geom.states * geom.output_size
        out["h_n"] = elements[n : n + nh].reshape(geom.states, geom.output_size)
        if geom.cell_state:
            out["c_n"] = elements[n + nh :].reshape(geom.states, geom.hidden_size)
    return out
