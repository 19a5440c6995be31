"""V activation + cell units in lockstep: hidden units' gate pre-activations into ``c``, ``m``.

:class:`CellBank` sits between the :class:`~.regroup.GateRegrouper` and the
:class:`~.writeback.WriteBack` of :class:`~.accelerator.LSTMAccelerator`: one
:class:`~.activation.ActivationLUT` over ``4V`` gates (``sigmoid, sigmoid, tanh, sigmoid`` per
unit) and ``V`` :class:`~.cell.CellDatapath` s, with each unit's previous cell state read from
``cmem`` at the cells' input.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..quant.golden import CellArithmetic
from .activation import ActivationLUT
from .cell import CellDatapath

__all__ = ["CellBank", "cell_bank_reference"]

#: Unit beats in flight between the input and the cells / the output (more than the bank holds).
_SIDEBAND_DEPTH = 32


class CellBank(wiring.Component):
    """``V`` activation + cell units, one beat of up to ``V`` hidden units per cycle.

    Parameters
    ----------
    model : QuantizedModel
        The tables (``sigmoid``, ``tanh_gate``, ``tanh_cell``) and the cell arithmetic.
    cells : int
        ``V``.
    in_bits : int
        Width of a gate pre-activation (the regrouper's rows; the ``preact`` codes).
    c_depth : int
        Words of ``cmem`` (its read ports' address range).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"rows": ArrayLayout(signed(in_bits), 4V),
    "count": range(V + 1), "c_addr": ..., "zero_c": 1})))``
        ``count`` units, unit ``k`` in ``rows[4k .. 4k + 3]`` (``i, f, g, o``); its previous
        cell state is ``cmem[c_addr + k]``, or 0 when ``zero_c``.
    o : ``Out(stream.Signature(StructLayout({"c": ArrayLayout(signed(cell), V), "m":
    ArrayLayout(signed(hidden), V), "count": range(V + 1)})))``
        Unit ``k``'s new cell state and output (``CellArithmetic.update`` of its looked-up
        gates); elements past ``count`` undefined.
    sat_c, sat_m : ``Out(unsigned(V))``
        Saturation pulses: bit ``k`` is high in the cycle a beat transfers on ``o`` when unit
        ``k``'s ``c`` / ``m`` saturated (what the golden model counts as "cell" / "hidden"),
        0 for ``k >= count`` and in cycles without a transfer.
    c_r<k> : ``In(ReadPort.Signature(...))``, ``k`` in ``0 .. V-1``
        Combinational read ports of ``cmem`` (``en`` unused): read when the unit enters its
        cell, after the activation lookup.

    Timing: ``latency`` = ``lookup_latency + cell_latency``; one beat per cycle; ``i.ready``
    and the pipelines' enables are registered (the components' skid outputs).
    """

    def __init__(self, model, *, cells: int, in_bits: int, c_depth: int):
        tables = model.tables
        self._gate_tables = (tables["sigmoid"], tables["sigmoid"], tables["tanh_gate"],
                             tables["sigmoid"]) * cells  # fmt: skip
        self._arith = CellArithmetic.of(model)
        self._V = cells
        f = model.formats
        addr = range(max(2, c_depth))
        self._c_addr_width = Signal(addr).shape().width
        from amaranth.lib.memory import ReadPort

        members = {
            "i": In(stream.Signature(data.StructLayout({
                "rows": data.ArrayLayout(signed(in_bits), 4 * cells),
                "count": range(cells + 1), "c_addr": addr, "zero_c": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "c": data.ArrayLayout(signed(f["cell"].bits), cells),
                "m": data.ArrayLayout(signed(f["hidden"].bits), cells),
                "count": range(cells + 1)}))),
            "sat_c": Out(unsigned(cells)),
            "sat_m": Out(unsigned(cells)),
        }  # fmt: skip
        for k in range(cells):
            members[f"c_r{k}"] = In(
                ReadPort.Signature(addr_width=self._c_addr_width, shape=signed(f["cell"].bits))
            )
        super().__init__(members)

    @property
    def latency(self) -> int:
        """Cycles from a beat taken on ``i`` to its results valid on ``o``."""
        from .activation import lookup_latency
        from .cell import cell_latency

        return lookup_latency(self._gate_tables[:4]) + cell_latency(self._arith.tanh_cell)

    def elaborate(self, platform):
        m = Module()
        V = self._V
        m.submodules.gate_act = act = ActivationLUT(self._gate_tables)  # unit k: 4k .. 4k+3
        cells = [CellDatapath(self._arith) for _ in range(V)]
        for k, cell in enumerate(cells):
            m.submodules[f"cell{k}" if V > 1 else "cell"] = cell
        width = self._c_addr_width
        m.submodules.sideband_cell = to_cells = SyncFIFOBuffered(width=width + 1,
                                                                 depth=_SIDEBAND_DEPTH)  # fmt: skip
        count_bits = len(self.i.payload.count)
        m.submodules.sideband_out = to_out = SyncFIFOBuffered(width=count_bits,
                                                              depth=_SIDEBAND_DEPTH)  # fmt: skip
        # The FIFOs never fill: at most ``latency + 2`` beats are inside the bank (each
        # pipeline's stage registers and its skid register), so ``i.ready`` is the lookup
        # pipeline's registered ready alone (``w_rdy`` unused: no level comparator on it).
        # (one more in the register that writes them)
        if self.latency + 3 > _SIDEBAND_DEPTH:
            raise ValueError(f"the cell bank holds up to {self.latency + 3} beats, more than "
                             f"its {_SIDEBAND_DEPTH}-entry sideband FIFOs")  # fmt: skip
        i = self.i.payload
        fire = Signal()
        m.d.comb += [
            act.i.valid.eq(self.i.valid),
            self.i.ready.eq(act.i.ready),
            fire.eq(act.i.valid & act.i.ready),
        ]
        # The FIFOs are written one cycle after the transfer, from registers: the transfer
        # logic (the regrouper's choice behind ``i.valid``) then ends at flip-flops here and
        # is not shared with the FIFOs' write logic. An entry is readable two cycles after
        # the transfer, before the lookups (4 or more cycles) deliver the beat's gates.
        written = Signal(name="sideband_we")
        side_cell = Signal(width + 1, name="sideband_cell_data", reset_less=True)
        side_out = Signal(count_bits, name="sideband_out_data", reset_less=True)
        m.d.sync += [written.eq(fire), side_cell.eq(Cat(i.c_addr, i.zero_c)), side_out.eq(i.count)]
        m.d.comb += [
            to_cells.w_en.eq(written),
            to_cells.w_data.eq(side_cell),
            to_out.w_en.eq(written),
            to_out.w_data.eq(side_out),
        ]
        m.d.comb += [act.i.payload[r].eq(i.rows[r]) for r in range(4 * V)]
        # cell inputs: the activations + c_prev (the cells run in lockstep)
        c_addr, zero_c = to_cells.r_data[:width], to_cells.r_data[width]
        ready = Signal()
        m.d.comb += ready.eq(Cat(*(cell.i.ready for cell in cells)).all())
        gates = act.o.payload
        for k, cell in enumerate(cells):
            port, ci = getattr(self, f"c_r{k}"), cell.i.payload
            m.d.comb += [
                port.addr.eq(c_addr + k),
                cell.i.valid.eq(act.o.valid & to_cells.r_rdy & ready),
                ci.i.eq(gates[4 * k]),
                ci.f.eq(gates[4 * k + 1]),
                ci.g.eq(gates[4 * k + 2]),
                ci.o.eq(gates[4 * k + 3]),
                ci.c_prev.eq(Mux(zero_c, 0, port.data)),
            ]
        m.d.comb += [
            act.o.ready.eq(ready & to_cells.r_rdy),
            to_cells.r_en.eq(act.o.valid & act.o.ready),
        ]
        # outputs: the cells' results with the beat's unit count
        o = self.o.payload
        m.d.comb += [
            self.o.valid.eq(cells[0].o.valid & to_out.r_rdy),
            o.count.eq(to_out.r_data),
            to_out.r_en.eq(self.o.valid & self.o.ready),
        ]
        real = [Signal(name=f"real{k}") for k in range(V)]  # unit k of the beat transferred
        m.d.comb += [r.eq(self.o.valid & self.o.ready & (to_out.r_data > k))
                     for k, r in enumerate(real)]  # fmt: skip
        for k, cell in enumerate(cells):
            m.d.comb += [
                cell.o.ready.eq(self.o.ready & to_out.r_rdy),
                o.c[k].eq(cell.o.payload.c),
                o.m[k].eq(cell.o.payload.m),
                # saturation pulses of the beat transferred on ``o`` (units past count: 0)
                self.sat_c[k].eq(cell.o.payload.sat_c & real[k]),
                self.sat_m[k].eq(cell.o.payload.sat_m & real[k]),
            ]
        return m


def cell_bank_reference(model, beats, cmem, *, saturation: bool = False):
    """What :class:`CellBank` sends for ``beats`` (``(rows, count, c_addr, zero_c)`` each):
    per beat ``count`` results ``(c, m)`` (``(c, m, sat_c, sat_m)`` with ``saturation``: the
    unit's "cell" / "hidden" saturation counts, 0 or 1), with ``cmem`` (a list) holding the
    previous cell states (read, not updated here)."""
    tables, arith = model.tables, CellArithmetic.of(model)
    out = []
    for rows, count, c_addr, zero_c in beats:
        results = []
        for k in range(count):
            i, f, g, o = (int(r) for r in rows[4 * k : 4 * k + 4])
            gates = [tables["sigmoid"].lookup(i), tables["sigmoid"].lookup(f),
                     tables["tanh_gate"].lookup(g), tables["sigmoid"].lookup(o)]  # fmt: skip
            c_prev = 0 if zero_c else int(cmem[c_addr + k])
            counts = {}
            c, mval = arith.update(*gates, c_prev, saturation=counts)
            result = (int(c), int(mval))
            if saturation:
                result += (counts.get("cell", 0), counts.get("hidden", 0))
            results.append(result)
        out.append(results)
    return out
