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
  accelerator through a :class:`~amaranth.hdl.ResetInserter` (one cycle).

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

__all__ = ["WEIGHT_PORT_NAMES", "AXITop", "axi_manifest", "write_axi_design"]

_DESCRIBE = {
    "s_axis_tdata": "input element: its code in the low bits (two's complement)",
    "s_axis_tvalid": "input valid",
    "s_axis_tready": "input ready (high while a sequence is being loaded)",
    "s_axis_tlast": "last element of a sequence",
    "m_axis_tdata": "result element: its code sign-extended",
    "m_axis_tvalid": "result valid",
    "m_axis_tready": "result ready (back-pressure pauses the drain)",
    "m_axis_tlast": "last result element of a sequence",
    "s_axis_w_tdata": "weight beat (weight_port): bit 0 bias, the word address, the word",
    "s_axis_w_tvalid": "weight beat valid",
    "s_axis_w_tready": "weight beat ready (only between sequences)",
    "s_axis_w_tlast": "last beat of a weight load (counted in WEIGHT_LOADS)",
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


class AXITop(wiring.Component):
    """``accelerator`` behind AXI4-Stream ports and an AXI4-Lite register block.

    Parameters
    ----------
    accelerator : LSTMAccelerator
    design_id : int
        The ``ID`` register's value (32 bits; :func:`axi_manifest` computes it).
    """

    def __init__(self, accelerator: LSTMAccelerator, design_id: int):
        try:
            if not isinstance(accelerator, LSTMAccelerator):
                raise TypeError(f"accelerator must be an LSTMAccelerator, not {accelerator!r}")
            self._design_id = check_design_id(design_id)
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a rejected design is not an unused one
            raise
        self._acc = accelerator
        self._in_bits, self._out_bits = _element_bits(accelerator)
        super().__init__(self.members(accelerator))

    @staticmethod
    def members(accelerator: LSTMAccelerator) -> dict:
        """The top's signature members for ``accelerator`` (ports as the module docstring
        lists them)."""
        in_bits, out_bits = _element_bits(accelerator)
        return {
            "s_axis_tdata": In(8 * _bytes(in_bits)),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(8 * _bytes(out_bits)),
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

    def elaborate(self, platform):
        m = Module()
        acc = self._acc
        m.submodules.registers = regs = RegisterBlock(self._design_id)
        m.submodules.accelerator = ResetInserter(regs.soft_reset)(acc)
        m.d.comb += [
            acc.s_axis_tdata.eq(self.s_axis_tdata[: self._in_bits]),
            acc.s_axis_tvalid.eq(self.s_axis_tvalid),
            acc.s_axis_tlast.eq(self.s_axis_tlast),
            self.s_axis_tready.eq(acc.s_axis_tready),
            self.m_axis_tdata.eq(acc.m_axis_tdata),  # signed: sign-extended
            self.m_axis_tvalid.eq(acc.m_axis_tvalid),
            self.m_axis_tlast.eq(acc.m_axis_tlast),
            acc.m_axis_tready.eq(self.m_axis_tready),
            acc.w.payload.eq(self.s_axis_w_tdata[: WeightPort.of(acc.layout).bits]),
            acc.w.valid.eq(self.s_axis_w_tvalid),
            self.s_axis_w_tready.eq(acc.w.ready),
            regs.weights_loaded.eq(self.s_axis_w_tvalid & acc.w.ready & self.s_axis_w_tlast),
            regs.busy.eq(acc.busy),
            regs.error.eq(acc.error),
            regs.result_done.eq(acc.m_axis_tvalid & self.m_axis_tready & acc.m_axis_tlast),
        ]
        for name, member in axi_lite_members().items():
            if member.flow == wiring.In:
                m.d.comb += getattr(regs, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(regs, name))
        return m


def axi_manifest(accelerator: LSTMAccelerator, name: str = "lstm_axi") -> dict:
    """The accelerator's manifest (:func:`lstmfpga.hw.verilog.manifest`) for the AXI top:
    ``top`` and ``ports`` are the top's, ``axi`` describes the bus widths and registers and
    holds the weights' digest, ``quantization`` the model's rounding and overflow rules (to
    quantize inputs as ``predict`` does), ``weight_formats`` every weight tensor's format
    (what new weights must fit), ``design_id`` is :func:`~.register_map.design_id` of the
    rest (the ``ID`` register's value), ``weight_port`` the :class:`~.weight_port.WeightPort`
    with this top's names."""
    q = accelerator.model
    info = verilog.manifest(accelerator, name)
    ports = [p for p in info["ports"] if p["name"] in ("clk", "rst")]
    for port_name, member in AXITop.members(accelerator).items():
        ports.append(
            {
                "name": port_name,
                "direction": "input" if member.flow == wiring.In else "output",
                "width": Shape.cast(member.shape).width,
                "signed": False,
                "description": _DESCRIBE.get(port_name, "AXI4-Lite register port"),
            }
        )
    in_bits, out_bits = _element_bits(accelerator)
    info["ports"] = ports
    info["weight_port"] = WeightPort.of(accelerator.layout, **WEIGHT_PORT_NAMES).to_dict()
    info["axi"] = {
        "map_version": MAP_VERSION,
        "lite_prefix": AXI_LITE_PREFIX,
        "lite_addr_width": ADDR_WIDTH,
        "registers": [{"name": r.name, "offset": r.offset, "access": r.access} for r in REGISTERS],
        "element_bits": {"input": in_bits, "output": out_bits},
        "beat_bytes": {"input": _bytes(in_bits), "output": _bytes(out_bits)},
        "weights_sha256": weights_digest(accelerator.layout),
        "tables_sha256": tables_digest(q.tables),
    }
    info["design_id"] = design_id(info)
    return info


def write_axi_design(
    accelerator: LSTMAccelerator,
    outdir: str | Path,
    *,
    memories: str = "inline",
    name: str = "lstm_axi",
) -> dict:
    """Write ``<name>.v`` (the :class:`AXITop` of ``accelerator``), its ``.hex`` memory files
    with ``memories="readmemh"``, and ``manifest.json`` (:func:`axi_manifest`, with
    ``files``) into ``outdir``; returns the manifest. The folder is checked as
    :func:`lstmfpga.hw.verilog.check_output` does; the manifest is written last."""
    if memories not in verilog.MEMORY_MODES:
        raise ValueError(f"memories must be one of {verilog.MEMORY_MODES}, not {memories!r}")
    outdir = Path(outdir)
    verilog.check_output(outdir)
    info = axi_manifest(accelerator, name)  # checks name
    text = verilog.to_verilog(AXITop(accelerator, info["design_id"]), name)
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
