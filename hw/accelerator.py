"""The complete LSTM accelerator: sequencer, buffers, and the datapath blocks, with
AXI4-Stream ports.

Ports (the Verilog port names are the member names; clock ``clk``, synchronous reset ``rst``):

* ``s_axis_tdata`` (signed), ``s_axis_tvalid``, ``s_axis_tready``, ``s_axis_tlast``: one
  element per beat. A sequence is, with ``initial_state=True``, ``h0`` (``L*D*H_out`` codes in
  the ``hidden`` format, state-major as in PyTorch) then ``c0`` (``L*D*H`` codes, ``cell``),
  then ``x`` time-major (``T*I`` codes, ``x`` format), ``tlast`` on the last element.
* ``m_axis_tdata`` (signed), ``m_axis_tvalid``, ``m_axis_tready``, ``m_axis_tlast``: the
  results of a sequence, in the order and shape of ``lstmfpga predict --raw``: the head output
  (``out`` codes for ``last``, ``T*out`` for ``all``) or, without a head, the output sequence
  (``T*D*H_out``, time-major); then, with ``with_states=True``, ``h_n`` (``L*D*H_out``) and
  ``c_n`` (``L*D*H``). ``tlast`` marks the last element.
* ``error`` (sticky until reset): a sequence was longer than ``max_seq_len``, not a whole
  number of ``x`` vectors, or ended inside the initial state. Such a sequence is still
  processed with the whole vectors it had (up to ``max_seq_len``).
* ``busy``: a sequence is being computed or drained.

Operation: LOAD (accept the sequence into on-chip buffers) → COMPUTE (the schedule of
:mod:`.schedule`, no interaction with the ports) → DRAIN (stream the results; back-pressure on
``m_axis`` only pauses the drain) → LOAD. See ``docs/accelerator.md`` for the schedule and
the cycle model (:mod:`.cycles`).

Datapath: :class:`~.weights.WeightMemory` streams each matrix's row groups; a fetch stage
attaches the vector element (input part, recurrent part, projection input, head input) read
from the buffers, stalling only for true dependencies; the
:class:`~.mvu.MatrixVectorUnit` accumulates and requantizes P rows at a time; an emitter
regroups its outputs into hidden units (four gate pre-activations) for
:class:`~.activation.ActivationLUT` and :class:`~.cell.CellDatapath`, or into single rows
(projection, head), which a writer stores.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..quant.golden import CellArithmetic
from ..quant.model import QuantizedModel
from .activation import ActivationLUT
from .cell import CellDatapath
from .layout import WeightLayout
from .mvu import MatrixVectorUnit
from .schedule import KIND_GATES, KIND_HEAD, KIND_PROJ, Schedule, ScheduleCursor
from .weights import WeightMemory

__all__ = ["LSTMAccelerator", "emitter_cycles"]

_SRC_ZERO, _SRC_X, _SRC_O0, _SRC_O1, _SRC_M, _SRC_H0 = range(6)
_SIDEBAND_DEPTH = 32
_KIND_CODES = {"gates": KIND_GATES, "proj": KIND_PROJ, "head": KIND_HEAD}


def emitter_cycles(kind: str, lanes: int, rows: int) -> int:
    """Cycles the emitter needs to pass on one row group's results, ``rows`` of its
    ``lanes`` rows being real (the others are padding, dropped with the item's last unit or
    row): a ``gates`` group completes at most ``ceil(rows / 4)`` hidden units (one per
    cycle; a full group ``ceil(lanes / 4)``, an item's last group exactly ``ceil(rows /
    4)``, since the gate rows of a matrix are a whole number of units); a ``proj`` or
    ``head`` group leaves one row per cycle, ``rows`` of them. The fetch stage spaces the
    last beats of consecutive groups by at least this much (see :mod:`.cycles`)."""
    if kind == "gates":
        return -(-rows // 4)
    if kind in ("proj", "head"):
        return rows
    raise ValueError(f"kind must be 'gates', 'proj' or 'head', not {kind!r}")


class LSTMAccelerator(wiring.Component):
    """A whole quantized LSTM (+ head) in hardware; see the module docstring for the ports.

    Parameters
    ----------
    model : QuantizedModel
    lanes : int
        MAC lanes P of the matrix-vector unit, 1 .. ``4 * hidden_size``; a matrix costs
        ``ceil(rows / P)`` row groups (the last one padded with zero rows).
    simd : int
        Columns per beat S (multipliers per lane), 1 .. the longest matrix row; a matrix
        costs ``ceil(rows / P) * ceil(cols / S)`` beats. The data buffers get ``S`` read
        ports (one per slot; synthesis replicates a block RAM per extra read port).
    max_seq_len : int
        Longest sequence the buffers hold.
    with_states : bool
        Append ``h_n`` and ``c_n`` to every result.
    initial_state : bool
        Every input sequence starts with ``h0`` and ``c0``.
    """

    def __init__(
        self,
        model: QuantizedModel,
        *,
        lanes: int = 4,
        simd: int = 1,
        max_seq_len: int = 64,
        with_states: bool = False,
        initial_state: bool = False,
    ):
        try:
            if not isinstance(model, QuantizedModel):
                raise TypeError(f"model must be a QuantizedModel, not {model!r}")
            if not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool) or max_seq_len < 1:
                raise ValueError(f"max_seq_len must be a positive integer, not {max_seq_len!r}")
            self._layout = WeightLayout.of(model, lanes, simd)  # validates lanes, simd
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a rejected design is not an unused one
            raise
        self._model = model
        self._lanes = lanes
        self._simd = simd
        self._max_seq_len = max_seq_len
        self._with_states = bool(with_states)
        self._initial_state = bool(initial_state)
        self._schedule = Schedule.of(self._layout)
        f = model.formats
        in_bits = [f["x"].bits]
        if self._initial_state:
            in_bits += [f["hidden"].bits, f["cell"].bits]
        out_bits = [model.output_format.bits]
        if self._with_states:
            out_bits += [f["hidden"].bits, f["cell"].bits]
        self._in_bits, self._out_bits = max(in_bits), max(out_bits)
        super().__init__(
            {
                "s_axis_tdata": In(signed(self._in_bits)),
                "s_axis_tvalid": In(1),
                "s_axis_tready": Out(1),
                "s_axis_tlast": In(1),
                "m_axis_tdata": Out(signed(self._out_bits)),
                "m_axis_tvalid": Out(1),
                "m_axis_tready": In(1),
                "m_axis_tlast": Out(1),
                "busy": Out(1),
                "error": Out(1),
            }
        )

    # -- parameters ---------------------------------------------------------------------------
    @property
    def model(self) -> QuantizedModel:
        return self._model

    @property
    def layout(self) -> WeightLayout:
        return self._layout

    @property
    def schedule(self) -> Schedule:
        return self._schedule

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def simd(self) -> int:
        return self._simd

    @property
    def max_seq_len(self) -> int:
        return self._max_seq_len

    @property
    def with_states(self) -> bool:
        return self._with_states

    @property
    def initial_state(self) -> bool:
        return self._initial_state

    def result_length(self, T: int) -> int:
        """Number of output elements for a sequence of ``T`` timesteps."""
        q = self._model
        if q.head is not None:
            n = q.head.out_features * (T if q.head.mode == "all" else 1)
        else:
            n = T * q.sequence_output_size
        if self._with_states:
            LD = q.num_layers * q.num_directions
            n += LD * (q.output_size + q.hidden_size)
        return n

    def input_length(self, T: int) -> int:
        """Number of input elements for a sequence of ``T`` timesteps."""
        q = self._model
        n = T * q.input_size
        if self._initial_state:
            LD = q.num_layers * q.num_directions
            n += LD * (q.output_size + q.hidden_size)
        return n

    def buffer_plan(self) -> dict[str, tuple[int, int]]:
        """On-chip data buffers: ``{name: (width, depth)}`` (only those this build needs)."""
        q, Tmax = self._model, self._max_seq_len
        f = q.formats
        H, Ho, D, L = q.hidden_size, q.output_size, q.num_directions, q.num_layers
        LD = L * D
        plan = {"xbuf": (f["x"].bits, Tmax * q.input_size)}
        for bank in range(min(L, 2)):
            plan[f"obuf{bank}"] = (f["hidden"].bits, Tmax * D * Ho)
        plan["cmem"] = (f["cell"].bits, LD * H)
        if q.proj_size:
            plan["mbuf"] = (f["hidden"].bits, H)
        if self._initial_state:
            plan["h0buf"] = (f["hidden"].bits, LD * Ho)
        if self._with_states:
            plan["hnbuf"] = (f["hidden"].bits, LD * Ho)
        if q.head is not None:
            rows = q.head.out_features * (Tmax if q.head.mode == "all" else 1)
            plan["headbuf"] = (f["head_out"].bits, rows)
        return plan

    def memory_plan(self) -> list[dict]:
        """Every memory of the design: weights, biases, activation ROMs and buffers."""
        layout, P = self._layout, self._lanes
        mems = [
            {"name": "weights", "kind": "ram", "width": P * layout.simd * layout.weight_bits,
             "depth": layout.depth},
            {"name": "biases", "kind": "ram", "width": P * layout.acc.bits,
             "depth": layout.bias_depth},
        ]  # fmt: skip
        for name, table in self._model.tables.items():
            width = table.entry_bits + (table.slope_bits if table.interpolate else 0)
            mems.append({"name": f"table_{name}", "kind": "rom", "width": width,
                         "depth": table.size + 1})  # fmt: skip
        for name, (width, depth) in self.buffer_plan().items():
            mems.append({"name": name, "kind": "ram", "width": width, "depth": depth})
        return mems

    def multiplier_plan(self) -> list[dict]:
        """Hardware multipliers: where, how many, operand widths."""
        q, layout = self._model, self._layout
        f = q.formats
        vec_bits = max(f["x"].bits, f["hidden"].bits)
        muls = [{"where": "matrix-vector unit lanes", "count": self._lanes * self._simd,
                 "a_bits": layout.weight_bits, "b_bits": vec_bits}]  # fmt: skip
        tables = q.tables
        for where, table, count in (
            ("gate activation interpolation", tables["sigmoid"], 4),
            ("cell tanh interpolation", tables["tanh_cell"], 1),
        ):
            if table.interpolate:
                muls.append({"where": where, "count": count, "a_bits": table.slope_bits,
                             "b_bits": table.shift + 1})  # fmt: skip
        muls += [
            {"where": "cell f*c_prev", "count": 1, "a_bits": f["gate"].bits,
             "b_bits": f["cell"].bits},
            {"where": "cell i*g and o*tanh(c)", "count": 2, "a_bits": f["gate"].bits,
             "b_bits": f["gate"].bits},
        ]  # fmt: skip
        return muls

    # -- hardware -----------------------------------------------------------------------------
    def _slot_source(self, m, slot, col, in_len, n_cols, fetch, x_r, m_r, h0_r, state_base):
        """The source buffer (``_SRC_*``) of column ``col`` of the beat being fetched, and
        the buffer read addresses of slot ``slot`` (the ``obuf`` address is returned: its
        slot-0 port is shared with the drain). Padding columns (``col >= n_cols``) read 0."""
        q, Tmax = self._model, self._max_seq_len
        I, Ho, D, L = q.input_size, q.output_size, q.num_directions, q.num_layers
        DHo = D * Ho
        is_rec = Signal(name=f"is_rec{slot}")
        rec_k = Signal(range(max(Ho, 1) + 1), name=f"rec_k{slot}")
        m.d.comb += [is_rec.eq(col >= in_len), rec_k.eq(col - in_len)]
        src = Signal(range(6), name=f"src{slot}")
        o_addr = Signal(range(max(2, Tmax * DHo)), name=f"o_addr{slot}")
        x_raddr = Signal(range(max(2, Tmax * I)), name=f"x_raddr{slot}")
        with m.Switch(fetch.kind):
            with m.Case(KIND_GATES):
                with m.If(~is_rec):
                    with m.If(fetch.layer == 0):
                        m.d.comb += [src.eq(_SRC_X), x_raddr.eq(fetch.t * I + col)]
                    with m.Else():
                        bank = Mux(fetch.layer[0], _SRC_O0, _SRC_O1)  # layer l-1's bank
                        m.d.comb += [src.eq(bank), o_addr.eq(fetch.t * DHo + col)]
                with m.Elif(fetch.first_step):
                    m.d.comb += src.eq(_SRC_H0 if self._initial_state else _SRC_ZERO)
                with m.Else():
                    bank = Mux(fetch.layer[0], _SRC_O1, _SRC_O0)  # layer l's own bank
                    m.d.comb += [
                        src.eq(bank),
                        o_addr.eq(fetch.t_prev * DHo + fetch.direction * Ho + rec_k),
                    ]
            with m.Case(KIND_PROJ):
                m.d.comb += src.eq(_SRC_M)
            with m.Case(KIND_HEAD):
                top = _SRC_O1 if (L - 1) % 2 else _SRC_O0
                m.d.comb += [src.eq(top), o_addr.eq(fetch.t * DHo + col)]
        if self._simd > 1:
            with m.If(col >= n_cols):
                m.d.comb += src.eq(_SRC_ZERO)
        m.d.comb += x_r.addr.eq(x_raddr)
        if h0_r is not None:
            m.d.comb += h0_r.addr.eq(state_base + rec_k)
        if m_r is not None:
            m.d.comb += m_r.addr.eq(col)
        return src, o_addr

    def elaborate(self, platform):
        m = Module()
        q, P, S, Tmax = self._model, self._lanes, self._simd, self._max_seq_len
        f = q.formats
        I, H, Ho = q.input_size, q.hidden_size, q.output_size
        D, L = q.num_directions, q.num_layers
        DHo, LD = D * Ho, L * D
        sched, layout = self._schedule, self._layout
        has_proj, head = bool(q.proj_size), q.head
        out_rows = head.out_features if head is not None else 0

        # ---- blocks -------------------------------------------------------------------------
        m.submodules.weights = wmem = WeightMemory(layout)
        vec_bits = max(f["x"].bits, f["hidden"].bits)
        m.submodules.mvu = mvu = MatrixVectorUnit.of(layout, vec_bits, q.rounding, q.overflow)
        tables = q.tables
        m.submodules.gate_act = act = ActivationLUT(
            (tables["sigmoid"], tables["sigmoid"], tables["tanh_gate"], tables["sigmoid"])
        )
        m.submodules.cell = cell = CellDatapath(CellArithmetic.of(q))

        # ---- buffers ------------------------------------------------------------------------
        def memory(name, fmt_bits, depth):
            mem = Memory(shape=signed(fmt_bits), depth=max(2, depth), init=[])  # no 0-bit addr
            m.submodules[name] = mem
            return mem

        plan = self.buffer_plan()
        mems = {name: memory(name, width, depth) for name, (width, depth) in plan.items()}
        xbuf, cmem = mems["xbuf"], mems["cmem"]
        obufs = [mems[name] for name in ("obuf0", "obuf1") if name in mems]
        mbuf, h0buf = mems.get("mbuf"), mems.get("h0buf")
        hnbuf, headbuf = mems.get("hnbuf"), mems.get("headbuf")

        # one read port per slot for the fetch stage (slot 0's also serves the drain)
        x_w, x_rs = xbuf.write_port(), [xbuf.read_port() for _ in range(S)]
        o_w = [mem.write_port() for mem in obufs]
        o_rs = [[mem.read_port() for _ in range(S)] for mem in obufs]
        o_r = [ports[0] for ports in o_rs]
        c_w = cmem.write_port()
        c_r = cmem.read_port(domain="comb")  # c_prev at the cell input
        c_rd = cmem.read_port()  # c_n drain
        m_w = mbuf.write_port() if mbuf else None
        m_rs = [mbuf.read_port() for _ in range(S)] if mbuf else [None] * S
        h0_w = h0buf.write_port() if h0buf else None
        h0_rs = [h0buf.read_port() for _ in range(S)] if h0buf else [None] * S
        hn_w, hn_r = (hnbuf.write_port(), hnbuf.read_port()) if hnbuf else (None, None)
        hd_w, hd_r = (headbuf.write_port(), headbuf.read_port()) if headbuf else (None, None)

        # ---- phase --------------------------------------------------------------------------
        LOAD, COMPUTE, DRAIN = 0, 1, 2
        phase = Signal(2, init=LOAD)
        T = Signal(range(Tmax + 1))
        start = Signal()
        error = Signal()
        m.d.comb += [self.error.eq(error), self.busy.eq(phase != LOAD)]
        computing, draining = Signal(), Signal()
        m.d.comb += [computing.eq(phase == COMPUTE), draining.eq(phase == DRAIN)]

        cursors = {n: ScheduleCursor(sched, Tmax) for n in ("issue", "fetch", "post", "wb")}
        for name, cur in cursors.items():
            m.submodules[f"{name}_cursor"] = cur
            m.d.comb += [cur.T.eq(T), cur.restart.eq(start)]
        issue, fetch, post, wb = (cursors[n] for n in ("issue", "fetch", "post", "wb"))

        drain_done = Signal()
        with m.If(start):
            m.d.sync += phase.eq(COMPUTE)
        with m.If(computing & wb.done):
            m.d.sync += phase.eq(DRAIN)
        with m.If(drain_done):
            m.d.sync += phase.eq(LOAD)

        # ---- LOAD: s_axis → xbuf (and h0buf, cmem) --------------------------------------------
        n_h0, n_c0 = (LD * Ho, LD * H) if self._initial_state else (0, 0)
        init_idx = Signal(range(max(2, n_h0 + n_c0 + 1)))
        in_init = Signal()
        feat = Signal(range(max(2, I)))
        tpos = Signal(range(Tmax + 1))
        x_addr = Signal(range(Tmax * I + 1))
        accept = Signal()
        m.d.comb += [
            self.s_axis_tready.eq(phase == LOAD),
            accept.eq(self.s_axis_tvalid & (phase == LOAD)),
        ]
        if n_h0 + n_c0:
            m.d.comb += in_init.eq(init_idx < n_h0 + n_c0)
        load_c_en, load_c_addr = Signal(), Signal(range(max(2, LD * H)))
        with m.If(accept):
            with m.If(in_init):
                m.d.sync += init_idx.eq(init_idx + 1)
                if h0_w is not None:
                    with m.If(init_idx < n_h0):
                        m.d.comb += [
                            h0_w.addr.eq(init_idx),
                            h0_w.data.eq(self.s_axis_tdata),
                            h0_w.en.eq(1),
                        ]
                    with m.Else():
                        m.d.comb += [load_c_en.eq(1), load_c_addr.eq(init_idx - n_h0)]
            with m.Else():
                with m.If(tpos < Tmax):
                    m.d.comb += [x_w.addr.eq(x_addr), x_w.data.eq(self.s_axis_tdata), x_w.en.eq(1)]
                    m.d.sync += x_addr.eq(x_addr + 1)
                with m.If(feat == I - 1):
                    m.d.sync += [feat.eq(0), tpos.eq(Mux(tpos < Tmax, tpos + 1, tpos))]
                with m.Else():
                    m.d.sync += feat.eq(feat + 1)
            with m.If(self.s_axis_tlast):
                whole = Signal.like(tpos)
                m.d.comb += whole.eq(
                    Mux(~in_init & (feat == I - 1) & (tpos < Tmax), tpos + 1, tpos)
                )
                bad = in_init | (feat != I - 1) | (tpos >= Tmax)
                with m.If(bad):
                    m.d.sync += error.eq(1)
                m.d.sync += [init_idx.eq(0), feat.eq(0), tpos.eq(0), x_addr.eq(0), T.eq(whole)]
                m.d.comb += start.eq(whole != 0)

        # ---- issue: matrix commands → weight memory -----------------------------------------
        m.d.comb += [
            wmem.cmd.valid.eq(computing & ~issue.done),
            wmem.cmd.payload.eq(issue.matrix),
            issue.advance.eq(wmem.cmd.valid & wmem.cmd.ready),
        ]

        # ---- fetch: attach the vector elements; wait for true dependencies ------------------
        # A beat carries the S columns beat.col .. beat.col + S - 1 (slot s: column col + s).
        beat = wmem.o.payload
        in_len = Signal(range(max(I, DHo) + 1))
        m.d.comb += in_len.eq(Mux(fetch.layer == 0, I, DHo))
        any_in, any_rec = Signal(), Signal()
        m.d.comb += [any_in.eq(beat.col < in_len), any_rec.eq(beat.col + S - 1 >= in_len)]
        layer_ready = Signal()
        with m.Switch(fetch.layer):
            for layer in range(L):
                with m.Case(layer):
                    if layer == 0:
                        m.d.comb += layer_ready.eq(1)
                    else:
                        first = sched.first_pass_of_layer(layer)
                        m.d.comb += layer_ready.eq(wb.at_or_past(m, first))
        dep_ok = Signal()
        with m.Switch(fetch.kind):
            with m.Case(KIND_GATES):
                rec_ready = fetch.first_step | wb.at_or_past(m, fetch.p, fetch.s)
                m.d.comb += dep_ok.eq((~any_in | layer_ready) & (~any_rec | rec_ready))
            with m.Case(KIND_PROJ):
                m.d.comb += dep_ok.eq(wb.at_or_past(m, fetch.p, fetch.s, 1))
            if sched.head_pass is not None:
                with m.Case(KIND_HEAD):
                    m.d.comb += dep_ok.eq(wb.at_or_past(m, sched.head_pass))

        n_cols = Signal(range(max(I, DHo) + Ho + H + 1))  # columns of the current matrix
        m.d.comb += n_cols.eq(in_len + Ho)
        with m.Switch(fetch.kind):
            with m.Case(KIND_PROJ):
                m.d.comb += n_cols.eq(H)
            with m.Case(KIND_HEAD):
                m.d.comb += n_cols.eq(DHo)
        o_addr = Signal(range(max(2, Tmax * DHo)))  # slot 0's, shared with the drain
        state_base = Signal(range(max(2, LD * Ho + 1)))
        m.d.comb += state_base.eq(fetch.layer * DHo + fetch.direction * Ho)
        slot_src = []
        for slot in range(S):
            src, slot_o_addr = self._slot_source(
                m, slot, beat.col + slot, in_len, n_cols, fetch, x_rs[slot], m_rs[slot],
                h0_rs[slot], state_base,
            )  # fmt: skip
            slot_src.append(src)
            if slot == 0:
                m.d.comb += o_addr.eq(slot_o_addr)
            for ports in o_rs:
                if slot > 0:
                    m.d.comb += ports[slot].addr.eq(slot_o_addr)

        st_valid = Signal()
        st = Signal(wmem.o.payload.shape())
        st_srcs = [Signal.like(src, name=f"st_src{slot}") for slot, src in enumerate(slot_src)]
        advance = Signal()
        take = Signal()
        # Pacing: the last beat of a row group is taken at least ``emitter_cycles`` cycles
        # after the previous group's, so that the emitter has made room for its rows when
        # the result leaves the MVU (the MVU never stalls; the cycle model stays exact).
        paced = Signal()
        spacing = {kind: emitter_cycles(kind, P, P) for kind in ("gates", "proj", "head")}
        last_spacing = {mx.kind: emitter_cycles(mx.kind, P, mx.last_group_rows)
                        for mx in layout.matrices}  # fmt: skip
        longest = max(max(spacing.values()), max(last_spacing.values()))
        if longest > 1:
            gap = Signal(range(longest))  # cycles until the next group's last beat may go
            gap_load = Signal.like(gap)
            with m.Switch(fetch.kind):
                for kind, code in _KIND_CODES.items():
                    if kind in last_spacing:
                        with m.Case(code):
                            m.d.comb += gap_load.eq(
                                Mux(beat.end, last_spacing[kind], spacing[kind]) - 1
                            )
            m.d.comb += paced.eq(beat.last & (gap != 0))
            with m.If(take & beat.last):
                m.d.sync += gap.eq(gap_load)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)
        m.d.comb += [
            advance.eq(~st_valid | mvu.i.ready),
            wmem.o.ready.eq(computing & advance & dep_ok & ~paced),
            take.eq(wmem.o.valid & wmem.o.ready),
            fetch.advance.eq(take & beat.end),
        ]
        with m.If(advance):
            m.d.sync += [st_valid.eq(take), st.eq(beat)]
            m.d.sync += [reg.eq(src) for reg, src in zip(st_srcs, slot_src, strict=True)]
        vectors = []
        for slot in range(S):
            # (slot 0's obuf ports are shared with the drain: enabled below)
            ports = [x_rs[slot], m_rs[slot], h0_rs[slot]]
            ports += [bank_ports[slot] for bank_ports in o_rs] if slot else []
            m.d.comb += [port.en.eq(advance) for port in ports if port is not None]
            vector = Signal(signed(vec_bits), name=f"vector{slot}")
            with m.Switch(st_srcs[slot]):
                with m.Case(_SRC_X):
                    m.d.comb += vector.eq(x_rs[slot].data)
                for b, bank_ports in enumerate(o_rs):
                    with m.Case(_SRC_O0 + b):
                        m.d.comb += vector.eq(bank_ports[slot].data)
                if m_rs[slot] is not None:
                    with m.Case(_SRC_M):
                        m.d.comb += vector.eq(m_rs[slot].data)
                if h0_rs[slot] is not None:
                    with m.Case(_SRC_H0):
                        m.d.comb += vector.eq(h0_rs[slot].data)
                with m.Default():
                    m.d.comb += vector.eq(0)
            vectors.append(vector)
        mi = mvu.i.payload
        m.d.comb += [
            mvu.i.valid.eq(st_valid),
            mi.weights.eq(st.weights),
            mi.bias.eq(st.bias),
            mi.shift_sel.eq(st.shift_sel),
            mi.target_sel.eq(st.target_sel),
            mi.first.eq(st.first),
            mi.last.eq(st.last),
            mi.vector.eq(vectors[0] if S == 1 else Cat(*vectors)),
        ]

        # ---- post: regroup MVU rows into hidden units (gates) or single rows -----------------
        # A row buffer row0 .. row{cap-1} holds the MVU rows not yet emitted, oldest first.
        # Gate rows are unit-major, so a group of P rows may end inside a hidden unit: up to
        # ``spare = 4 - gcd(P, 4)`` rows of a partly received unit wait for the next group
        # (``cap = P + spare``; for P a multiple of 4 no unit straddles two groups). A unit
        # (4 rows) leaves per cycle when 4 rows are buffered; a projection/head row leaves
        # per cycle, and the last row of an item takes the group's padding rows with it. An
        # MVU beat is taken when its P rows fit after this cycle's departure. The fetch stage
        # paces the groups (see ``emitter_cycles``) so that the MVU never waits here.
        out_bits = mvu.o.payload.data.shape().elem_shape.width
        spare = 4 - math.gcd(P, 4)
        cap = P + spare
        rowbuf = [Signal(signed(out_bits), name=f"row{e}") for e in range(cap)]
        count = Signal(range(cap + 1))  # rows buffered
        pads = {  # padding rows of the last group of a projection / head item
            _KIND_CODES[mx.kind]: mx.padded_rows - mx.rows
            for mx in layout.matrices
            if mx.kind != "gates"
        }
        # padding rows of a gates item's last group (4H rows in every layer and direction):
        # they arrive with the last unit and leave with it
        gate_pad = layout.matrices[0].padded_rows - layout.matrices[0].rows
        j = Signal(range(max(H, out_rows, Ho, 1) + 1))  # unit or row index within the item
        rows = Signal(range(max(Ho, out_rows, 1) + 1))
        m.d.comb += rows.eq(Mux(post.kind == KIND_PROJ, Ho, max(out_rows, 1)))
        gate_valid, row_valid = Signal(), Signal()
        m.d.comb += [
            gate_valid.eq((count >= 4) & (post.kind == KIND_GATES) & computing),
            row_valid.eq((count >= 1) & (post.kind != KIND_GATES) & computing),
        ]
        # gates: one hidden unit (i, f, g, o) per cycle
        c_addr_w = Signal(range(max(2, LD * H)))
        fifo_a = SyncFIFOBuffered(width=len(c_addr_w) + 1, depth=_SIDEBAND_DEPTH)
        m.submodules.sideband_cell = fifo_a
        zero_c = Signal()
        m.d.comb += [
            c_addr_w.eq((post.layer * D + post.direction) * H + j),
            zero_c.eq(post.first_step & (not self._initial_state)),
        ]
        o_addr_w = Signal.like(o_addr)
        hn_addr_w = Signal(range(max(2, LD * Ho)))
        m.d.comb += [
            o_addr_w.eq(post.t * DHo + post.direction * Ho + j),
            hn_addr_w.eq(post.layer * DHo + post.direction * Ho + j),
        ]
        wb_fields = [c_addr_w, j, o_addr_w, hn_addr_w, post.layer[0], post.last_step, Signal()]
        item_last_w = wb_fields[-1]
        m.d.comb += item_last_w.eq(j == H - 1)
        wb_width = sum(len(s) for s in wb_fields)
        m.submodules.sideband_write = fifo_b = SyncFIFOBuffered(
            width=wb_width, depth=_SIDEBAND_DEPTH
        )
        gate_fire = Signal()
        m.d.comb += [
            act.i.valid.eq(gate_valid & fifo_a.w_rdy & fifo_b.w_rdy),
            gate_fire.eq(act.i.valid & act.i.ready),
            fifo_a.w_en.eq(gate_fire),
            fifo_a.w_data.eq(Cat(c_addr_w, zero_c)),
            fifo_b.w_en.eq(gate_fire),
        ]
        m.d.comb += fifo_b.w_data.eq(Cat(*wb_fields))
        # The next unit is always row0..row3 (the buffer shifts down as rows leave): the
        # activation inputs come straight from flip-flops, off the critical path.
        m.d.comb += [act.i.payload[g].eq(rowbuf[g]) for g in range(4)]
        # projection / head: one row per cycle, written directly, from row0
        row_data = Signal(signed(out_bits))
        row_end = Signal()
        direct_en = Signal()
        m.d.comb += [
            row_data.eq(rowbuf[0]),
            direct_en.eq(row_valid),
            row_end.eq(row_valid & (j == rows - 1)),
        ]
        with m.If(gate_fire):
            with m.If(j == H - 1):
                m.d.sync += j.eq(0)
                m.d.comb += post.advance.eq(1)
            with m.Else():
                m.d.sync += j.eq(j + 1)
        with m.If(row_valid):
            with m.If(row_end):
                m.d.sync += j.eq(0)
                m.d.comb += post.advance.eq(1)
            with m.Else():
                m.d.sync += j.eq(j + 1)
        # departures this cycle: (condition, rows); at most one holds
        unit_end = Signal()
        m.d.comb += unit_end.eq(gate_fire & (j == H - 1))
        departures = {4: [gate_fire & ~unit_end] if gate_pad else [gate_fire]}
        if gate_pad:
            departures.setdefault(4 + gate_pad, []).append(unit_end)
        departures.setdefault(1, []).append(row_valid & ~row_end)
        for kind, pad in pads.items():
            departures.setdefault(1 + pad, []).append(row_end & (post.kind == kind))
        if not pads:
            departures[1].append(row_end)
        leave = []
        for rows_out, conditions in sorted(departures.items()):
            cond = Signal(name=f"leave{rows_out}")
            m.d.comb += cond.eq(Cat(*conditions).any())
            leave.append((rows_out, cond))
        keep = Signal(range(cap + 1))  # rows still buffered after this cycle's departure
        m.d.comb += keep.eq(count)
        for rows_out, cond in leave:
            with m.If(cond):
                m.d.comb += keep.eq(count - rows_out)
        accept_beat = Signal()
        m.d.comb += [
            mvu.o.ready.eq(keep <= spare),
            accept_beat.eq(mvu.o.valid & mvu.o.ready),
        ]
        m.d.sync += count.eq(keep + Mux(accept_beat, P, 0))
        data_in = mvu.o.payload.data
        for k in range(cap):
            with m.If(accept_beat & (keep <= k)):  # the new beat's rows go behind the kept ones
                offsets = range(max(0, k - P + 1), min(k, spare) + 1)
                if len(offsets) == 1:
                    m.d.sync += rowbuf[k].eq(data_in[k - offsets[0]])
                else:
                    with m.Switch(keep):
                        for off in offsets:
                            with m.Case(off):
                                m.d.sync += rowbuf[k].eq(data_in[k - off])
            for rows_out, cond in leave:
                if k + rows_out < cap:
                    with m.Elif(cond):
                        m.d.sync += rowbuf[k].eq(rowbuf[k + rows_out])

        # ---- cell input: activations + c_prev ------------------------------------------------
        a_c_addr = fifo_a.r_data[: len(c_addr_w)]
        a_zero = fifo_a.r_data[len(c_addr_w)]
        m.d.comb += c_r.addr.eq(a_c_addr)
        ci = cell.i.payload
        m.d.comb += [
            cell.i.valid.eq(act.o.valid & fifo_a.r_rdy),
            ci.i.eq(act.o.payload[0]),
            ci.f.eq(act.o.payload[1]),
            ci.g.eq(act.o.payload[2]),
            ci.o.eq(act.o.payload[3]),
            ci.c_prev.eq(Mux(a_zero, 0, c_r.data)),
            act.o.ready.eq(cell.i.ready & fifo_a.r_rdy),
            fifo_a.r_en.eq(cell.i.valid & cell.i.ready),
        ]

        # ---- write-back ------------------------------------------------------------------------
        fields, offset = {}, 0
        for name, sig in zip(
            ("c_addr", "j", "o_addr", "hn_addr", "bank", "last_step", "item_last"),
            wb_fields,
            strict=True,
        ):
            fields[name] = fifo_b.r_data[offset : offset + len(sig)]
            offset += len(sig)
        gate_write = Signal()
        m.d.comb += [
            cell.o.ready.eq(1),
            gate_write.eq(cell.o.valid & fifo_b.r_rdy),
            fifo_b.r_en.eq(gate_write),
        ]
        cm = cell.o.payload
        with m.If(gate_write):
            m.d.comb += [c_w.addr.eq(fields["c_addr"]), c_w.data.eq(cm.c), c_w.en.eq(1)]
            if has_proj:
                m.d.comb += [m_w.addr.eq(fields["j"]), m_w.data.eq(cm.m), m_w.en.eq(1)]
            else:
                for b, port in enumerate(o_w):
                    with m.If(fields["bank"] == b):
                        m.d.comb += [
                            port.addr.eq(fields["o_addr"]),
                            port.data.eq(cm.m),
                            port.en.eq(1),
                        ]
                if hn_w is not None:
                    with m.If(fields["last_step"]):
                        m.d.comb += [
                            hn_w.addr.eq(fields["hn_addr"]),
                            hn_w.data.eq(cm.m),
                            hn_w.en.eq(1),
                        ]
            with m.If(fields["item_last"]):
                m.d.comb += wb.advance.eq(1)
        with m.Elif(load_c_en):
            m.d.comb += [c_w.addr.eq(load_c_addr), c_w.data.eq(self.s_axis_tdata), c_w.en.eq(1)]
        with m.If(direct_en):
            with m.If(j == rows - 1):
                m.d.comb += wb.advance.eq(1)
            with m.If(post.kind == KIND_PROJ):
                for b, port in enumerate(o_w):
                    with m.If(post.layer[0] == b):
                        m.d.comb += [port.addr.eq(o_addr_w), port.data.eq(row_data), port.en.eq(1)]
                if hn_w is not None:
                    with m.If(post.last_step):
                        m.d.comb += [hn_w.addr.eq(hn_addr_w), hn_w.data.eq(row_data), hn_w.en.eq(1)]
            if hd_w is not None:
                with m.If(post.kind == KIND_HEAD):
                    addr = post.t * out_rows + j if head.mode == "all" else j
                    m.d.comb += [hd_w.addr.eq(addr), hd_w.data.eq(row_data), hd_w.en.eq(1)]

        # ---- DRAIN: results → m_axis -----------------------------------------------------------
        regions = []  # (read port, element count)
        if head is not None:
            regions.append((hd_r, T * out_rows if head.mode == "all" else Const(out_rows)))
        else:
            regions.append((o_r[(L - 1) % 2], T * DHo))
        if self._with_states:
            regions += [(hn_r, Const(LD * Ho)), (c_rd, Const(LD * H))]
        region = Signal(range(len(regions) + 1))
        elem = Signal(range(max(2, Tmax * max(DHo, out_rows, 1), LD * max(H, Ho)) + 1))
        out_valid, out_last = Signal(), Signal()
        out_region = Signal.like(region)
        d_adv = Signal()
        d_issue = Signal()
        count = Signal.like(elem)
        with m.Switch(region):
            for index, (_, n) in enumerate(regions):
                with m.Case(index):
                    m.d.comb += count.eq(n)
        final = Signal()
        m.d.comb += [
            d_adv.eq(~out_valid | self.m_axis_tready),
            d_issue.eq(draining & (region < len(regions))),
            final.eq((region == len(regions) - 1) & (elem == count - 1)),
        ]
        with m.If(d_adv):
            m.d.sync += [out_valid.eq(d_issue), out_region.eq(region), out_last.eq(final)]
            with m.If(d_issue):
                with m.If(elem == count - 1):
                    m.d.sync += [elem.eq(0), region.eq(region + 1)]
                with m.Else():
                    m.d.sync += elem.eq(elem + 1)
        with m.If(phase == LOAD):
            m.d.sync += [region.eq(0), elem.eq(0)]
        for port, _ in regions:
            if port is c_rd:
                m.d.comb += [port.addr.eq(elem), port.en.eq(d_adv)]
        for port in o_r:
            m.d.comb += [
                port.addr.eq(Mux(draining, elem, o_addr)),
                port.en.eq(Mux(draining, d_adv, advance)),
            ]
        for port in (hn_r, hd_r):
            if port is not None:
                m.d.comb += [port.addr.eq(elem), port.en.eq(d_adv)]
        with m.Switch(out_region):
            for index, (port, _) in enumerate(regions):
                with m.Case(index):
                    m.d.comb += self.m_axis_tdata.eq(port.data)
        m.d.comb += [
            self.m_axis_tvalid.eq(out_valid),
            self.m_axis_tlast.eq(out_last),
            drain_done.eq(out_valid & self.m_axis_tready & out_last),
        ]
        return m
