"""The stream-mode datapath of :class:`~.accelerator.LSTMAccelerator` (``mode="stream"``).

The same blocks as sequence mode (weight memory, fetch, MVU, regrouper, cell bank,
write-back) run the step-major schedule of :mod:`.stream_schedule`, one step after the
other with no phases: :class:`~.stream_loader.StreamLoader` puts each step's input into the
``x`` ring as it arrives, the stages follow it step by step (each restarts its cursor at the
end of a step and counts steps), and :class:`~.stream_drain.StreamDrain` sends each step's
output as soon as the write-back has finished the step. A stage waits only for true
dependencies: the issue for the step's input to be loaded, the fetch as in
:class:`~.fetch.VectorFetch` (stream members), the loader for a free ring slot and, at a
sequence's first element, for the previous sequence to be drained.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from .drain import Region
from .fetch import VectorFetch
from .gru_cellbank import accelerator_cell_bank
from .mvu import MatrixVectorUnit
from .pipeline import NO_RW_CHECK
from .plans import state_format
from .regroup import GateRegrouper
from .saturation import drive_saturation
from .schedule import ScheduleCursor
from .stream_drain import StreamDrain
from .stream_loader import StreamLoader
from .stream_schedule import RING, SLOTS, STEP_BITS, step_end, step_lead
from .weights import WeightMemory
from .writeback import WriteBack

__all__ = ["elaborate_stream"]


def elaborate_stream(acc) -> Module:
    """The stream-mode module of ``acc`` (an ``LSTMAccelerator`` built with
    ``mode="stream"``)."""
    m = Module()
    q = acc.model
    n = SimpleNamespace(
        q=q, f=q.formats, I=q.input_size, H=q.hidden_size, Ho=q.output_size, L=q.num_layers,
        sched=acc.schedule, layout=acc.layout, V=acc.cells, head=q.head,
        out_rows=q.head.out_features if q.head is not None else 0,
    )  # fmt: skip
    n.head_last = q.head is not None and q.head.mode == "last"
    _blocks(m, n, acc)
    _meta(m, n)
    _loader(m, n, acc)
    _issue(m, n)
    _fetch(m, n, acc)
    _post(m, n, acc)
    _write_back(m, n)
    _drain(m, n, acc)
    return m


def _blocks(m, n, acc):
    f, layout = n.f, n.layout
    m.submodules.weights = n.wmem = WeightMemory(layout)
    vec_bits = max(f["x"].bits, f["hidden"].bits)
    m.submodules.mvu = n.mvu = MatrixVectorUnit.of(layout, vec_bits, n.q.rounding, n.q.overflow)
    n.plan = acc.buffer_plan()
    n.mems = {}
    # no used read meets a write to its address in the same cycle (the stages wait for the
    # steps they read; the loader writes only free ring slots and h0/c0 between sequences)
    for name, (width, depth) in n.plan.items():
        n.mems[name] = m.submodules[name] = Memory(shape=signed(width), depth=max(2, depth),
                                                   init=[], attrs=NO_RW_CHECK)  # fmt: skip
    n.out_bits = n.mvu.o.payload.data.shape().elem_shape.width
    m.submodules.write_back = n.wb = WriteBack(
        n.q, n.sched, max_seq_len=1, cells=n.V, row_bits=n.out_bits, with_states=acc.with_states
    )
    m.submodules.loader = n.loader = StreamLoader(
        input_size=n.I, ring=RING, data_bits=acc._in_bits, x_bits=f["x"].bits,
        n_h0=n.L * n.Ho if acc.initial_state else 0,
        n_c0=n.L * n.H if acc.initial_state and n.q.cell == "lstm" else 0,  # a GRU: no c0
        h0_bits=f["hidden"].bits, c_bits=state_format(n.q).bits,
    )  # fmt: skip
    n.drain = _make_drain(m, n, acc)
    # the step counters of the stages in the top: issue, regroup (post), write-back
    n.n_issue, n.n_post, n.n_wb = (
        Signal(STEP_BITS, name=f"n_{k}") for k in ("issue", "post", "wb")
    )


def _meta(m, n):
    """The loader's per-step flags, looked up by a stage's step count."""
    bits = max(1, (RING - 1).bit_length())

    def flag(vector, step, name):
        sig = Signal(name=name)
        m.d.comb += sig.eq(vector.bit_select(step[:bits], 1) if RING > 1 else vector[0])
        return sig

    n.flag = flag


def _loader(m, n, acc):
    loader = n.loader
    pending = Signal()  # a loaded sequence's results are not all out yet
    with m.If(loader.seq_end):
        m.d.sync += pending.eq(1)
    with m.If(n.drain.seq_done):
        m.d.sync += pending.eq(0)
    in_flight = step_lead(m, loader.loaded, n.drain.n, name="in_flight")
    idle = Signal()
    m.d.comb += [
        loader.i.valid.eq(acc.s_axis_tvalid),
        loader.i.payload.data.eq(acc.s_axis_tdata),
        loader.i.payload.last.eq(acc.s_axis_tlast),
        loader.i.payload.user.eq(acc.s_axis_tuser),
        acc.s_axis_tready.eq(loader.i.ready),
        loader.keep_state.eq(acc.keep_state),
        loader.open.eq(~pending),
        loader.drained.eq(n.drain.n),
        acc.error.eq(loader.error),
        # idle between sequences: nothing of the next one taken, nothing in flight; the
        # weights change only then
        idle.eq(loader.idle & ~pending & (in_flight == 0)),
        acc.busy.eq(~idle),
        n.wmem.load.payload.eq(acc.w.payload),
        n.wmem.load.valid.eq(acc.w.valid & idle),
        acc.w.ready.eq(n.wmem.load.ready & idle),
    ]
    wiring.connect(m, loader.x_w, n.mems["xbuf"].write_port())
    if acc.initial_state:
        wiring.connect(m, loader.h0_w, n.mems["h0buf"].write_port())
        if n.q.cell == "gru":  # a GRU's state memory restores h0: c0buf gets h0 too
            h0_w, c0 = loader.h0_w, n.mems["c0buf"].write_port()
            m.d.comb += [c0.addr.eq(h0_w.addr), c0.data.eq(h0_w.data), c0.en.eq(h0_w.en)]
        else:
            wiring.connect(m, loader.c_w, n.mems["c0buf"].write_port())


def _known(m, n, step, name):
    """Step ``step``'s input is loaded (so its flags are valid)."""
    lead = step_lead(m, n.loader.loaded, step, name=f"{name}_lead")
    known = Signal(name=f"{name}_known")
    m.d.comb += known.eq((lead != 0) & (lead <= RING))
    return known


def _count(m, counter, wrap):
    with m.If(wrap):
        m.d.sync += counter.eq(counter + 1)


def _issue(m, n):
    """Matrix commands, once the step's input is loaded (so its flags are known)."""
    issue = m.submodules.issue_cursor = ScheduleCursor(n.sched, 1)
    last = n.flag(n.loader.last, n.n_issue, "issue_last")
    end = step_end(m, n.sched, issue.p, issue.last_sub, last, name="issue_end")
    wrap = Signal()
    m.d.comb += [
        issue.T.eq(1),
        n.wmem.cmd.valid.eq(_known(m, n, n.n_issue, "issue")),
        n.wmem.cmd.payload.eq(issue.matrix),
        issue.advance.eq(n.wmem.cmd.valid & n.wmem.cmd.ready),
        wrap.eq(issue.advance & end),
        issue.restart.eq(wrap),
    ]
    _count(m, n.n_issue, wrap)


def _fetch(m, n, acc):
    m.submodules.fetch = n.fetch = fetch = VectorFetch(
        n.q, n.layout, n.sched, max_seq_len=1, initial_state=acc.initial_state, cells=n.V,
        out_layout=n.mvu.in_layout, stream_mode=True,
    )  # fmt: skip
    x_ready = Signal()
    m.d.comb += [
        x_ready.eq(step_lead(m, n.loader.loaded, fetch.n, name="fetch_lead") != 0),
        fetch.T.eq(1),
        fetch.enable.eq(1),
        fetch.wb_p.eq(n.wb.p),
        fetch.wb_s.eq(n.wb.s),
        fetch.wb_sub.eq(n.wb.sub),
        fetch.wb_written.eq(n.wb.written),
        fetch.wb_n.eq(n.n_wb),
        fetch.x_ready.eq(x_ready),
        fetch.step_reset.eq(n.flag(n.loader.reset, fetch.n, "fetch_reset")),
        fetch.step_last.eq(n.flag(n.loader.last, fetch.n, "fetch_last")),
        fetch.out_free.eq(step_lead(m, fetch.n, n.drain.n, name="undrained") < SLOTS),
    ]
    wiring.connect(m, n.wmem.o, fetch.i)
    wiring.connect(m, fetch.o, n.mvu.i)
    for name in fetch.buffers:
        for member in fetch.ports(name):
            wiring.connect(m, member, n.mems[name].read_port())


def _post(m, n, acc):
    """Regroup MVU rows into units (cells) or rows; the regroup cursor follows the steps."""
    H, L, V = n.H, n.L, n.V
    post = m.submodules.post_cursor = ScheduleCursor(n.sched, 1)
    m.submodules.regroup = regroup = GateRegrouper(
        lanes=n.layout.lanes, hidden_size=H, proj_rows=n.Ho if n.q.proj_size else 0,
        head_rows=n.out_rows, bits=n.out_bits, cells=V,
    )  # fmt: skip
    last = n.flag(n.loader.last, n.n_post, "post_last")
    reset = n.flag(n.loader.reset, n.n_post, "post_reset")
    end = step_end(m, n.sched, post.p, post.last_sub, last, name="post_end")
    wrap = Signal()
    m.d.comb += [
        post.T.eq(1),
        regroup.kind.eq(post.kind),
        regroup.enable.eq(1),
        regroup.i.valid.eq(n.mvu.o.valid),
        regroup.i.payload.eq(n.mvu.o.payload.data),
        n.mvu.o.ready.eq(regroup.i.ready),
        post.advance.eq(regroup.item_end),
        wrap.eq(regroup.item_end & end),
        post.restart.eq(wrap),
    ]
    _count(m, n.n_post, wrap)
    # c_prev: cmem, or after a reset c0buf (addresses L*H up) or 0
    LH = L * H
    c_depth = 2 * LH if acc.initial_state else LH
    m.submodules.cells = n.cellbank = bank = accelerator_cell_bank(
        n.q, cells=V, in_bits=n.out_bits, c_depth=c_depth
    )
    drive_saturation(m, acc.saturation, n.mvu, bank)
    units, i = regroup.unit.payload, bank.i.payload
    from_c0 = reset if acc.initial_state else 0
    m.d.comb += [
        bank.i.valid.eq(regroup.unit.valid),
        regroup.unit.ready.eq(bank.i.ready),
        i.rows.eq(units.rows),
        i.count.eq(units.count),
        i.c_addr.eq(Mux(from_c0, LH, 0) + post.layer * H + units.index),
        i.zero_c.eq(reset & (not acc.initial_state)),
    ]
    for k in range(V):  # combinational c_prev ports
        member = getattr(bank, f"c_r{k}")
        port = n.mems["cmem"].read_port(domain="comb")
        if acc.initial_state:
            port0 = n.mems["c0buf"].read_port(domain="comb")
            high = member.addr >= LH
            m.d.comb += [port.addr.eq(member.addr), port0.addr.eq(member.addr - LH),
                         member.data.eq(Mux(high, port0.data, port.data))]  # fmt: skip
        else:
            m.d.comb += [port.addr.eq(member.addr), member.data.eq(port.data)]
    m.d.comb += [
        n.wb.rows.valid.eq(regroup.row.valid),
        n.wb.rows.payload.eq(regroup.row.payload.data),
        regroup.row.ready.eq(n.wb.rows.ready),
    ]


def _write_back(m, n):
    """The write-back (one-step schedule, restarted after each step); its layer-output and
    head writes go to the slot of its step."""
    wb, Ho, L = n.wb, n.Ho, n.L
    last = n.flag(n.loader.last, n.n_wb, "wb_last")
    restart = Signal()
    skip = 0
    if n.head_last:  # the head pass runs only after the step that carried tlast
        skip = (wb.p == n.sched.head_pass) & ~last
    m.d.comb += [wb.T.eq(1), restart.eq(wb.done | skip), wb.restart.eq(restart)]
    _count(m, n.n_wb, restart)
    wiring.connect(m, n.cellbank.o, wb.units)
    slot_bits = max(1, (SLOTS - 1).bit_length())
    slot = Signal(slot_bits)
    m.d.comb += slot.eq(n.n_wb)
    stride = -(-L // 2) * Ho
    layer_base = Signal(range(max(2, SLOTS * stride)))
    with m.Switch(wb.p):
        for layer in range(L):
            with m.Case(layer):
                m.d.comb += layer_base.eq(slot * stride + layer // 2 * Ho)
    for name in wb.buffers:
        for member in wb.ports(name):
            port = n.mems[name].write_port()
            if name.startswith("obuf"):
                addr = layer_base + member.addr
            elif name == "headbuf" and not n.head_last:
                addr = slot * n.out_rows + member.addr
            else:
                addr = member.addr
            m.d.comb += [port.addr.eq(addr), port.data.eq(member.data), port.en.eq(member.en)]


def _make_drain(m, n, acc):
    f, plan = n.f, n.plan
    final = []
    if n.head is None:
        top = f"obuf{(n.L - 1) % 2}"
        per_step = Region("step", f["hidden"].bits, plan[top][1], fixed=n.Ho)
        stride, base, n.step_buffer = -(-n.L // 2) * n.Ho, (n.L - 1) // 2 * n.Ho, top
    elif n.head.mode == "all":
        per_step = Region("step", f["head_out"].bits, plan["headbuf"][1], fixed=n.out_rows)
        stride, base, n.step_buffer = n.out_rows, 0, "headbuf"
    else:
        per_step, stride, base, n.step_buffer = None, 0, 0, None
        final.append(Region("headbuf", f["head_out"].bits, plan["headbuf"][1], fixed=n.out_rows))
    if acc.with_states:
        for name in ("hnbuf", "cmem") if n.q.cell == "lstm" else ("hnbuf",):  # GRU: no c_n
            bits, depth = plan[name]
            final.append(Region(name, bits, depth, fixed=depth))
    drain = StreamDrain(per_step, stride=stride, base=base, slots=SLOTS, final=final,
                        data_bits=acc._out_bits)  # fmt: skip
    m.submodules.drain = drain
    return drain


def _drain(m, n, acc):
    drain = n.drain
    m.d.comb += [drain.written.eq(n.n_wb), drain.last.eq(n.flag(n.loader.last, drain.n,
                                                                  "drain_last"))]  # fmt: skip
    if n.step_buffer is not None:
        wiring.connect(m, drain.step_r, n.mems[n.step_buffer].read_port())
    for region in drain._final:
        wiring.connect(m, getattr(drain, region.name), n.mems[region.name].read_port())
    m.d.comb += [
        acc.m_axis_tdata.eq(drain.o.payload.data),
        acc.m_axis_tlast.eq(drain.o.payload.last),
        acc.m_axis_tvalid.eq(drain.o.valid),
        drain.o.ready.eq(acc.m_axis_tready),
    ]
