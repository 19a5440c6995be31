"""Brevitas quantizers read as lstmfpga fixed-point formats, for the Brevitas import
(:mod:`lstmfpga.export.brevitas_loader`).

A format is ``(bits, frac, signed)`` with ``frac = -log2(scale)``. Every reader raises a
one-line :class:`~lstmfpga.export.spec.SpecError` naming the quantizer's path for what lstmfpga
cannot represent: no quantizer, a floating-point or groupwise one, a scale that is not a
power of two, per-channel scales, a non-zero zero point, narrow range or a rounding other
than round-half-even on a data role, widths outside 2..32, more fraction bits than bits, and
quantizers of one role that disagree.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .spec import SpecError

__all__ = [
    "activation_format",
    "check_proxy",
    "fixed_format",
    "power_of_two_frac",
    "quant_tensor",
    "same_format",
    "scalar",
    "show_format",
]


def scalar(path: str, what: str, value) -> float:
    value = torch.as_tensor(value).detach()
    if value.numel() != 1:
        raise SpecError(
            f"{path}: per-channel {what} ({value.numel()} values); lstmfpga needs one "
            f"per-tensor {what}"
        )
    return float(value.reshape(()))


def power_of_two_frac(path: str, scale: float) -> int:
    """``-log2(scale)`` of a power-of-two ``scale``, else :class:`SpecError`."""
    if not (math.isfinite(scale) and scale > 0):
        raise SpecError(f"{path}: scale {scale!r} must be a positive power of two")
    exponent = round(math.log2(scale))
    if scale != 2.0**exponent:
        raise SpecError(f"{path}: scale {scale:.6g} is not a power of two")
    return -exponent


def fixed_format(path: str, bits: float, scale: float, signed: bool, *, need_signed: bool):
    if bits != int(bits):
        raise SpecError(f"{path}: bit width {bits!r} must be an integer")
    bits = int(bits)
    frac = power_of_two_frac(path, scale)
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


def check_proxy(path: str, proxy) -> None:
    if proxy is None or not getattr(proxy, "is_quant_enabled", False):
        raise SpecError(
            f"{path}: not quantized (None); lstmfpga needs a power-of-two fixed-point "
            f"quantizer for every tensor"
        )
    if "Float" in type(proxy).__name__ and "Int" not in type(proxy).__name__:
        raise SpecError(f"{path}: {type(proxy).__name__} is a floating-point quantizer")
    if getattr(proxy, "is_groupwise", False):
        raise SpecError(f"{path}: groupwise scales; lstmfpga needs one per-tensor scale")


def activation_format(path: str, proxy, *, need_signed: bool = True) -> tuple[int, int, bool]:
    """``(bits, frac, signed)`` of an activation quantizer on the datapath."""
    check_proxy(path, proxy)
    zero = scalar(path, "zero point", proxy.zero_point())
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
    scale = scalar(path, "scale", proxy.scale())
    bits = scalar(path, "bit width", proxy.bit_width())
    return fixed_format(path, bits, scale, proxy.is_signed, need_signed=need_signed)


def quant_tensor(path: str, qt) -> tuple[np.ndarray, int, int]:
    """``(codes, bits, frac)`` of a quantized weight or bias (``IntQuantTensor``)."""
    from brevitas.quant_tensor import IntQuantTensor

    if not isinstance(qt, IntQuantTensor):
        raise SpecError(f"{path}: gives {type(qt).__name__}, not integer-quantized values")
    zero = torch.as_tensor(qt.zero_point).detach()
    if bool(torch.any(zero != 0)):
        raise SpecError(f"{path}: zero point {zero.flatten()[0].item():g}; lstmfpga needs "
                        f"symmetric quantizers")  # fmt: skip
    scale = scalar(path, "scale", qt.scale)
    bits = scalar(path, "bit width", qt.bit_width)
    bits, frac, _ = fixed_format(path, bits, scale, bool(qt.signed), need_signed=True)
    codes = qt.int().detach().cpu().numpy().astype(np.int64)
    return codes, bits, frac


def same_format(role: str, found: dict[str, tuple]) -> tuple:
    """The one format of ``role`` all quantizers in ``found`` (path → format) agree on."""
    (first, want), *rest = found.items()
    for path, got in rest:
        if got != want:
            raise SpecError(
                f"{path}: {show_format(got)} differs from {first}'s {show_format(want)}; "
                f"lstmfpga has one {role} format (share the quantizer, or give them the same bit "
                f"width and scale)"
            )
    return want


def show_format(fmt: tuple) -> str:
    bits, frac, signed = fmt
    return f"{'' if signed else 'un'}signed {bits}-bit, scale 2**{-frac}"
