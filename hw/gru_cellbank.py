"""V GRU cells in lockstep: hidden units' MVU rows (:mod:`.gru_layout`) into new hidden states.

:class:`GRUCellBank` is the GRU's counterpart of :class:`~.cellbank.CellBank`: it takes the
same beats from the gate regrouper (up to ``V`` units of four rows each, a count, a state
address), with a GRU unit's four exact sums ``r, z, n_x, n_h`` where an LSTM unit has its
``i, f, g, o`` pre-activations, and reads each unit's ``h_prev`` from the GRU's state memory
(the role ``cmem`` plays for an LSTM) where ``CellBank`` reads ``c_prev``. ``V``
:class:`~.gru_cell.GRUCellDatapath` s (each with its own sigmoid and tanh lookups) run in
lockstep.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from ..quant.gru_golden import GRUCellArithmetic
from .gru_cell import GRUCellDatapath, gru_cell_latency
from .gru_layout import GRU_BLOCKS
from .layout import at_least

__all__ = ["GRUCellBank", "gru_cell_bank_reference"]

#: Unit beats in flight between the input and the output (ample for the cells' latency).
_SIDEBAND_DEPTH = 32


class GRUCellBank(wiring.Component):
    """``V`` GRU cells, one beat of up to ``V`` hidden units per cycle.

    Parameters
    ----------
    model : QuantizedModel
        A GRU qmodel: its cell arithmetic (:meth:`GRUCellArithmetic.of`).
    cells : int
        ``V``, at least 1.
    in_bits : int
        Width of a row (the MVU's results for the GRU rows, :attr:`GRUGateRows.out_bits`):
        at least the accumulator's width, since the ``n_x`` rows are accumulator values.
    h_depth : int
        Words of the state memory (its read ports' address range), at least 1.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"rows": ArrayLayout(signed(in_bits), 4V),
    "count": range(V + 1), "h_addr": ..., "zero_h": 1})))``
        ``count`` units, unit ``k`` in ``rows[4k .. 4k + 3]`` (its exact sums ``r``, ``z``,
        ``n_x``, ``n_h``, accumulator codes sign-extended to ``in_bits``); its previous
        hidden state is ``hmem[h_addr + k]``, or 0 when ``zero_h``.
    o : ``Out(stream.Signature(StructLayout({"h": ArrayLayout(signed(hidden), V),
    "count": range(V + 1)})))``
        Unit ``k``'s new hidden state (``GRUCellArithmetic.update_sums``); elements past
        ``count`` undefined.
    h_r<k> : ``In(ReadPort.Signature(...))``, ``k`` in ``0 .. V-1``
        Combinational read ports of the state memory (``en`` unused), read in the cycle the
        beat is taken on ``i``.

    Timing: ``latency`` = :func:`~.gru_cell.gru_cell_latency` (the cells'); one beat per
    cycle; ``i.ready`` is the cells' registered ``i.ready`` and the count FIFO's room.
    """

    def __init__(self, model, *, cells: int, in_bits: int, h_depth: int):
        self._arith = GRUCellArithmetic.of(model)
        self._V = at_least("cells", cells, 1)
        acc_bits = self._arith.acc.bits
        self._in_bits = at_least("in_bits", in_bits, acc_bits)
        at_least("h_depth", h_depth, 1)
        hidden = self._arith.hidden
        addr = range(max(2, h_depth))
        self._addr_width = Signal(addr).shape().width
        members = {
            "i": In(stream.Signature(data.StructLayout({
                "rows": data.ArrayLayout(signed(in_bits), 4 * cells),
                "count": range(cells + 1), "h_addr": addr, "zero_h": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "h": data.ArrayLayout(signed(hidden.bits), cells),
                "count": range(cells + 1)}))),
        }  # fmt: skip
        for k in range(cells):
            members[f"h_r{k}"] = In(
                ReadPort.Signature(addr_width=self._addr_width, shape=signed(hidden.bits))
            )
        super().__init__(members)

    @property
    def arith(self) -> GRUCellArithmetic:
        """The cell arithmetic of every unit."""
        return self._arith

    @property
    def cells(self) -> int:
        """``V``."""
        return self._V

    @property
    def latency(self) -> int:
        """Cycles from a beat taken on ``i`` to its results valid on ``o``: the cells'."""
        return gru_cell_latency(self._arith.sigmoid, self._arith.tanh_gate)

    def elaborate(self, platform):
        m = Module()
        a, V = self._arith, self._V
        cells = [GRUCellDatapath(a) for _ in range(V)]
        for k, cell in enumerate(cells):
            m.submodules[f"cell{k}" if V > 1 else "cell"] = cell
        i = self.i.payload
        count_bits = len(i.count)
        m.submodules.sideband_out = to_out = SyncFIFOBuffered(width=count_bits,
                                                              depth=_SIDEBAND_DEPTH)  # fmt: skip
        ready = Signal()
        m.d.comb += [
            ready.eq(Cat(*(cell.i.ready for cell in cells)).all() & to_out.w_rdy),
            self.i.ready.eq(ready),
            to_out.w_en.eq(self.i.valid & ready),
            to_out.w_data.eq(i.count),
        ]
        for k, cell in enumerate(cells):
            port, ci = getattr(self, f"h_r{k}"), cell.i.payload
            m.d.comb += [
                port.addr.eq(i.h_addr + k),
                cell.i.valid.eq(self.i.valid & ready),
                ci.h_prev.eq(Mux(i.zero_h, 0, port.data)),
            ]
            m.d.comb += [  # the sums fit the accumulator: its low bits are the code
                getattr(ci, name).eq(i.rows[4 * k + q][: a.acc.bits].as_signed())
                for q, name in enumerate(GRU_BLOCKS)
            ]
        o = self.o.payload
        m.d.comb += [
            self.o.valid.eq(cells[0].o.valid & to_out.r_rdy),
            o.count.eq(to_out.r_data),
            to_out.r_en.eq(self.o.valid & self.o.ready),
        ]
        for k, cell in enumerate(cells):
            m.d.comb += [cell.o.ready.eq(self.o.ready & to_out.r_rdy), o.h[k].eq(cell.o.payload.h)]
        return m


def gru_cell_bank_reference(model, beats, hmem):
    """What :class:`GRUCellBank` sends for ``beats`` (``(rows, count, h_addr, zero_h)``
    each): per beat the ``count`` new hidden states, with ``hmem`` (a list) holding the
    previous ones (read, not updated here)."""
    arith = GRUCellArithmetic.of(model)
    out = []
    for rows, count, h_addr, zero_h in beats:
        units = np.asarray(rows, np.int64)[: 4 * count].reshape(count, 4).T  # r, z, n_x, n_h
        h_prev = [0 if zero_h else int(hmem[h_addr + k]) for k in range(count)]
        h, _ = arith.update_sums(*units, h_prev)
        out.append([int(v) for v in h])
    return out
