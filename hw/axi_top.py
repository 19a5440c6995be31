"""The accelerator as an AXI peripheral: AXI4-Stream in and out, AXI4-Lite registers.

:class:`AXITop` wraps an :class:`~.accelerator.LSTMAccelerator` and the
:class:`~.registers.RegisterBlock`. :func:`write_axi_design` writes its Verilog and a
manifest (the accelerator's, with the top's ports and an ``axi`` section) into a folder;
the manifest's :func:`~.register_map.design_id` is the value of the ``ID`` register, so the
host runtime (:mod:`lstmfpga.runtime`) can check that it talks to the hardware it was given.

Ports (clock ``clk``, synchronous reset ``rst``):

* ``s_axis_tdata`` (``in_bytes * 8`` bits), ``s_axis_tvalid``, ``s_axis_tready``,
  ``s_axis_tlast``: the accelerator's input stream; each beat carries one element, its code
  in the low bits (two's complement; the high padding bits are ignored). The width is the
  accelerator's rounded up to whole bytes, so a DMA engine moves ``in_bytes`` per beat.
* ``m_axis_tdata`` (``out_bytes * 8`` bits, the code sign-extended), ``m_axis_tvalid``,
  ``m_axis_tready``, ``m_axis_tlast``: the results.
* ``s_axis_w_tdata`` (:attr:`~.weight_port.WeightPort.beat_bytes` ``* 8`` bits),
  ``s_axis_w_tvalid``, ``s_axis_w_tready``, ``s_axis_w_tlast``: the weight port, the
  accelerator's ``w`` (one weight or bias memory word per beat in the
  :class:`~.weight_port.WeightPort` format, the bytes of :func:`lstmfpga.runtime.pack_weights`;
  ``tready`` only between sequences). ``tlast`` marks the last beat of a load
  (``WEIGHT_LOADS`` counts them); it does not change what a beat writes.
* ``s_axil_*``: the registers (``docs/registers.md``). ``CONTROL.soft_reset`` resets the
  accelerator through a :class:`~amaranth.hdl.ResetInserter` (one cycle); the
  ``SATURATION_*`` registers add up the accelerator's ``saturation`` port (the golden
  model's saturation counts, :mod:`.saturation`).

With ``beat_elements=K > 1`` each ``s_axis``/``m_axis`` beat carries ``K`` elements in
byte-aligned lanes (:class:`~.beat_format.BeatFormat`: element ``j`` in lane ``j``), and
``s_axis_tkeep``/``m_axis_tkeep`` (one bit per byte) mark the lanes of a sequence's partial
last beat; :class:`~.beats.BeatUnpacker` and :class:`~.beats.BeatPacker` convert between
beats and the accelerator's one-element stream (reset with it by ``CONTROL.soft_reset``).
The accelerator still takes and gives one element per cycle. ``K = 1`` is the top above,
exactly (no ``tkeep``, the same Verilog and manifest).

In stream mode (an accelerator built with ``mode="stream"``) the top adds ``s_axis_tuser``
(one bit per lane: set on the first element of a step's ``x``, it resets the state before
that step; with ``K = 1`` one bit), and ``STATE_CONTROL.keep_state`` drives the
accelerator's ``keep_state`` (carry the state over ``tlast``); ``MODE`` reads the mode.

The stream contract is the accelerator's (``docs/accelerator.md``).
"""

from __future__ import annotations

from pathlib import Path

from amaranth.hdl import Module, ResetInserter, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..export import files
from . import verilog
from .accelerator import LSTMAccelerator
from .beat_format import BeatFormat, check_beat_elements
from .beats import BeatPacker, BeatUnpacker
from .register_map import (
    ADDR_WIDTH,
    MAP_VERSION,
    REGISTERS,
    design_id,
    tables_digest,
    weights_digest,
)
from .registers import AXI_LITE_PREFIX, RegisterBlock, axi_lite_members, check_design_id
from .weight_port import WeightPort

__all__ = ["WEIGHT_PORT_NAMES", "AXITop", "axi_manifest", "beat_formats", "write_axi_design"]

_DESCRIBE = {
    "s_axis_tdata": "input element: its code in the low bits (two's complement)",
    "s_axis_tvalid": "input valid",
    "s_axis_tready": "input ready (high while a sequence is being loaded)",
    "s_axis_tlast": "last element of a sequence",
    "s_axis_tuser": "stream mode: on the first element of a step's x, reset the state before "
    "that step (one bit per lane)",
    "m_axis_tdata": "result element: its code sign-extended",
    "m_axis_tvalid": "result valid",
    "m_axis_tready": "result ready (back-pressure pauses the drain)",
    "m_axis_tlast": "last result element of a sequence",
    "s_axis_tkeep": "input byte enables: the lanes of a sequence's partial last beat",
    "m_axis_tkeep": "result byte enables: the lanes of a sequence's partial last beat",
    "s_axis_w_tdata": "weight beat (weight_port): bit 0 bias, the word address, the word",
    "s_axis_w_tvalid": "weight beat valid",
    "s_axis_w_tready": "weight beat ready (only between sequences)",
    "s_axis_w_tlast": "last beat of a weight load (counted in WEIGHT_LOADS)",
}
#: ``tdata`` of a ``K``-element beat (``K > 1``).
_DESCRIBE_WIDE = {
    "s_axis_tdata": "input elements, one per byte-aligned lane (lane j: element j's code in "
    "its low bits, two's complement)",
    "m_axis_tdata": "result elements, one per byte-aligned lane (each code sign-extended)",
}
#: The weight port's names at this top (:class:`~.weight_port.WeightPort`).
WEIGHT_PORT_NAMES = dict(data="s_axis_w_tdata", valid="s_axis_w_tvalid",
                         ready="s_axis_w_tready", last="s_axis_w_tlast")  # fmt: skip


def _bytes(bits: int) -> int:
    return -(-bits // 8)


def _element_bits(accelerator: LSTMAccelerator) -> tuple[int, int]:
    """Widths of the accelerator's input and output codes."""
    members = accelerator.signature.members
    return tuple(Shape.cast(members[f"{s}_axis_tdata"].shape).width for s in ("s", "m"))


def beat_formats(accelerator: LSTMAccelerator, beat_elements: int) -> tuple[BeatFormat, ...]:
    """The :class:`~.beat_format.BeatFormat` of ``s_axis`` and ``m_axis``."""
    return tuple(BeatFormat(beat_elements, bits) for bits in _element_bits(accelerator))


class AXITop(wiring.Component):
    """``accelerator`` behind AXI4-Stream ports and an AXI4-Lite register block.

    Parameters
    ----------
    accelerator : LSTMAccelerator
    design_id : int
        The ``ID`` register's value (32 bits; :func:`axi_manifest` computes it).
    beat_elements : int
        ``K``, elements per ``s_axis``/``m_axis`` beat (1 ..
        :data:`~.beat_format.MAX_BEAT_ELEMENTS`; default 1).
    """

    def __init__(self, accelerator: LSTMAccelerator, design_id: int, beat_elements: int = 1):
        try:
            if not isinstance(accelerator, LSTMAccelerator):
                raise TypeError(f"accelerator must be an LSTMAccelerator, not {accelerator!r}")
            self._design_id = check_design_id(design_id)
            self._K = check_beat_elements(beat_elements)
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a rejected design is not an unused one
            raise
        self._acc = accelerator
        self._in_bits, self._out_bits = _element_bits(accelerator)
        super().__init__(self.members(accelerator, beat_elements))

    @staticmethod
    def members(accelerator: LSTMAccelerator, beat_elements: int = 1) -> dict:
        """The top's signature members for ``accelerator`` (ports as the module docstring
        lists them)."""
        fmt_in, fmt_out = beat_formats(accelerator, check_beat_elements(beat_elements))
        wide = beat_elements > 1
        return {
            "s_axis_tdata": In(fmt_in.beat_bits),
            **({"s_axis_tkeep": In(fmt_in.beat_bytes)} if wide else {}),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            **({"s_axis_tuser": In(beat_elements)} if accelerator.mode == "stream" else {}),
            "m_axis_tdata": Out(fmt_out.beat_bits),
            **({"m_axis_tkeep": Out(fmt_out.beat_bytes)} if wide else {}),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
            "s_axis_w_tdata": In(8 * WeightPort.of(accelerator.layout).beat_bytes),
            "s_axis_w_tvalid": In(1),
            "s_axis_w_tready": Out(1),
            "s_axis_w_tlast": In(1),
            **axi_lite_members(),
        }

    @property
    def accelerator(self) -> LSTMAccelerator:
        return self._acc

    @property
    def design_id(self) -> int:
        return self._design_id

    @property
    def beat_elements(self) -> int:
        return self._K

    def elaborate(self, platform):
        m = Module()
        acc = self._acc
        stream = acc.mode == "stream"
        saturation = acc.signature.members["saturation"].shape
        m.submodules.registers = regs = RegisterBlock(
            self._design_id, stream=stream, saturation=saturation
        )
        m.submodules.accelerator = ResetInserter(regs.soft_reset)(acc)
        if self._K == 1:
            streams, result_done = self._element_streams()
        else:
            streams, result_done = self._beat_streams(m, regs)
        if stream:
            streams.append(acc.keep_state.eq(regs.keep_state))
        m.d.comb += [
            *streams,
            acc.w.payload.eq(self.s_axis_w_tdata[: WeightPort.of(acc.layout).bits]),
            acc.w.valid.eq(self.s_axis_w_tvalid),
            self.s_axis_w_tready.eq(acc.w.ready),
            regs.weights_loaded.eq(self.s_axis_w_tvalid & acc.w.ready & self.s_axis_w_tlast),
            regs.busy.eq(acc.busy),
            regs.error.eq(acc.error),
            regs.result_done.eq(result_done),
            regs.saturation.eq(acc.saturation),
        ]
        for name, member in axi_lite_members().items():
            if member.flow == wiring.In:
                m.d.comb += getattr(regs, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(regs, name))
        return m

    def _element_streams(self) -> tuple[list, object]:
        """``K = 1``: one element per beat, straight to the accelerator. Returns the
        connections and the ``result_done`` condition."""
        acc = self._acc
        connections = [
            acc.s_axis_tdata.eq(self.s_axis_tdata[: self._in_bits]),
            acc.s_axis_tvalid.eq(self.s_axis_tvalid),
            acc.s_axis_tlast.eq(self.s_axis_tlast),
            self.s_axis_tready.eq(acc.s_axis_tready),
            self.m_axis_tdata.eq(acc.m_axis_tdata),  # signed: sign-extended
            self.m_axis_tvalid.eq(acc.m_axis_tvalid),
            self.m_axis_tlast.eq(acc.m_axis_tlast),
            acc.m_axis_tready.eq(self.m_axis_tready),
        ]
        if acc.mode == "stream":
            connections.append(acc.s_axis_tuser.eq(self.s_axis_tuser))
        return connections, acc.m_axis_tvalid & self.m_axis_tready & acc.m_axis_tlast

    def _beat_streams(self, m: Module, regs: RegisterBlock) -> tuple[list, object]:
        """``K > 1``: beats unpacked into the accelerator's elements, results packed (as
        :meth:`_element_streams`)."""
        acc = self._acc
        fmt_in, fmt_out = beat_formats(acc, self._K)
        stream = acc.mode == "stream"
        reset = ResetInserter(regs.soft_reset)
        m.submodules.unpack = unpack = reset(BeatUnpacker(fmt_in, user=stream))
        m.submodules.pack = pack = reset(BeatPacker(fmt_out))
        beat, element = ("data", "keep", "last"), ("data", "last")
        user = ("user",) if stream else ()
        connections = [
            *_join(self, "s_axis", unpack.i, beat + user, ports_drive=True),
            *_join(acc, "s_axis", unpack.o, element + user, ports_drive=False),
            *_join(acc, "m_axis", pack.i, element, ports_drive=True),
            *_join(self, "m_axis", pack.o, beat, ports_drive=False),
        ]
        return connections, pack.o.valid & self.m_axis_tready & pack.o.payload.last


def _join(ports, prefix: str, interface, fields, *, ports_drive: bool) -> list:
    """The statements joining AXI4-Stream ports ``<prefix>_t<field>``, ``_tvalid``,
    ``_tready`` of ``ports`` with the stream ``interface`` (payload ``fields``): the ports
    drive the stream (``ports_drive``) or the stream drives the ports."""

    def port(name):
        return getattr(ports, f"{prefix}_t{name}")

    pairs = [(interface.payload[f], port(f)) for f in fields] + [(interface.valid, port("valid"))]
    if ports_drive:
        return [a.eq(b) for a, b in pairs] + [port("ready").eq(interface.ready)]
    return [b.eq(a) for a, b in pairs] + [interface.ready.eq(port("ready"))]


def axi_manifest(
    accelerator: LSTMAccelerator, name: str = "lstm_axi", beat_elements: int = 1
) -> dict:
    """The accelerator's manifest (:func:`lstmfpga.hw.verilog.manifest`) for the AXI top:
    ``top`` and ``ports`` are the top's, ``axi`` describes the bus widths and registers and
    holds the weights' digest, ``quantization`` the model's rounding and overflow rules (to
    quantize inputs as ``predict`` does), ``weight_formats`` every weight tensor's format
    (what new weights must fit), ``design_id`` is :func:`~.register_map.design_id` of the
    rest (the ``ID`` register's value), ``weight_port`` the :class:`~.weight_port.WeightPort`
    with this top's names. With ``beat_elements`` ``K > 1``, ``axi`` records it as
    ``beat_elements`` and ``beat_bytes`` are a ``K``-element beat's (``K = 1``: no
    ``beat_elements`` entry, the manifest as before wide beats)."""
    q = accelerator.model
    K = check_beat_elements(beat_elements)
    info = verilog.manifest(accelerator, name)
    ports = [p for p in info["ports"] if p["name"] in ("clk", "rst")]
    describe = _DESCRIBE | (_DESCRIBE_WIDE if K > 1 else {})
    for port_name, member in AXITop.members(accelerator, K).items():
        ports.append(
            {
                "name": port_name,
                "direction": "input" if member.flow == wiring.In else "output",
                "width": Shape.cast(member.shape).width,
                "signed": False,
                "description": describe.get(port_name, "AXI4-Lite register port"),
            }
        )
    in_bits, out_bits = _element_bits(accelerator)
    fmt_in, fmt_out = beat_formats(accelerator, K)
    info["ports"] = ports
    info["weight_port"] = WeightPort.of(accelerator.layout, **WEIGHT_PORT_NAMES).to_dict()
    info["axi"] = {
        "map_version": MAP_VERSION,
        "lite_prefix": AXI_LITE_PREFIX,
        "lite_addr_width": ADDR_WIDTH,
        "registers": [{"name": r.name, "offset": r.offset, "access": r.access} for r in REGISTERS],
        "element_bits": {"input": in_bits, "output": out_bits},
        "beat_bytes": {"input": fmt_in.beat_bytes, "output": fmt_out.beat_bytes},
        "weights_sha256": weights_digest(accelerator.layout),
        "tables_sha256": tables_digest(q.tables),
    }
    if K > 1:
        info["axi"]["beat_elements"] = K
    info["design_id"] = design_id(info)
    return info


def write_axi_design(
    accelerator: LSTMAccelerator,
    outdir: str | Path,
    *,
    memories: str = "inline",
    name: str = "lstm_axi",
    beat_elements: int = 1,
) -> dict:
    """Write ``<name>.v`` (the :class:`AXITop` of ``accelerator``, ``beat_elements``
    elements per stream beat), its ``.hex`` memory files with ``memories="readmemh"``, and
    ``manifest.json`` (:func:`axi_manifest`, with ``files``) into ``outdir``; returns the
    manifest. The folder is checked as :func:`lstmfpga.hw.verilog.check_output` does; the
    manifest is written last."""
    if memories not in verilog.MEMORY_MODES:
        raise ValueError(f"memories must be one of {verilog.MEMORY_MODES}, not {memories!r}")
    check_beat_elements(beat_elements)
    outdir = Path(outdir)
    verilog.check_output(outdir)
    info = axi_manifest(accelerator, name, beat_elements)  # checks name
    top = AXITop(accelerator, info["design_id"], beat_elements)
    text = verilog.to_verilog(top, name)
    hex_files = {}
    if memories == "readmemh":
        text, hex_files = verilog.externalize_memories(text, name)
    info["memory_files"] = memories
    info["files"] = [f"{name}.v", *sorted(hex_files), "manifest.json"]
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "manifest.json").unlink(missing_ok=True)
    files.write_text(outdir / f"{name}.v", text)
    for file_name, contents in hex_files.items():
        files.write_text(outdir / file_name, contents)
    files.write_json(outdir / "manifest.json", info)
    return info
