"""The gate regrouper: matrix-vector results, P rows at a time, into hidden units or rows.

:class:`GateRegrouper` sits behind the :class:`~.mvu.MatrixVectorUnit` of
:class:`~.accelerator.LSTMAccelerator`. A ``gates`` item's rows are unit-major (``i_j, f_j,
g_j, o_j``, ``docs/memory.md``), so every 4 rows are one hidden unit, which may straddle two
row groups; a ``proj`` or ``head`` item's rows leave one by one. The padding rows of an
item's last row group (``groups * P - rows`` of them) are dropped.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layout import at_least
from .schedule import KIND_GATES, KIND_HEAD, KIND_PROJ

__all__ = ["GateRegrouper", "emitter_cycles", "regroup_reference"]


def emitter_cycles(kind: str, lanes: int, rows: int, cells: int = 1) -> int:
    """Cycles the regrouper needs to pass on one row group's results, ``rows`` of its
    ``lanes`` rows being real (the others are padding, dropped with the item's last unit or
    row): a ``gates`` group completes at most ``u = ceil(rows / 4)`` hidden units (a full
    group ``ceil(lanes / 4)``, an item's last group exactly ``ceil(rows / 4)``, since the
    gate rows of a matrix are a whole number of units), which leave ``cells`` at a time:
    ``ceil(u / cells)`` cycles; a ``proj`` or ``head`` group leaves one row per cycle,
    ``rows`` of them. The fetch stage spaces the last beats of consecutive groups by at least
    this much (see :mod:`.cycles`)."""
    at_least("cells", cells, 1)
    if kind == "gates":
        units = -(-rows // 4)
        return -(-units // cells)
    if kind in ("proj", "head"):
        return rows
    raise ValueError(f"kind must be 'gates', 'proj' or 'head', not {kind!r}")


class GateRegrouper(wiring.Component):
    """Regroups row groups of ``lanes`` results into hidden units (gates) or single rows.

    Parameters
    ----------
    lanes : int
        ``P``, rows per input beat.
    hidden_size : int
        ``H``: a ``gates`` item is ``4H`` rows (``H`` units) in ``ceil(4H / P)`` beats.
    proj_rows, head_rows : int
        Rows of a ``proj`` / ``head`` item (0: the model has none).
    bits : int
        Width of a result (signed).
    cells : int
        ``V``, hidden units per ``unit`` beat (the parallel activation and cell units
        behind it), 1 .. ``hidden_size``.

    Members
    -------
    kind : ``In(range(3))``
        ``KIND_*`` of the current item (the schedule position of the results arriving); it
        must change only after ``item_end``.
    enable : ``In(1)``
        Nothing leaves in the cycle after a cycle it was low (it is registered: a flip-flop,
        not a comparator, heads the departure logic); beats are still taken while they fit.
    i : ``In(stream.Signature(ArrayLayout(signed(bits), P)))``
        One row group: the item's rows ``g*P .. g*P + P - 1`` (padding past its last row).
    unit : ``Out(stream.Signature(StructLayout({"rows": ArrayLayout(signed(bits), 4 * V),
    "index": ..., "count": range(V + 1)})))``
        Gates: ``count`` (1 .. V) consecutive hidden units ``index .. index + count - 1``;
        unit ``index + k`` in ``rows[4k .. 4k + 3]`` (``i, f, g, o``, from flip-flops), the
        rows past ``4 * count`` undefined.
    row : ``Out(stream.Signature(StructLayout({"data": signed(bits), "index": ...})))``
        Projection / head: row ``index`` of the item (from a flip-flop).
    item_end : ``Out(1)``
        The item's last unit or row is transferred in this cycle.

    Timing: a beat taken in cycle ``c`` makes its first units or row valid in cycle ``c + 1``
    (``latency`` 1); at most one ``unit`` beat (up to ``V`` units: every complete unit
    buffered, at most ``V``, never past the item's last unit) or one row leaves per cycle. A
    beat is taken (``i.ready``) when its ``P`` rows fit behind the rows still buffered after
    this cycle's departure: the buffer holds ``P + 4 - gcd(P, 4)`` rows, so a beat is taken
    only once every complete unit before it has left, and the units of one beat leave in
    ``ceil(u / V)`` beats (``u`` the units it completes; :func:`regroup_reference` gives the
    grouping). A group of ``r`` real rows is passed on in :func:`emitter_cycles` cycles when
    the outputs are ready, so beats whose last rows are at least that far apart never wait.
    """

    #: Cycles from a beat taken to its first unit or row valid.
    latency = 1

    def __init__(self, *, lanes: int, hidden_size: int, proj_rows: int = 0, head_rows: int = 0,
                 bits: int, cells: int = 1):  # fmt: skip
        self._P = at_least("lanes", lanes, 1)
        self._H = at_least("hidden_size", hidden_size, 1)
        self._proj_rows = at_least("proj_rows", proj_rows, 0)
        self._head_rows = at_least("head_rows", head_rows, 0)
        at_least("bits", bits, 1)
        if lanes > 4 * hidden_size:
            rows = 4 * hidden_size
            raise ValueError(f"lanes must be in 1..{rows} (4*hidden_size), not {lanes!r}")
        if not isinstance(cells, int) or isinstance(cells, bool) or not 1 <= cells <= hidden_size:
            raise ValueError(f"cells must be in 1..{hidden_size} (hidden_size), not {cells!r}")
        self._V = cells
        index = range(max(hidden_size, proj_rows, head_rows, 2))
        self._unit_layout = data.StructLayout(
            {"rows": data.ArrayLayout(signed(bits), 4 * cells), "index": index,
             "count": range(cells + 1)}
        )  # fmt: skip
        self._row_layout = data.StructLayout({"data": signed(bits), "index": index})
        super().__init__(
            {
                "kind": In(range(3)),
                "enable": In(1),
                "i": In(stream.Signature(data.ArrayLayout(signed(bits), lanes))),
                "unit": Out(stream.Signature(self._unit_layout)),
                "row": Out(stream.Signature(self._row_layout)),
                "item_end": Out(1),
            }
        )

    @property
    def cells(self) -> int:
        return self._V

    def _pad(self, rows: int) -> int:
        """Padding rows of an item of ``rows`` rows."""
        return -(-rows // self._P) * self._P - rows

    def elaborate(self, platform):
        m = Module()
        P, H, V = self._P, self._H, self._V
        bits = self.i.payload.shape().elem_shape.width
        # rowbuf[0 .. cap-1] holds the rows not yet passed on, oldest first. A group may end
        # inside a unit: up to ``spare`` rows of a partly received unit wait for the next.
        spare = 4 - math.gcd(P, 4)
        cap = P + spare
        rowbuf = [Signal(signed(bits), name=f"row{e}") for e in range(cap)]
        # Timing: every decision of a cycle is plain logic on flip-flops, no carry chain. The
        # row count is kept as a thermometer code (``full[v - 1]``: at least ``v`` rows
        # buffered), so "rows kept after a departure of r rows >= v" is ``full[v + r - 1]``.
        full = [Signal(name=f"full{v}") for v in range(1, cap + 1)]

        def at_least(v):  # rows buffered >= v
            return _thermometer_at_least(full, v)

        j = Signal(range(max(H, self._proj_rows, self._head_rows, 1) + 1))  # unit/row index
        row_kinds = {
            code: n for code, n in ((KIND_PROJ, self._proj_rows), (KIND_HEAD, self._head_rows)) if n
        }
        # units of the gates item not passed on yet: ``left``, with ``ge[k]``/``eq[k]`` (at
        # least / exactly k left) registered beside it
        left = Signal(range(H + 1), init=H)
        ge = [Signal(name=f"left_ge{k}", init=int(H >= k)) for k in range(1, V + 1)]
        eq = [Signal(name=f"left_eq{k}", init=int(H == k)) for k in range(1, V + 1)]
        # ``can[k]``: k units can leave (k complete units buffered, k left in the item);
        # monotone in k, so exactly n = k leave when ``can[k] & ~can[k + 1]``
        can = [Signal(name=f"can{k}") for k in range(1, V + 2)]
        m.d.comb += [can[k - 1].eq(at_least(4 * k) & ge[k - 1]) for k in range(1, V + 1)]
        m.d.comb += can[V].eq(0)
        n_is = [None] + [Signal(name=f"n_is{k}") for k in range(1, V + 1)]
        m.d.comb += [n_is[k].eq(can[k - 1] & ~can[k]) for k in range(1, V + 1)]
        n = Signal(range(V + 1))
        for k in range(1, V + 1):
            with m.If(n_is[k]):
                m.d.comb += n.eq(k)
        last_unit = Signal()  # this unit beat takes the item's last units
        m.d.comb += last_unit.eq(Cat(*(n_is[k] & eq[k - 1] for k in range(1, V + 1))).any())
        # ``row_last[code]``: the row at ``j`` is the last of a ``code`` item (registered)
        row_last = {code: Signal(name=f"row_last{code}", init=int(rows == 1))
                    for code, rows in row_kinds.items()}  # fmt: skip
        last_row = Signal(name="last_row")
        # With every row item at least 2 rows long, ``last_row`` is a register of its own
        # (timing: it selects what leaves, the head of the ready logic): cleared with an
        # item's end, set when the row before the item's last one leaves (``kind`` changes
        # only after an item's end, so the kind it was computed for stays).
        self._last_row_reg = bool(row_kinds) and min(row_kinds.values()) >= 2
        if not self._last_row_reg:
            m.d.comb += last_row.eq(Cat(*((self.kind == c) & f for c, f in row_last.items())).any())

        unit_fire, row_fire = Signal(), Signal()
        enabled = Signal()  # ``enable`` one cycle late: a flip-flop at the head of the logic
        m.d.sync += enabled.eq(self.enable)
        # ``go``: a unit beat can leave and the regrouper is enabled, one flip-flop (at least
        # one unit left, registered with ``enable``) beside the buffered-rows flag
        ge1_next, ge1_enabled, go = Signal(), Signal(name="left_ge1_enabled"), Signal()
        m.d.comb += ge1_next.eq(ge[0])
        with m.If(self.item_end):
            m.d.comb += ge1_next.eq(H >= 1)
        with m.Elif(unit_fire):
            m.d.comb += ge1_next.eq(
                Cat(*(n_is[k] & _at_least(left, 1 + k, H) for k in range(1, V + 1))).any()
            )
        m.d.sync += ge1_enabled.eq(ge1_next & self.enable)
        m.d.comb += go.eq(at_least(4) & ge1_enabled)
        m.d.comb += [
            self.unit.valid.eq(go & (self.kind == KIND_GATES)),
            self.row.valid.eq(at_least(1) & (self.kind != KIND_GATES) & enabled),
            unit_fire.eq(self.unit.valid & self.unit.ready),
            row_fire.eq(self.row.valid & self.row.ready),
            self.item_end.eq((unit_fire & last_unit) | (row_fire & last_row)),
            self.unit.payload.index.eq(j),
            self.unit.payload.count.eq(n),
            self.row.payload.index.eq(j),
            self.row.payload.data.eq(rowbuf[0]),
        ]
        # the next units are always rowbuf[0 ..] (the buffer shifts down as rows leave)
        m.d.comb += [self.unit.payload.rows[r].eq(rowbuf[r]) for r in range(min(4 * V, cap))]
        self._indices(m, j, left, ge, eq, n_is, unit_fire, row_fire, row_last)
        if self._last_row_reg:
            with m.If(self.item_end):
                m.d.sync += last_row.eq(0)
            with m.Elif(row_fire):
                m.d.sync += last_row.eq(
                    Cat(
                        *((self.kind == c) & _equals(j, rows - 2) for c, rows in row_kinds.items())
                    ).any()
                )
        self._departures(
            m, rowbuf, full, n_is, eq, last_row, row_kinds, row_last, unit_fire, row_fire, spare
        )
        return m

    def _departures(
        self, m, rowbuf, full, n_is, eq, last_row, row_kinds, row_last, unit_fire, row_fire, spare
    ):
        """The row buffer's next contents and count: the rows a fired unit beat or row takes
        away, the rows kept, and a taken beat's rows landing behind them (``i.ready`` while
        the kept rows leave room for a whole beat)."""
        P, H, V = self._P, self._H, self._V
        cap = len(rowbuf)
        bits = len(rowbuf[0])

        def at_least(v):  # rows buffered >= v
            return _thermometer_at_least(full, v)

        # What leaves if a unit beat / a row fires, ``[(rows, condition)]`` (the condition
        # from flip-flops and the kind; an item's last unit or row takes its group's padding
        # rows with it), and ``kept[v]``: at least v rows stay after this cycle's departure.
        gate_pad = self._pad(4 * H)
        # (with V = 1 a unit beat fires only with one unit complete and left: ``n_is[1]``
        # holds, and saying so keeps those flags out of the logic)
        n_fired = [None, Const(1, 1)] if V == 1 else n_is
        unit_out = [(4 * k + (gate_pad if end else 0),
                     n_fired[k] & (eq[k - 1] if end else ~eq[k - 1]))
                    for k in range(1, V + 1) for end in ((0, 1) if gate_pad else (0,))]  # fmt: skip
        if not gate_pad:
            unit_out = [(4 * k, n_fired[k]) for k in range(1, V + 1)]
        if self._last_row_reg:  # (with one row kind, a row fires only in its items)
            row_out = [(1, ~last_row)] + [
                (1 + self._pad(rows), last_row & (len(row_kinds) == 1 or self.kind == code))
                for code, rows in row_kinds.items()
            ]
        else:
            row_out = [(1, ~last_row)] + [
                (1 + self._pad(rows), (self.kind == code) & row_last[code])
                for code, rows in row_kinds.items()
            ]
        kept = [None] + [Signal(name=f"kept{v}") for v in range(1, cap + 1)]
        for v in range(1, cap + 1):
            if_unit = Cat(*(cond & at_least(v + out) for out, cond in unit_out)).any()
            if_row = Cat(*(cond & at_least(v + out) for out, cond in row_out)).any()
            m.d.comb += kept[v].eq(Mux(unit_fire, if_unit, Mux(row_fire, if_row, at_least(v))))

        def kept_at_least(v):
            return _thermometer_at_least(kept[1:], v)

        take = Signal()
        m.d.comb += [self.i.ready.eq(~kept_at_least(spare + 1)),
                     take.eq(self.i.valid & self.i.ready)]  # fmt: skip
        # rows after this cycle: kept + P * take
        m.d.sync += [
            full[v - 1].eq(kept_at_least(v) | (take & kept_at_least(v - P)))
            for v in range(1, cap + 1)
        ]
        # Each row loads when a beat is taken or a unit/row fires: rows past the ones kept are
        # don't-cares, so the shifts need no further condition (``fire`` is the enable). An
        # item's last unit or row leaves with its padding rows and no row behind them when
        # those rows exceed ``spare`` (no beat is taken while they are buffered), so the
        # shift then ignores the padding: a unit's last rows and padding are at least 4 >
        # spare; a row item's ``1 + pad`` may not be.
        gates, fire = Signal(), Signal()
        m.d.comb += [fire.eq(unit_fire | row_fire), gates.eq(self.kind == KIND_GATES)]
        unit_shift = [(4 * k, n_fired[k]) for k in range(1, V + 1)]
        row_shift = [(1, ~last_row)] + [(out, cond) for out, cond in row_out[1:] if out <= spare]
        for k in range(cap):
            shifted = {}
            for which, outs in (("unit", unit_shift), ("row", row_shift)):
                value = Signal(signed(bits), name=f"row{k}_{which}_shift")
                m.d.comb += value.eq(rowbuf[min(k + outs[0][0], cap - 1)])
                for out, cond in outs[1:]:
                    with m.If(cond):
                        m.d.comb += value.eq(rowbuf[min(k + out, cap - 1)])
                shifted[which] = value
            offsets = range(max(0, k - P + 1), min(k, spare) + 1)
            # (below ``spare`` a taken beat lands behind the kept rows, which may include k)
            into = take if k >= spare else take & ~kept_at_least(k + 1)
            with m.If(into):
                if len(offsets) == 1:
                    m.d.sync += rowbuf[k].eq(self.i.payload[k - offsets[0]])
                else:
                    for off in offsets:  # exactly ``off`` rows kept
                        with m.If(kept_at_least(off) & ~kept_at_least(off + 1)):
                            m.d.sync += rowbuf[k].eq(self.i.payload[k - off])
            with m.Elif(fire):
                # (a unit beat fires only in a gates item, a row only in the others)
                m.d.sync += rowbuf[k].eq(Mux(gates, shifted["unit"], shifted["row"]))

    def _indices(self, m, j, left, ge, eq, n_is, unit_fire, row_fire, row_last):
        """The item's unit/row index ``j`` and its units left (``left``, ``ge``, ``eq``):
        each candidate next value is computed from flip-flops, the fired beat selects one."""
        H, V = self._H, self._V
        with m.If(self.item_end):
            m.d.sync += j.eq(0)
            m.d.sync += left.eq(H)
            m.d.sync += [flag.eq(H >= k) for k, flag in enumerate(ge, 1)]
            m.d.sync += [flag.eq(H == k) for k, flag in enumerate(eq, 1)]
            m.d.sync += [flag.eq(self._rows_of(code) == 1) for code, flag in row_last.items()]
        with m.Elif(unit_fire):
            for k in range(1, V + 1):
                with m.If(n_is[k]):  # k units leave: ``left - k`` left
                    m.d.sync += [j.eq(j + k), left.eq(left - k)]
                    m.d.sync += [f.eq(_at_least(left, kk + k, H)) for kk, f in enumerate(ge, 1)]
                    m.d.sync += [f.eq(_equals(left, kk + k)) for kk, f in enumerate(eq, 1)]
        with m.Elif(row_fire):
            m.d.sync += j.eq(j + 1)
            m.d.sync += [f.eq(_equals(j, self._rows_of(code) - 2)) for code, f in row_last.items()]

    def _rows_of(self, code: int) -> int:
        return self._proj_rows if code == KIND_PROJ else self._head_rows


def _thermometer_at_least(flags, v: int):
    """``count >= v`` of a count kept as a thermometer code (``flags[k - 1]``: ``count >= k``):
    constant 1 for ``v <= 0`` and 0 past the code's length."""
    return 1 if v <= 0 else (flags[v - 1] if v <= len(flags) else 0)


def _equals(value, constant: int):
    """``value == constant`` as plain logic (0 when the constant is out of range)."""
    if not 0 <= constant < 1 << len(value):
        return Const(0, 1)
    return value == constant


def _at_least(value, constant: int, top: int):
    """``value >= constant`` for ``value`` in ``0 .. top``, as a decoder (an OR of
    equalities: plain logic that synthesis maps to LUTs, no carry chain)."""
    if constant <= 0:
        return Const(1, 1)
    if constant > top:
        return Const(0, 1)
    return Cat(*(value == v for v in range(constant, top + 1))).any()


def regroup_reference(items, *, hidden_size: int, proj_rows: int = 0, head_rows: int = 0,
                      lanes: int = 1, cells: int = 1):  # fmt: skip
    """What :class:`GateRegrouper` passes on for ``items``, a list of ``(kind, rows)`` with
    ``rows`` an item's real result rows (``4H`` unit-major for ``KIND_GATES``): a list of
    ``("unit", index, rows)`` (``rows`` the ``4 * count`` rows of units ``index ..``, the
    units completed by one row group of ``lanes`` rows, ``cells`` at a time) and
    ``("row", index, value)``, in order. ``lanes`` matters only when ``cells > 1``."""
    out = []
    for kind, rows in items:
        rows = [int(r) for r in rows]
        if kind == KIND_GATES:
            if len(rows) != 4 * hidden_size:
                raise ValueError(f"a gates item must have {4 * hidden_size} rows, not {len(rows)}")
            # unit j is complete with its last row 4j + 3, in row group (4j + 3) // lanes
            group_of = [(4 * j + 3) // lanes for j in range(hidden_size)]
            j = 0
            while j < hidden_size:
                count = 1
                while (count < cells and j + count < hidden_size
                       and group_of[j + count] == group_of[j]):  # fmt: skip
                    count += 1
                out.append(("unit", j, tuple(rows[4 * j : 4 * (j + count)])))
                j += count
        else:
            want = proj_rows if kind == KIND_PROJ else head_rows
            if len(rows) != want:
                raise ValueError(f"a kind {kind} item must have {want} rows, not {len(rows)}")
            out += [("row", j, value) for j, value in enumerate(rows)]
    return out
