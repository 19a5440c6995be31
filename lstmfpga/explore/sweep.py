"""The axes of a design-space sweep: lanes, simd, cells, presets, targets, placement seeds."""

from __future__ import annotations

from dataclasses import dataclass

from lstmfpga.errors import LstmfpgaError

__all__ = ["ExploreError", "Sweep", "Target"]


class ExploreError(LstmfpgaError):
    """A sweep that cannot run (bad sweep values, unreachable scheduler, ...)."""


# -- the sweep -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """An FPGA family and optionally a device: ``ecp5``, ``ecp5:85k``, ``ice40:up5k``."""

    family: str
    device: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        from lstmfpga.synth import DEVICES, TARGETS

        family, _, device = str(text).partition(":")
        if family not in TARGETS or family == "xilinx":
            choices = ", ".join(t for t in TARGETS if t != "xilinx")
            raise ExploreError(
                f"target must be one of {choices} (optionally :DEVICE), not {text!r}"
            )
        if not device:
            return cls(family)
        key = device.lower().removeprefix("lfe5u-").removeprefix("ice40")
        if key not in DEVICES[family]:
            known = ", ".join(sorted(DEVICES[family]))
            raise ExploreError(f"device must be one of {known} for {family}, not {device!r}")
        return cls(family, key)

    def __str__(self) -> str:
        return self.family if self.device is None else f"{self.family}:{self.device}"


def _positive_ints(name: str, values) -> tuple[int, ...]:
    values = tuple(values)
    if not values:
        raise ExploreError(f"{name} must list at least one value")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ExploreError(f"{name} must be positive integers, not {v!r}")
    return tuple(dict.fromkeys(values))


def _cells(values) -> tuple[int | None, ...]:
    """Cell-unit counts: positive integers, or None for the accelerator's default."""
    values = tuple(values)
    if not values:
        raise ExploreError("cells must list at least one value")
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ExploreError(f"cells must be positive integers, not {v!r}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Sweep:
    """The axes of a sweep; every combination is a point. ``cells`` None: the accelerator's
    default (the fewest cell units that keep the MVU busy)."""

    lanes: tuple[int, ...]
    targets: tuple[Target, ...]
    simd: tuple[int, ...] = (1,)
    presets: tuple[str, ...] = ()  # empty: the quantized model's own formats only
    seeds: tuple[int, ...] = (1,)
    cells: tuple[int | None, ...] = (None,)

    def __post_init__(self):
        object.__setattr__(self, "lanes", _positive_ints("lanes", self.lanes))
        object.__setattr__(self, "simd", _positive_ints("simd", self.simd))
        object.__setattr__(self, "seeds", _positive_ints("seeds", self.seeds))
        object.__setattr__(self, "cells", _cells(self.cells))
        targets = tuple(t if isinstance(t, Target) else Target.parse(t) for t in self.targets)
        if not targets:
            raise ExploreError("targets must list at least one target")
        object.__setattr__(self, "targets", tuple(dict.fromkeys(targets)))
        object.__setattr__(self, "presets", tuple(dict.fromkeys(self.presets)))

    @property
    def size(self) -> int:
        presets = max(1, len(self.presets))
        designs = presets * len(self.lanes) * len(self.simd) * len(self.cells)
        return designs * len(self.targets) * len(self.seeds)
