"""A quantized model from given formats: no calibration.

:func:`quantize` (``calibrate.py``) chooses fraction bits from the weights and from a float
run on sample inputs. :func:`quantize_with_formats` instead takes every format as given, for
models that were quantized elsewhere (e.g. a Brevitas ``QuantLSTM``, see
:mod:`lstmfpga.export.brevitas_loader`): one format per data role, and per weight tensor
either its format (the spec's float values are then quantized with the config's rounding,
saturating) or its integer codes (a :class:`~lstmfpga.quant.model.Tensor`, taken verbatim).
The accumulator is derived as always (:func:`lstmfpga.quant.accumulator.accumulator_format`).

:func:`quantize_like` quantizes a spec with *another* qmodel's formats (``lstmfpga quantize
... --formats-from QMODEL``): a retrained model then fits the hardware built for the first
one (same formats, shifts, accumulator and tables; only the weight codes change), or is
refused naming the tensor that does not fit. Both take an LSTM or a GRU (whose data roles
have ``hn`` instead of ``cell`` and whose biases are ``bias_l*`` and the n gate's recurrent
``b_hn_l*``); a spec is only quantized like a qmodel of its own cell.
"""

from __future__ import annotations

import numpy as np

from ..export.spec import ModelSpec, SpecError
from .calibrate import draft_accumulator, gate_biases
from .config import QuantConfig
from .fixed import FixedFormat, FormatError
from .model import GRU_DATA_ROLES, LSTM_DATA_ROLES, QHead, QLayer, QuantizedModel, Tensor

__all__ = [
    "geometry",
    "quantize_like",
    "quantize_with_formats",
    "tensor_formats",
    "tensor_names",
]


def tensor_names(spec: ModelSpec) -> dict[str, str]:
    """Artifact name → role of every weight tensor of ``spec`` (``w_ih_l0`` → ``w_ih``, ...)."""
    names = {}
    for index, directions in enumerate(spec.layers):
        for d, lw in enumerate(directions):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            names["w_ih" + suffix] = "w_ih"
            names["w_hh" + suffix] = "w_hh"
            if lw.bias is not None:
                names["bias" + suffix] = "bias"
                if spec.cell == "gru":  # n's recurrent bias, apart (the reset gate scales it)
                    names["b_hn" + suffix] = "bias"
            if lw.w_hr is not None:
                names["w_hr" + suffix] = "w_hr"
    if spec.head is not None:
        names["head_w"] = "head_w"
        if spec.head.bias is not None:
            names["head_b"] = "head_b"
    return names


def geometry(model) -> dict:
    """What fixes the hardware's shape, of a :class:`ModelSpec` or a
    :class:`QuantizedModel`: sizes, layers, directions, projection, bias, head."""
    head = model.head
    return {
        "cell": model.cell,
        "input_size": model.input_size,
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "bidirectional": model.bidirectional,
        "proj_size": model.proj_size,
        "bias": model.bias if isinstance(model, ModelSpec) else model.has_bias,
        "head (mode, out_features)": None if head is None else (head.mode, head.out_features),
    }


def tensor_formats(model: QuantizedModel) -> dict[str, FixedFormat]:
    """Artifact name → format of every weight tensor of a quantized ``model`` (the names of
    :func:`tensor_names`: ``w_ih_l0``, ``bias_l0_reverse``, ``head_w``, ...)."""
    out = {}
    for index, directions in enumerate(model.layers):
        for d, q in enumerate(directions):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            for kind, tensor in (("w_ih", q.w_ih), ("w_hh", q.w_hh), ("bias", q.bias),
                                 ("w_hr", q.w_hr), ("b_hn", q.b_hn)):  # fmt: skip
                if tensor is not None:
                    out[kind + suffix] = tensor.fmt
    if model.head is not None:
        out["head_w"] = model.head.weight.fmt
        if model.head.bias is not None:
            out["head_b"] = model.head.bias.fmt
    return out


def _check_rule(what: str, fmt: FixedFormat, rule) -> None:
    if not isinstance(fmt, FixedFormat) or not fmt.signed:
        raise FormatError(f"{what} must be a signed FixedFormat, not {fmt!r}")
    rule.check(fmt, what)


def quantize_with_formats(
    spec: ModelSpec,
    formats: dict[str, FixedFormat],
    tensors: dict[str, FixedFormat | Tensor],
    config: QuantConfig,
    *,
    notes: dict | None = None,
    reasons: dict[str, str] | None = None,
) -> QuantizedModel:
    """The :class:`QuantizedModel` of ``spec`` with the formats given, no calibration.

    ``formats`` maps every data role (``x``, ``preact``, ``gate``, ``cell``, ``hidden``,
    ``head_out``; a GRU has ``hn`` instead of ``cell``) to its format; ``tensors`` maps every
    weight tensor's artifact name (:func:`tensor_names`: ``w_ih_l0``, ``w_hh_l0_reverse``,
    ``bias_l1``, a GRU's ``b_hn_l0``, ``head_w``, ...) to a :class:`FixedFormat` (the spec's
    values are quantized with ``config.rounding``, saturating) or to a :class:`Tensor` whose
    codes are used as they are (their shape must be the spec's). Every format must have its
    role's width in ``config`` (and its ``frac`` where the config fixes one) and at most
    ``bits`` fraction bits, so that the saved qmodel loads back. ``notes`` (JSON-able) are
    recorded as ``calibration["source"]``, ``reasons`` (role → text, e.g. the quantizer a
    format came from) as each role's ``why``.

    Raises :class:`FormatError` or :class:`SpecError` naming the role or tensor.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, not {spec!r}")
    if not isinstance(config, QuantConfig):
        raise TypeError(f"config must be a QuantConfig, not {config!r}")
    data_roles = _data_roles(spec)
    if set(formats) != set(data_roles):
        raise FormatError(
            f"formats must name exactly the roles {', '.join(data_roles)}, not {sorted(formats)!r}"
        )
    for role in data_roles:
        _check_rule(f"format of {role}", formats[role], config.rule(role))
    names = tensor_names(spec)
    if set(tensors) != set(names):
        raise SpecError(
            f"tensors must name exactly {', '.join(names)}, "
            f"not {', '.join(sorted(tensors)) or 'nothing'}"
        )
    floats = {**spec.tensors(), **_combined_biases(spec)}
    weights = {}
    built = {}
    for name, role in names.items():
        given = tensors[name]
        value = floats[_float_name(name)]
        if isinstance(given, Tensor):
            if given.codes.shape != value.shape:
                raise SpecError(
                    f"tensor {name} must have shape {value.shape}, not {given.codes.shape}"
                )
            tensor, how = given, "codes given"
        elif isinstance(given, FixedFormat):
            tensor = Tensor(given.quantize(value, config.rounding, "saturate"), given)
            how = "quantized from the spec"
        else:
            raise TypeError(f"tensors[{name!r}] must be a FixedFormat or a Tensor, not {given!r}")
        _check_rule(f"tensor {name} format", tensor.fmt, config.roles[role])
        built[name] = tensor
        weights[name] = {"format": str(tensor.fmt), "why": how}

    layers = []
    for index, directions in enumerate(spec.layers):
        qdirs = []
        for d, _ in enumerate(directions):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            qdirs.append(
                QLayer(
                    built["w_ih" + suffix],
                    built["w_hh" + suffix],
                    built.get("bias" + suffix),
                    built.get("w_hr" + suffix),
                    built.get("b_hn" + suffix),
                )
            )
        layers.append(tuple(qdirs))
    head = None
    if spec.head is not None:
        head = QHead(built["head_w"], built.get("head_b"), spec.head.mode)
    formats = {role: formats[role] for role in data_roles}
    acc = draft_accumulator(spec, layers, head, formats, config.acc_bits)
    reasons = reasons or {}
    roles = {
        role: {"format": str(formats[role]), "why": reasons.get(role, "given")}
        for role in data_roles
    }
    calibration = {"roles": roles, "weights": weights, "acc": str(acc)}
    if notes is not None:
        calibration["source"] = notes
    return QuantizedModel.assemble(
        spec, layers, head, formats=formats, acc=acc, config=config, calibration=calibration
    )


def quantize_like(
    spec: ModelSpec, reference: QuantizedModel, *, source: str | None = None
) -> QuantizedModel:
    """``spec`` quantized with every format of ``reference``: its data formats, each weight
    tensor's format, its config (rounding, overflow, tables) and so its accumulator.

    The spec must have the reference's geometry (sizes, layers, directions, projection,
    biases, head); every weight, rounded with the config's rounding, must fit its tensor's
    format (nothing is saturated silently: retrained weights that outgrew the format need a
    new calibration, i.e. new hardware). ``source`` (e.g. the reference's path) is recorded
    in ``calibration["source"]``. The result runs on hardware generated from ``reference``.

    Raises :class:`SpecError` (geometry) or :class:`FormatError` naming the first tensor that
    does not fit, with its largest value and the format's range.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, not {spec!r}")
    if not isinstance(reference, QuantizedModel):
        raise TypeError(f"reference must be a QuantizedModel, not {reference!r}")
    mine, theirs = geometry(spec), geometry(reference)
    for what, want in theirs.items():
        if mine[what] != want:
            raise SpecError(f"spec {what} must be the formats qmodel's {want}, not {mine[what]}")
    formats = tensor_formats(reference)
    names = tensor_names(spec)
    if list(names) != list(formats):
        extra = sorted(set(names) ^ set(formats))
        raise SpecError(
            f"spec tensors must be the formats qmodel's, not differ in {', '.join(extra)}"
        )
    floats = {**spec.tensors(), **_combined_biases(spec)}
    rounding = reference.config.rounding
    for name, fmt in formats.items():
        value = floats[_float_name(name)]
        codes = fmt.round_codes(value, rounding)
        outside = fmt.overflows(codes)
        if np.any(outside):
            worst = float(value[outside][np.argmax(np.abs(value[outside]))])
            raise FormatError(
                f"tensor {name} must fit {fmt} ({fmt.min_value:g} .. {fmt.max_value:g}) of the "
                f"formats qmodel, not {worst:.6g} ({int(np.count_nonzero(outside))} weights "
                "outside): quantize it from scratch (new hardware) or retrain within range"
            )
    model = quantize_with_formats(
        spec,
        dict(reference.formats),
        formats,
        reference.config,
        notes={
            "formats_from": source or "a qmodel",
            "reference_spec_hash": reference.spec_hash,
        },
        reasons={role: "formats qmodel" for role in reference.data_roles},
    )
    if model.acc != reference.acc:
        raise FormatError(
            f"accumulator {model.acc} must be the formats qmodel's {reference.acc} "
            "(its config fixes a different accumulator width)"
        )
    return model


def _float_name(name: str) -> str:
    """The spec tensor (or combined bias) holding the float values of artifact ``name``."""
    if name == "head_w":
        return "head.weight"
    if name == "head_b":
        return "head.bias"
    kind, _, rest = name.partition("_l")
    return {"w_ih": "weight_ih", "w_hh": "weight_hh", "w_hr": "weight_hr", "bias": "bias",
            "b_hn": "b_hn"}[kind] + f"_l{rest}"  # fmt: skip


def _data_roles(spec: ModelSpec) -> tuple[str, ...]:
    return GRU_DATA_ROLES if spec.cell == "gru" else LSTM_DATA_ROLES


def _combined_biases(spec: ModelSpec) -> dict:
    """The float values of the quantized bias tensors, as :func:`quantize` splits them: an
    LSTM's ``b_ih + b_hh`` (``bias_l*``); a GRU's ``(b_ir + b_hr, b_iz + b_hz, b_in)``
    (``bias_l*``) and ``b_hn`` (``b_hn_l*``)."""
    out = {}
    for index, directions in enumerate(spec.layers):
        for d, lw in enumerate(directions):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            biases = gate_biases(spec, lw)
            if biases is not None:
                out["bias" + suffix] = biases[0]
                if biases[1] is not None:
                    out["b_hn" + suffix] = biases[1]
    return out
