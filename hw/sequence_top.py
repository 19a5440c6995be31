"""The sequence-mode datapath of :class:`~.accelerator.LSTMAccelerator` (``mode="sequence"``).

The top joins the blocks: :class:`~.loader.InputLoader` writes the input buffers;
:class:`~.weights.WeightMemory` streams each matrix's row groups; :class:`~.fetch.VectorFetch`
attaches the vector elements read from the buffers, stalling only for true dependencies; the
:class:`~.mvu.MatrixVectorUnit` accumulates and requantizes P rows at a time;
:class:`~.regroup.GateRegrouper` regroups them into up to V hidden units for the cell bank
(activation tables and V cell datapaths) or into single rows (projection, head);
:class:`~.writeback.WriteBack` stores them and tracks the position the fetch stage waits
for; :class:`~.drain.ResultDrain` streams the results out. The top holds only the
sequencer, the issue and regroup cursors, the buffers (:mod:`.plans`) and their ports.

``buffers=1``: one LOAD / COMPUTE / DRAIN phase register; the fetch stage and the drain
share slot 0's read port of the top layer's output buffer. ``buffers=2``: the input and
result buffers have two banks (:mod:`.banks`) and :class:`~.sequencer.OverlapControl`
loads, computes and drains three sequences at once.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from . import banks
from .drain import ResultDrain, result_regions
from .fetch import VectorFetch
from .gru_cellbank import accelerator_cell_bank
from .loader import InputLoader
from .mvu import MatrixVectorUnit
from .pipeline import NO_RW_CHECK
from .plans import addr_width, buffer_plan, state_format
from .regroup import GateRegrouper
from .saturation import drive_saturation
from .schedule import ScheduleCursor
from .sequencer import OverlapControl
from .weights import WeightMemory
from .writeback import WriteBack

__all__ = ["elaborate_sequence"]


def elaborate_sequence(acc) -> Module:
    """The sequence-mode module of ``acc`` (an ``LSTMAccelerator``)."""
    m = Module()
    q = acc.model
    head = q.head
    n = SimpleNamespace(
        q=q, P=acc.lanes, S=acc.simd, Tmax=acc.max_seq_len, f=q.formats,
        I=q.input_size, H=q.hidden_size, Ho=q.output_size, D=q.num_directions,
        L=q.num_layers, DHo=q.num_directions * q.output_size,
        LD=q.num_layers * q.num_directions, sched=acc.schedule, layout=acc.layout,
        has_proj=bool(q.proj_size), head=head, V=acc.cells,
        out_rows=head.out_features if head is not None else 0,
    )  # fmt: skip
    n.two = acc.buffers == 2
    _blocks(m, n, acc)
    _phase(m, n, acc)
    _fetch(m, n, acc)
    _post(m, n, acc)
    _write_back(m, n, acc)
    _drain(m, n, acc)
    return m


def _blocks(m, n, acc):
    """The weight memory, the MVU, the buffers and the ports that are not a stage's."""
    f, layout, q = n.f, n.layout, n.q
    m.submodules.weights = n.wmem = WeightMemory(layout)
    n.vec_bits = max(f["x"].bits, f["hidden"].bits)
    m.submodules.mvu = n.mvu = MatrixVectorUnit.of(layout, n.vec_bits, q.rounding, q.overflow)

    # No read meets a write to its address in the same cycle with its data used (the
    # fetch waits for true dependencies; inputs are written in LOAD, results read in
    # DRAIN; with two banks, each stage in its own bank), so the buffers need no collision
    # logic (``NO_RW_CHECK``).
    def memory(name, fmt_bits, depth):
        mem = Memory(shape=signed(fmt_bits), depth=max(2, depth), init=[],
                     attrs=NO_RW_CHECK)  # no 0-bit addr  # fmt: skip
        m.submodules[name] = mem
        return mem

    if n.two:  # the stages' view (one bank), then the memories of two banks
        n.plan = buffer_plan(q, n.Tmax, initial_state=acc.initial_state,
                             with_states=acc.with_states)  # fmt: skip
        n.banks = {name: count for name, (_, _, count) in acc.bank_plan().items()}
    else:
        n.plan = acc.buffer_plan()
        n.banks = dict.fromkeys(n.plan, 1)
    mems = {name: memory(name, width, depth) for name, (width, depth) in acc.buffer_plan().items()}
    # the stages get their ports where they are joined: the fetch stage's reads
    # (``_fetch``), the write-back's writes (``_write_back``), the drain's reads; here the
    # input loader's writes and the cells' c_prev reads
    n.mems = mems
    n.x_w = mems["xbuf"].write_port()
    n.h0_w = mems["h0buf"].write_port() if "h0buf" in mems else None
    n.c_rs = [mems["cmem"].read_port(domain="comb") for _ in range(n.V)]


def _phase(m, n, acc):
    """The sequencer (the phase register, or with two buffers :class:`OverlapControl`), the
    schedule cursors, the input loader, the weight port and the commands."""
    H, Ho, I, LD, Tmax, f, sched = n.H, n.Ho, n.I, n.LD, n.Tmax, n.f, n.sched
    if n.two:
        seq = _overlap(m, n, acc)
    else:
        seq = _phase_register(m, n, acc)
    out_bits = n.mvu.o.payload.data.shape().elem_shape.width
    m.submodules.write_back = n.wb = WriteBack(
        n.q, sched, max_seq_len=Tmax, cells=n.V, row_bits=out_bits,
        with_states=acc.with_states,
    )  # fmt: skip
    cursors = {name: ScheduleCursor(sched, Tmax) for name in ("issue", "post")}
    for name, cur in cursors.items():
        m.submodules[f"{name}_cursor"] = cur
    # Every cursor is held at the schedule's start while no computation runs (from a
    # register, not from the start condition: a wide fan-out), so it is there when one
    # starts, as a restart with the start would put it.
    n.restart = Signal()
    m.d.comb += n.restart.eq(~n.computing)
    for cur in (*cursors.values(), n.wb):
        m.d.comb += [cur.T.eq(n.T), cur.restart.eq(n.restart)]
    issue, n.post = cursors["issue"], cursors["post"]

    n.drain_done = Signal()
    seq.transitions()

    # ---- LOAD: s_axis → xbuf (and h0buf, cmem) --------------------------------------------
    n_h0, n.n_c0 = (LD * Ho, LD * H) if acc.initial_state else (0, 0)
    if n.q.cell == "gru":
        n.n_c0 = 0  # no c0: the state memory cmem gets h0 (``_write_back``)
    m.submodules.loader = n.loader = InputLoader(
        input_size=I, max_seq_len=Tmax, data_bits=acc._in_bits, x_bits=f["x"].bits,
        n_h0=n_h0, n_c0=n.n_c0, h0_bits=f["hidden"].bits, c_bits=state_format(n.q).bits,
        c_depth=LD * H, **({"overlap": True} if n.two else {}),
    )  # fmt: skip
    m.d.comb += [
        n.loader.enable.eq(seq.load_enable),
        n.loader.i.valid.eq(acc.s_axis_tvalid),
        n.loader.i.payload.data.eq(acc.s_axis_tdata),
        n.loader.i.payload.last.eq(acc.s_axis_tlast),
        acc.s_axis_tready.eq(n.loader.i.ready),
        *seq.loaded(n.loader),
        seq.error.eq(n.loader.error),
    ]
    if n.two:
        banks.write(m, n.loader.x_w, n.x_w, n.bank["load"], n.banks["xbuf"])
        if n.h0_w is not None:
            banks.write(m, n.loader.h0_w, n.h0_w, n.bank["load"], n.banks["h0buf"])
    else:
        wiring.connect(m, n.loader.x_w, n.x_w)
        if n.h0_w is not None:
            wiring.connect(m, n.loader.h0_w, n.h0_w)

    # ---- weight port: host words into the weight memory, only between sequences --------
    idle = Signal()
    m.d.comb += [
        idle.eq(seq.idle),
        n.wmem.load.payload.eq(acc.w.payload),
        n.wmem.load.valid.eq(acc.w.valid & idle),
        acc.w.ready.eq(n.wmem.load.ready & idle),
    ]

    # ---- issue: matrix commands → weight memory -----------------------------------------
    # ``cmd.valid`` is ``computing & ~issue.done``, kept in a register (timing: it selects
    # the weight memory's next read address): set with the start, cleared when the last
    # item's command is taken.
    cmd_valid, last_item, accept = Signal(), Signal(), Signal()
    m.d.comb += [
        last_item.eq((issue.p == len(sched.passes) - 1) & issue.last_sub & issue.last_step),
        accept.eq(cmd_valid & n.wmem.cmd.ready),
        n.wmem.cmd.valid.eq(cmd_valid),
        n.wmem.cmd.payload.eq(issue.matrix),
        issue.advance.eq(accept),
    ]
    m.d.sync += cmd_valid.eq(Mux(n.start, 1, cmd_valid & ~(accept & last_item)))


def _phase_register(m, n, acc):
    """``buffers=1``: LOAD → COMPUTE → DRAIN → LOAD, one sequence at a time."""
    LOAD, COMPUTE, DRAIN = 0, 1, 2
    phase = Signal(2, init=LOAD)
    n.T = Signal(range(n.Tmax + 1))
    n.start = start = Signal()
    error = Signal()
    m.d.comb += [acc.error.eq(error), acc.busy.eq(phase != LOAD)]
    n.computing, n.draining = Signal(), Signal()
    m.d.comb += [n.computing.eq(phase == COMPUTE), n.draining.eq(phase == DRAIN)]

    def transitions():
        with m.If(start):
            m.d.sync += phase.eq(COMPUTE)
        with m.If(n.computing & n.wb.done):
            m.d.sync += phase.eq(DRAIN)
        with m.If(n.drain_done):
            m.d.sync += phase.eq(LOAD)

    def loaded(loader):
        return [start.eq(loader.start), n.T.eq(loader.T)]

    return SimpleNamespace(start=start, error=error, load_enable=phase == LOAD,
                           idle=phase == LOAD, transitions=transitions, loaded=loaded)  # fmt: skip


def _overlap(m, n, acc):
    """``buffers=2``: :class:`OverlapControl` and the banks of its stages."""
    m.submodules.sequencer = ctl = OverlapControl(max_seq_len=n.Tmax)
    n.T, n.T_drain, n.start = ctl.T, ctl.T_drain, ctl.compute_start
    n.computing, n.draining = ctl.computing, ctl.draining
    n.bank = {"load": ctl.load_bank, "compute": ctl.compute_bank, "drain": ctl.drain_bank}
    error = Signal()
    m.d.comb += [acc.error.eq(error), acc.busy.eq(ctl.busy)]

    def transitions():
        m.d.comb += [ctl.done.eq(n.wb.done), ctl.drain_done.eq(n.drain_done)]

    def loaded(loader):
        return [ctl.start.eq(loader.start), ctl.T_now.eq(loader.T_now), ctl.T_loaded.eq(loader.T)]

    return SimpleNamespace(error=error, load_enable=ctl.load_enable, idle=~ctl.busy,
                           transitions=transitions, loaded=loaded)  # fmt: skip


def _fetch(m, n, acc):
    """The fetch stage between the weight memory and the MVU, with its buffer reads."""
    m.submodules.fetch = n.fetch = fetch = VectorFetch(
        n.q, n.layout, n.sched, max_seq_len=n.Tmax, initial_state=acc.initial_state,
        cells=n.V, out_layout=n.mvu.in_layout,
    )  # fmt: skip
    m.d.comb += [
        fetch.T.eq(n.T),
        fetch.restart.eq(n.restart),
        fetch.enable.eq(n.computing),
        fetch.wb_p.eq(n.wb.p),
        fetch.wb_s.eq(n.wb.s),
        fetch.wb_sub.eq(n.wb.sub),
        fetch.wb_written.eq(n.wb.written),
    ]
    wiring.connect(m, n.wmem.o, fetch.i)
    wiring.connect(m, fetch.o, n.mvu.i)
    # every slot of every buffer gets its own read port, except (one bank) slot 0 of the top
    # layer's output buffer, which the drain shares (``_drain``)
    n.shared_read = None
    for name in fetch.buffers:
        mem = n.mems[name]
        for k, member in enumerate(fetch.ports(name)):
            port = mem.read_port()
            if n.two:
                banks.read(m, member, port, n.bank["compute"], n.banks[name])
            elif n.head is None and k == 0 and name == f"obuf{(n.L - 1) % 2}":
                n.shared_read = (member, port)
            else:
                wiring.connect(m, member, port)


def _post(m, n, acc):
    """Regroup MVU rows into units (activations, cells; c_prev addresses alongside) or
    rows (to the write-back)."""
    D, H, Ho, LD, P, V = n.D, n.H, n.Ho, n.LD, n.P, n.V
    # The fetch stage paces the row groups (``emitter_cycles``), so the MVU never waits.
    out_bits = n.mvu.o.payload.data.shape().elem_shape.width
    m.submodules.regroup = n.regroup = GateRegrouper(
        lanes=P, hidden_size=H, proj_rows=Ho if n.has_proj else 0, head_rows=n.out_rows,
        bits=out_bits, cells=V,
    )  # fmt: skip
    m.d.comb += [
        n.regroup.kind.eq(n.post.kind),
        n.regroup.enable.eq(n.computing),
        n.regroup.i.valid.eq(n.mvu.o.valid),
        n.regroup.i.payload.eq(n.mvu.o.payload.data),
        n.mvu.o.ready.eq(n.regroup.i.ready),
        n.post.advance.eq(n.regroup.item_end),
    ]
    # gates: up to V consecutive hidden units per cycle into the cells; with two banks
    # and an initial state, the c_prev address's top bit says "a pass's first step: c0buf"
    from_c0 = n.two and acc.initial_state
    c_bits = addr_width(LD * H)
    m.submodules.cells = n.cellbank = bank = accelerator_cell_bank(
        n.q, cells=V, in_bits=out_bits, c_depth=2 << c_bits if from_c0 else LD * H
    )
    drive_saturation(m, acc.saturation, n.mvu, bank)
    units, i = n.regroup.unit.payload, bank.i.payload
    c_addr = (n.post.layer * D + n.post.direction) * H + units.index
    m.d.comb += [
        bank.i.valid.eq(n.regroup.unit.valid),
        n.regroup.unit.ready.eq(bank.i.ready),
        i.rows.eq(units.rows),
        i.count.eq(units.count),
        i.c_addr.eq(Cat(c_addr[:c_bits], n.post.first_step) if from_c0 else c_addr),
        i.zero_c.eq(n.post.first_step & (not acc.initial_state)),
    ]
    for k, port in enumerate(n.c_rs):  # (combinational ports: no enable)
        member = getattr(bank, f"c_r{k}")
        if not n.two:
            m.d.comb += [port.addr.eq(member.addr), member.data.eq(port.data)]
            continue
        addr = member.addr[:c_bits]
        m.d.comb += port.addr.eq(banks.banked(addr, n.bank["compute"], n.banks["cmem"]))
        if from_c0:
            c0 = n.mems["c0buf"].read_port(domain="comb")
            m.d.comb += [c0.addr.eq(Cat(addr, n.bank["compute"])),
                         member.data.eq(Mux(member.addr[c_bits], c0.data, port.data))]  # fmt: skip
        else:
            m.d.comb += member.data.eq(port.data)
    # projection / head: one row per cycle, written directly
    m.d.comb += [
        n.wb.rows.valid.eq(n.regroup.row.valid),
        n.wb.rows.payload.eq(n.regroup.row.payload.data),
        n.regroup.row.ready.eq(n.wb.rows.ready),
    ]


def _write_back(m, n, acc):
    """The cells' results into the write-back, and its write ports onto the buffers."""
    wiring.connect(m, n.cellbank.o, n.wb.units)
    top = f"obuf{(n.L - 1) % 2}"
    for name in n.wb.buffers:
        for member in n.wb.ports(name):
            if not n.two:
                wiring.connect(m, member, n.mems[name].write_port())
                continue
            bank = n.bank["compute"]
            banks.write(m, member, n.mems[name].write_port(), bank, n.banks[name])
            if name == top and "outbuf" in n.mems:  # the drain's copy of the results
                banks.write(m, member, n.mems["outbuf"].write_port(), bank, 2)
    gru_h0 = n.q.cell == "gru" and acc.initial_state
    if n.two and (n.n_c0 or gru_h0):  # c0 (a GRU's h0) into the loading bank of c0buf
        source = n.loader.c_w if n.n_c0 else n.loader.h0_w
        banks.write(m, source, n.mems["c0buf"].write_port(), n.bank["load"], 2)
    elif n.n_c0:
        wiring.connect(m, n.loader.c_w, n.wb.c0)
    elif gru_h0:  # h0 into h0buf and the state memory
        h0_w, c0 = n.loader.h0_w, n.wb.c0
        m.d.comb += [c0.addr.eq(h0_w.addr), c0.data.eq(h0_w.data), c0.en.eq(h0_w.en)]


def _drain(m, n, acc):
    """DRAIN: the result drain on ``m_axis`` (with one bank sharing the top ``obuf``'s
    slot-0 port; with two reading the drain's bank)."""
    regions = result_regions(n.q, n.plan, with_states=acc.with_states)
    drain = ResultDrain([r for r, _ in regions], max_seq_len=n.Tmax, data_bits=acc._out_bits)
    m.submodules.drain = drain
    m.d.comb += [drain.enable.eq(n.draining), drain.T.eq(n.T_drain if n.two else n.T)]
    for region, buffer in regions:
        member = getattr(drain, region.name)
        if n.two:
            buffer = "outbuf" if region.name == "obuf" else buffer
            banks.read(m, member, n.mems[buffer].read_port(), n.bank["drain"], n.banks[buffer])
        elif region.name != "obuf":
            wiring.connect(m, member, n.mems[buffer].read_port())
    # the top obuf's slot-0 read port serves the fetch stage, and the drain while draining
    if n.shared_read is not None:
        member, port = n.shared_read
        shared = drain.obuf
        m.d.comb += [
            port.addr.eq(Mux(n.draining, shared.addr, member.addr)),
            port.en.eq(Mux(n.draining, shared.en, member.en)),
            member.data.eq(port.data),
            shared.data.eq(port.data),
        ]
    m.d.comb += [
        acc.m_axis_tdata.eq(drain.o.payload.data),
        acc.m_axis_tlast.eq(drain.o.payload.last),
        acc.m_axis_tvalid.eq(drain.o.valid),
        drain.o.ready.eq(acc.m_axis_tready),
        n.drain_done.eq(drain.done),
    ]
