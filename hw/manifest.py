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

The weight port's beat format is defined here once (:class:`WeightPort`): the accelerator's
``w`` port and the AXI top's ``s_axis_w`` carry it, the manifest records it
(``weight_port``), the host runtime and the simulation bench pack beats with it.

Version history: 1 (no stored geometry or compute coefficients; refused, re-run
``lstmfpga generate``), 2 (current).

Pure Python (no Amaranth, no torch): the numpy-only host runtime loads it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ManifestError
from ..export import files
from .stream_geometry import HEAD_MODES, StreamGeometry

__all__ = [
    "HARDWARE_FORMAT",
    "MANIFEST_VERSION",
    "MEMORY_MODES",
    "ComputeCycles",
    "Manifest",
    "ManifestError",
    "Port",
    "WeightPort",
    "check_header",
]

#: ``format`` of a design folder's ``manifest.json``.
HARDWARE_FORMAT = "lstmfpga.hardware"
#: The version this lstmfpga writes and reads.
MANIFEST_VERSION = 2
MEMORY_MODES = ("inline", "readmemh")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DIRECTIONS = ("input", "output")
_KNOWN = (
    "format", "version", "top", "lanes", "simd", "max_seq_len", "with_states", "initial_state",
    "ports", "model", "formats", "stream", "cycles", "memories", "ram_bits", "multipliers",
    "memory_files", "files", "weight_port", "weights_sha256", "cells",
)  # fmt: skip


# -- field checks (each raises one line naming the field) ---------------------------------------
def _field(info: dict, key: str, where: str):
    if not isinstance(info, dict):
        raise ManifestError(f"{where} must be an object, not {info!r:.60}")
    if key not in info:
        raise ManifestError(f"{where}: {key} is missing")
    return info[key]


def _checked(info: dict, key: str, where: str, ok, wanted: str):
    """``info[key]`` if ``ok(value)``, else one line: ``<where>: <key> must be <wanted>``."""
    value = _field(info, key, where)
    if not ok(value):
        raise ManifestError(f"{where}: {key} must be {wanted}, not {value!r:.60}")
    return value


def _int(info: dict, key: str, where: str, minimum: int = 0) -> int:
    def ok(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= minimum

    return _checked(info, key, where, ok, f"an integer >= {minimum}")


def _bool(info: dict, key: str, where: str) -> bool:
    return _checked(info, key, where, lambda v: isinstance(v, bool), "true or false")


def _str(info: dict, key: str, where: str, pattern: re.Pattern | None = None) -> str:
    def ok(v):
        return isinstance(v, str) and (pattern is None or pattern.fullmatch(v) is not None)

    wanted = "a string" if pattern is None else f"a string matching {pattern.pattern}"
    return _checked(info, key, where, ok, wanted)


def _dict(info: dict, key: str, where: str) -> dict:
    return _checked(info, key, where, lambda v: isinstance(v, dict), "an object")


def _list(info: dict, key: str, where: str) -> list:
    return _checked(info, key, where, lambda v: isinstance(v, list), "a list")


def _fixed_format(text, what: str, where: str) -> str:
    from ..quant.fixed import FixedFormat  # numpy only

    try:
        if not isinstance(text, str):
            raise ValueError(f"must be a string, not {text!r:.60}")
        FixedFormat.parse(text)
    except ValueError as error:
        raise ManifestError(f"{where}: {what}: {error}") from None
    return text


def _int_table(table: dict, what: str, where: str) -> dict[str, int]:
    """``{"T": cycles}`` tables: keys positive integers, values integers >= 0."""
    for key in table:
        if not (isinstance(key, str) and key.isdigit() and int(key) >= 1):
            raise ManifestError(f"{where}: {what} keys must be positive integers, not {key!r:.40}")
        _int(table, key, f"{where}: {what}")
    return table


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
        name = _str(info, "name", where, IDENTIFIER)
        where = f"{where} {name}"
        direction = _str(info, "direction", where)
        if direction not in _DIRECTIONS:
            raise ManifestError(
                f"{where}: direction must be one of {_DIRECTIONS}, not {direction!r}"
            )
        signed = info.get("signed")
        if signed is not None:
            signed = _bool(info, "signed", where)
        return cls(name, direction, _int(info, "width", where, 1), _str(info, "description", where),
                   signed)  # fmt: skip


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


_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The beat fields in order from bit 0 (see :class:`WeightPort`).
WEIGHT_FIELDS = ("bias", "addr", "data")


@dataclass(frozen=True)
class WeightPort:
    """The weight port: its beat format (the one definition) and its port names.

    A beat writes one word of the weight memory or the bias memory (the weight memory's load
    port, :class:`lstmfpga.hw.weights.WeightMemory` ``load``): bit 0 ``bias`` (1: the bias
    memory), then ``addr`` (``addr_bits``), then ``data`` (``data_bits``: the word, its
    ``lanes * simd`` weights or ``lanes`` biases lane-major, each in two's complement, as
    :func:`lstmfpga.hw.layout.pack` packs a memory word; narrower bias words are zero-extended).
    A whole load is every weight word (addresses ``0 .. weight_words - 1``) then every bias
    word; on a byte stream each beat is ``beat_bytes`` bytes, little-endian (bits above
    :attr:`bits` zero). ``data``, ``valid``, ``ready`` and ``last`` are the top's port names
    (``last``: ``None`` when the port has no ``tlast``).
    """

    addr_bits: int
    data_bits: int
    weight_words: int
    bias_words: int
    data: str = "w__payload"
    valid: str = "w__valid"
    ready: str = "w__ready"
    last: str | None = None

    @classmethod
    def of(cls, layout, **ports) -> WeightPort:
        """The port of a :class:`~lstmfpga.hw.layout.WeightLayout` (``ports``: names)."""
        from .layout import select_bits

        P, S = layout.lanes, layout.simd
        return cls(
            addr_bits=select_bits(max(layout.depth, layout.bias_depth)),
            data_bits=max(P * S * layout.weight_bits, P * layout.acc.bits),
            weight_words=layout.depth,
            bias_words=layout.bias_depth,
            **ports,
        )

    @property
    def bits(self) -> int:
        """Bits of a beat's payload."""
        return 1 + self.addr_bits + self.data_bits

    @property
    def beat_bytes(self) -> int:
        return -(-self.bits // 8)

    @property
    def beats(self) -> int:
        """Beats of a whole load."""
        return self.weight_words + self.bias_words

    @property
    def fields(self) -> dict[str, tuple[int, int]]:
        """``{field: (offset, width)}`` of a beat."""
        return {"bias": (0, 1), "addr": (1, self.addr_bits),
                "data": (1 + self.addr_bits, self.data_bits)}  # fmt: skip

    def same_format(self, other: WeightPort) -> bool:
        """Whether ``other`` takes the same beats (port names aside)."""
        return self.fields == other.fields and self.beats == other.beats

    def pack(self, layout) -> np.ndarray:
        """The beats writing ``layout``'s memory images: ``(beats, beat_bytes)`` ``uint8``,
        each row one beat, little-endian. ``layout`` must have this port's shape."""
        mine = WeightPort.of(layout)
        if not self.same_format(mine):
            raise ValueError(
                f"weights must have the weight port's fields {self.fields} and {self.beats} "
                f"words, not {mine.fields} and {mine.beats}"
            )
        rows = []
        for is_bias, words, width in ((0, layout.weight_words, layout.weight_bits),
                                      (1, layout.bias_words, layout.acc.bits)):  # fmt: skip
            n = words.shape[0]
            data = _bits(words, width)
            pad = np.zeros((n, self.data_bits - data.shape[1]), np.uint8)
            addr = _bits(np.arange(n)[:, None], self.addr_bits)
            rows.append(np.concatenate([np.full((n, 1), is_bias, np.uint8), addr, data, pad], 1))
        bits = np.concatenate(rows)
        bits = np.pad(bits, ((0, 0), (0, 8 * self.beat_bytes - self.bits)))
        return np.packbits(bits, axis=1, bitorder="little")

    def to_dict(self) -> dict:
        return {
            "ports": {"data": self.data, "valid": self.valid, "ready": self.ready,
                      "last": self.last},
            "beat_bits": self.bits,
            "beat_bytes": self.beat_bytes,
            "fields": {name: list(span) for name, span in self.fields.items()},
            "weight_words": self.weight_words,
            "bias_words": self.bias_words,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, info, where: str) -> WeightPort:
        where = f"{where}: weight_port"
        ports = _dict(info, "ports", where)
        names = {key: _str(ports, key, f"{where} ports", IDENTIFIER)
                 for key in ("data", "valid", "ready")}  # fmt: skip
        last = _field(ports, "last", f"{where} ports")
        if last is not None:
            last = _str(ports, "last", f"{where} ports", IDENTIFIER)
        fields = _dict(info, "fields", where)
        spans = {}
        for name in WEIGHT_FIELDS:
            span = _checked(fields, name, f"{where} fields", _is_span, "[offset, width]")
            spans[name] = tuple(span)
        port = cls(
            addr_bits=spans["addr"][1],
            data_bits=spans["data"][1],
            weight_words=_int(info, "weight_words", where, 1),
            bias_words=_int(info, "bias_words", where, 1),
            last=last,
            **names,
        )
        if spans != port.fields:
            raise ManifestError(
                f"{where}: fields must be bias, addr, data from bit 0 ({port.fields}), not {spans}"
            )
        for key, want in (("beat_bits", port.bits), ("beat_bytes", port.beat_bytes)):
            if _int(info, key, where, 1) != want:
                raise ManifestError(f"{where}: {key} must be {want}, not {info[key]!r:.40}")
        return port


def _is_span(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        and value[1] >= 1
    )


def _bits(codes, width: int) -> np.ndarray:
    """``(n, k)`` signed codes → ``(n, k * width)`` bits (two's complement, LSB first)."""
    codes = np.asarray(codes, np.int64).astype(np.uint64)
    shifts = np.arange(width, dtype=np.uint64)
    bits = (codes[:, :, None] >> shifts) & np.uint64(1)
    return bits.reshape(codes.shape[0], -1).astype(np.uint8)


def _geometry(stream: dict, with_states: bool, initial_state: bool, where: str) -> StreamGeometry:
    where = f"{where}: stream geometry"
    info = _dict(stream, "geometry", where.rsplit(" ", 1)[0])
    head_mode = _field(info, "head_mode", where)
    if head_mode not in (None, *HEAD_MODES):
        raise ManifestError(f"{where}: head_mode must be null, 'last' or 'all', not {head_mode!r}")
    head_out = _int(info, "head_out", where)
    if (head_mode is None) != (head_out == 0):
        raise ManifestError(f"{where}: head_out must be 0 exactly without a head, not {head_out}")
    return StreamGeometry(
        input_size=_int(info, "input_size", where, 1),
        hidden_size=_int(info, "hidden_size", where, 1),
        output_size=_int(info, "output_size", where, 1),
        states=_int(info, "states", where, 1),
        head_out=head_out,
        head_mode=head_mode,
        sequence_output_size=_int(info, "sequence_output_size", where, 1),
        with_states=with_states,
        initial_state=initial_state,
    )


def _check_model(model: dict, geometry: StreamGeometry, where: str) -> None:
    """The ``model`` section's fields, and that the stored geometry is the model's."""
    where = f"{where}: model"
    layers = _int(model, "num_layers", where, 1)
    bidirectional = _bool(model, "bidirectional", where)
    hidden = _int(model, "hidden_size", where, 1)
    proj = _int(model, "proj_size", where)
    _bool(model, "bias", where)
    _str(model, "preset", where)
    head = _field(model, "head", where)
    if head is not None:
        mode = _str(head, "mode", f"{where} head")
        if mode not in HEAD_MODES:
            raise ManifestError(f"{where} head: mode must be 'last' or 'all', not {mode!r}")
        head = (mode, _int(head, "out_features", f"{where} head", 1))
    D, H_out = 2 if bidirectional else 1, proj or hidden
    derived = StreamGeometry(
        input_size=_int(model, "input_size", where, 1),
        hidden_size=hidden,
        output_size=H_out,
        states=layers * D,
        head_out=0 if head is None else head[1],
        head_mode=None if head is None else head[0],
        sequence_output_size=D * H_out,
        with_states=geometry.with_states,
        initial_state=geometry.initial_state,
    )
    if derived != geometry:
        raise ManifestError(f"{where}: the stream geometry must be the model's, not {geometry}")


def _weights(info: dict, ports: tuple[Port, ...], where: str) -> dict:
    """The optional ``weights_sha256`` and ``weight_port`` sections (the port's names must be
    ports of the top, its data port as wide as a beat)."""
    out = {}
    if "weights_sha256" in info:
        out["weights_sha256"] = _str(info, "weights_sha256", where, _SHA256)
    if info.get("weight_port") is not None:
        port = WeightPort.from_dict(info["weight_port"], where)
        widths = {p.name: p.width for p in ports}
        names = [port.data, port.valid, port.ready] + ([port.last] if port.last else [])
        for name in names:
            if name not in widths:
                raise ManifestError(f"{where}: weight_port: port {name!r} is not a port of the top")
        if widths[port.data] not in (port.bits, 8 * port.beat_bytes):
            raise ManifestError(
                f"{where}: weight_port: port {port.data} must be {port.bits} or "
                f"{8 * port.beat_bytes} bits wide, not {widths[port.data]}"
            )
        out["weight_port"] = port
    return out


# -- the manifest -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    """A design's manifest. Typed fields are what readers use; ``model``, ``formats``,
    ``stream`` (its text part), ``cycles`` (its description), ``memories`` and
    ``multipliers`` describe the design and keep the JSON layout of ``manifest.json``;
    ``extra`` holds sections this module does not know; ``cells`` is the number of parallel
    activation + cell units (1 in manifests that predate it). ``files`` lists what the folder
    holds (relative names), ``memory_files`` is ``"inline"`` or ``"readmemh"`` (``None``
    before the design is written)."""

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

    @property
    def with_states(self) -> bool:
        return self.geometry.with_states

    @property
    def initial_state(self) -> bool:
        return self.geometry.initial_state

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
        return out | self.extra

    @classmethod
    def from_dict(cls, info, where: str = "manifest") -> Manifest:
        """Check every field of a ``manifest.json`` object (see the module docstring)."""
        check_header(info, where)
        top = _str(info, "top", where, IDENTIFIER)
        with_states = _bool(info, "with_states", where)
        initial_state = _bool(info, "initial_state", where)
        stream = _dict(info, "stream", where)
        geometry = _geometry(stream, with_states, initial_state, where)
        for key in ("input_format", "output_format"):
            _fixed_format(_field(stream, key, f"{where}: stream"), key, f"{where}: stream")
        _str(stream, "input_elements", f"{where}: stream")
        _int_table(_dict(stream, "output_elements", f"{where}: stream"), "output_elements",
                   f"{where}: stream")  # fmt: skip
        model = _dict(info, "model", where)
        _check_model(model, geometry, where)
        formats = _dict(info, "formats", where)
        for role, text in formats.items():
            _fixed_format(text, f"format of {role}", f"{where}: formats")
        cycles = _dict(info, "cycles", where)
        cwhere = f"{where}: cycles"
        compute = ComputeCycles(
            _int(cycles, "compute_first", cwhere), _int(cycles, "compute_per_step", cwhere)
        )
        _str(cycles, "formula", cwhere)
        for key in ("compute", "per_sequence"):
            _int_table(_dict(cycles, key, cwhere), key, cwhere)
        ports = tuple(Port.from_dict(p, f"{where}: port") for p in _list(info, "ports", where))
        if len({p.name for p in ports}) != len(ports):
            raise ManifestError(f"{where}: ports must have distinct names")
        memories = tuple(_list(info, "memories", where))
        bits = 0
        for mem in memories:
            name = _str(mem, "name", f"{where}: memory")
            mwhere = f"{where}: memory {name}"
            bits += _int(mem, "width", mwhere, 1) * _int(mem, "depth", mwhere, 1)
        ram_bits = _int(info, "ram_bits", where)
        if ram_bits != bits:
            raise ManifestError(f"{where}: ram_bits must be the memories' {bits}, not {ram_bits}")
        multipliers = tuple(_list(info, "multipliers", where))
        for mul in multipliers:
            mwhere = f"{where}: multiplier {_str(mul, 'where', f'{where}: multiplier')}"
            for key in ("count", "a_bits", "b_bits"):
                _int(mul, key, mwhere, 1 if key != "count" else 0)
        memory_files = info.get("memory_files")
        if memory_files is not None and memory_files not in MEMORY_MODES:
            raise ManifestError(
                f"{where}: memory_files must be one of {MEMORY_MODES}, not {memory_files!r:.40}"
            )
        listed = info.get("files", [])
        if not isinstance(listed, list) or not all(
            isinstance(n, str) and FILE_NAME.fullmatch(n) for n in listed
        ):
            raise ManifestError(
                f"{where}: files must be a list of plain file names, not {listed!r:.60}"
            )
        return cls(
            top=top,
            lanes=_int(info, "lanes", where, 1),
            simd=_int(info, "simd", where, 1),
            max_seq_len=_int(info, "max_seq_len", where, 1),
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
            **_weights(info, ports, where),
            cells=_int(info, "cells", where, 1) if "cells" in info else 1,
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
