"""Random models for tests, benchmarks and examples (NumPy only, seeded), and edited copies
of what tests feed in (:func:`with_changes`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .export.spec import HeadSpec, LayerWeights, ModelSpec
from .quant.calibrate import quantize
from .quant.config import QuantConfig

__all__ = ["random_geometry", "random_inputs", "random_qmodel", "random_spec", "with_changes"]


def random_spec(
    seed: int = 0,
    *,
    input_size: int = 3,
    hidden_size: int = 4,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    bias: bool = True,
    head: str | None = None,
    head_out: int = 3,
    head_bias: bool = True,
    scale: float = 0.5,
    dropout: float = 0.0,
    source: str = "",
) -> ModelSpec:
    """A ModelSpec with normally distributed weights (std ``scale / sqrt(fan_in)``-ish).

    The one random-spec builder of the tests: the geometry arguments mirror ``nn.LSTM``'s;
    ``head`` is ``None``, ``"last"`` or ``"all"`` (``head_out`` features, a bias unless
    ``head_bias`` is false); ``dropout`` and ``source`` are recorded in the spec as given.
    """
    rng = np.random.default_rng(seed)
    H, Ho = hidden_size, proj_size or hidden_size
    D = 2 if bidirectional else 1
    layers = []
    for layer in range(num_layers):
        fan_in = input_size if layer == 0 else D * Ho
        directions = []
        for _ in range(D):
            directions.append(
                LayerWeights(
                    w_ih=rng.normal(0, scale * 2 / np.sqrt(fan_in + Ho), (4 * H, fan_in)),
                    w_hh=rng.normal(0, scale * 2 / np.sqrt(fan_in + Ho), (4 * H, Ho)),
                    b_ih=rng.normal(0, scale * 0.3, 4 * H) if bias else None,
                    b_hh=rng.normal(0, scale * 0.3, 4 * H) if bias else None,
                    w_hr=rng.normal(0, scale * 2 / np.sqrt(H), (Ho, H)) if proj_size else None,
                )
            )
        layers.append(tuple(directions))
    head_spec = None
    if head is not None:
        head_spec = HeadSpec(
            weight=rng.normal(0, scale * 2 / np.sqrt(D * Ho), (head_out, D * Ho)),
            bias=rng.normal(0, scale * 0.3, head_out) if head_bias else None,
            mode=head,
        )
    return ModelSpec(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        proj_size=proj_size,
        bias=bias,
        layers=tuple(layers),
        head=head_spec,
        dropout=dropout,
        source=source,
    )


def random_geometry(
    rng: np.random.Generator,
    *,
    max_input_size: int,
    max_hidden_size: int,
    max_layers: int,
    scales: tuple[float, ...] = (),
) -> dict:
    """:func:`random_spec` keyword arguments drawn from ``rng``: ``hidden_size``,
    ``input_size`` and ``num_layers`` from 1 to their maxima, uni- or bidirectional, with or
    without bias, every head mode, a ``scale`` from ``scales`` if given, and a projection
    (``proj_size`` below ``hidden_size``) half the time."""
    hidden = int(rng.integers(1, max_hidden_size + 1))
    kwargs = {
        "input_size": int(rng.integers(1, max_input_size + 1)),
        "hidden_size": hidden,
        "num_layers": int(rng.integers(1, max_layers + 1)),
        "bidirectional": bool(rng.integers(2)),
        "bias": bool(rng.integers(2)),
        "head": [None, "last", "all"][int(rng.integers(3))],
    }
    if scales:
        kwargs["scale"] = float(rng.choice(scales))
    if hidden > 1 and rng.integers(2):
        kwargs["proj_size"] = int(rng.integers(1, hidden))
    return kwargs


def random_inputs(seed: int, batch: int, seq: int, features: int) -> np.ndarray:
    return np.random.default_rng(seed + 10_000).normal(0, 1, (batch, seq, features))


def random_qmodel(seed: int = 0, preset: str = "q16", calib_batch: int = 16, **kwargs):
    """``(spec, qmodel)``: a random spec quantized with ``preset``, calibrated on random data."""
    spec = random_spec(seed, **kwargs)
    calib = random_inputs(seed, calib_batch, 12, spec.input_size)
    return spec, quantize(spec, calib, QuantConfig.preset(preset))


def with_changes(mapping: Mapping, changes: Mapping, *, delete=None) -> dict:
    """A copy of ``mapping`` with ``changes`` made: each ``key: value`` sets ``key``, a value
    that is ``delete`` removes it. ``a__b`` names the key ``a.b`` (so that keyword arguments
    can name ``head.weight`` or ``lstm.bias_hh_l0``)."""
    result = dict(mapping)
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is delete:
            del result[key]
        else:
            result[key] = value
    return result
