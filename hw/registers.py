"""An AXI4-Lite register block built from :data:`~.register_map.REGISTERS`.

:class:`RegisterBlock` is the control and status interface of the AXI top
(:mod:`.axi_top`): the accelerator's status comes in (``busy``, ``error``, ``result_done``,
``weights_loaded``, ``saturation``), the soft reset goes out. The register map, access
rules and error responses are those of :mod:`.register_map` (and ``docs/registers.md``,
generated from it).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .register_map import ADDR_WIDTH, REGISTERS, SATURATION_ROLES, field_mask, register
from .saturation import saturation_layout

__all__ = [
    "AXI_LITE_PREFIX",
    "OKAY",
    "SLVERR",
    "RegisterBlock",
    "axi_lite_members",
    "check_design_id",
]

#: AXI response codes.
OKAY, SLVERR = 0b00, 0b10
#: Port name prefix of the AXI4-Lite subordinate port (cocotbext-axi's ``from_prefix``).
AXI_LITE_PREFIX = "s_axil"
_DATA_BITS = 32


def axi_lite_members(prefix: str = AXI_LITE_PREFIX, addr_width: int = ADDR_WIDTH) -> dict:
    """The members of an AXI4-Lite subordinate port (32-bit data, byte strobes, no
    ``prot``), named ``<prefix>_<signal>`` as Xilinx's and cocotbext-axi's conventions
    expect."""
    signals = {
        "awaddr": In(addr_width), "awvalid": In(1), "awready": Out(1),
        "wdata": In(_DATA_BITS), "wstrb": In(_DATA_BITS // 8), "wvalid": In(1),
        "wready": Out(1),
        "bresp": Out(2), "bvalid": Out(1), "bready": In(1),
        "araddr": In(addr_width), "arvalid": In(1), "arready": Out(1),
        "rdata": Out(_DATA_BITS), "rresp": Out(2), "rvalid": Out(1), "rready": In(1),
    }  # fmt: skip
    return {f"{prefix}_{name}": member for name, member in signals.items()}


def check_design_id(design_id) -> int:
    """``design_id`` if it is a 32-bit unsigned integer (else ``TypeError``/``ValueError``)."""
    if not isinstance(design_id, int) or isinstance(design_id, bool):
        raise TypeError(f"design_id must be an integer, not {design_id!r}")
    if not 0 <= design_id < 1 << _DATA_BITS:
        raise ValueError(f"design_id must fit 32 unsigned bits, not {design_id!r}")
    return design_id


class RegisterBlock(wiring.Component):
    """The registers of :data:`~.register_map.REGISTERS` behind an AXI4-Lite port.

    Parameters
    ----------
    design_id : int
        The value of ``ID`` (32 bits; :func:`~.register_map.design_id` of the manifest).
    stream : bool
        The accelerator runs in stream mode (``MODE.stream``; ``STATE_CONTROL`` writable).
    saturation : StructLayout or None
        The layout of the accelerator's ``saturation`` port
        (:func:`~.saturation.saturation_layout`; ``None``: that of one lane and one cell).

    Members
    -------
    s_axil_* : AXI4-Lite subordinate (:func:`axi_lite_members`)
        One write and one read in flight at a time: ``awready``/``wready`` drop once an
        address/data is held and rise again when its response is taken; a write takes
        effect in the cycle its response becomes valid; a read's data is sampled in the
        cycle its response becomes valid (one cycle after the address is taken, or when the
        previous response is taken). Unmapped addresses and writes to ``ro`` registers
        answer ``SLVERR``.
    busy, error : In(1)
        The accelerator's ports (``STATUS``; ``ERRORS.stream`` is set when ``error`` rises).
    keep_state : Out(1)
        ``STATE_CONTROL.keep_state`` (stream mode's accelerator input of that name; always 0
        in sequence mode).
    result_done : In(1)
        High in a cycle where the last result beat of a sequence is taken (``SEQUENCES``).
    weights_loaded : In(1)
        High in a cycle where the last beat of a weight load is taken (``WEIGHT_LOADS``).
    saturation : In(saturation)
        The accelerator's saturation counts of the cycle, one field per
        :data:`~.register_map.SATURATION_ROLES`; registered, then added to
        ``SATURATION_<ROLE>`` (so a count is readable two cycles after its pulse).
    soft_reset : Out(1)
        High for one cycle after ``CONTROL.soft_reset`` is written with 1; the counters and
        flags of this block (but ``WEIGHT_LOADS``) are cleared in that cycle too.
    """

    def __init__(self, design_id: int, *, stream: bool = False, saturation=None):
        try:
            self._design_id = check_design_id(design_id)
            if not isinstance(stream, bool):
                raise TypeError(f"stream must be True or False, not {stream!r}")
            if saturation is None:
                saturation = saturation_layout(1, 1)
            if not isinstance(saturation, data.StructLayout) or set(saturation.members) != set(
                SATURATION_ROLES
            ):
                raise TypeError(
                    f"saturation must be a StructLayout of {SATURATION_ROLES}, not {saturation!r}"
                )
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a rejected block is not an unused one
            raise
        self._stream, self._saturation = stream, saturation
        super().__init__(
            {
                **axi_lite_members(),
                "busy": In(1),
                "error": In(1),
                "result_done": In(1),
                "weights_loaded": In(1),
                "saturation": In(saturation),
                "soft_reset": Out(1),
                "keep_state": Out(1),
            }
        )

    @property
    def design_id(self) -> int:
        return self._design_id

    @property
    def stream(self) -> bool:
        return self._stream

    @property
    def saturation_layout(self) -> data.StructLayout:
        return self._saturation

    def _bus(self, name: str):
        return getattr(self, f"{AXI_LITE_PREFIX}_{name}")

    def elaborate(self, platform):
        m = Module()
        # -- state behind the registers -------------------------------------------------------
        s = SimpleNamespace(
            cycles=Signal(_DATA_BITS),
            busy_cycles=Signal(_DATA_BITS),
            sequences=Signal(_DATA_BITS),
            weight_loads=Signal(_DATA_BITS),
            error_seen=Signal(),  # error in the previous cycle (rising-edge detection)
            stream_flag=Signal(),
            soft_reset=Signal(),
            clear_stream=Signal(),
            keep_state=Signal(),
            clear_saturation=Signal(),
            pulses=Signal(self._saturation),  # the saturation counts of the last cycle
            saturated={role: Signal(_DATA_BITS, name=f"saturation_{role}")
                       for role in SATURATION_ROLES},
        )  # fmt: skip
        m.d.comb += [self.soft_reset.eq(s.soft_reset), self.keep_state.eq(s.keep_state)]
        values = {
            "ID": self._design_id,
            "VERSION": register("VERSION").reset,
            "STATUS": Cat(self.busy, self.error),
            "ERRORS": s.stream_flag,
            "CONTROL": 0,
            "CYCLES": s.cycles,
            "BUSY_CYCLES": s.busy_cycles,
            "SEQUENCES": s.sequences,
            "WEIGHT_LOADS": s.weight_loads,
            "MODE": int(self._stream),
            "STATE_CONTROL": s.keep_state
            << (field_mask("STATE_CONTROL", "keep_state").bit_length() - 1),
            **{f"SATURATION_{role.upper()}": s.saturated[role] for role in SATURATION_ROLES},
        }
        if set(values) != {reg.name for reg in REGISTERS}:  # pragma: no cover - table edit
            raise RuntimeError("RegisterBlock does not implement every register of the table")
        self._write_channel(m, s)
        self._read_channel(m, values)
        self._counters(m, s)
        return m

    def _write_channel(self, m: Module, s) -> None:
        """AW and W held until both are there, then the write and its response; ``w1c`` and
        ``w1p`` bits act on the written data whose byte strobes are set."""
        bus = self._bus
        words = {reg.offset >> 2: reg for reg in REGISTERS}
        aw_full, aw_word = Signal(), Signal(ADDR_WIDTH - 2)
        w_full, w_data, w_strb = Signal(), Signal(_DATA_BITS), Signal(_DATA_BITS // 8)
        bvalid, bresp = Signal(), Signal(2)
        m.d.comb += [
            bus("awready").eq(~aw_full),
            bus("wready").eq(~w_full),
            bus("bvalid").eq(bvalid),
            bus("bresp").eq(bresp),
        ]
        with m.If(bus("awvalid") & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus("awaddr")[2:])]
        with m.If(bus("wvalid") & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus("wdata")), w_strb.eq(bus("wstrb"))]
        with m.If(bvalid & bus("bready")):
            m.d.sync += bvalid.eq(0)
        do_write = Signal()
        m.d.comb += do_write.eq(aw_full & w_full & (~bvalid | bus("bready")))
        written = Signal(_DATA_BITS)  # the data bits whose byte strobe is set
        m.d.comb += written.eq(w_data & Cat(b.replicate(8) for b in w_strb))
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1), bresp.eq(SLVERR)]
            with m.Switch(aw_word):
                for word, reg in words.items():
                    with m.Case(word):
                        if self._writable(reg):
                            m.d.sync += bresp.eq(OKAY)
                        if reg.name == "ERRORS":
                            m.d.comb += s.clear_stream.eq(
                                (written & field_mask("ERRORS", "stream")) != 0
                            )
                        if reg.name == "CONTROL":
                            m.d.sync += [
                                s.soft_reset.eq(
                                    (written & field_mask("CONTROL", "soft_reset")) != 0
                                ),
                                s.clear_saturation.eq(
                                    (written & field_mask("CONTROL", "clear_saturation")) != 0
                                ),
                            ]
                        if reg.name == "STATE_CONTROL" and self._stream:
                            bit = field_mask("STATE_CONTROL", "keep_state").bit_length() - 1
                            with m.If(w_strb[bit // 8]):  # its byte's strobe
                                m.d.sync += s.keep_state.eq(w_data[bit])
        with m.If(s.soft_reset | s.clear_saturation):
            m.d.sync += [s.soft_reset.eq(0), s.clear_saturation.eq(0)]

    def _writable(self, reg) -> bool:
        """Whether a write to ``reg`` is answered ``OKAY`` (``STATE_CONTROL``: stream mode)."""
        if reg.name == "STATE_CONTROL":
            return self._stream
        return reg.access != "ro"

    def _read_channel(self, m: Module, values: dict) -> None:
        """AR held until its response can be given; the data sampled in that cycle."""
        bus = self._bus
        words = {reg.offset >> 2: reg for reg in REGISTERS}
        ar_full, ar_word = Signal(), Signal(ADDR_WIDTH - 2)
        rvalid, rresp, rdata = Signal(), Signal(2), Signal(_DATA_BITS)
        m.d.comb += [
            bus("arready").eq(~ar_full),
            bus("rvalid").eq(rvalid),
            bus("rresp").eq(rresp),
            bus("rdata").eq(rdata),
        ]
        with m.If(bus("arvalid") & ~ar_full):
            m.d.sync += [ar_full.eq(1), ar_word.eq(bus("araddr")[2:])]
        with m.If(rvalid & bus("rready")):
            m.d.sync += rvalid.eq(0)
        with m.If(ar_full & (~rvalid | bus("rready"))):
            m.d.sync += [ar_full.eq(0), rvalid.eq(1), rresp.eq(SLVERR), rdata.eq(0)]
            with m.Switch(ar_word):
                for word, reg in words.items():
                    with m.Case(word):
                        m.d.sync += [rresp.eq(OKAY), rdata.eq(values[reg.name])]

    def _counters(self, m: Module, s) -> None:
        """The counters and the sticky flag; the soft reset clears all but ``WEIGHT_LOADS``
        (the loaded weights survive it), ``CONTROL.clear_saturation`` the saturation
        counters."""
        m.d.sync += s.pulses.eq(self.saturation)
        for role, counter in s.saturated.items():
            m.d.sync += counter.eq(counter + getattr(s.pulses, role))
        with m.If(s.soft_reset | s.clear_saturation):
            m.d.sync += [s.pulses.as_value().eq(0), *(c.eq(0) for c in s.saturated.values())]
        m.d.sync += [
            s.cycles.eq(s.cycles + 1),
            s.busy_cycles.eq(s.busy_cycles + self.busy),
            s.sequences.eq(s.sequences + self.result_done),
            s.weight_loads.eq(s.weight_loads + self.weights_loaded),
            s.error_seen.eq(self.error),
        ]
        with m.If(self.error & ~s.error_seen):
            m.d.sync += s.stream_flag.eq(1)
        with m.Elif(s.clear_stream):
            m.d.sync += s.stream_flag.eq(0)
        with m.If(s.soft_reset):
            m.d.sync += [
                s.cycles.eq(0),
                s.busy_cycles.eq(0),
                s.sequences.eq(0),
                s.stream_flag.eq(0),
                s.error_seen.eq(0),
                s.keep_state.eq(0),
            ]
