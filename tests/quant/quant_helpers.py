"""Shared helpers of the quantization tests (imported by the test modules of tests/quant)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from lstmfpga.quant.config import QuantConfig, RoleRule

ROOT = Path(__file__).resolve().parents[2]


def exactly(message: str, whole: bool = True) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly ``message`` (or a prefix of it)."""
    return "^" + re.escape(message) + ("$" if whole else "")


def uniform_config(bits: int, **changes) -> QuantConfig:
    """q16 with every role ``bits`` wide (the gate keeps ``frac = bits - 2``)."""
    base = QuantConfig.preset("q16")
    roles = {role: RoleRule(bits) for role in base.roles}
    roles["gate"] = RoleRule(bits, bits - 2)
    return dataclasses.replace(base, name=f"q{bits}", roles=roles, **changes)


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))
