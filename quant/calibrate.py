"""Calibration: choose fraction bits from weights and from float activity on sample inputs.

Weights: each tensor gets the most fraction bits for which its largest magnitude still fits
its role's width (at most ``bits`` fraction bits). Data roles: the float reference runs on the
calibration inputs and records the largest magnitude per role; that range times
``config.headroom`` picks the integer bits. ``gate`` defaults to ``bits - 2`` fraction bits
(it must hold 1.0). Roles whose ``frac`` is fixed in the config are taken as given.

A GRU (``spec.cell == "gru"``) has the data roles ``x``, ``preact`` (the r, z and n
pre-activations, ``n``'s after the reset gate: ``W_in x + b_in + r * (W_hn h + b_hn)``),
``gate``, ``hn`` (the recurrent n sum ``W_hn h + b_hn``), ``hidden`` and ``head_out``; its
biases are two tensors, ``bias`` (``b_ir + b_hr``, ``b_iz + b_hz``, ``b_in``) and ``b_hn``.
"""

from __future__ import annotations

import math

import numpy as np

from ..export.reference import check_inputs, check_states, forward
from ..export.spec import ModelSpec, SpecError
from .accumulator import accumulator_format, describe_products
from .config import QuantConfig
from .fixed import MAX_BITS, FixedFormat, FormatError
from .model import (
    GRU_DATA_ROLES,
    LSTM_DATA_ROLES,
    QHead,
    QLayer,
    QuantizedModel,
    Tensor,
)

__all__ = ["calibrate_ranges", "choose_frac", "draft_accumulator", "gate_biases", "quantize"]


def choose_frac(max_abs: float, bits: int, headroom: float = 1.0) -> int:
    """Most fraction bits such that ``max_abs * headroom`` fits a signed ``bits`` format.

    That is the largest ``frac`` with ``max_abs * headroom * 2**frac <= 2**(bits-1) - 1``,
    capped at ``bits`` (``bits - 1`` for a zero range). Raises :class:`FormatError` when
    even ``frac = -62`` cannot hold the range.
    """
    target = float(max_abs) * headroom
    if target <= 0.0:
        return bits - 1
    if not math.isfinite(target):
        raise FormatError(f"cannot choose a format for a non-finite range {max_abs!r}")
    # Largest frac with target * 2**frac <= 2**(bits-1) - 1.
    frac = bits - 1 - math.ceil(math.log2(target))
    while frac >= -MAX_BITS and target * 2.0**frac > (1 << (bits - 1)) - 1:
        frac -= 1
    if frac < -MAX_BITS:
        raise FormatError(f"a range of {max_abs:.3g} does not fit any {bits}-bit format")
    return min(frac, bits)


def calibrate_ranges(spec: ModelSpec, x, h0=None, c0=None) -> dict[str, float]:
    """Largest magnitude per data role over the float reference run on ``x``.

    ``x`` is ``(batch, seq, input_size)`` finite floats; anything else raises
    :class:`SpecError` (``"calibration data: ..."``). Optional initial states ``h0``/``c0``
    (shapes as for :func:`lstmfpga.export.reference.forward`) are used in the run and count
    towards the ``hidden``/``cell`` ranges.
    """
    try:
        x = check_inputs(spec, x)
        h0, c0 = check_states(spec, x.shape[0], h0, c0)
    except SpecError as error:
        raise SpecError(f"calibration data: {error}") from None
    result = forward(spec, x, h0, c0, trace=True)
    ranges = {"x": float(np.abs(x).max())}
    traces = list(result.trace.values())
    ranges["gate"] = 1.0
    ranges["head_out"] = float(np.abs(result.head).max()) if result.head is not None else 0.0
    if spec.cell == "gru":
        return ranges | _gru_ranges(spec.hidden_size, traces, h0)
    ranges["preact"] = max(float(np.abs(t["preact"]).max()) for t in traces)
    ranges["cell"] = max(
        max(float(np.abs(t["c"]).max()) for t in traces), float(np.abs(c0).max(initial=0.0))
    )
    ranges["hidden"] = max(
        max(max(float(np.abs(t["m"]).max()), float(np.abs(t["h"]).max())) for t in traces),
        float(np.abs(h0).max(initial=0.0)),
    )
    return ranges


def _gru_ranges(H: int, traces: list, h0: np.ndarray) -> dict[str, float]:
    """A GRU's ``preact``, ``hn`` and ``hidden`` ranges from its float trace."""

    def largest(values) -> float:
        return max(float(np.abs(v).max()) for v in values)

    return {
        "preact": max(
            largest(t["gi"][..., : 2 * H] + t["gh"][..., : 2 * H] for t in traces),
            largest(t["gi"][..., 2 * H :] + t["r"] * t["gh"][..., 2 * H :] for t in traces),
        ),
        "hn": largest(t["gh"][..., 2 * H :] for t in traces),
        "hidden": max(largest(t["h"] for t in traces), float(np.abs(h0).max(initial=0.0))),
    }


def _weight(values: np.ndarray, rule, config: QuantConfig) -> tuple[Tensor, dict]:
    max_abs = float(np.abs(values).max(initial=0.0))
    frac = rule.frac if rule.frac is not None else choose_frac(max_abs, rule.bits)
    fmt = FixedFormat(rule.bits, frac)
    codes = fmt.quantize(values, config.rounding, "saturate")
    return Tensor(codes, fmt), {"max_abs": max_abs, "format": str(fmt)}


def quantize(
    spec: ModelSpec, calib_x, config: QuantConfig | None = None, *, h0=None, c0=None
) -> QuantizedModel:
    """Quantize ``spec`` with ``config`` (default ``q16``), calibrated on ``calib_x``.

    ``calib_x`` is ``(batch, seq, input_size)`` finite floats; ``h0``/``c0`` are optional
    initial states of the calibration run (pass the kind of states used at inference).
    The returned model's ``calibration`` dict records, per role and tensor, the range seen
    and the format chosen (and why), for reports.
    """
    if config is None:
        config = QuantConfig.preset("q16")
    elif not isinstance(config, QuantConfig):
        raise TypeError(f"config must be a QuantConfig, not {config!r}")
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, not {spec!r}")
    ranges = calibrate_ranges(spec, calib_x, h0, c0)
    formats, notes = {}, {}
    for role in GRU_DATA_ROLES if spec.cell == "gru" else LSTM_DATA_ROLES:
        rule = config.rule(role)
        if rule.frac is not None:
            frac, why = rule.frac, "fixed by config"
        elif role == "gate":
            frac, why = rule.bits - 2, "holds [-1, 1]"
        else:
            frac = choose_frac(ranges[role], rule.bits, config.headroom)
            why = f"max |{role}| {ranges[role]:.4g} x headroom {config.headroom}"
        if role == "gate" and frac > rule.bits - 2:
            raise FormatError(f"gate format must hold 1.0: frac must be <= {rule.bits - 2}")
        fmt = FixedFormat(rule.bits, frac)
        formats[role] = fmt
        notes[role] = {"max_abs": ranges[role], "format": str(fmt), "why": why}

    layers, weights = [], {}
    for index, directions in enumerate(spec.layers):
        qdirs = []
        for d, lw in enumerate(directions):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            w_ih, weights["w_ih" + suffix] = _weight(lw.w_ih, config.roles["w_ih"], config)
            w_hh, weights["w_hh" + suffix] = _weight(lw.w_hh, config.roles["w_hh"], config)
            bias = w_hr = b_hn = None
            biases = gate_biases(spec, lw)
            if biases is not None:
                bias, weights["bias" + suffix] = _weight(biases[0], config.roles["bias"], config)
            if biases is not None and spec.cell == "gru":
                b_hn, weights["b_hn" + suffix] = _weight(biases[1], config.roles["bias"], config)
            if lw.w_hr is not None:
                w_hr, weights["w_hr" + suffix] = _weight(lw.w_hr, config.roles["w_hr"], config)
            qdirs.append(QLayer(w_ih, w_hh, bias, w_hr, b_hn))
        layers.append(tuple(qdirs))
    head = None
    if spec.head is not None:
        hw, weights["head_w"] = _weight(spec.head.weight, config.roles["head_w"], config)
        hb = None
        if spec.head.bias is not None:
            hb, weights["head_b"] = _weight(spec.head.bias, config.roles["head_b"], config)
        head = QHead(hw, hb, spec.head.mode)

    acc = draft_accumulator(spec, layers, head, formats, config.acc_bits)
    return QuantizedModel.assemble(
        spec,
        layers,
        head,
        formats=formats,
        acc=acc,
        config=config,
        calibration={"roles": notes, "weights": weights, "acc": str(acc)},
    )


def gate_biases(spec: ModelSpec, lw) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The bias tensors quantized for one (layer, direction), or None without biases: an
    LSTM's ``b_ih + b_hh``; a GRU's ``(b_ir + b_hr, b_iz + b_hz, b_in)`` and ``b_hn``."""
    if lw.b_ih is None:
        return None
    if spec.cell != "gru":
        return lw.bias, None
    H2 = 2 * spec.hidden_size
    return np.concatenate([lw.b_ih[:H2] + lw.b_hh[:H2], lw.b_ih[H2:]]), lw.b_hh[H2:]


def draft_accumulator(spec: ModelSpec, layers, head, formats, acc_bits) -> FixedFormat:
    """The accumulator format of a model being assembled from ``layers`` (``QLayer`` tuples per
    layer), ``head`` and the data ``formats``: ``accumulator_format`` of its products, before a
    :class:`QuantizedModel` exists (shared by :func:`quantize` and ``given_formats``)."""
    return accumulator_format(
        describe_products(_Draft(spec, tuple(layers), head, formats)), acc_bits
    )


class _Draft:
    """The parts of a model that :func:`describe_products` reads, before ``acc`` is known."""

    def __init__(self, spec, layers, head, formats):
        self.layers, self.head, self.formats = layers, head, formats
        self._spec = spec
        self.cell = spec.cell

    def input_format(self, layer: int) -> FixedFormat:
        return self.formats["x" if layer == 0 else "hidden"]
