"""The write-back: cell results and single rows into the data buffers, in schedule order.

:class:`WriteBack` sits at the end of :class:`~.accelerator.LSTMAccelerator`'s datapath. It
follows the schedule with its own :class:`~.schedule.ScheduleCursor` (its position is what the
fetch stage's dependencies wait for) and computes every write address from it: the results
arrive in schedule order, so no addresses travel with the data.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from .plans import addr_width, buffer_plan
from .schedule import KIND_HEAD, KIND_PROJ, Schedule, ScheduleCursor

__all__ = ["WriteBack", "write_back_reference"]


class WriteBack(wiring.Component):
    """Stores the cells' ``c`` and ``m`` and the projection/head rows; tracks the position.

    Parameters
    ----------
    model : QuantizedModel
        Geometry and formats.
    schedule : Schedule
    max_seq_len : int
    cells : int
        ``V``: units per ``units`` beat.
    row_bits : int
        Width of a ``rows`` element (the regrouper's).

    Members
    -------
    T, restart : ``In``
        The sequence length and the restart of the schedule (the cursor's inputs).
    p, s, sub, done : ``Out``
        The position: every item before it is written (``done``: all of them).
    written : ``Out``
        Units (``gates``) or rows (``proj``, ``head``) of the item at the position written so
        far, a register: they are written in increasing index order, so the fetch stage may
        read unit ``u`` of the item being written once ``written > u``.
    units : ``In(stream.Signature(StructLayout({"c": ArrayLayout(signed(cell), V), "m":
    ArrayLayout(signed(hidden), V), "count": range(V + 1)})))``
        The next ``count`` hidden units of the current ``gates`` item (unit ``j + k`` in
        element ``k``; ``j`` counts the item's units so far). Always ready.
    rows : ``In(stream.Signature(signed(row_bits)))``
        The next row of the current ``proj`` or ``head`` item. Always ready.
    c0 : ``Out(WritePort.Signature(...))``
        ``c0`` writes (the input loader's), passed to ``cmem_w0`` in cycles without a
        unit write.
    cmem_w<k>, obuf<b>_w<k>, mbuf_w<k>, hnbuf_w<k> : ``In(WritePort.Signature(...))``
        ``k`` in ``0 .. V-1`` for the buffers the cells write (``cmem``, and ``obuf*``,
        ``hnbuf`` without a projection, ``mbuf`` with one), only ``k = 0`` for the others.
    headbuf_w : ``In(WritePort.Signature(...))``, with a head.

    Writes (unit ``u = j + k`` of pass ``(layer, d)`` at time ``t``): ``c`` to ``cmem[(layer *
    D + d) * H + u]``; ``m`` to ``mbuf[u]`` with a projection, else to ``obuf[layer % 2][t *
    D * H_out + d * H_out + u]`` and, on the pass's last step, ``hnbuf[layer * D * H_out + d *
    H_out + u]``. A projection row ``r`` goes where a unit's ``m`` would without one; a head
    row ``r`` to ``headbuf[t * out + r]`` (``all``) or ``headbuf[r]`` (``last``). An item's
    last unit or row advances the position.

    Timing: ``latency`` 0 (a beat is written at its transfer's clock edge, and the position
    moves at the same edge); one ``units`` beat or one row per cycle.
    """

    #: Cycles from a transfer to its write (at the same edge).
    latency = 0

    def __init__(self, model, schedule: Schedule, *, max_seq_len: int, cells: int,
                 row_bits: int, with_states: bool):  # fmt: skip
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, not {schedule!r}")
        self._model, self._schedule, self._V, self._Tmax = model, schedule, cells, max_seq_len
        self._cursor = ScheduleCursor(schedule, max_seq_len)  # validates max_seq_len
        f, q = model.formats, model
        V = cells
        plan = buffer_plan(model, max_seq_len, initial_state=False, with_states=with_states)
        c_bits, h_bits = plan["cmem"][0], f["hidden"].bits  # plans.state_format
        # write ports: V on the buffers the cells write, 1 on those single rows write
        by_cells = {"cmem", "mbuf"} if q.proj_size else {"cmem", "obuf0", "obuf1", "hnbuf"}
        self._buffers = {
            name: (*plan[name], V if name in by_cells else 1)
            for name in ("cmem", "obuf0", "obuf1", "mbuf", "hnbuf", "headbuf")
            if name in plan
        }  # name: (bits, depth, write ports)
        buffers = self._buffers
        cur = self._cursor.signature.members
        units = data.StructLayout({"c": data.ArrayLayout(signed(c_bits), V),
                                   "m": data.ArrayLayout(signed(h_bits), V),
                                   "count": range(V + 1)})  # fmt: skip
        members = {
            "T": In(range(max_seq_len + 1)),
            "restart": In(1),
            "p": Out(cur["p"].shape),
            "s": Out(cur["s"].shape),
            "sub": Out(cur["sub"].shape),
            "done": Out(1),
            "written": Out(range(max(q.hidden_size, q.output_size, self._head_rows, 1) + 1)),
            "units": In(stream.Signature(units)),
            "rows": In(stream.Signature(signed(row_bits))),
            "c0": Out(
                WritePort.Signature(addr_width=addr_width(plan["cmem"][1]), shape=signed(c_bits))
            ),
        }
        for name, (bits, depth, count) in buffers.items():
            for k in range(count):
                members[f"{name}_w{k}"] = In(
                    WritePort.Signature(addr_width=addr_width(depth), shape=signed(bits))
                )
        super().__init__(members)

    @property
    def buffers(self) -> dict[str, tuple[int, int, int]]:
        """The buffers written: ``{name: (bits, depth, write ports)}``."""
        return dict(self._buffers)

    def ports(self, name: str) -> list:
        """The write port members of buffer ``name``."""
        return [getattr(self, f"{name}_w{k}") for k in range(self._buffers[name][2])]

    def elaborate(self, platform):
        m = Module()
        q = self._model
        H, Ho, D = q.hidden_size, q.output_size, q.num_directions
        DHo = D * Ho
        m.submodules.cursor = cur = self._cursor
        m.d.comb += [cur.T.eq(self.T), cur.restart.eq(self.restart), self.done.eq(cur.done),
                     self.p.eq(cur.p), self.s.eq(cur.s), self.sub.eq(cur.sub)]  # fmt: skip
        j = Signal(range(max(H, Ho, self._head_rows, 1) + 1))  # units or rows of the item so far
        m.d.comb += self.written.eq(j)
        unit_fire, row_fire, item_end = Signal(), Signal(), Signal()
        count = self.units.payload.count
        m.d.comb += [
            self.units.ready.eq(1),
            self.rows.ready.eq(1),
            unit_fire.eq(self.units.valid),
            row_fire.eq(self.rows.valid),
            # (as comparisons of j with constants: no adder before the cursor's advance)
            item_end.eq((unit_fire & Cat(*[(count == k) & (j == H - k)
                                           for k in range(1, self._V + 1)]).any())
                        | (row_fire & Mux(cur.kind == KIND_PROJ, j == Ho - 1,
                                          j == max(self._head_rows, 1) - 1))),
            cur.advance.eq(item_end),
        ]  # fmt: skip
        with m.If(item_end):
            m.d.sync += j.eq(0)
        with m.Elif(unit_fire):
            m.d.sync += j.eq(j + count)
        with m.Elif(row_fire):
            m.d.sync += j.eq(j + 1)
        out_base = Signal(range(max(2, self._Tmax * DHo + Ho + 1)))  # obuf word of unit/row 0
        hn_base = Signal(range(max(2, q.num_layers * DHo + Ho + 1)))
        c_base = Signal(range(max(2, q.num_layers * D * H + H + 1)))
        m.d.comb += [
            out_base.eq(cur.t * DHo + cur.direction * Ho + j),
            hn_base.eq(cur.layer * DHo + cur.direction * Ho + j),
            c_base.eq((cur.layer * D + cur.direction) * H + j),
        ]
        self._units(m, cur, unit_fire, j, out_base, hn_base, c_base)
        self._rows(m, cur, row_fire, j, out_base, hn_base)
        return m

    @property
    def _head_rows(self) -> int:
        return self._model.head.out_features if self._model.head is not None else 0

    def _store(self, m, port, addr, value, enable):
        m.d.comb += [port.addr.eq(addr), port.data.eq(value), port.en.eq(enable)]

    def _units(self, m, cur, fire, j, out_base, hn_base, c_base):
        """A ``units`` beat: ``c`` to ``cmem``, ``m`` to ``mbuf`` or ``obuf``/``hnbuf``."""
        proj, units = bool(self._model.proj_size), self.units.payload
        c_ports = self.ports("cmem")
        with m.If(fire):
            for k in range(self._V):  # unit j + k, written when k < count
                real = fire & (units.count > k)
                self._store(m, c_ports[k], c_base + k, units.c[k], real)
                if proj:
                    self._store(m, self.ports("mbuf")[k], j + k, units.m[k], real)
                    continue
                for bank in range(min(self._model.num_layers, 2)):
                    port = self.ports(f"obuf{bank}")[k]
                    self._store(m, port, out_base + k, units.m[k], real & (cur.layer[0] == bank))
                if "hnbuf" in self._buffers:
                    port = self.ports("hnbuf")[k]
                    self._store(m, port, hn_base + k, units.m[k], real & cur.last_step)
        with m.Elif(self.c0.en):  # c0 (LOAD phase: nothing is written back then)
            self._store(m, c_ports[0], self.c0.addr, self.c0.data, 1)

    def _rows(self, m, cur, fire, j, out_base, hn_base):
        """A projection row to ``obuf``/``hnbuf``, a head row to ``headbuf``."""
        value = self.rows.payload
        if self._model.proj_size:
            with m.If(fire & (cur.kind == KIND_PROJ)):
                for bank in range(min(self._model.num_layers, 2)):
                    port = self.ports(f"obuf{bank}")[0]
                    self._store(m, port, out_base, value, cur.layer[0] == bank)
                if "hnbuf" in self._buffers:
                    self._store(m, self.ports("hnbuf")[0], hn_base, value, cur.last_step)
        if "headbuf" in self._buffers:
            head = self._model.head
            with m.If(fire & (cur.kind == KIND_HEAD)):
                addr = cur.t * head.out_features + j if head.mode == "all" else j
                self._store(m, self.ports("headbuf")[0], addr, value, 1)


def write_back_reference(model, schedule: Schedule, T: int, units, rows, *, cells: int,
                         with_states: bool):  # fmt: skip
    """The writes :class:`WriteBack` makes for a sequence of ``T`` steps: ``units`` lists,
    in schedule order, every gates item's ``H`` results ``(c, m)``, ``rows`` every
    projection/head item's rows; they arrive ``cells`` units per beat (the grouping does not
    change the writes). Returns ``{buffer: [(addr, value), ...]}`` in write order."""
    q = model
    H, Ho, D = q.hidden_size, q.output_size, q.num_directions
    DHo, proj = D * Ho, bool(q.proj_size)
    writes: dict[str, list] = {}
    units, rows = iter(units), iter(rows)

    def put(name, addr, value):
        writes.setdefault(name, []).append((int(addr), int(value)))

    for p, s, sub, t in schedule.items(T):
        ps = schedule.passes[p]
        layer, d = max(ps.layer, 0), ps.direction
        kind = "head" if ps.kind == "head" else ("gates", "proj")[sub]
        last_step = s == (1 if ps.single_step else T) - 1
        out_base, hn_base = t * DHo + d * Ho, layer * DHo + d * Ho
        if kind == "gates":
            for u in range(H):
                c, mval = next(units)
                put("cmem", (layer * D + d) * H + u, c)
                if proj:
                    put("mbuf", u, mval)
                    continue
                put(f"obuf{layer % 2}", out_base + u, mval)
                if with_states and last_step:
                    put("hnbuf", hn_base + u, mval)
        elif kind == "proj":
            for r in range(Ho):
                value = next(rows)
                put(f"obuf{layer % 2}", out_base + r, value)
                if with_states and last_step:
                    put("hnbuf", hn_base + r, value)
        else:
            head = q.head
            for r in range(head.out_features):
                put("headbuf", (t * head.out_features if head.mode == "all" else 0) + r, next(rows))
    return writes
