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
import math
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


# -- quantizers --------------------------------------------------------------------------------
def _scalar(path: str, what: str, value) -> float:
    value = torch.as_tensor(value).detach()
    if value.numel() != 1:
        raise SpecError(
            f"{path}: per-channel {what} ({value.numel()} values); lstmfpga needs one "
            f"per-tensor {what}"
        )
    return float(value.reshape(()))


def _frac(path: str, scale: float) -> int:
    """``-log2(scale)`` of a power-of-two ``scale``, else :class:`SpecError`."""
    if not (math.isfinite(scale) and scale > 0):
        raise SpecError(f"{path}: scale {scale!r} must be a positive power of two")
    exponent = round(math.log2(scale))
    if scale != 2.0**exponent:
        raise SpecError(f"{path}: scale {scale:.6g} is not a power of two")
    return -exponent


def _format(path: str, bits: float, scale: float, signed: bool, *, need_signed: bool):
    if bits != int(bits):
        raise SpecError(f"{path}: bit width {bits!r} must be an integer")
    bits = int(bits)
    frac = _frac(path, scale)
    if need_signed and not signed:
        raise SpecError(f"{path}: unsigned quantizer where lstmfpga needs a signed one")
    width = bits if signed else bits + 1  # an unsigned grid needs one more bit signed
    if not 2 <= width <= 32:
        raise SpecError(f"{path}: bit width {bits} must be in 2..32")
    if frac > width:
        raise SpecError(
            f"{path}: scale 2**{-frac} needs {frac} fraction bits in {bits} bits; "
            f"lstmfpga formats hold at most as many fraction bits as bits"
        )
    if frac < -62:
        raise SpecError(f"{path}: scale 2**{-frac} is too coarse (at most 2**62)")
    return bits, frac, bool(signed)


def _check_proxy(path: str, proxy) -> None:
    if proxy is None or not getattr(proxy, "is_quant_enabled", False):
        raise SpecError(
            f"{path}: not quantized (None); lstmfpga needs a power-of-two fixed-point "
            f"quantizer for every tensor"
        )
    if "Float" in type(proxy).__name__ and "Int" not in type(proxy).__name__:
        raise SpecError(f"{path}: {type(proxy).__name__} is a floating-point quantizer")
    if getattr(proxy, "is_groupwise", False):
        raise SpecError(f"{path}: groupwise scales; lstmfpga needs one per-tensor scale")


def _act(path: str, proxy, *, need_signed: bool = True) -> tuple[int, int, bool]:
    """``(bits, frac, signed)`` of an activation quantizer on the datapath."""
    _check_proxy(path, proxy)
    zero = _scalar(path, "zero point", proxy.zero_point())
    if zero != 0:
        raise SpecError(f"{path}: zero point {zero:g}; lstmfpga needs symmetric quantizers")
    if proxy.is_narrow_range:
        raise SpecError(
            f"{path}: narrow range; the lstmfpga datapath saturates to the full "
            f"two's-complement range"
        )
    if str(proxy.rounding_mode).upper() != "ROUND":
        raise SpecError(
            f"{path}: rounding mode {proxy.rounding_mode}; lstmfpga rounds half to even "
            f"(Brevitas ROUND)"
        )
    scale = _scalar(path, "scale", proxy.scale())
    bits = _scalar(path, "bit width", proxy.bit_width())
    return _format(path, bits, scale, proxy.is_signed, need_signed=need_signed)


def _quant_tensor(path: str, qt) -> tuple[np.ndarray, int, int]:
    """``(codes, bits, frac)`` of a quantized weight or bias (``IntQuantTensor``)."""
    from brevitas.quant_tensor import IntQuantTensor

    if not isinstance(qt, IntQuantTensor):
        raise SpecError(f"{path}: gives {type(qt).__name__}, not integer-quantized values")
    zero = torch.as_tensor(qt.zero_point).detach()
    if bool(torch.any(zero != 0)):
        raise SpecError(f"{path}: zero point {zero.flatten()[0].item():g}; lstmfpga needs "
                        f"symmetric quantizers")  # fmt: skip
    scale = _scalar(path, "scale", qt.scale)
    bits = _scalar(path, "bit width", qt.bit_width)
    bits, frac, _ = _format(path, bits, scale, bool(qt.signed), need_signed=True)
    codes = qt.int().detach().cpu().numpy().astype(np.int64)
    return codes, bits, frac


def _same(role: str, found: dict[str, tuple]) -> tuple:
    """The one format of ``role`` all quantizers in ``found`` (path → format) agree on."""
    (first, want), *rest = found.items()
    for path, got in rest:
        if got != want:
            raise SpecError(
                f"{path}: {_show(got)} differs from {first}'s {_show(want)}; lstmfpga has one "
                f"{role} format (share the quantizer, or give them the same bit width and scale)"
            )
    return want


def _show(fmt: tuple) -> str:
    bits, frac, signed = fmt
    return f"{'' if signed else 'un'}signed {bits}-bit, scale 2**{-frac}"


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
    num_layers, D = len(layers), len(layers[0])
    first = layers[0][0]
    H, I = first.hidden_size, first.input_size
    io, acc, cell, sig, tanh = {}, {}, {}, {}, {}
    weights, biases, layer_weights = {}, {}, []
    w_bits, b_bits = {}, {}
    for index, directions in enumerate(layers):
        lws = []
        for d, layer in enumerate(directions):
            where = f"{prefix}layers.{index}.{d}"
            if layer.cifg:
                raise SpecError(f"{where}: coupled input-forget gates are not supported")
            c = layer.cell
            io[f"{where}.cell.output_quant"] = _act(f"{where}.cell.output_quant", c.output_quant)
            io[f"{where}.io_quant"] = _act(f"{where}.io_quant", layer.io_quant)
            cell[f"{where}.cell.cell_state_quant"] = _act(
                f"{where}.cell.cell_state_quant", c.cell_state_quant
            )
            for name in _ACC_QUANTS:
                acc[f"{where}.cell.{name}"] = _act(f"{where}.cell.{name}", getattr(c, name))
            for name in _SIGMOID_QUANTS:
                sig[f"{where}.cell.{name}"] = _act(
                    f"{where}.cell.{name}", getattr(c, name), need_signed=False
                )
            for name in _TANH_QUANTS:
                tanh[f"{where}.cell.{name}"] = _act(f"{where}.cell.{name}", getattr(c, name))
            # The input quantized as Brevitas's bias quantizers see it (its scale matters).
            qi = layer.io_quant(torch.zeros(1, layer.input_size, dtype=torch.float64))
            w_ih, w_hh, b, codes = [], [], [], {"ih": [], "hh": [], "b": []}
            fmts_w, fmts_b = {}, {}
            for gate in GATES:
                params = getattr(layer, f"{gate}_gate_params")
                gpath = f"{where}.{gate}_gate_params"
                wq = f"{gpath}.input_weight.weight_quant"
                _check_proxy(wq, params.input_weight.weight_quant)
                _check_proxy(f"{gpath}.hidden_weight.weight_quant",
                             params.hidden_weight.weight_quant)  # fmt: skip
                q_ih = params.input_weight()
                q_hh = params.hidden_weight()
                ih, bits, frac = _quant_tensor(wq, q_ih)
                hh, bits_h, frac_h = _quant_tensor(f"{gpath}.hidden_weight.weight_quant", q_hh)
                fmts_w[wq] = (bits, frac, True)
                fmts_w[f"{gpath}.hidden_weight.weight_quant"] = (bits_h, frac_h, True)
                w_ih.append(_numpy(params.input_weight.weight))
                w_hh.append(_numpy(params.hidden_weight.weight))
                codes["ih"].append(ih)
                codes["hh"].append(hh)
                if params.bias is not None:
                    bq = f"{gpath}.bias_quant"
                    _check_proxy(bq, params.bias_quant)
                    qb = params.bias_quant(params.bias, qi, q_ih)
                    bc, bbits, bfrac = _quant_tensor(bq, qb)
                    fmts_b[bq] = (bbits, bfrac, True)
                    b.append(_numpy(params.bias))
                    codes["b"].append(bc)
            suffix = f"_l{index}" + ("_reverse" if d else "")
            wb, wf, _ = _same("weight (per layer)", fmts_w)
            w_fmt = FixedFormat(wb, wf)
            w_bits[next(iter(fmts_w))] = (wb, 0, True)
            weights["w_ih" + suffix] = Tensor(np.concatenate(codes["ih"]), w_fmt)
            weights["w_hh" + suffix] = Tensor(np.concatenate(codes["hh"]), w_fmt)
            bias = None
            if b:
                bb, bf, _ = _same("bias (per layer)", fmts_b)
                b_bits[next(iter(fmts_b))] = (bb, 0, True)
                biases["bias" + suffix] = Tensor(np.concatenate(codes["b"]), FixedFormat(bb, bf))
                bias = np.concatenate(b)
            lws.append(
                LayerWeights(
                    w_ih=np.concatenate(w_ih),
                    w_hh=np.concatenate(w_hh),
                    b_ih=bias,
                    b_hh=None if bias is None else np.zeros_like(bias),
                )
            )
        layer_weights.append(tuple(lws))
    hidden = _same("x/hidden (io_quant)", io)
    formats = {
        "x": hidden,
        "hidden": hidden,
        "preact": _same("pre-activation (gate accumulator)", acc),
        "cell": _same("cell state", cell),
    }
    _, s_frac, _ = _same("sigmoid output", sig)
    _, t_frac, _ = _same("tanh output", tanh)
    gate_frac = max(s_frac, t_frac, 0)
    if gate_frac + 2 > 32:
        raise SpecError(f"{next(iter(sig))}: gate scale 2**{-gate_frac} needs more than 32 bits")
    formats["gate"] = (gate_frac + 2, gate_frac, True)
    role_bits = {
        "w_ih": _same("weight width", w_bits)[0],
        "bias": _same("bias width", b_bits)[0] if b_bits else 32,
    }
    head_spec = None
    if head_path is not None:
        head_spec, head_tensors, formats["head_out"], role_bits["head_w"], role_bits["head_b"] = (
            _head(module.get_submodule(head_path), head_path, hidden, mode, lstm)
        )
        weights.update(head_tensors)
    else:
        formats["head_out"] = hidden
        role_bits["head_w"], role_bits["head_b"] = role_bits["w_ih"], role_bits["bias"]
    spec = ModelSpec(
        input_size=I,
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=D == 2,
        proj_size=0,
        bias=bool(biases),
        layers=tuple(layer_weights),
        head=head_spec,
        source=f"brevitas module {type(module).__name__}",
    )
    fixed = {role: FixedFormat(bits, frac) for role, (bits, frac, _) in formats.items()}
    reasons = {
        "x": f"from {next(iter(io))}",
        "hidden": f"from {next(iter(io))}",
        "preact": f"from {next(iter(acc))}",
        "cell": f"from {next(iter(cell))}",
        "gate": f"holds 1.0 and the grids of {next(iter(sig))} and {next(iter(tanh))}",
        "head_out": f"from {head_path}.output_quant" if head_path else "no head (as hidden)",
    }
    config = _config(fixed, role_bits)
    try:
        qmodel = quantize_with_formats(
            spec,
            fixed,
            {**weights, **biases},
            config,
            notes={"brevitas": spec.source},
            reasons=reasons,
        )
    except FormatError as error:
        raise SpecError(f"Brevitas model cannot be represented: {error}") from None
    return spec, qmodel


def _head(linear, path: str, hidden: tuple, mode: str, lstm):
    """The head's spec, tensors, ``head_out`` format and role widths."""
    _check_proxy(f"{path}.weight_quant", linear.weight_quant)
    out = _act(f"{path}.output_quant", linear.output_quant)
    if linear.input_quant.is_quant_enabled:
        got = _act(f"{path}.input_quant", linear.input_quant)
        if got != hidden:
            raise SpecError(
                f"{path}.input_quant: {_show(got)} requantizes h ({_show(hidden)}); "
                f"disable it or give it the io_quant's format"
            )
    qw = linear.quant_weight()
    w_codes, w_bits, w_frac = _quant_tensor(f"{path}.weight_quant", qw)
    tensors = {"head_w": Tensor(w_codes, FixedFormat(w_bits, w_frac))}
    bias, b_bits = None, 32
    if linear.bias is not None:
        _check_proxy(f"{path}.bias_quant", linear.bias_quant)
        io = lstm.layers[0][0].io_quant
        qi = io(torch.zeros(1, linear.in_features, dtype=torch.float64))
        b_codes, b_bits, b_frac = _quant_tensor(
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
