"""What the host needs to know about a generated design, read from its ``manifest.json``.

:meth:`HardwareDesign.load` takes a design folder (``lstmfpga generate`` or
:func:`lstmfpga.hw.axi_top.write_axi_design`) or its ``manifest.json``; every field the
runtime uses is checked, and a bad one is refused with one line naming it
(:class:`ManifestError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LstmfpgaError
from ..export.files import read_json
from ..quant.fixed import FixedFormat, FormatError
from ..sim.streams import StreamGeometry

__all__ = ["HARDWARE_FORMAT", "DeviceError", "HardwareDesign", "ManifestError", "StreamError"]

#: ``format`` of a design manifest (:data:`lstmfpga.hw.verilog.HARDWARE_FORMAT`).
HARDWARE_FORMAT = "lstmfpga.hardware"
_ROLES = ("x", "preact", "gate", "cell", "hidden", "head_out", "acc")


class ManifestError(LstmfpgaError):
    """A design manifest that is missing, malformed, or does not match a model or a request."""


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
class HardwareDesign:
    """A design as the host sees it (see the module docstring). Build it with :meth:`load`
    or :meth:`from_manifest`.

    ``in_bits``/``out_bits`` are the widths of the codes carried per beat, ``in_beat_bits``/
    ``out_beat_bits`` the ``tdata`` widths (wider on the AXI top: whole bytes);
    ``rounding``/``overflow`` are the model's rules (``None`` when the manifest does not
    record them: then only codes can be encoded); ``design_id`` the ``ID`` register's value
    (``None`` without registers); ``weight_formats`` every weight tensor's format (empty
    when not recorded).
    """

    top: str
    lanes: int
    simd: int
    max_seq_len: int
    with_states: bool
    initial_state: bool
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    proj_size: int
    has_bias: bool
    head_mode: str | None
    head_out: int
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

    @classmethod
    def load(cls, path: str | Path) -> HardwareDesign:
        """From a design folder or its ``manifest.json``."""
        path = Path(path)
        manifest = path / "manifest.json" if path.is_dir() else path
        return cls.from_manifest(read_json(manifest, "design manifest"), where=str(manifest))

    @classmethod
    def from_manifest(cls, info: dict, where: str = "manifest") -> HardwareDesign:
        if not isinstance(info, dict):
            raise ManifestError(f"{where} must be a JSON object, not {type(info).__name__}")
        if info.get("format") != HARDWARE_FORMAT:
            raise ManifestError(
                f"{where} must be a {HARDWARE_FORMAT!r} manifest, not {info.get('format')!r}"
            )
        model = _get(info, "model", dict, where)
        mwhere = f"{where}: model"
        head = model.get("head")
        if head is not None and not isinstance(head, dict):
            raise ManifestError(f"{mwhere}: head must be an object or null, not {head!r}")
        head_mode = None if head is None else _get(head, "mode", str, f"{mwhere}: head")
        if head_mode not in (None, "last", "all"):
            raise ManifestError(f"{mwhere}: head mode must be 'last' or 'all', not {head_mode!r}")
        formats_info = _get(info, "formats", dict, where)
        formats = {}
        for role in _ROLES:
            if role not in formats_info:
                raise ManifestError(f"{where}: formats: {role} is missing")
            formats[role] = _format(formats_info[role], f"format of {role}", where)
        ports = {
            p.get("name"): p
            for p in _get(info, "ports", list, where)
            if isinstance(p, dict) and isinstance(p.get("name"), str)
        }
        beat = {}
        for port in ("s_axis_tdata", "m_axis_tdata"):
            if port not in ports:
                raise ManifestError(f"{where}: ports: {port} is missing")
            beat[port] = _get(ports[port], "width", int, f"{where}: port {port}", minimum=1)
        axi = info.get("axi")
        if axi is not None:
            if not isinstance(axi, dict):
                raise ManifestError(f"{where}: axi must be an object, not {axi!r}")
            bits = _get(axi, "element_bits", dict, f"{where}: axi")
            in_bits = _get(bits, "input", int, f"{where}: axi element_bits", minimum=1)
            out_bits = _get(bits, "output", int, f"{where}: axi element_bits", minimum=1)
            registers = {}
            for reg in _get(axi, "registers", list, f"{where}: axi"):
                if not isinstance(reg, dict):
                    raise ManifestError(f"{where}: axi registers must be objects, not {reg!r}")
                name = _get(reg, "name", str, f"{where}: axi register")
                registers[name] = _get(reg, "offset", int, f"{where}: axi register {name}")
            design_id = _get(info, "design_id", int, where)
        else:
            in_bits, out_bits = beat["s_axis_tdata"], beat["m_axis_tdata"]
            registers, design_id = {}, None
        for what, bits, width in (("input", in_bits, beat["s_axis_tdata"]),
                                  ("output", out_bits, beat["m_axis_tdata"])):  # fmt: skip
            if bits > width or bits > 62:
                raise ManifestError(
                    f"{where}: {what} element bits must fit the {width}-bit tdata, not {bits}"
                )
        rules = info.get("quantization")
        rounding = overflow = None
        if rules is not None:
            if not isinstance(rules, dict):
                raise ManifestError(f"{where}: quantization must be an object, not {rules!r}")
            rounding = _get(rules, "rounding", str, f"{where}: quantization")
            overflow = _get(rules, "overflow", str, f"{where}: quantization")
        weight_formats = {
            str(name): _format(text, f"weight format of {name}", where)
            for name, text in (info.get("weight_formats") or {}).items()
        }
        memories = {}
        for mem in info.get("memories") or ():
            if isinstance(mem, dict) and mem.get("name") in ("weights", "biases"):
                mwhere_ = f"{where}: memory {mem['name']}"
                memories[mem["name"]] = (_get(mem, "width", int, mwhere_, minimum=1),
                                         _get(mem, "depth", int, mwhere_, minimum=1))  # fmt: skip
        tables = (axi or {}).get("tables_sha256")
        if tables is not None and not isinstance(tables, str):
            raise ManifestError(f"{where}: axi tables_sha256 must be a string, not {tables!r}")
        head_out = 0
        if head is not None:
            head_out = _get(head, "out_features", int, f"{mwhere}: head", minimum=1)
        return cls(
            top=_get(info, "top", str, where),
            lanes=_get(info, "lanes", int, where, minimum=1),
            simd=_get(info, "simd", int, where, minimum=1),
            max_seq_len=_get(info, "max_seq_len", int, where, minimum=1),
            with_states=_get(info, "with_states", bool, where),
            initial_state=_get(info, "initial_state", bool, where),
            input_size=_get(model, "input_size", int, mwhere, minimum=1),
            hidden_size=_get(model, "hidden_size", int, mwhere, minimum=1),
            num_layers=_get(model, "num_layers", int, mwhere, minimum=1),
            bidirectional=_get(model, "bidirectional", bool, mwhere),
            proj_size=_get(model, "proj_size", int, mwhere),
            has_bias=_get(model, "bias", bool, mwhere),
            head_mode=head_mode,
            head_out=head_out,
            formats=formats,
            in_bits=in_bits,
            out_bits=out_bits,
            in_beat_bits=beat["s_axis_tdata"],
            out_beat_bits=beat["m_axis_tdata"],
            rounding=rounding,
            overflow=overflow,
            design_id=design_id,
            weight_formats=weight_formats,
            registers=registers,
            memories=memories,
            tables_sha256=tables,
            where=where,
        )

    # -- derived sizes ------------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """``H_out``: ``proj_size`` or ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def states(self) -> int:
        """``L * D``."""
        return self.num_layers * self.num_directions

    @property
    def output_format(self) -> FixedFormat:
        return self.formats["head_out" if self.head_mode is not None else "hidden"]

    @property
    def geometry(self) -> StreamGeometry:
        """The stream contract's sizes (:mod:`lstmfpga.sim.streams`)."""
        return StreamGeometry(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            output_size=self.output_size,
            states=self.states,
            head_out=self.head_out,
            head_mode=self.head_mode,
            sequence_output_size=self.num_directions * self.output_size,
            with_states=self.with_states,
            initial_state=self.initial_state,
        )
