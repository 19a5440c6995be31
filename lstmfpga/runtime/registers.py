"""The control and status registers (``docs/registers.md``) through a small transport.

A transport is anything with ``read32(offset) -> int`` and ``write32(offset, value)``
(:class:`Transport`): :class:`MemoryTransport` over a memory-mapped window (an
``mmap.mmap`` of a UIO device or ``/dev/mem``, or any writable buffer), or a bus driver in a
simulation. :class:`Registers` reads and writes the registers by name; :class:`AsyncRegisters`
does the same over an :class:`AsyncTransport` (``async`` methods, e.g. cocotbext-axi's
``AxiLiteMaster``, see ``tests/sim``). The offsets and fields are
:data:`lstmfpga.hw.register_map.REGISTERS`, and a design's manifest must agree with them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..hw.register_map import MAP_VERSION, REGISTERS, SATURATION_ROLES, field_mask
from .design import DeviceError, HardwareDesign, ManifestError

__all__ = [
    "AsyncRegisters",
    "AsyncTransport",
    "MemoryTransport",
    "Registers",
    "Status",
    "Transport",
]

_OFFSETS = {reg.name: reg.offset for reg in REGISTERS}
_ACCESS = {reg.name: reg.access for reg in REGISTERS}
#: ``SATURATION_<ROLE>`` by role
_SATURATION = {role: f"SATURATION_{role.upper()}" for role in SATURATION_ROLES}


@runtime_checkable
class Transport(Protocol):
    """32-bit register accesses at byte offsets of the register window."""

    def read32(self, offset: int) -> int: ...

    def write32(self, offset: int, value: int) -> None: ...


class AsyncTransport(Protocol):
    async def read32(self, offset: int) -> int: ...

    async def write32(self, offset: int, value: int) -> None: ...


class MemoryTransport:
    """Little-endian 32-bit accesses to ``buffer`` (a writable buffer: ``mmap.mmap``,
    ``bytearray``, ...) at ``base``."""

    def __init__(self, buffer, base: int = 0):
        self._view = memoryview(buffer).cast("B")
        if self._view.readonly:
            raise ValueError("buffer must be writable, not read-only")
        self._base = base

    def _slice(self, offset: int) -> slice:
        start = self._base + offset
        if offset % 4 or start < 0 or start + 4 > len(self._view):
            raise ValueError(f"offset must be a word offset inside the window, not {offset:#x}")
        return slice(start, start + 4)

    def read32(self, offset: int) -> int:
        return int.from_bytes(self._view[self._slice(offset)], "little")

    def write32(self, offset: int, value: int) -> None:
        self._view[self._slice(offset)] = int(value & 0xFFFFFFFF).to_bytes(4, "little")


class Status(dict):
    """Decoded ``STATUS`` and ``ERRORS``: ``busy``, ``error`` (live), ``stream_error``
    (sticky flag)."""


def _offsets(design: HardwareDesign | None) -> dict[str, int]:
    if design is None:
        return dict(_OFFSETS)
    if not design.registers:
        raise ManifestError(f"{design.where} describes a design without registers (no axi top)")
    if design.registers != _OFFSETS:
        raise ManifestError(
            f"{design.where}: registers must be this runtime's map {_OFFSETS}, not "
            f"{design.registers}"
        )
    return dict(_OFFSETS)


def _writable(name: str) -> int:
    if name not in _OFFSETS:
        raise KeyError(f"register must be one of {', '.join(_OFFSETS)}, not {name!r}")
    if _ACCESS[name] == "ro":
        raise ValueError(f"register {name} is read only")
    return _OFFSETS[name]


def _check_id(design: HardwareDesign | None, ident: int, version: int) -> None:
    if version != MAP_VERSION:
        raise DeviceError(f"register map version must be {MAP_VERSION}, not {version}")
    if design is not None and design.design_id is not None and ident != design.design_id:
        raise DeviceError(
            f"hardware ID must be the manifest's {design.design_id:#010x}, not {ident:#010x}: "
            "this is not the design the manifest describes"
        )


def _status(status: int, errors: int) -> Status:
    return Status(
        busy=bool(status & field_mask("STATUS", "busy")),
        error=bool(status & field_mask("STATUS", "error")),
        stream_error=bool(errors & field_mask("ERRORS", "stream")),
    )


class Registers:
    """Named register access over a :class:`Transport`; ``design`` (optional) is checked
    against this map and gives the ID :meth:`check_id` expects."""

    def __init__(self, transport: Transport, design: HardwareDesign | None = None):
        if not isinstance(transport, Transport):
            raise TypeError(f"transport must have read32 and write32, not {transport!r}")
        self._t, self._design, self._offsets = transport, design, _offsets(design)

    def read(self, name: str) -> int:
        if name not in self._offsets:
            raise KeyError(f"register must be one of {', '.join(self._offsets)}, not {name!r}")
        return self._t.read32(self._offsets[name])

    def write(self, name: str, value: int) -> None:
        self._t.write32(_writable(name), value)

    def check_id(self) -> int:
        """Raise :class:`DeviceError` unless ``ID``/``VERSION`` are the design's; returns ID."""
        ident = self.read("ID")
        _check_id(self._design, ident, self.read("VERSION"))
        return ident

    def status(self) -> Status:
        return _status(self.read("STATUS"), self.read("ERRORS"))

    def clear_errors(self) -> None:
        self.write("ERRORS", field_mask("ERRORS", "stream"))

    def soft_reset(self) -> None:
        self.write("CONTROL", field_mask("CONTROL", "soft_reset"))

    def saturation(self) -> dict[str, int]:
        """The ``SATURATION_*`` counters by role (``preact``, ``cell``, ``hidden``, ``hn``,
        ``head_out``): the golden model's ``saturation`` counts of the sequences run since
        the last clear (without ``x``, which the host's quantization counts)."""
        return {role: self.read(name) for role, name in _SATURATION.items()}

    def clear_saturation(self) -> None:
        """Set the ``SATURATION_*`` counters to 0 (``CONTROL.clear_saturation``)."""
        self.write("CONTROL", field_mask("CONTROL", "clear_saturation"))

    def keep_state(self, on: bool = True) -> None:
        """Stream mode: carry the state over ``tlast`` (``STATE_CONTROL.keep_state``)."""
        self.write("STATE_CONTROL", _keep_state(on))


def _keep_state(on) -> int:
    if not isinstance(on, bool):
        raise TypeError(f"on must be True or False, not {on!r}")
    return field_mask("STATE_CONTROL", "keep_state") if on else 0


class AsyncRegisters:
    """:class:`Registers` over an :class:`AsyncTransport` (every method is awaited)."""

    def __init__(self, transport: AsyncTransport, design: HardwareDesign | None = None):
        self._t, self._design, self._offsets = transport, design, _offsets(design)

    async def read(self, name: str) -> int:
        if name not in self._offsets:
            raise KeyError(f"register must be one of {', '.join(self._offsets)}, not {name!r}")
        return await self._t.read32(self._offsets[name])

    async def write(self, name: str, value: int) -> None:
        await self._t.write32(_writable(name), value)

    async def check_id(self) -> int:
        ident = await self.read("ID")
        _check_id(self._design, ident, await self.read("VERSION"))
        return ident

    async def status(self) -> Status:
        return _status(await self.read("STATUS"), await self.read("ERRORS"))

    async def clear_errors(self) -> None:
        await self.write("ERRORS", field_mask("ERRORS", "stream"))

    async def soft_reset(self) -> None:
        await self.write("CONTROL", field_mask("CONTROL", "soft_reset"))

    async def saturation(self) -> dict[str, int]:
        return {role: await self.read(name) for role, name in _SATURATION.items()}

    async def clear_saturation(self) -> None:
        await self.write("CONTROL", field_mask("CONTROL", "clear_saturation"))

    async def keep_state(self, on: bool = True) -> None:
        await self.write("STATE_CONTROL", _keep_state(on))
