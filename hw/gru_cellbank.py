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
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from ..quant.gru_golden import GRUCellArithmetic
from .gru_cell import GRUCellDatapath, gru_cell_latency
from .gru_layout import GRU_BLOCKS
from .layout import at_least

__all__ = ["GRUBankAsCellBank", "GRUCellBank", "accelerator_cell_bank", "gru_cell_bank_reference"]

#: Unit beats in flight between the input and the output (ample for the cells' latency).
_SIDEBAND_DEPTH = 32


def _members(cells, in_bits, depth, hidden_bits, addr_names, out_names, read_prefix,
             sat_names) -> dict:  # fmt: skip
    """A cell bank's signature: ``i`` (``rows``, ``count`` and ``addr_names``: the state
    address and its zero flag), ``o`` (``out_names``, each ``V`` hidden codes, and
    ``count``), ``V`` combinational state read ports ``<read_prefix><k>``, and the
    saturation pulses: ``sat_preact`` (``V`` counts 0..3) and ``sat_names`` (``V`` bits
    each)."""
    addr = range(max(2, depth))
    hidden = signed(hidden_bits)
    members = {
        "i": In(stream.Signature(data.StructLayout({
            "rows": data.ArrayLayout(signed(in_bits), 4 * cells), "count": range(cells + 1),
            addr_names[0]: addr, addr_names[1]: 1}))),
        "o": Out(stream.Signature(data.StructLayout(
            {name: data.ArrayLayout(hidden, cells) for name in out_names}
            | {"count": range(cells + 1)}))),
    }  # fmt: skip
    width = Signal(addr).shape().width
    for k in range(cells):
        members[f"{read_prefix}{k}"] = In(ReadPort.Signature(addr_width=width, shape=hidden))
    members["sat_preact"] = Out(data.ArrayLayout(unsigned(2), cells))
    members.update({name: Out(unsigned(cells)) for name in sat_names})
    return members


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
    sat_preact : ``Out(ArrayLayout(unsigned(2), V))``; sat_hn, sat_h : ``Out(unsigned(V))``
        Saturation pulses of the beat transferred on ``o`` (0 in other cycles and for units
        ``k >= count``): element / bit ``k`` counts unit ``k``'s ``pre_r``, ``pre_z``,
        ``pre_n`` codes that did not fit ``preact`` (0..3), its ``hn``, its ``h``: what the
        golden model counts as ``preact``, ``hn``, ``hidden``.

    Timing: ``latency`` = :func:`~.gru_cell.gru_cell_latency` (the cells'); one beat per
    cycle; ``i.ready`` is the cells' registered ``i.ready`` and the count FIFO's room.
    """

    def __init__(self, model, *, cells: int, in_bits: int, h_depth: int):
        self._arith = GRUCellArithmetic.of(model)
        self._V = at_least("cells", cells, 1)
        acc_bits = self._arith.acc.bits
        self._in_bits = at_least("in_bits", in_bits, acc_bits)
        at_least("h_depth", h_depth, 1)
        super().__init__(_members(cells, in_bits, h_depth, self._arith.hidden.bits,
                                  ("h_addr", "zero_h"), ("h",), "h_r",
                                  ("sat_hn", "sat_h")))  # fmt: skip

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
            out = cell.o.payload
            real = Signal(name=f"real{k}")  # unit k of the beat transferred on o
            m.d.comb += [
                cell.o.ready.eq(self.o.ready & to_out.r_rdy),
                o.h[k].eq(out.h),
                real.eq(self.o.valid & self.o.ready & (to_out.r_data > k)),
                self.sat_preact[k].eq(Mux(real, out.sat_preact, 0)),
                self.sat_hn[k].eq(out.sat_hn & real),
                self.sat_h[k].eq(out.sat_h & real),
            ]
        return m


def gru_cell_bank_reference(model, beats, hmem, saturation: dict | None = None):
    """What :class:`GRUCellBank` sends for ``beats`` (``(rows, count, h_addr, zero_h)``
    each): per beat the ``count`` new hidden states, with ``hmem`` (a list) holding the
    previous ones (read, not updated here); the saturations are added to ``saturation``
    (``"preact"``, ``"hn"``, ``"hidden"``: what the pulses sum to)."""
    arith = GRUCellArithmetic.of(model)
    out = []
    for rows, count, h_addr, zero_h in beats:
        units = np.asarray(rows, np.int64)[: 4 * count].reshape(count, 4).T  # r, z, n_x, n_h
        h_prev = [0 if zero_h else int(hmem[h_addr + k]) for k in range(count)]
        h, _ = arith.update_sums(*units, h_prev, saturation)
        out.append([int(v) for v in h])
    return out


class GRUBankAsCellBank(wiring.Component):
    """A :class:`GRUCellBank` behind :class:`~.cellbank.CellBank`'s interface, so that
    :class:`~.accelerator.LSTMAccelerator` joins it as it joins an LSTM's cell bank: the
    state memory is ``cmem`` (words :func:`.plans.state_format`, the ``hidden`` format),
    read through ``c_r<k>`` at ``c_addr``; ``zero_c`` is ``zero_h``; each unit's new ``h``
    leaves as both ``c`` (written back to ``cmem``, the next step's ``h_prev``) and ``m``
    (written to the output buffer, and ``hnbuf`` on the last step). The saturation pulses are
    CellBank's ``sat_c`` (always 0: no cell state) and ``sat_m`` (the GRU's ``sat_h``), with
    the GRU's ``sat_preact`` and ``sat_hn`` beside them.

    Parameters and timing are :class:`GRUCellBank`'s (``c_depth`` its ``h_depth``)."""

    def __init__(self, model, *, cells: int, in_bits: int, c_depth: int):
        self._bank = bank = GRUCellBank(model, cells=cells, in_bits=in_bits, h_depth=c_depth)
        self._V = cells
        super().__init__(_members(cells, in_bits, c_depth, bank.arith.hidden.bits,
                                  ("c_addr", "zero_c"), ("c", "m"), "c_r",
                                  ("sat_hn", "sat_c", "sat_m")))  # fmt: skip

    @property
    def latency(self) -> int:
        """The GRU cell bank's: cycles from a beat taken on ``i`` to its results on ``o``."""
        return self._bank.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank = bank = self._bank
        i, bi, o, bo = self.i.payload, bank.i.payload, self.o.payload, bank.o.payload
        m.d.comb += [bank.i.valid.eq(self.i.valid), self.i.ready.eq(bank.i.ready)]
        for inner, outer in (("rows", "rows"), ("count", "count"), ("h_addr", "c_addr"),
                             ("zero_h", "zero_c")):  # fmt: skip
            m.d.comb += bi[inner].eq(i[outer])
        m.d.comb += [self.o.valid.eq(bank.o.valid), bank.o.ready.eq(self.o.ready),
                     o.count.eq(bo.count)]  # fmt: skip
        m.d.comb += [self.sat_preact.eq(bank.sat_preact), self.sat_hn.eq(bank.sat_hn),
                     self.sat_m.eq(bank.sat_h), self.sat_c.eq(0)]  # fmt: skip
        for k in range(self._V):
            port, inner = getattr(self, f"c_r{k}"), getattr(bank, f"h_r{k}")
            m.d.comb += [port.addr.eq(inner.addr), inner.data.eq(port.data),
                         o.c[k].eq(bo.h[k]), o.m[k].eq(bo.h[k])]  # fmt: skip
        return m

    @property
    def bank(self) -> GRUCellBank:
        """The :class:`GRUCellBank` inside (its ports renamed to a ``CellBank``'s)."""
        return self._bank


def accelerator_cell_bank(model, *, cells: int, in_bits: int, c_depth: int):
    """The cell bank :class:`~.accelerator.LSTMAccelerator` joins for ``model``: a
    :class:`~.cellbank.CellBank` for an LSTM, a :class:`GRUBankAsCellBank` for a GRU (the
    same ports)."""
    if model.cell == "gru":
        return GRUBankAsCellBank(model, cells=cells, in_bits=in_bits, c_depth=c_depth)
    from .cellbank import CellBank

    return CellBank(model, cells=cells, in_bits=in_bits, c_depth=c_depth)
