"""The design manifest (``manifest.json``): one typed, versioned definition, read by all.

:func:`lstmfpga.hw.verilog.write_design` writes it; the simulation flows
(:mod:`lstmfpga.sim.cocotb_build`), synthesis (:mod:`lstmfpga.synth`) and the host runtime
read it through :meth:`Manifest.load`, which checks the format and version and every field,
and refuses a bad one with one line naming it (:class:`~lstmfpga.errors.ManifestError`).

What readers need is stored, not re-derived: the stream geometry
(:class:`~lstmfpga.hw.stream_geometry.StreamGeometry`, ``stream.geometry``) and the cycle
model's compute phase, which is affine in the number of steps ``T``
(``compute(T) = compute_first + (T - 1) * compute_per_step``, ``cycles.compute_first`` and
``cycles.compute_per_step``). The other sections describe the design for people and tools
(ports, formats, memories, multipliers, the cycle formula) and are checked for shape.
Sections this module does not know (e.g. the AXI top's ``axi``, ``design_id``) are kept as
they are in :attr:`Manifest.extra`.

The weight port's beat format (``weight_port``) is defined once in :mod:`.weight_port`
(:class:`~.weight_port.WeightPort`, re-exported here as the type of
:attr:`Manifest.weight_port`); the field checks are :mod:`.manifest_fields`.

Version history: 1 (no stored geometry or compute coefficients; refused, re-run
``lstmfpga generate``), 2 (current).

Pure Python (no Amaranth, no torch): the numpy-only host runtime loads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ManifestError
from ..export import files
from . import manifest_sections as sections
from .manifest_fields import (
    FILE_NAME,
    IDENTIFIER,
    bool_field,
    dict_field,
    fixed_format_field,
    int_field,
    int_table,
    list_field,
    require,
    str_field,
)
from .manifest_sections import MODES
from .stream_geometry import StreamGeometry
from .weight_port import WeightPort

__all__ = [
    "HARDWARE_FORMAT",
    "MANIFEST_VERSION",
    "MEMORY_MODES",
    "MODES",
    "ComputeCycles",
    "GeometryView",
    "Manifest",
    "ManifestError",
    "Port",
    "WeightPort",
    "check_header",
]  # FILE_NAME, IDENTIFIER: also importable from here (hw.verilog uses them)

#: ``format`` of a design folder's ``manifest.json``.
HARDWARE_FORMAT = "lstmfpga.hardware"
#: The version this lstmfpga writes and reads.
MANIFEST_VERSION = 2
MEMORY_MODES = ("inline", "readmemh")
_DIRECTIONS = ("input", "output")
_KNOWN = (
    "format", "version", "top", "lanes", "simd", "max_seq_len", "with_states", "initial_state",
    "ports", "model", "formats", "stream", "cycles", "memories", "ram_bits", "multipliers",
    "memory_files", "files", "weight_port", "weights_sha256", "cells", "mode", "stream_cycles",
    "buffers",
)  # fmt: skip


def check_header(info, where: str = "manifest", versions=(MANIFEST_VERSION,)) -> int:
    """Check that ``info`` is a design manifest (``format``) of one of ``versions``; returns
    the version. A reader that needs only fields every version has (synthesis: ``top`` and
    ``files``) passes all of them; :meth:`Manifest.from_dict` accepts the current one."""
    if not isinstance(info, dict):
        raise ManifestError(f"{where} must be a JSON object, not {type(info).__name__}")
    found = info.get("format")
    if found != HARDWARE_FORMAT:
        raise ManifestError(f"{where}: format must be {HARDWARE_FORMAT!r}, not {found!r:.60}")
    version = info.get("version")
    wanted = " or ".join(str(v) for v in versions)
    if not isinstance(version, int) or isinstance(version, bool) or version not in versions:
        hint = ""
        if isinstance(version, int) and not isinstance(version, bool):
            hint = (
                " (written by an older lstmfpga): re-run lstmfpga generate for this design"
                if version < min(versions)
                else " (written by a newer lstmfpga): upgrade lstmfpga"
            )
        raise ManifestError(f"{where}: version must be {wanted}, not {version!r:.40}{hint}")
    return version


# -- parts --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Port:
    """A top-level port: ``direction`` ``"input"`` or ``"output"``; ``signed`` only for data
    ports (``None`` for ``clk``/``rst``)."""

    name: str
    direction: str
    width: int
    description: str
    signed: bool | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "direction": self.direction, "width": self.width}
        if self.signed is not None:
            out["signed"] = self.signed
        return out | {"description": self.description}

    @classmethod
    def from_dict(cls, info, where: str) -> Port:
        name = str_field(info, "name", where, IDENTIFIER)
        where = f"{where} {name}"
        direction = str_field(info, "direction", where)
        if direction not in _DIRECTIONS:
            raise ManifestError(
                f"{where}: direction must be one of {_DIRECTIONS}, not {direction!r}"
            )
        signed = info.get("signed")
        if signed is not None:
            signed = bool_field(info, "signed", where)
        width = int_field(info, "width", where, 1)
        return cls(name, direction, width, str_field(info, "description", where), signed)


@dataclass(frozen=True)
class ComputeCycles:
    """The cycle model's compute phase, from the input's ``tlast`` accepted to the first
    result: ``first + (T - 1) * per_step`` cycles for ``T`` steps (exact: every step after the
    first costs the same)."""

    first: int
    per_step: int

    def __call__(self, T: int) -> int:
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"T must be an integer >= 1, not {T!r}")
        return self.first + (T - 1) * self.per_step


# -- the manifest -------------------------------------------------------------------------------
def _buffers(info: dict, where: str) -> int:
    """``buffers`` (1 or 2; 1 when absent)."""
    if "buffers" not in info:
        return 1
    buffers = int_field(info, "buffers", where, 1)
    if buffers not in (1, 2):
        raise ManifestError(f"{where}: buffers must be 1 or 2, not {buffers}")
    return buffers


class _FromGeometry:
    """A read-only attribute that is the same-named one of ``self.geometry``."""

    def __init__(self, doc: str | None = None):
        self.__doc__ = doc

    def __set_name__(self, owner, name: str):
        self._name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj.geometry, self._name)


class GeometryView:
    """The sizes of a ``geometry`` (:class:`~.stream_geometry.StreamGeometry`) as attributes
    of the class that holds it (:class:`Manifest`, the runtime's ``HardwareDesign``)."""

    input_size = _FromGeometry()
    hidden_size = _FromGeometry()
    output_size = _FromGeometry("``H_out``: ``proj_size`` or ``hidden_size``.")
    states = _FromGeometry("``L * D``.")
    head_mode = _FromGeometry()
    head_out = _FromGeometry()
    with_states = _FromGeometry()
    initial_state = _FromGeometry()


@dataclass(frozen=True)
class Manifest(GeometryView):
    """A design's manifest. Typed fields are what readers use; ``model``, ``formats``,
    ``stream`` (its text part), ``cycles`` (its description), ``memories`` and
    ``multipliers`` describe the design and keep the JSON layout of ``manifest.json``;
    ``extra`` holds sections this module does not know; ``cells`` is the number of parallel
    activation + cell units (1 in manifests that predate it). ``files`` lists what the folder
    holds (relative names), ``memory_files`` is ``"inline"`` or ``"readmemh"`` (``None``
    before the design is written). ``mode`` is ``"sequence"`` or ``"stream"`` (JSON
    ``mode``, absent in sequence mode) and ``stream_cycles`` stream mode's cycle model
    (:meth:`~.stream_cycles.StreamCycleModel.to_dict`: ``latency``, the per-step latency,
    ``interval``, ...; ``None`` in sequence mode); given in ``extra`` they become these
    fields. ``buffers``: the banks of the input and result buffers (sequence mode: 2 when the
    next sequence loads and the previous one drains during a computation; JSON ``buffers``,
    absent: 1, as designs were before it)."""

    top: str
    lanes: int
    simd: int
    max_seq_len: int
    geometry: StreamGeometry
    compute: ComputeCycles
    ports: tuple[Port, ...]
    model: dict
    formats: dict[str, str]
    stream: dict
    cycles: dict
    memories: tuple[dict, ...]
    ram_bits: int
    multipliers: tuple[dict, ...]
    memory_files: str | None = None
    files: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    weight_port: WeightPort | None = None
    weights_sha256: str | None = None
    cells: int = 1
    mode: str = "sequence"
    stream_cycles: dict | None = None
    buffers: int = 1

    def __post_init__(self):
        # ``mode``/``stream_cycles`` given in ``extra`` (as the JSON has them) become the fields
        extra = dict(self.extra)
        for key in ("mode", "stream_cycles"):
            if key in extra:
                object.__setattr__(self, key, extra.pop(key))
        object.__setattr__(self, "extra", extra)

    @property
    def verilog_file(self) -> str:
        return f"{self.top}.v"

    @property
    def hex_files(self) -> tuple[str, ...]:
        return tuple(name for name in self.files if name.endswith(".hex"))

    def port(self, name: str) -> Port:
        for port in self.ports:
            if port.name == name:
                return port
        raise ManifestError(f"the manifest of {self.top} has no port {name!r}")

    def replace(self, **changes) -> Manifest:
        return dataclasses.replace(self, **changes)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The ``manifest.json`` object."""
        geometry = {
            k: v
            for k, v in self.geometry.to_dict().items()
            if k not in ("with_states", "initial_state")
        }
        out = {
            "format": HARDWARE_FORMAT,
            "version": MANIFEST_VERSION,
            "top": self.top,
            "lanes": self.lanes,
            "simd": self.simd,
            "cells": self.cells,
            "max_seq_len": self.max_seq_len,
            "with_states": self.with_states,
            "initial_state": self.initial_state,
            "ports": [port.to_dict() for port in self.ports],
            "model": self.model,
            "formats": self.formats,
            "stream": self.stream | {"geometry": geometry},
            "cycles": self.cycles
            | {"compute_first": self.compute.first, "compute_per_step": self.compute.per_step},
            "memories": list(self.memories),
            "ram_bits": self.ram_bits,
            "multipliers": list(self.multipliers),
        }
        if self.memory_files is not None:
            out["memory_files"] = self.memory_files
        if self.files:
            out["files"] = list(self.files)
        if self.weights_sha256 is not None:
            out["weights_sha256"] = self.weights_sha256
        if self.weight_port is not None:
            out["weight_port"] = self.weight_port.to_dict()
        if self.mode != "sequence":
            out["mode"] = self.mode
        if self.stream_cycles is not None:
            out["stream_cycles"] = self.stream_cycles
        if self.buffers != 1:
            out["buffers"] = self.buffers
        return out | self.extra

    @classmethod
    def from_dict(cls, info, where: str = "manifest") -> Manifest:
        """Check every field of a ``manifest.json`` object (see the module docstring)."""
        check_header(info, where)
        top = str_field(info, "top", where, IDENTIFIER)
        with_states = bool_field(info, "with_states", where)
        initial_state = bool_field(info, "initial_state", where)
        stream = dict_field(info, "stream", where)
        geometry = sections.geometry(stream, with_states, initial_state, where)
        for key in ("input_format", "output_format"):
            fixed_format_field(require(stream, key, f"{where}: stream"), key, f"{where}: stream")
        str_field(stream, "input_elements", f"{where}: stream")
        int_table(dict_field(stream, "output_elements", f"{where}: stream"), "output_elements",
                   f"{where}: stream")  # fmt: skip
        model = dict_field(info, "model", where)
        sections.check_model(model, geometry, where)
        formats = dict_field(info, "formats", where)
        for role, text in formats.items():
            fixed_format_field(text, f"format of {role}", f"{where}: formats")
        cycles = dict_field(info, "cycles", where)
        cwhere = f"{where}: cycles"
        compute = ComputeCycles(
            int_field(cycles, "compute_first", cwhere),
            int_field(cycles, "compute_per_step", cwhere),
        )
        str_field(cycles, "formula", cwhere)
        for key in ("compute", "per_sequence"):
            int_table(dict_field(cycles, key, cwhere), key, cwhere)
        ports = tuple(Port.from_dict(p, f"{where}: port") for p in list_field(info, "ports", where))
        if len({p.name for p in ports}) != len(ports):
            raise ManifestError(f"{where}: ports must have distinct names")
        memories = tuple(list_field(info, "memories", where))
        bits = 0
        for mem in memories:
            name = str_field(mem, "name", f"{where}: memory")
            mwhere = f"{where}: memory {name}"
            bits += int_field(mem, "width", mwhere, 1) * int_field(mem, "depth", mwhere, 1)
        ram_bits = int_field(info, "ram_bits", where)
        if ram_bits != bits:
            raise ManifestError(f"{where}: ram_bits must be the memories' {bits}, not {ram_bits}")
        multipliers = tuple(list_field(info, "multipliers", where))
        for mul in multipliers:
            mwhere = f"{where}: multiplier {str_field(mul, 'where', f'{where}: multiplier')}"
            for key in ("count", "a_bits", "b_bits"):
                int_field(mul, key, mwhere, 1 if key != "count" else 0)
        memory_files = info.get("memory_files")
        if memory_files is not None and memory_files not in MEMORY_MODES:
            raise ManifestError(
                f"{where}: memory_files must be one of {MEMORY_MODES}, not {memory_files!r:.40}"
            )
        mode, stream_cycles = sections.mode(info, where)
        listed = info.get("files", [])
        if not isinstance(listed, list) or not all(
            isinstance(n, str) and FILE_NAME.fullmatch(n) for n in listed
        ):
            raise ManifestError(
                f"{where}: files must be a list of plain file names, not {listed!r:.60}"
            )
        return cls(
            top=top,
            lanes=int_field(info, "lanes", where, 1),
            simd=int_field(info, "simd", where, 1),
            max_seq_len=int_field(info, "max_seq_len", where, 1),
            geometry=geometry,
            compute=compute,
            ports=ports,
            model=model,
            formats=formats,
            stream={k: v for k, v in stream.items() if k != "geometry"},
            cycles={k: v for k, v in cycles.items() if not k.startswith("compute_")},
            memories=memories,
            ram_bits=ram_bits,
            multipliers=multipliers,
            memory_files=memory_files,
            files=tuple(listed),
            extra={k: v for k, v in info.items() if k not in _KNOWN},
            **sections.weights(info, ports, where),
            cells=int_field(info, "cells", where, 1) if "cells" in info else 1,
            mode=mode,
            stream_cycles=stream_cycles,
            buffers=_buffers(info, where),
        )

    def save(self, path: str | Path) -> None:
        """Write ``manifest.json`` (to a temporary name, then renamed)."""
        files.write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """From a design folder or its ``manifest.json`` (read within the JSON limits of
        :mod:`lstmfpga.export.files`); every field is checked."""
        path = Path(path)
        manifest = path / "manifest.json" if path.is_dir() else path
        if not manifest.is_file():
            raise ManifestError(f"{path}: not a generated design (no manifest.json)")
        return cls.from_dict(files.read_json(manifest, "hardware manifest"), str(manifest))
