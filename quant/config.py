"""Quantization configuration: one format rule per tensor role, loadable from TOML.

A role's rule gives its width and, optionally, its fraction bits; without ``frac`` the
fraction bits are chosen by calibration (weights from their own values, data roles from the
float reference run on calibration inputs). Presets ship as TOML files in ``presets/``:

* ``q16``: 16-bit weights and data, formats chosen by calibration;
* ``w8a16``: 8-bit weights, 16-bit data.

Example (``[roles]`` entries override the preset named by ``preset``)::

    preset = "q16"
    rounding = "half_even"          # half_even | half_up | truncate
    overflow = "saturate"           # saturate | wrap
    headroom = 1.25                 # calibrated ranges are multiplied by this
    acc_bits = 40                   # optional: at least the width quantization derives
    [roles]
    w_ih = { bits = 12 }            # bits 2..32; frac (optional) -62..bits
    cell = { bits = 18, frac = 12 }
    hn = { bits = 16 }              # GRU only, optional: defaults to preact's width
    [activation]
    sigmoid = { step_log2 = -5, range_log2 = 4, interpolate = true, guard = 4 }

Every impossible setting raises :class:`~lstmfpga.quant.fixed.FormatError` with a one-line
message naming the source and the key (``docs/numerics.md``, "Configuration").
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from .activation import FUNCTIONS, make_table
from .fixed import MAX_BITS, OVERFLOW_MODES, ROUNDING_MODES, FormatError

__all__ = [
    "DATA_ROLES",
    "GRU_ROLES",
    "MAX_CONFIG_BYTES",
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
#: Roles only a GRU has, optional in a config: ``hn``, the requantized recurrent sum
#: ``W_hn h + b_hn`` of the n gate (what the reset gate multiplies). Without a rule it takes
#: ``preact``'s width, its fraction bits calibrated (:meth:`QuantConfig.rule`).
GRU_ROLES = ("hn",)
PRESETS = ("q16", "w8a16", "w8a8", "w4a8")
#: Widths a role may have (the accumulator, derived, may be wider: up to 62 bits).
MIN_ROLE_BITS, MAX_ROLE_BITS = 2, 32
_TOP_KEYS = (
    "preset",
    "name",
    "rounding",
    "overflow",
    "headroom",
    "acc_bits",
    "roles",
    "activation",
)


@dataclass(frozen=True)
class RoleRule:
    """Width of a role and, optionally, fixed fraction bits (else calibrated)."""

    bits: int
    frac: int | None = None

    def __post_init__(self):
        if not _is_int(self.bits):
            raise FormatError(f"bits must be an integer, not {self.bits!r}")
        if not MIN_ROLE_BITS <= self.bits <= MAX_ROLE_BITS:
            raise FormatError(
                f"bits must be in {MIN_ROLE_BITS}..{MAX_ROLE_BITS}, not {self.bits!r}"
            )
        if self.frac is not None:
            if not _is_int(self.frac):
                raise FormatError(f"frac must be an integer, not {self.frac!r}")
            if not -MAX_BITS <= self.frac <= self.bits:
                raise FormatError(
                    f"frac must be in -{MAX_BITS}..{self.bits} (at most bits), not {self.frac!r}"
                )

    def check(self, fmt, what: str) -> None:
        """Raise :class:`FormatError` (naming ``what``) unless the format ``fmt`` is one this
        rule makes: its width, its fixed ``frac`` if it has one, and ``frac`` at most ``bits``
        (what quantization produces, so that a saved qmodel loads back)."""
        if fmt.bits != self.bits:
            raise FormatError(
                f"{what} {fmt} must have the config's {self.bits} bits, not {fmt.bits}"
            )
        if self.frac is not None and fmt.frac != self.frac:
            raise FormatError(
                f"{what} {fmt} must have the config's frac {self.frac}, not {fmt.frac}"
            )
        if fmt.frac > fmt.bits:
            raise FormatError(
                f"{what} {fmt}: frac must be at most bits ({fmt.bits}), not {fmt.frac}"
            )


@dataclass(frozen=True)
class ActivationRule:
    """How a sigmoid/tanh table is built (see :func:`lstmfpga.quant.activation.make_table`).

    ``step_log2``: table spacing ``2**step_log2``; ``range_log2``: inputs with
    ``|x| >= 2**range_log2`` read the last entry (``None``: the whole input format);
    ``interpolate``: linear interpolation between entries; ``guard``: extra fraction bits of
    interpolating entries, 0..16.
    """

    step_log2: int = -6
    range_log2: int | None = None
    interpolate: bool = True
    guard: int = 4

    def __post_init__(self):
        if not _is_int(self.step_log2) or not -MAX_BITS <= self.step_log2 <= MAX_BITS:
            raise FormatError(
                f"step_log2 must be an integer in -{MAX_BITS}..{MAX_BITS}, not {self.step_log2!r}"
            )
        if self.range_log2 is not None and (
            not _is_int(self.range_log2) or not -MAX_BITS <= self.range_log2 <= MAX_BITS
        ):
            raise FormatError(
                f"range_log2 must be an integer in -{MAX_BITS}..{MAX_BITS}, not {self.range_log2!r}"
            )
        if not isinstance(self.interpolate, bool):
            raise FormatError(f"interpolate must be true or false, not {self.interpolate!r}")
        if not _is_int(self.guard) or not 0 <= self.guard <= 16:
            raise FormatError(f"guard must be an integer in 0..16, not {self.guard!r}")

    def table(self, function: str, in_fmt, out_fmt):
        """The ``function`` (``"sigmoid"`` or ``"tanh"``) table from ``in_fmt`` to
        ``out_fmt`` built by this rule (:func:`~lstmfpga.quant.activation.make_table`)."""
        return make_table(
            function,
            in_fmt,
            out_fmt,
            step_log2=self.step_log2,
            range_log2=self.range_log2,
            interpolate=self.interpolate,
            guard=self.guard,
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        if not isinstance(self.name, str):
            raise FormatError(f"name must be a string, not {self.name!r}")
        if not isinstance(self.roles, dict):
            raise FormatError(f"roles must be a dict of RoleRule, not {self.roles!r}")
        unknown = [r for r in self.roles if r not in ROLES + GRU_ROLES]
        if unknown:
            raise FormatError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
        missing = [r for r in ROLES if r not in self.roles]
        if missing:
            raise FormatError(
                f"missing role(s) {', '.join(missing)} (name a preset or give every role)"
            )
        for role, rule in self.roles.items():
            if not isinstance(rule, RoleRule):
                raise FormatError(f"role {role} must be a RoleRule, not {rule!r}")
        for fn in FUNCTIONS:
            if not isinstance(getattr(self, fn), ActivationRule):
                raise FormatError(f"{fn} must be an ActivationRule, not {getattr(self, fn)!r}")
        if self.rounding not in ROUNDING_MODES:
            raise FormatError(f"rounding must be one of {ROUNDING_MODES}, not {self.rounding!r}")
        if self.overflow not in OVERFLOW_MODES:
            raise FormatError(f"overflow must be one of {OVERFLOW_MODES}, not {self.overflow!r}")
        if isinstance(self.headroom, bool) or not (
            isinstance(self.headroom, int | float) and 1.0 <= self.headroom <= 16.0
        ):
            raise FormatError(f"headroom must be a number in 1..16, not {self.headroom!r}")
        if self.acc_bits is not None and not (
            _is_int(self.acc_bits) and 2 <= self.acc_bits <= MAX_BITS
        ):
            raise FormatError(
                f"acc_bits must be an integer in 2..{MAX_BITS}, not {self.acc_bits!r}"
            )
        if self.acc_bits is not None:
            # Every model has these products; one product alone needs bits(w) + bits(v).
            for w, v in (("w_ih", "x"), ("w_hh", "hidden")):
                need = self.roles[w].bits + self.roles[v].bits
                if self.acc_bits < need:
                    raise FormatError(
                        f"acc_bits {self.acc_bits} cannot hold a {w} x {v} product "
                        f"(needs at least {need} bits)"
                    )
        gate = self.roles["gate"]
        if gate.frac is not None and not 0 <= gate.frac <= gate.bits - 2:
            raise FormatError(
                f"gate format must hold 1.0: frac must be in 0..bits - 2 ({gate.bits - 2}), "
                f"not {gate.frac}"
            )

    def rule(self, role: str) -> RoleRule:
        """The rule of ``role``; a GRU role without one takes ``preact``'s width (frac
        calibrated)."""
        if role in self.roles:
            return self.roles[role]
        if role in GRU_ROLES:
            return RoleRule(self.roles["preact"].bits)
        raise FormatError(f"unknown role {role!r}; roles are {', '.join(ROLES + GRU_ROLES)}")

    def to_dict(self) -> dict:
        """A JSON-able dict that :meth:`from_dict` turns back into an equal config."""

        def role(r):
            return {k: v for k, v in r.__dict__.items() if v is not None}

        return {
            "name": self.name,
            "rounding": self.rounding,
            "overflow": self.overflow,
            "headroom": self.headroom,
            "acc_bits": self.acc_bits,
            "roles": {k: role(v) for k, v in self.roles.items()},
            # Keep range_log2 = None: dropping it would restore the class default.
            "activation": {
                "sigmoid": dict(self.sigmoid.__dict__),
                "tanh": dict(self.tanh.__dict__),
            },
        }

    @classmethod
    def preset(cls, name: str) -> QuantConfig:
        if name not in PRESETS:
            raise FormatError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
        text = resources.files(__package__).joinpath("presets", f"{name}.toml").read_text()
        return cls.from_toml(text, source=f"preset {name}")

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> QuantConfig:
        return cls.from_dict(_parse_toml(text, source), source)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> QuantConfig:
        """Build a config from a TOML-like dict; raises :class:`FormatError` naming ``source``.

        ``preset`` (optional) names the base config; ``roles``, ``activation`` and the scalar
        keys override it. Without a preset every role must be given.
        """
        if not isinstance(data, dict):
            raise FormatError(f"{source}: a config must be a table, not {type(data).__name__}")
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise FormatError(
                f"{source}: unknown key(s) {', '.join(unknown)}; keys are {', '.join(_TOP_KEYS)}"
            )
        base = None
        if "preset" in data:
            try:
                base = cls.preset(data["preset"])
            except FormatError as error:
                raise FormatError(f"{source}: {error}") from None
        roles = dict(base.roles) if base else {}
        table = data.get("roles", {})
        if not isinstance(table, dict):
            raise FormatError(f"{source}: roles must be a table, not {table!r}")
        for role, value in table.items():
            if role not in ROLES + GRU_ROLES:
                raise FormatError(f"{source}: unknown role {role!r}; roles are {', '.join(ROLES)}")
            if not isinstance(value, dict) or "bits" not in value or set(value) - {"bits", "frac"}:
                raise FormatError(
                    f"{source}: role {role} must be {{bits = N}} or {{bits = N, frac = M}}, "
                    f"not {value!r}"
                )
            try:
                roles[role] = RoleRule(**value)
            except FormatError as error:
                raise FormatError(f"{source}: role {role}: {error}") from None
        kwargs = {"roles": roles}
        for key in ("name", "rounding", "overflow", "headroom", "acc_bits"):
            if key in data:
                kwargs[key] = data[key]
        if "name" not in data:
            kwargs["name"] = base.name if base else "custom"
        activation = data.get("activation", {})
        if not isinstance(activation, dict) or set(activation) - set(FUNCTIONS):
            raise FormatError(
                f"{source}: activation must be a table with keys {', '.join(FUNCTIONS)}, "
                f"not {activation!r}"
            )
        for fn in FUNCTIONS:
            rule = getattr(base, fn) if base else getattr(cls, fn)
            if fn in activation:
                value = activation[fn]
                fields = set(ActivationRule.__dataclass_fields__)
                if not isinstance(value, dict) or set(value) - fields:
                    raise FormatError(
                        f"{source}: activation.{fn} must be a table with keys among "
                        f"{', '.join(sorted(fields))}, not {value!r}"
                    )
                try:
                    rule = replace(rule, **value)
                except FormatError as error:
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
        except FormatError as error:
            raise FormatError(f"{source}: {error}") from None


#: Largest configuration file read (bytes); a real one is well under 2 kB.
MAX_CONFIG_BYTES = 1 << 20


def _parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise FormatError(f"{source} is not valid TOML: {' '.join(str(error).split())}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise FormatError(f"{source} is not valid TOML: nested too deeply") from None


def load_config(path: str | Path | None = None, preset: str | None = None) -> QuantConfig:
    """The config from a TOML file (which may name a preset), else the named preset (q16)."""
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise FormatError(f"cannot read config {path}: is a directory")
        if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
            raise FormatError(f"cannot read config {path}: not a regular file")
        try:
            size = path.stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise FormatError(
                    f"config {path} is {size} bytes, more than the {MAX_CONFIG_BYTES}-byte limit"
                )
            text = path.read_bytes().decode("utf-8")
        except OSError as error:
            raise FormatError(f"cannot read config {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise FormatError(f"config {path} is not UTF-8 text") from None
        data = _parse_toml(text, str(path))
        if preset is not None and "preset" not in data:
            data["preset"] = preset
        return QuantConfig.from_dict(data, source=str(path))
    return QuantConfig.preset(preset or "q16")
