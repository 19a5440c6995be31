"""The bit-exact golden model of a quantized GRU (``QuantizedModel.cell == "gru"``).

Integer NumPy on ``int64`` codes, vectorized over the batch and the gate rows (the only
Python loops are over layers, directions and timesteps); ``docs/numerics.md`` ("GRU") states
the same rules in prose. Per layer ``l``, direction ``d`` and step (time runs backwards for
``d = 1``), with gate rows in PyTorch's order ``(r, z, n)``::

    acc_rz = (W_i[r,z]·u_t << s_in) + (W_h[r,z]·h_prev << s_rec) + (b[r,z] << s_b)   exact
    r, z   = sigmoid_table(requant(acc_rz, acc.frac - preact.frac))                   → gate
    hn     = requant((W_hn·h_prev << s_rec) + (b_hn << s_bn), acc.frac - hn.frac)     → hn
    acc_n  = (W_in·u_t << s_in) + (b_in << s_b) + (r·hn << s_rn)                      exact
    n      = tanh_gate_table(requant(acc_n, acc.frac - preact.frac))                  → gate
    h      = requant(((ONE - z)·n << s_zn) + (z·h_prev << s_zh), sum_frac - hidden.frac)

``ONE = 2**gate.frac``, ``sum_frac = gate.frac + max(gate.frac, hidden.frac)``,
``s_zn = sum_frac - 2·gate.frac``, ``s_zh = sum_frac - gate.frac - hidden.frac``; the shifts
into the accumulator are :meth:`QuantizedModel.gate_shifts` and
:meth:`QuantizedModel.gru_shifts` (all >= 0: the accumulator's fraction covers every product,
``r·hn`` included). The recurrent n sum has its own accumulation and requantization because
``r`` multiplies it after the product, as in ``nn.GRU``. ``requant`` is
:func:`lstmfpga.quant.fixed.requantize` (round per the model's mode, then saturate or wrap);
saturation is counted per role (``x``, ``preact``, ``hn``, ``hidden``, ``head_out``).
The head is the LSTM's: ``requant((W·h << s_w) + (b << s_b), acc.frac - head_out.frac)``.

How it computes (not part of the contract): when the accumulator is at most 53 bits wide,
the matrix products run in float64 (BLAS) on the aligned integer codes: every term and every
partial sum is an integer below the accumulator's bound, so below ``2**53``, and the float
result converts back to the exact ``int64`` sum. Wider accumulators use ``int64`` products.
Everything after the products is ``int64``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..export.spec import SpecError
from .fixed import FixedFormat, check_codes, requantize
from .golden import GoldenResult, quantize_inputs
from .model import QuantizedModel

__all__ = ["GRUCellArithmetic", "GRUStep", "predict", "run"]

#: float64 holds every integer below 2**53: products of wider accumulators run in int64.
_EXACT_FLOAT_BITS = 53


@dataclass(frozen=True)
class GRUCellArithmetic:
    """A GRU hidden unit's work after the matrix products (what the GRU cell datapath
    implements), the same for every layer and direction of a model.

    From the unit's four exact accumulator sums ``acc_r``, ``acc_z`` (``W_i u_t << s_in +
    W_h h_prev << s_rec + b << s_b`` of rows r and z), ``acc_nx = W_in·u_t << s_in + b_in <<
    s_b``, ``acc_hn = W_hn·h_prev << s_rec + b_hn << s_bn`` and ``h_prev`` (``hidden``)::

        pre_r, pre_z = requant(acc_r, n_shift), requant(acc_z, n_shift)       → preact
        hn    = requant(acc_hn, hn_shift)                                     → hn
        r, z  = sigmoid(pre_r), sigmoid(pre_z)                                → gate
        pre_n = requant(acc_nx + (r·hn << rn_shift), n_shift)                 → preact
        n     = tanh_gate(pre_n)                                              → gate
        h     = requant(((ONE - z)·n << zn_shift) + (z·h_prev << zh_shift), h_shift) → hidden

    ``requant`` rounds per ``rounding`` then applies ``overflow``; products and sums are
    exact. :meth:`GRUStep.step` computes its units with :meth:`update_sums`.
    """

    gate: FixedFormat
    preact: FixedFormat
    hn: FixedFormat
    hidden: FixedFormat
    acc: FixedFormat
    #: Left shift of ``r·hn`` into the accumulator (``QuantizedModel.gru_shifts``' second).
    rn_shift: int
    #: Right shift from the accumulator to ``preact`` (``requant_shift("preact")``, may be < 0).
    n_shift: int
    #: Right shift from the accumulator to ``hn`` (``requant_shift("hn")``, may be < 0).
    hn_shift: int
    rounding: str
    overflow: str
    sigmoid: object  # ActivationTable
    tanh_gate: object  # ActivationTable

    @classmethod
    def of(cls, model: QuantizedModel) -> GRUCellArithmetic:
        _check_gru(model)
        f, t = model.formats, model.tables
        rn_shift = model.gru_shifts(0, 0)[1]  # the same for every layer and direction
        return cls(f["gate"], f["preact"], f["hn"], f["hidden"], model.acc, rn_shift,
                   model.requant_shift("preact"), model.requant_shift("hn"), model.rounding,
                   model.overflow, t["sigmoid"], t["tanh_gate"])  # fmt: skip

    @property
    def one(self) -> int:
        """``ONE``, the gate code of 1.0: ``2**gate.frac``."""
        return 1 << self.gate.frac

    @property
    def sum_frac(self) -> int:
        """Fraction bits of the aligned sum ``(ONE - z)·n + z·h_prev``."""
        return self.gate.frac + max(self.gate.frac, self.hidden.frac)

    @property
    def zn_shift(self) -> int:
        return self.sum_frac - 2 * self.gate.frac

    @property
    def zh_shift(self) -> int:
        return self.sum_frac - self.gate.frac - self.hidden.frac

    @property
    def h_shift(self) -> int:
        return self.sum_frac - self.hidden.frac

    def _requant(self, acc, shift: int, fmt: FixedFormat, role: str, saturation) -> np.ndarray:
        codes, count = requantize(acc, shift, fmt, self.rounding, self.overflow)
        if saturation is not None:
            saturation[role] = saturation.get(role, 0) + int(count)
        return codes

    def update_sums(self, acc_r, acc_z, acc_nx, acc_hn, h_prev, saturation: dict | None = None):
        """``(h, parts)``: the new hidden codes and a dict of the unit's ``pre_r``, ``pre_z``,
        ``hn``, ``r``, ``z``, ``pre_n`` and ``n`` codes (``int64`` arrays of the inputs'
        shape); codes that did not fit are added to ``saturation["preact"]`` (``pre_r``,
        ``pre_z``, ``pre_n``), ``["hn"]`` and ``["hidden"]`` (``h``)."""
        acc_r, acc_z, acc_nx, acc_hn, h_prev = (
            np.asarray(a, dtype=np.int64) for a in (acc_r, acc_z, acc_nx, acc_hn, h_prev)
        )
        pre_r = self._requant(acc_r, self.n_shift, self.preact, "preact", saturation)
        pre_z = self._requant(acc_z, self.n_shift, self.preact, "preact", saturation)
        hn = self._requant(acc_hn, self.hn_shift, self.hn, "hn", saturation)
        r, z = self.sigmoid.lookup(pre_r), self.sigmoid.lookup(pre_z)
        acc_n = acc_nx + ((r * hn) << self.rn_shift)
        pre_n = self._requant(acc_n, self.n_shift, self.preact, "preact", saturation)
        n = self.tanh_gate.lookup(pre_n)
        total = (((self.one - z) * n) << self.zn_shift) + ((z * h_prev) << self.zh_shift)
        h = self._requant(total, self.h_shift, self.hidden, "hidden", saturation)
        parts = {"pre_r": pre_r, "pre_z": pre_z, "hn": hn, "r": r, "z": z, "pre_n": pre_n,
                 "n": n}  # fmt: skip
        return h, parts


class GRUStep:
    """One (layer, direction) of a quantized GRU: aligned weights and the step arithmetic.

    ``step(u, h_prev)`` takes ``(B, K)`` input codes and ``(B, H)`` hidden codes and returns
    ``(h, parts)``: the new hidden codes and a dict of the step's ``preact`` (B, 3H), ``hn``,
    ``r``, ``z`` and ``n`` codes (B, H each); saturation counts are added to ``sat``.
    """

    def __init__(self, model: QuantizedModel, layer: int, direction: int):
        q = model.layers[layer][direction]
        H = model.hidden_size
        s_in, s_rec, s_b = model.gate_shifts(layer, direction)
        s_bn, _ = model.gru_shifts(layer, direction)
        self.model, self.H = model, H
        self.dtype = np.float64 if model.acc.bits <= _EXACT_FLOAT_BITS else np.int64
        # Transposed aligned weights, (K, 3H) and (H, 3H), columns r, z, n.
        self.w_i = np.ascontiguousarray((q.w_ih.codes << s_in).T, dtype=self.dtype)
        self.w_h = np.ascontiguousarray((q.w_hh.codes << s_rec).T, dtype=self.dtype)
        zeros = np.zeros(3 * H, np.int64)
        self.b = zeros if q.bias is None else q.bias.codes << s_b
        self.b_hn = zeros[:H] if q.b_hn is None else q.b_hn.codes << s_bn
        self.arith = GRUCellArithmetic.of(model)

    def recurrent_sums(self, h_prev: np.ndarray) -> np.ndarray:
        """``(B, 3H)``: ``W_h·h_prev << s_rec`` (columns r, z, n; no bias), exact."""
        return (h_prev.astype(self.dtype) @ self.w_h).astype(np.int64)

    def step(self, gi: np.ndarray, h_prev: np.ndarray, sat: dict):
        """``gi`` is ``(B, 3H)``: ``W_i·u_t << s_in + b << s_b`` (see :meth:`input_sums`)."""
        H = self.H
        gh = self.recurrent_sums(h_prev)
        acc_rz = gi[:, : 2 * H] + gh[:, : 2 * H]
        h, p = self.arith.update_sums(acc_rz[:, :H], acc_rz[:, H:], gi[:, 2 * H :],
                                      gh[:, 2 * H :] + self.b_hn, h_prev, sat)  # fmt: skip
        parts = {"preact": np.concatenate([p["pre_r"], p["pre_z"], p["pre_n"]], axis=1),
                 "hn": p["hn"], "r": p["r"], "z": p["z"], "n": p["n"]}  # fmt: skip
        return h, parts

    def input_sums(self, u: np.ndarray) -> np.ndarray:
        """``(B, T, 3H)``: the input products and biases of every timestep, exact."""
        return (u.astype(self.dtype) @ self.w_i).astype(np.int64) + self.b


def _check_gru(model) -> None:
    if not isinstance(model, QuantizedModel):
        raise TypeError(f"model must be a QuantizedModel, not {model!r:.60}")
    if model.cell != "gru":
        raise SpecError(f"the GRU golden model runs GRU qmodels only, not cell {model.cell!r}")


def run(model: QuantizedModel, x_codes, h0=None, c0=None, *, trace: bool = False) -> GoldenResult:
    """Run the GRU golden model on input codes ``(batch, seq, input_size)``.

    ``h0`` ``(L*D, B, H)`` hidden codes default to zeros; ``c0`` must be ``None`` (a GRU has
    no cell state). Returns a :class:`~lstmfpga.quant.golden.GoldenResult` with ``c_n``
    ``None``; with ``trace`` its ``trace[(l, d)]`` holds ``preact`` (B, T, 3H), ``hn``,
    ``r``, ``z``, ``n`` and ``h`` (B, T, H) codes by time.
    """
    _check_gru(model)
    if c0 is not None:
        raise SpecError("c0 must be None for a GRU (it has no cell state), not an array")
    x_codes = np.asarray(x_codes)
    if x_codes.ndim != 3 or x_codes.shape[2] != model.input_size or 0 in x_codes.shape:
        raise SpecError(
            f"input codes must have shape (batch, seq, {model.input_size}), not {x_codes.shape}"
        )
    x_codes = check_codes("input codes", x_codes, x_codes.shape, model.formats["x"], SpecError)
    B, T, _ = x_codes.shape
    H, D = model.hidden_size, model.num_directions
    LD = model.num_layers * D
    if h0 is None:
        h0 = np.zeros((LD, B, H), np.int64)
    else:
        h0 = check_codes("h0", h0, (LD, B, H), model.formats["hidden"], SpecError)
    sat: dict[str, int] = {}
    h_n = np.empty((LD, B, H), np.int64)
    traces = {}
    layer_input = x_codes.astype(np.int64)
    for index, directions in enumerate(model.layers):
        outputs = []
        for d in range(len(directions)):
            cell = GRUStep(model, index, d)
            gi = cell.input_sums(layer_input)
            out = np.empty((B, T, H), np.int64)
            rec = {}
            if trace:
                rec = {k: np.empty((B, T, n), np.int64) for k, n in
                       (("preact", 3 * H), ("hn", H), ("r", H), ("z", H), ("n", H))}  # fmt: skip
            h = h0[index * D + d]
            for t in range(T - 1, -1, -1) if d else range(T):
                h, parts = cell.step(gi[:, t], h, sat)
                out[:, t] = h
                for key in rec:
                    rec[key][:, t] = parts[key]
            h_n[index * D + d] = h
            outputs.append(out)
            if trace:
                rec["h"] = out
                traces[(index, d)] = rec
        layer_input = np.concatenate(outputs, axis=2) if D == 2 else outputs[0]
    head = None
    if model.head is not None:
        source = layer_input[:, -1] if model.head.mode == "last" else layer_input
        s_w, _ = model.head_shifts()
        acc = source @ (model.head.weight.codes << s_w).T + model.aligned_head_bias()
        head, count = requantize(acc, model.requant_shift("head_out"), model.formats["head_out"],
                                 model.rounding, model.overflow)  # fmt: skip
        sat["head_out"] = sat.get("head_out", 0) + count
    for role in ("preact", "hn", "hidden"):
        sat.setdefault(role, 0)
    return GoldenResult(layer_input, h_n, None, head, sat, traces)


def predict(model: QuantizedModel, x, h0=None, c0=None) -> tuple[np.ndarray, GoldenResult]:
    """Float in, dequantized float out (as :func:`lstmfpga.quant.golden.predict`).

    ``x`` is quantized with the model's rounding and overflow modes, ``h0`` (floats, shape
    ``(L*D, B, H)``) with its rounding, saturating; codes that did not fit count under ``x``
    and ``hidden``. Returns ``(prediction, result)``.
    """
    _check_gru(model)
    if c0 is not None:
        raise SpecError("c0 must be None for a GRU (it has no cell state), not an array")
    sat: dict[str, int] = {}
    x_codes = quantize_inputs(model, x, sat)
    if h0 is not None:
        h0 = np.asarray(h0)
        if h0.dtype.kind not in "fiu" or h0.dtype == np.bool_:
            raise SpecError(f"h0 must be a float array, not dtype {h0.dtype}")
        if not np.all(np.isfinite(h0)):
            raise SpecError("h0 contains non-finite values (NaN or Inf)")
        fmt = model.formats["hidden"]
        codes = fmt.round_codes(h0, model.rounding)
        sat["hidden"] = int(np.count_nonzero(fmt.overflows(codes)))
        h0 = fmt.fit(codes, "saturate")
    result = run(model, x_codes, h0)
    for role, count in sat.items():
        result.saturation[role] = result.saturation.get(role, 0) + count
    return model.output_format.dequantize(result.prediction), result
