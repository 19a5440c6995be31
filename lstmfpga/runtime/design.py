"""What the host needs to know about a generated design, read from its ``manifest.json``.

:meth:`HardwareDesign.load` takes a design folder (``lstmfpga generate`` or
:func:`lstmfpga.hw.axi_top.write_axi_design`) or its ``manifest.json``. The manifest is read
and checked by :class:`lstmfpga.hw.manifest.Manifest` (format, version, every field, the
stored stream geometry); the sections of the AXI top (``axi``, ``design_id``,
``quantization``, ``weight_formats``) are checked here. A bad field is refused with one
line naming it (:class:`ManifestError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LstmfpgaError, ManifestError
from ..export.files import read_json
from ..hw.beat_format import BeatFormat, check_beat_elements
from ..hw.manifest import HARDWARE_FORMAT, GeometryView, Manifest
from ..hw.stream_geometry import StreamGeometry
from ..hw.weight_port import WeightPort
from ..quant.fixed import FixedFormat, FormatError

__all__ = ["HARDWARE_FORMAT", "DeviceError", "HardwareDesign", "ManifestError", "StreamError"]

_ROLES = ("x", "preact", "gate", "cell", "hidden", "head_out", "acc")
#: A GRU design's (``hn`` in place of ``cell``: no cell state).
_GRU_ROLES = ("x", "preact", "gate", "hn", "hidden", "head_out", "acc")


class StreamError(LstmfpgaError):
    """Stream beats that do not form what the design sends or takes."""


class DeviceError(LstmfpgaError):
    """The hardware answered something else than the design says (ID, bus error, flags)."""


def _get(info: dict, key: str, kind, where: str, *, minimum: int | None = None):
    if key not in info:
        raise ManifestError(f"{where}: {key} is missing")
    value = info[key]
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool) or value < (minimum or 0):
            raise ManifestError(
                f"{where}: {key} must be an integer >= {minimum or 0}, not {value!r}"
            )
    elif kind is bool:
        if not isinstance(value, bool):
            raise ManifestError(f"{where}: {key} must be true or false, not {value!r}")
    elif not isinstance(value, kind):
        raise ManifestError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def _format(text, what: str, where: str) -> FixedFormat:
    try:
        if not isinstance(text, str):
            raise FormatError(f"format must be a string, not {text!r}")
        return FixedFormat.parse(text)
    except FormatError as error:
        raise ManifestError(f"{where}: {what}: {error}") from None


@dataclass(frozen=True)
class HardwareDesign(GeometryView):
    """A design as the host sees it (see the module docstring). Build it with :meth:`load`
    or :meth:`from_manifest`.

    ``geometry`` is the manifest's stored stream geometry; ``in_bits``/``out_bits`` are the
    widths of the codes carried per beat, ``in_beat_bits``/``out_beat_bits`` the ``tdata``
    widths (wider on the AXI top: whole bytes); ``rounding``/``overflow`` are the model's
    rules (``None`` when the manifest does not record them: then only codes can be
    encoded); ``design_id`` the ``ID`` register's value (``None`` without registers);
    ``weight_formats`` every weight tensor's format (empty when not recorded);
    ``weight_port`` the top's weight port (:class:`~lstmfpga.hw.weight_port.WeightPort`,
    ``None`` without one) and ``weights_sha256`` the digest of the weights built into the
    hardware (:func:`lstmfpga.hw.register_map.weights_digest`; ``None`` when not recorded);
    ``cells`` the parallel activation + cell units (for information);
    ``beat_elements`` the elements per ``s_axis``/``m_axis`` beat (``K``; 1 unless the AXI
    top was built with wide beats: then :attr:`in_format`/:attr:`out_format` give the
    beats' lanes and ``tkeep``); ``mode`` ``"sequence"`` or ``"stream"`` (sequences of any
    length, ``tuser`` resets, ``STATE_CONTROL``).
    """

    top: str
    lanes: int
    simd: int
    max_seq_len: int
    geometry: StreamGeometry
    num_layers: int
    bidirectional: bool
    proj_size: int
    has_bias: bool
    formats: dict[str, FixedFormat]
    in_bits: int
    out_bits: int
    in_beat_bits: int
    out_beat_bits: int
    rounding: str | None
    overflow: str | None
    design_id: int | None
    weight_formats: dict[str, FixedFormat]
    registers: dict[str, int] = field(default_factory=dict)
    memories: dict[str, tuple[int, int]] = field(default_factory=dict)
    tables_sha256: str | None = None
    where: str = "manifest"
    weight_port: WeightPort | None = None
    weights_sha256: str | None = None
    cells: int = 1
    beat_elements: int = 1
    mode: str = "sequence"

    @classmethod
    def load(cls, path: str | Path) -> HardwareDesign:
        """From a design folder or its ``manifest.json``."""
        path = Path(path)
        manifest = path / "manifest.json" if path.is_dir() else path
        if not manifest.is_file():
            raise ManifestError(f"{path}: not a generated design (no manifest.json)")
        return cls.from_manifest(read_json(manifest, "hardware manifest"), where=str(manifest))

    @classmethod
    def from_manifest(cls, info: dict, where: str = "manifest") -> HardwareDesign:
        core = Manifest.from_dict(info, where)
        formats = _formats(core, where)
        beat = {port: core.port(port).width for port in ("s_axis_tdata", "m_axis_tdata")}
        axi = _axi(core, beat, where)
        rounding, overflow = _rules(core.extra, where)
        return cls(
            **{name: getattr(core, name) for name in _FROM_MANIFEST},
            formats=formats,
            in_beat_bits=beat["s_axis_tdata"],
            out_beat_bits=beat["m_axis_tdata"],
            **axi,
            rounding=rounding,
            overflow=overflow,
            weight_formats=_weight_formats(core.extra, where),
            memories={
                mem["name"]: (mem["width"], mem["depth"])
                for mem in core.memories
                if mem.get("name") in ("weights", "biases")
            },
            **_model(core.model, f"{where}: model"),
            where=where,
        )

    # -- derived sizes (the stored stream geometry: GeometryView) --------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_format(self) -> FixedFormat:
        return self.formats["head_out" if self.head_mode is not None else "hidden"]

    @property
    def in_format(self) -> BeatFormat:
        """The ``s_axis`` beats: ``beat_elements`` input codes of ``in_bits`` per beat."""
        return BeatFormat(self.beat_elements, self.in_bits)

    @property
    def out_format(self) -> BeatFormat:
        """The ``m_axis`` beats."""
        return BeatFormat(self.beat_elements, self.out_bits)


#: The fields :class:`HardwareDesign` takes as the :class:`~lstmfpga.hw.manifest.Manifest`
#: has them.
_FROM_MANIFEST = ("top", "lanes", "simd", "max_seq_len", "geometry", "weight_port",
                  "weights_sha256", "cells", "mode")  # fmt: skip


def _formats(core: Manifest, where: str) -> dict[str, FixedFormat]:
    """The data formats of the design's cell type, each present and parsed."""
    formats = {}
    for role in _ROLES if core.geometry.cell_state else _GRU_ROLES:
        if role not in core.formats:
            raise ManifestError(f"{where}: formats: {role} is missing")
        formats[role] = _format(core.formats[role], f"format of {role}", where)
    return formats


def _axi(core: Manifest, beat: dict[str, int], where: str) -> dict:
    """The AXI top's section (``axi``, ``design_id``): the element widths, registers, design
    ID, tables digest and elements per beat (a plain top: its ``tdata`` widths, no
    registers, one element per beat); the element widths checked against ``tdata``."""
    found = dict(in_bits=beat["s_axis_tdata"], out_bits=beat["m_axis_tdata"], registers={},
                 design_id=None, tables_sha256=None, beat_elements=1)  # fmt: skip
    axi = core.extra.get("axi")
    if axi is not None:
        if not isinstance(axi, dict):
            raise ManifestError(f"{where}: axi must be an object, not {axi!r:.40}")
        bits = _get(axi, "element_bits", dict, f"{where}: axi")
        found["in_bits"] = _get(bits, "input", int, f"{where}: axi element_bits", minimum=1)
        found["out_bits"] = _get(bits, "output", int, f"{where}: axi element_bits", minimum=1)
        for reg in _get(axi, "registers", list, f"{where}: axi"):
            if not isinstance(reg, dict):
                raise ManifestError(f"{where}: axi registers must be objects, not {reg!r:.40}")
            name = _get(reg, "name", str, f"{where}: axi register")
            found["registers"][name] = _get(reg, "offset", int, f"{where}: axi register {name}")
        found["design_id"] = _get(core.extra, "design_id", int, where)
        tables = found["tables_sha256"] = axi.get("tables_sha256")
        if tables is not None and not isinstance(tables, str):
            raise ManifestError(f"{where}: axi tables_sha256 must be a string, not {tables!r:.40}")
        found["beat_elements"] = _beat_elements(
            core, axi, found["in_bits"], found["out_bits"], f"{where}: axi"
        )
    for what, bits, width in (("input", found["in_bits"], beat["s_axis_tdata"]),
                              ("output", found["out_bits"], beat["m_axis_tdata"])):  # fmt: skip
        if bits > width or bits > 62:
            raise ManifestError(
                f"{where}: {what} element bits must fit the {width}-bit tdata, not {bits}"
            )
    return found


def _rules(extra: dict, where: str) -> tuple[str | None, str | None]:
    """``(rounding, overflow)`` from the ``quantization`` section (``None`` without one)."""
    rules = extra.get("quantization")
    if rules is None:
        return None, None
    if not isinstance(rules, dict):
        raise ManifestError(f"{where}: quantization must be an object, not {rules!r:.40}")
    where = f"{where}: quantization"
    return _get(rules, "rounding", str, where), _get(rules, "overflow", str, where)


def _weight_formats(extra: dict, where: str) -> dict[str, FixedFormat]:
    """Every weight tensor's format (``weight_formats``; empty when not recorded)."""
    weights = extra.get("weight_formats") or {}
    if not isinstance(weights, dict):
        raise ManifestError(f"{where}: weight_formats must be an object, not {weights!r:.40}")
    return {
        str(name): _format(text, f"weight format of {name}", where)
        for name, text in weights.items()
    }


def _model(model: dict, where: str) -> dict:
    """The model's layer count, directions, projection and bias."""
    return {
        "num_layers": _get(model, "num_layers", int, where, minimum=1),
        "bidirectional": _get(model, "bidirectional", bool, where),
        "proj_size": _get(model, "proj_size", int, where),
        "has_bias": _get(model, "bias", bool, where),
    }


def _beat_elements(core: Manifest, axi: dict, in_bits: int, out_bits: int, where: str) -> int:
    """``axi.beat_elements`` (1 when absent), checked against the ports: ``K > 1`` needs
    ``tdata`` of ``K`` byte lanes and ``tkeep`` on both streams."""
    K = axi.get("beat_elements", 1)
    try:
        check_beat_elements(K)
    except (TypeError, ValueError) as error:
        raise ManifestError(f"{where}: {error}") from None
    if K == 1:
        return K
    for stream, bits in (("s_axis", in_bits), ("m_axis", out_bits)):
        if not 1 <= bits <= 62:
            break  # refused below, with the element widths
        fmt = BeatFormat(K, bits)
        for port, width in (("tdata", fmt.beat_bits), ("tkeep", fmt.beat_bytes)):
            name = f"{stream}_{port}"
            found = next((p.width for p in core.ports if p.name == name), None)
            if found != width:
                raise ManifestError(
                    f"{where}: {name} must be {width} bits wide for {K} elements per beat, "
                    f"not {'missing' if found is None else found}"
                )
    return K
