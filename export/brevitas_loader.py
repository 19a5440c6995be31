"""Brevitas ``QuantLSTM`` → (:class:`ModelSpec`, :class:`QuantizedModel`), no calibration.

:func:`from_brevitas` takes a live module holding one ``brevitas.nn.QuantLSTM`` (and
optionally one ``brevitas.nn.QuantLinear`` head) whose quantizers use power-of-two scales.
The spec holds the float weights; the qmodel takes every bit width and scale from the
quantizers (``FixedFormat(bits, frac=-log2(scale))``) and the weight and bias codes from
Brevitas itself (``int()`` of its quantized tensors). Needs the optional extra
``lstmfpga[brevitas]``. A Brevitas module can only be rebuilt from its class:
:func:`build_module` calls the user's factory (``"package.module:function"``) and loads a
saved state_dict into the result.

What maps to what (``docs/numerics.md``, "Brevitas import"):

* ``io_quant`` (the cell's ``output_quant``, shared by every layer) → ``x`` and ``hidden``;
* the gate accumulator quantizers (``input/forget/cell/output_acc_quant``) → ``preact``;
* ``cell_state_quant`` → ``cell``;
* the sigmoid and tanh output quantizers → ``gate``: the one signed format holding both
  grids and 1.0, ``frac = max(frac_sigmoid, frac_tanh)``, ``bits = frac + 2``;
* each gate's weight quantizer (shared by its input and hidden weights) → ``w_ih``/``w_hh``
  of that layer, its bias quantizer → ``bias``; the head's weight, bias and output
  quantizers → ``head_w``, ``head_b``, ``head_out``.

lstmfpga keeps one format per role (per tensor for weights), so quantizers that share a role
must agree (e.g. the four gates' weight quantizers of a layer: pass
``shared_intra_layer_weight_quant=True``; the gate accumulators:
``shared_intra_layer_gate_acc_quant=True``). Refused, with a one-line :class:`SpecError`
naming the quantizer's path: a missing quantizer (``None``: every role needs its fixed-point
format), a scale that is not a power of two, per-channel or grouped scales, a non-zero zero
point, an unsigned quantizer where values are signed (all but sigmoid), narrow range on a
data role (the datapath saturates to the full two's-complement range), rounding other than
round-half-even on a data role, widths outside 2..32, more fraction bits than bits (lstmfpga
formats hold ``frac <= bits``), quantizers of one role that disagree, and coupled
input-forget gates.

Activation tables: for ``preact``/``cell`` formats of at most :data:`EXACT_TABLE_BITS` bits
the tables hold one entry per input code, ``round(f(p))`` (half up), which equals Brevitas's
float activation followed by its output quantizer except at exact ties and where Brevitas
clamps (an unsigned 8-bit sigmoid stops at 255/256, lstmfpga reaches 1.0); wider inputs use
the ``w8a8`` preset's interpolated tables.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..quant.activation import FUNCTIONS
from ..quant.config import QuantConfig, RoleRule
from ..quant.fixed import FixedFormat, FormatError
from ..quant.given_formats import quantize_with_formats
from ..quant.model import QuantizedModel, Tensor
from .brevitas_quantizers import (
    activation_format,
    check_proxy,
    quant_tensor,
    same_format,
    show_format,
)
from .spec import HEAD_MODES, HeadSpec, LayerWeights, ModelSpec, SpecError

__all__ = ["EXACT_TABLE_BITS", "GATES", "build_module", "from_brevitas"]

#: Input widths up to which the activation tables have one entry per code (exact).
EXACT_TABLE_BITS = 12
#: Brevitas's gate parameter modules in lstmfpga's (PyTorch's) gate order i, f, g, o.
GATES = ("input", "forget", "cell", "output")
_ACC_QUANTS = tuple(f"{g}_acc_quant" for g in GATES)
_SIGMOID_QUANTS = ("input_sigmoid_quant", "forget_sigmoid_quant", "output_sigmoid_quant")
_TANH_QUANTS = ("cell_tanh_quant", "hidden_state_tanh_quant")
_IGNORED = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Identity, nn.Flatten)
_EXTRA = "install the optional extra: pip install 'lstmfpga[brevitas]'"


def _brevitas():
    try:
        import brevitas.nn as qnn
    except ImportError:
        raise SpecError(f"importing a Brevitas model needs brevitas: {_EXTRA}") from None
    return qnn


# -- module structure --------------------------------------------------------------------------
def _find(module: nn.Module, qnn) -> tuple[str, str | None]:
    lstms = [p for p, m in module.named_modules() if isinstance(m, qnn.QuantLSTM)]
    if not lstms:
        raise SpecError(f"no brevitas.nn.QuantLSTM found in {type(module).__name__}")
    if len(lstms) > 1:
        raise SpecError(f"found {len(lstms)} QuantLSTM modules ({', '.join(map(repr, lstms))}); "
                        f"lstmfpga supports one")  # fmt: skip
    lstm = lstms[0]
    heads = []
    for path, sub in module.named_modules():
        if _under(path, lstm) or any(_under(path, h) for h in heads):
            continue  # the LSTM's and the head's own modules (gates, quantizers) are read later
        where = f"layer {path!r}" if path else "model"
        if isinstance(sub, qnn.QuantLinear):
            heads.append(path)
        elif isinstance(sub, nn.Linear):
            raise SpecError(
                f"{where} is a float nn.Linear: use brevitas.nn.QuantLinear with power-of-two "
                f"weight, bias and output quantizers"
            )
        elif isinstance(sub, _IGNORED) or type(sub).__name__.startswith("Dropout"):
            continue
        elif type(sub).__module__.startswith(("torch.", "brevitas.")):
            raise SpecError(
                f"unsupported {where} ({type(sub).__name__}): lstmfpga supports one QuantLSTM "
                f"and an optional QuantLinear head"
            )
        elif any(True for _ in sub.parameters(recurse=False)) or any(
            True for _ in sub.buffers(recurse=False)
        ):
            raise SpecError(f"unsupported parameters of {where} ({type(sub).__name__})")
    if len(heads) > 1:
        raise SpecError(f"found {len(heads)} QuantLinear modules ({', '.join(map(repr, heads))}); "
                        f"lstmfpga supports one head")  # fmt: skip
    return lstm, (heads[0] if heads else None)


def _under(path: str, root: str) -> bool:
    """Whether module ``path`` is ``root`` or inside it (``""`` is the whole model)."""
    return root == "" or path == root or path.startswith(root + ".")


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().to(torch.float64).numpy()


_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def build_module(factory: str, state_dict: str | Path | None = None) -> nn.Module:
    """The user's Brevitas model, rebuilt: a Brevitas module cannot come from weights alone.

    ``factory`` is ``"package.module:callable"``: the module is imported and the callable
    called without arguments (this runs that code: name only code you trust, as for any
    import); it must return an ``nn.Module``. ``state_dict`` (optional) is a
    ``torch.save(model.state_dict())`` file, read as :func:`lstmfpga.export.torch_loader.
    load_model` reads one (``weights_only``, sizes checked, nothing else unpickled) and
    loaded with ``strict=True``. The module is returned in ``eval()`` mode. Raises
    :class:`SpecError` (one line) for a malformed factory, an import or call that fails, a
    result that is not a module, or a state_dict that does not fit it.
    """
    from .model_files import detect_format, load_state_dict_file

    if not isinstance(factory, str) or not _FACTORY.match(factory):
        raise SpecError(f"factory must look like 'package.module:function', not {factory!r:.80}")
    module_name, _, attr = factory.partition(":")
    try:
        target = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise SpecError(f"cannot import {factory}: {_first_line(error)}") from None
    try:
        model = target()
    except Exception as error:  # the user's code may raise anything
        raise SpecError(
            f"{factory}() failed: {type(error).__name__}: {_first_line(error)}"
        ) from None
    if not isinstance(model, nn.Module):
        raise SpecError(f"{factory}() must return a torch.nn.Module, not {type(model).__name__}")
    if state_dict is not None:
        path = Path(state_dict)
        if detect_format(path) != "state_dict":
            raise SpecError(f"{path}: expected a state_dict file (torch.save(model.state_dict()))")
        try:
            model.load_state_dict(load_state_dict_file(path), strict=True)
        except RuntimeError as error:
            raise SpecError(f"{path}: does not fit {factory}(): {_first_line(error)}") from None
    return model.eval()


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# -- the import --------------------------------------------------------------------------------
def from_brevitas(module: nn.Module, head: str | None = None) -> tuple[ModelSpec, QuantizedModel]:
    """Import a module holding a Brevitas ``QuantLSTM`` (and optionally a ``QuantLinear``).

    Returns ``(spec, qmodel)``: the spec with the float weights (each gate's Brevitas bias
    as ``b_ih``, ``b_hh`` zero) and the qmodel with the quantizers' formats and Brevitas's
    own integer weight and bias codes. The head mode is ``head``, else the module's
    ``head_mode`` attribute, else ``"last"``; the module's forward is not inspected. Raises
    :class:`SpecError` naming the quantizer for anything lstmfpga cannot represent (see the
    module docstring) and :class:`TypeError` if ``module`` is not an ``nn.Module``.
    """
    qnn = _brevitas()
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, not {module!r}")
    mode = head if head is not None else getattr(module, "head_mode", None)
    if mode is not None and mode not in HEAD_MODES:
        raise SpecError(f"head must be 'last' or 'all', not {mode!r}")
    lstm_path, head_path = _find(module, qnn)
    from brevitas.proxy.quant_proxy import QuantProxyFromInjector

    training = [
        p for p, m in module.named_modules() if isinstance(m, QuantProxyFromInjector) and m.training
    ]
    if training:
        raise SpecError(
            f"{training[0]}: in training mode; call module.eval() first (Brevitas's scales "
            f"from runtime statistics are fixed only in eval mode)"
        )
    if mode is not None and head_path is None:
        raise SpecError(f"head={mode!r} given, but {type(module).__name__} has no QuantLinear")
    lstm = module.get_submodule(lstm_path)
    prefix = f"{lstm_path}." if lstm_path else ""
    with torch.no_grad():
        return _import(module, lstm, prefix, head_path, mode or "last")


def _import(module, lstm, prefix, head_path, mode):
    layers = list(lstm.layers)
    first = layers[0][0]
    found = {group: {} for group in ("io", "acc", "cell", "sigmoid", "tanh", "w_bits", "b_bits")}
    tensors, layer_weights = {}, []
    for index, directions in enumerate(layers):
        lws = []
        for d, layer in enumerate(directions):
            where = f"{prefix}layers.{index}.{d}"
            if layer.cifg:
                raise SpecError(f"{where}: coupled input-forget gates are not supported")
            _read_activations(layer, where, found)
            suffix = f"_l{index}" + ("_reverse" if d else "")
            lws.append(_read_weights(layer, where, suffix, found, tensors))
        layer_weights.append(tuple(lws))
    formats = _data_formats(found)
    hidden = formats["hidden"]
    role_bits = {
        "w_ih": same_format("weight width", found["w_bits"])[0],
        "bias": same_format("bias width", found["b_bits"])[0] if found["b_bits"] else 32,
    }
    head_spec = None
    if head_path is not None:
        head_spec, head_tensors, formats["head_out"], role_bits["head_w"], role_bits["head_b"] = (
            _head(module.get_submodule(head_path), head_path, hidden, mode, lstm)
        )
        tensors.update(head_tensors)
    else:
        formats["head_out"] = hidden
        role_bits["head_w"], role_bits["head_b"] = role_bits["w_ih"], role_bits["bias"]
    spec = ModelSpec(
        input_size=first.input_size,
        hidden_size=first.hidden_size,
        num_layers=len(layers),
        bidirectional=len(layers[0]) == 2,
        proj_size=0,
        bias=bool(found["b_bits"]),
        layers=tuple(layer_weights),
        head=head_spec,
        source=f"brevitas module {type(module).__name__}",
    )
    fixed = {role: FixedFormat(bits, frac) for role, (bits, frac, _) in formats.items()}
    try:
        qmodel = quantize_with_formats(
            spec,
            fixed,
            tensors,
            _config(fixed, role_bits),
            notes={"brevitas": spec.source},
            reasons=_reasons(found, head_path),
        )
    except FormatError as error:
        raise SpecError(f"Brevitas model cannot be represented: {error}") from None
    return spec, qmodel


def _read_activations(layer, where: str, found: dict) -> None:
    """The formats of one direction's data quantizers, into ``found[group][path]``."""
    c = layer.cell
    for group, path, proxy in (
        ("io", f"{where}.cell.output_quant", c.output_quant),
        ("io", f"{where}.io_quant", layer.io_quant),
        ("cell", f"{where}.cell.cell_state_quant", c.cell_state_quant),
    ):
        found[group][path] = activation_format(path, proxy)
    for name in _ACC_QUANTS:
        found["acc"][f"{where}.cell.{name}"] = activation_format(
            f"{where}.cell.{name}", getattr(c, name)
        )
    for name in _SIGMOID_QUANTS:
        found["sigmoid"][f"{where}.cell.{name}"] = activation_format(
            f"{where}.cell.{name}", getattr(c, name), need_signed=False
        )
    for name in _TANH_QUANTS:
        found["tanh"][f"{where}.cell.{name}"] = activation_format(
            f"{where}.cell.{name}", getattr(c, name)
        )


def _read_weights(layer, where: str, suffix: str, found: dict, tensors: dict) -> LayerWeights:
    """One direction's float weights (the spec's) and Brevitas's codes of them, in the one
    weight format and the one bias format its gates agree on (``tensors["w_ih" + suffix]``,
    ...); their widths into ``found["w_bits"]``/``found["b_bits"]``."""
    # The input quantized as Brevitas's bias quantizers see it (its scale matters).
    qi = layer.io_quant(torch.zeros(1, layer.input_size, dtype=torch.float64))
    w_ih, w_hh, b, codes = [], [], [], {"ih": [], "hh": [], "b": []}
    fmts_w, fmts_b = {}, {}
    for gate in GATES:
        params = getattr(layer, f"{gate}_gate_params")
        gpath = f"{where}.{gate}_gate_params"
        wq = f"{gpath}.input_weight.weight_quant"
        check_proxy(wq, params.input_weight.weight_quant)
        check_proxy(f"{gpath}.hidden_weight.weight_quant", params.hidden_weight.weight_quant)
        q_ih = params.input_weight()
        q_hh = params.hidden_weight()
        ih, bits, frac = quant_tensor(wq, q_ih)
        hh, bits_h, frac_h = quant_tensor(f"{gpath}.hidden_weight.weight_quant", q_hh)
        fmts_w[wq] = (bits, frac, True)
        fmts_w[f"{gpath}.hidden_weight.weight_quant"] = (bits_h, frac_h, True)
        w_ih.append(_numpy(params.input_weight.weight))
        w_hh.append(_numpy(params.hidden_weight.weight))
        codes["ih"].append(ih)
        codes["hh"].append(hh)
        if params.bias is not None:
            bq = f"{gpath}.bias_quant"
            check_proxy(bq, params.bias_quant)
            qb = params.bias_quant(params.bias, qi, q_ih)
            bc, bbits, bfrac = quant_tensor(bq, qb)
            fmts_b[bq] = (bbits, bfrac, True)
            b.append(_numpy(params.bias))
            codes["b"].append(bc)
    wb, wf, _ = same_format("weight (per layer)", fmts_w)
    w_fmt = FixedFormat(wb, wf)
    found["w_bits"][next(iter(fmts_w))] = (wb, 0, True)
    tensors["w_ih" + suffix] = Tensor(np.concatenate(codes["ih"]), w_fmt)
    tensors["w_hh" + suffix] = Tensor(np.concatenate(codes["hh"]), w_fmt)
    bias = None
    if b:
        bb, bf, _ = same_format("bias (per layer)", fmts_b)
        found["b_bits"][next(iter(fmts_b))] = (bb, 0, True)
        tensors["bias" + suffix] = Tensor(np.concatenate(codes["b"]), FixedFormat(bb, bf))
        bias = np.concatenate(b)
    return LayerWeights(
        w_ih=np.concatenate(w_ih),
        w_hh=np.concatenate(w_hh),
        b_ih=bias,
        b_hh=None if bias is None else np.zeros_like(bias),
    )


def _data_formats(found: dict) -> dict[str, tuple]:
    """The one format of each data role (``x``, ``hidden``, ``preact``, ``cell``, ``gate``)
    that the quantizers of that role agree on."""
    hidden = same_format("x/hidden (io_quant)", found["io"])
    formats = {
        "x": hidden,
        "hidden": hidden,
        "preact": same_format("pre-activation (gate accumulator)", found["acc"]),
        "cell": same_format("cell state", found["cell"]),
    }
    _, s_frac, _ = same_format("sigmoid output", found["sigmoid"])
    _, t_frac, _ = same_format("tanh output", found["tanh"])
    gate_frac = max(s_frac, t_frac, 0)
    if gate_frac + 2 > 32:
        raise SpecError(
            f"{next(iter(found['sigmoid']))}: gate scale 2**{-gate_frac} needs more than 32 bits"
        )
    formats["gate"] = (gate_frac + 2, gate_frac, True)
    return formats


def _reasons(found: dict, head_path: str | None) -> dict[str, str]:
    """Where each data role's format came from (the qmodel's format reasons)."""
    first = {group: next(iter(paths), None) for group, paths in found.items()}
    return {
        "x": f"from {first['io']}",
        "hidden": f"from {first['io']}",
        "preact": f"from {first['acc']}",
        "cell": f"from {first['cell']}",
        "gate": f"holds 1.0 and the grids of {first['sigmoid']} and {first['tanh']}",
        "head_out": f"from {head_path}.output_quant" if head_path else "no head (as hidden)",
    }


def _head(linear, path: str, hidden: tuple, mode: str, lstm):
    """The head's spec, tensors, ``head_out`` format and role widths."""
    check_proxy(f"{path}.weight_quant", linear.weight_quant)
    out = activation_format(f"{path}.output_quant", linear.output_quant)
    if linear.input_quant.is_quant_enabled:
        got = activation_format(f"{path}.input_quant", linear.input_quant)
        if got != hidden:
            raise SpecError(
                f"{path}.input_quant: {show_format(got)} requantizes h ({show_format(hidden)}); "
                f"disable it or give it the io_quant's format"
            )
    qw = linear.quant_weight()
    w_codes, w_bits, w_frac = quant_tensor(f"{path}.weight_quant", qw)
    tensors = {"head_w": Tensor(w_codes, FixedFormat(w_bits, w_frac))}
    bias, b_bits = None, 32
    if linear.bias is not None:
        check_proxy(f"{path}.bias_quant", linear.bias_quant)
        io = lstm.layers[0][0].io_quant
        qi = io(torch.zeros(1, linear.in_features, dtype=torch.float64))
        b_codes, b_bits, b_frac = quant_tensor(
            f"{path}.bias_quant", linear.bias_quant(linear.bias, qi, qw)
        )
        tensors["head_b"] = Tensor(b_codes, FixedFormat(b_bits, b_frac))
        bias = _numpy(linear.bias)
    spec = HeadSpec(_numpy(linear.weight), bias, mode)
    return spec, tensors, out, w_bits, b_bits


def _config(formats: dict[str, FixedFormat], bits: dict[str, int]) -> QuantConfig:
    """The config recording the imported formats (data roles fixed, weights by width)."""
    base = QuantConfig.preset("w8a8")
    roles = {role: RoleRule(f.bits, f.frac) for role, f in formats.items()}
    roles.update(
        w_ih=RoleRule(bits["w_ih"]),
        w_hh=RoleRule(bits["w_ih"]),
        w_hr=RoleRule(bits["w_ih"]),
        bias=RoleRule(bits["bias"]),
        head_w=RoleRule(bits["head_w"]),
        head_b=RoleRule(bits["head_b"]),
    )
    preact, cell = formats["preact"], formats["cell"]
    rules = {}
    for fn in FUNCTIONS:
        inputs = (preact,) if fn == "sigmoid" else (preact, cell)
        if all(f.bits <= EXACT_TABLE_BITS for f in inputs):
            step = -max(f.frac for f in inputs)
            rules[fn] = {"step_log2": step, "range_log2": None, "interpolate": False, "guard": 0}
        else:
            rules[fn] = dict(getattr(base, fn).__dict__)
    data = {
        "name": "brevitas",
        "rounding": "half_even",
        "overflow": "saturate",
        "roles": {r: _rule_dict(rule) for r, rule in roles.items()},
        "activation": rules,
    }
    return QuantConfig.from_dict(data, source="Brevitas import")


def _rule_dict(rule: RoleRule) -> dict:
    return {"bits": rule.bits} if rule.frac is None else {"bits": rule.bits, "frac": rule.frac}
