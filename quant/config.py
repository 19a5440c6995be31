"""Quantization configuration: one format rule per tensor role, loadable from TOML.

A role's rule gives its width and, optionally, its fraction bits; without ``frac`` the
fraction bits are chosen by calibration (weights from their own values, data roles from the
float reference run on calibration inputs). Presets ship as TOML files in ``presets/``:

* ``q16``: 16-bit weights and data, formats chosen by calibration;
* ``w8a16``: 8-bit weights, 16-bit data.

Example (``[roles]`` entries override the preset named by ``preset``)::

    preset = "q16"
    rounding = "half_even"
    [roles]
    w_ih = { bits = 12 }
    cell = { bits = 18, frac = 12 }
    [activation]
    sigmoid = { step_log2 = -5, range_log2 = 4 }
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from .fixed import MAX_BITS, OVERFLOW_MODES, ROUNDING_MODES, FormatError

__all__ = [
    "DATA_ROLES",
    "PRESETS",
    "ROLES",
    "WEIGHT_ROLES",
    "ActivationRule",
    "QuantConfig",
    "RoleRule",
    "load_config",
]

#: Tensors quantized from their own values, one format per tensor (per layer and direction).
WEIGHT_ROLES = ("w_ih", "w_hh", "bias", "w_hr", "head_w", "head_b")
#: Data on the datapath, one format per role for the whole model (calibrated on inputs).
#: ``gate`` is the output of sigmoid/tanh (holds 1.0); ``hidden`` is h (and o*tanh(c)).
DATA_ROLES = ("x", "preact", "gate", "cell", "hidden", "head_out")
ROLES = WEIGHT_ROLES + DATA_ROLES
PRESETS = ("q16", "w8a16")


@dataclass(frozen=True)
class RoleRule:
    """Width of a role and, optionally, fixed fraction bits (else calibrated)."""

    bits: int
    frac: int | None = None

    def __post_init__(self):
        if not isinstance(self.bits, int) or isinstance(self.bits, bool):
            raise FormatError(f"bits must be an integer, not {self.bits!r}")
        if not 2 <= self.bits <= 32:
            raise FormatError(f"bits must be in 2..32, not {self.bits!r}")
        if self.frac is not None and (not isinstance(self.frac, int) or self.frac >= MAX_BITS):
            raise FormatError(f"frac must be an integer below {MAX_BITS}, not {self.frac!r}")


@dataclass(frozen=True)
class ActivationRule:
    """How a sigmoid/tanh table is built (see :func:`lstmfpga.quant.activation.make_table`)."""

    step_log2: int = -6
    range_log2: int | None = None
    interpolate: bool = True
    guard: int = 4


@dataclass(frozen=True)
class QuantConfig:
    """Everything that decides the fixed-point model, apart from calibration data.

    ``acc_bits``: accumulator width; ``None`` derives the smallest width for which no dot
    product can overflow, an explicit value must be at least that (checked at quantization).
    ``headroom``: calibrated ranges are multiplied by this before choosing integer bits.
    """

    name: str = "q16"
    roles: dict[str, RoleRule] = field(default_factory=dict)
    rounding: str = "half_even"
    overflow: str = "saturate"
    headroom: float = 1.25
    acc_bits: int | None = None
    sigmoid: ActivationRule = ActivationRule(step_log2=-5, range_log2=4)
    tanh: ActivationRule = ActivationRule(step_log2=-7, range_log2=3)

    def __post_init__(self):
        missing = [r for r in ROLES if r not in self.roles]
        unknown = [r for r in self.roles if r not in ROLES]
        if unknown:
            raise FormatError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
        if missing:
            raise FormatError(f"config is missing role(s) {', '.join(missing)}")
        if self.rounding not in ROUNDING_MODES:
            raise FormatError(f"rounding must be one of {ROUNDING_MODES}, not {self.rounding!r}")
        if self.overflow not in OVERFLOW_MODES:
            raise FormatError(f"overflow must be one of {OVERFLOW_MODES}, not {self.overflow!r}")
        if not (isinstance(self.headroom, int | float) and 1.0 <= self.headroom <= 16.0):
            raise FormatError(f"headroom must be a number in 1..16, not {self.headroom!r}")
        if self.acc_bits is not None and not (
            isinstance(self.acc_bits, int) and 2 <= self.acc_bits <= MAX_BITS
        ):
            raise FormatError(
                f"acc_bits must be an integer in 2..{MAX_BITS}, not {self.acc_bits!r}"
            )
        gate = self.roles["gate"]
        if gate.frac is not None and gate.frac > gate.bits - 2:
            raise FormatError(
                f"gate format must hold 1.0: frac must be <= bits - 2 ({gate.bits - 2}), "
                f"not {gate.frac}"
            )

    def to_dict(self) -> dict:
        def rule(r):
            return {k: v for k, v in r.__dict__.items() if v is not None}

        return {
            "name": self.name,
            "rounding": self.rounding,
            "overflow": self.overflow,
            "headroom": self.headroom,
            "acc_bits": self.acc_bits,
            "roles": {k: rule(v) for k, v in self.roles.items()},
            "activation": {"sigmoid": rule(self.sigmoid), "tanh": rule(self.tanh)},
        }

    @classmethod
    def preset(cls, name: str) -> QuantConfig:
        if name not in PRESETS:
            raise FormatError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
        text = resources.files(__package__).joinpath("presets", f"{name}.toml").read_text()
        return cls.from_toml(text, source=f"preset {name}")

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> QuantConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise FormatError(f"{source} is not valid TOML: {error}") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> QuantConfig:
        known = {"preset", "name", "rounding", "overflow", "headroom", "acc_bits", "roles"}
        known |= {"activation"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FormatError(f"{source}: unknown key(s) {', '.join(unknown)}")
        base = cls.preset(data["preset"]) if "preset" in data else None
        roles = dict(base.roles) if base else {}
        for role, value in data.get("roles", {}).items():
            if not isinstance(value, dict) or set(value) - {"bits", "frac"}:
                raise FormatError(f"{source}: role {role} must be {{bits = N, frac = M}}")
            roles[role] = RoleRule(**value)
        kwargs = {"roles": roles}
        for key in ("name", "rounding", "overflow", "headroom", "acc_bits"):
            if key in data:
                kwargs[key] = data[key]
        if "name" not in data:
            kwargs["name"] = base.name if base else "custom"
        activation = data.get("activation", {})
        for fn in ("sigmoid", "tanh"):
            rule = getattr(base, fn) if base else getattr(cls, fn)
            if fn in activation:
                try:
                    rule = replace(rule, **activation[fn])
                except TypeError as error:
                    raise FormatError(f"{source}: activation.{fn}: {error}") from None
            kwargs[fn] = rule
        if base is not None:
            kwargs = {
                **{k: getattr(base, k) for k in ("rounding", "overflow", "headroom")},
                **kwargs,
            }
            kwargs.setdefault("acc_bits", base.acc_bits)
        try:
            return cls(**kwargs)
        except TypeError as error:
            raise FormatError(f"{source}: {error}") from None


def load_config(path: str | Path | None = None, preset: str | None = None) -> QuantConfig:
    """The config from a TOML file (which may name a preset), else the named preset (q16)."""
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise FormatError(f"cannot read config {path}: {error.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise FormatError(f"{path} is not valid TOML: {error}") from None
        if preset is not None and "preset" not in data:
            data["preset"] = preset
        return QuantConfig.from_dict(data, source=str(path))
    return QuantConfig.preset(preset or "q16")
