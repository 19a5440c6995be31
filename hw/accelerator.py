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
* ``w`` (``w__payload``, ``w__valid``, ``w__ready`` in Verilog): the weight port, an
  AXI4-Stream-style input of :attr:`LSTMAccelerator.weight_load_layout` beats
  (:attr:`.weights.WeightMemory.load_layout`): bit 0 ``bias`` (1: bias memory, 0: weight
  memory), then ``addr`` (the word address), then ``data`` (the word, lane-major as
  :func:`.layout.pack` packs it), exactly the beats of :func:`lstmfpga.runtime.pack_weights`.
  One word per beat, written at the transfer's clock edge, in any order. ``w__ready`` is
  high exactly while ``busy`` is low (between sequences, also while a sequence is being
  loaded) and low while a sequence is computed or drained, so a matrix is never rewritten
  while it is streamed; the next sequence runs with the new words. Leave ``w__valid`` low
  to keep the weights the design was built with.

Operation: LOAD (accept the sequence into on-chip buffers) → COMPUTE (the schedule of
:mod:`.schedule`, no interaction with the ports) → DRAIN (stream the results; back-pressure on
``m_axis`` only pauses the drain) → LOAD. See ``docs/accelerator.md`` for the schedule and
the cycle model (:mod:`.cycles`).

Datapath: :class:`~.loader.InputLoader` writes the input buffers;
:class:`~.weights.WeightMemory` streams each matrix's row groups; a fetch stage attaches the
vector element (input part, recurrent part, projection input, head input) read from the
buffers, stalling only for true dependencies; the :class:`~.mvu.MatrixVectorUnit`
accumulates and requantizes P rows at a time; :class:`~.regroup.GateRegrouper` regroups its
outputs into hidden units (four gate pre-activations) for
:class:`~.activation.ActivationLUT` and :class:`~.cell.CellDatapath`, or into single rows
(projection, head), which a writer stores; :class:`~.drain.ResultDrain` streams the
results out.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..quant.golden import CellArithmetic
from ..quant.model import QuantizedModel
from .activation import ActivationLUT
from .cell import CellDatapath
from .drain import Region, ResultDrain
from .layout import WeightLayout
from .loader import InputLoader
from .mvu import MatrixVectorUnit
from .regroup import GateRegrouper, emitter_cycles
from .schedule import KIND_GATES, KIND_HEAD, KIND_PROJ, Schedule, ScheduleCursor
from .stream_geometry import StreamGeometry
from .weights import WeightMemory

__all__ = ["LSTMAccelerator", "default_cells", "emitter_cycles"]

_SRC_ZERO, _SRC_X, _SRC_O0, _SRC_O1, _SRC_M, _SRC_H0 = range(6)
_SIDEBAND_DEPTH = 32
_KIND_CODES = {"gates": KIND_GATES, "proj": KIND_PROJ, "head": KIND_HEAD}


def default_cells(layout: WeightLayout) -> int:
    """The fewest parallel activation + cell units ``V`` that keep the matrix-vector unit
    from ever waiting on them: a full gate row group completes up to ``u = ceil(P / 4)``
    hidden units, which leave ``V`` per cycle, while its beats take ``chunks = ceil((I_l +
    H_out) / S)`` cycles; the MVU never waits when ``ceil(u / V) <= chunks`` for every
    layer, i.e. ``V = ceil(u / min chunks)`` (at most ``H``; 1 unless ``ceil(P / 4)``
    exceeds a gate row's beats)."""
    if not isinstance(layout, WeightLayout):
        raise TypeError(f"layout must be a WeightLayout, not {layout!r}")
    gates = [mx for mx in layout.matrices if mx.kind == "gates"]
    units = -(-layout.lanes // 4)
    chunks = min(mx.chunks for mx in gates)
    return min(-(-units // chunks), max(mx.rows for mx in gates) // 4)


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
    cells : int or None
        Parallel activation + cell units V, 1 .. ``hidden_size``: up to V hidden units leave
        the regrouper per cycle (:func:`.regroup.emitter_cycles`). ``None``:
        :func:`default_cells`. The buffers the cells write (``cmem``, and ``obuf*`` and
        ``hnbuf`` without a projection, ``mbuf`` with one) get V write ports (``cmem`` also V
        combinational read ports), which synthesis builds from distributed RAM or flip-flops
        rather than block RAM when V > 1.
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
        cells: int | None = None,
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
            H = model.hidden_size
            if cells is None:
                cells = default_cells(self._layout)
            elif not isinstance(cells, int) or isinstance(cells, bool) or not 1 <= cells <= H:
                raise ValueError(f"cells must be in 1..{H} (hidden_size), not {cells!r}")
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a rejected design is not an unused one
            raise
        self._model = model
        self._lanes = lanes
        self._simd = simd
        self._cells = cells
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
        probe = WeightMemory(self._layout)  # only for its load port's payload layout
        probe._MustUse__silence = True
        self._load_layout = probe.load_layout
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
                "w": In(stream.Signature(self._load_layout)),
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
    def cells(self) -> int:
        return self._cells

    @property
    def max_seq_len(self) -> int:
        return self._max_seq_len

    @property
    def with_states(self) -> bool:
        return self._with_states

    @property
    def initial_state(self) -> bool:
        return self._initial_state

    @property
    def weight_load_layout(self):
        """Payload layout of the weight port ``w`` (:attr:`.weights.WeightMemory.load_layout`)."""
        return self._load_layout

    @property
    def stream_geometry(self) -> StreamGeometry:
        """The stream lengths of this build (:class:`~.stream_geometry.StreamGeometry`)."""
        return StreamGeometry.of(
            self._model, with_states=self._with_states, initial_state=self._initial_state
        )

    def result_length(self, T: int) -> int:
        """Number of output elements for a sequence of ``T`` timesteps."""
        return self.stream_geometry.output_length(T)

    def input_length(self, T: int) -> int:
        """Number of input elements for a sequence of ``T`` timesteps."""
        return self.stream_geometry.input_length(T)

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
            width = table.rom_word_bits
            mems.append({"name": f"table_{name}", "kind": "rom", "width": width,
                         "depth": table.size + 1})  # fmt: skip
        for name, (width, depth) in self.buffer_plan().items():
            mems.append({"name": name, "kind": "ram", "width": width, "depth": depth})
        return mems

    def multiplier_plan(self) -> list[dict]:
        """Hardware multipliers: where, how many, operand widths (the MVU's ``P * S``, then
        those of the ``V`` activation + cell units)."""
        q, layout, V = self._model, self._layout, self._cells
        f = q.formats
        vec_bits = max(f["x"].bits, f["hidden"].bits)
        muls = [{"where": "matrix-vector unit lanes", "count": self._lanes * self._simd,
                 "a_bits": layout.weight_bits, "b_bits": vec_bits}]  # fmt: skip
        tables = q.tables
        for where, table, count in (
            ("gate activation interpolation", tables["sigmoid"], 4 * V),
            ("cell tanh interpolation", tables["tanh_cell"], V),
        ):
            if table.interpolates:
                muls.append({"where": where, "count": count, "a_bits": table.slope_bits,
                             "b_bits": table.shift + 1})  # fmt: skip
        muls += [
            {"where": "cell f*c_prev", "count": V, "a_bits": f["gate"].bits,
             "b_bits": f["cell"].bits},
            {"where": "cell i*g and o*tanh(c)", "count": 2 * V, "a_bits": f["gate"].bits,
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
        q = self._model
        head = q.head
        n = SimpleNamespace(
            q=q, P=self._lanes, S=self._simd, Tmax=self._max_seq_len, f=q.formats,
            I=q.input_size, H=q.hidden_size, Ho=q.output_size, D=q.num_directions,
            L=q.num_layers, DHo=q.num_directions * q.output_size,
            LD=q.num_layers * q.num_directions, sched=self._schedule, layout=self._layout,
            has_proj=bool(q.proj_size), head=head, V=self._cells,
            out_rows=head.out_features if head is not None else 0,
        )  # fmt: skip
        self._blocks(m, n)
        self._phase(m, n)
        self._dependencies(m, n)
        self._sources(m, n)
        self._pacing(m, n)
        self._stage(m, n)
        self._post(m, n)
        self._write_back(m, n)
        self._drain(m, n)
        return m

    def _blocks(self, m, n):
        """The datapath blocks (weights, MVU, activation tables, cell) and the buffer ports."""
        S, f, layout, q = n.S, n.f, n.layout, n.q
        # ---- blocks -------------------------------------------------------------------------
        m.submodules.weights = n.wmem = WeightMemory(layout)
        n.vec_bits = max(f["x"].bits, f["hidden"].bits)
        m.submodules.mvu = n.mvu = MatrixVectorUnit.of(layout, n.vec_bits, q.rounding, q.overflow)
        tables = q.tables
        gate_tables = (tables["sigmoid"], tables["sigmoid"], tables["tanh_gate"], tables["sigmoid"])
        m.submodules.gate_act = n.act = ActivationLUT(gate_tables * n.V)  # unit k: 4k .. 4k+3
        arith = CellArithmetic.of(q)
        n.cells = [CellDatapath(arith) for _ in range(n.V)]
        for k, cell in enumerate(n.cells):
            m.submodules[f"cell{k}" if n.V > 1 else "cell"] = cell

        # ---- buffers ------------------------------------------------------------------------
        def memory(name, fmt_bits, depth):
            mem = Memory(shape=signed(fmt_bits), depth=max(2, depth), init=[])  # no 0-bit addr
            m.submodules[name] = mem
            return mem

        n.plan = self.buffer_plan()
        mems = {name: memory(name, width, depth) for name, (width, depth) in n.plan.items()}
        xbuf, cmem = mems["xbuf"], mems["cmem"]
        obufs = [mems[name] for name in ("obuf0", "obuf1") if name in mems]
        mbuf, h0buf = mems.get("mbuf"), mems.get("h0buf")
        hnbuf, headbuf = mems.get("hnbuf"), mems.get("headbuf")

        # one read port per slot for the fetch stage (slot 0's also serves the drain)
        n.x_w, n.x_rs = xbuf.write_port(), [xbuf.read_port() for _ in range(S)]
        # the cells write V units per cycle: V write ports on the buffers they write (port 0
        # also serves the single-row writes and the c0 load)
        V, has_proj = n.V, n.has_proj
        n.o_ws = [[mem.write_port() for _ in range(1 if has_proj else V)] for mem in obufs]
        n.o_rs = [[mem.read_port() for _ in range(S)] for mem in obufs]
        n.o_r = [ports[0] for ports in n.o_rs]
        n.c_ws = [cmem.write_port() for _ in range(V)]
        n.c_rs = [cmem.read_port(domain="comb") for _ in range(V)]  # c_prev at the cell inputs
        n.c_rd = cmem.read_port()  # c_n drain
        n.m_ws = [mbuf.write_port() for _ in range(V)] if mbuf else None
        n.m_rs = [mbuf.read_port() for _ in range(S)] if mbuf else [None] * S
        n.h0_w = h0buf.write_port() if h0buf else None
        n.h0_rs = [h0buf.read_port() for _ in range(S)] if h0buf else [None] * S
        n.hn_ws = [hnbuf.write_port() for _ in range(1 if has_proj else V)] if hnbuf else None
        n.hn_r = hnbuf.read_port() if hnbuf else None
        n.hd_w, n.hd_r = (headbuf.write_port(), headbuf.read_port()) if headbuf else (None, None)

    def _phase(self, m, n):
        """LOAD / COMPUTE / DRAIN, the schedule cursors, the input loader, the commands."""
        H, Ho, I, LD, Tmax, f, sched = n.H, n.Ho, n.I, n.LD, n.Tmax, n.f, n.sched
        # ---- phase --------------------------------------------------------------------------
        LOAD, COMPUTE, DRAIN = 0, 1, 2
        phase = Signal(2, init=LOAD)
        n.T = Signal(range(Tmax + 1))
        start = Signal()
        error = Signal()
        m.d.comb += [self.error.eq(error), self.busy.eq(phase != LOAD)]
        n.computing, n.draining = Signal(), Signal()
        m.d.comb += [n.computing.eq(phase == COMPUTE), n.draining.eq(phase == DRAIN)]

        cursors = {name: ScheduleCursor(sched, Tmax) for name in ("issue", "fetch", "post", "wb")}
        for name, cur in cursors.items():
            m.submodules[f"{name}_cursor"] = cur
            m.d.comb += [cur.T.eq(n.T), cur.restart.eq(start)]
        issue, n.fetch, n.post, n.wb = (cursors[name] for name in ("issue", "fetch", "post", "wb"))

        n.drain_done = Signal()
        with m.If(start):
            m.d.sync += phase.eq(COMPUTE)
        with m.If(n.computing & n.wb.done):
            m.d.sync += phase.eq(DRAIN)
        with m.If(n.drain_done):
            m.d.sync += phase.eq(LOAD)

        # ---- LOAD: s_axis → xbuf (and h0buf, cmem) --------------------------------------------
        n_h0, n.n_c0 = (LD * Ho, LD * H) if self._initial_state else (0, 0)
        m.submodules.loader = n.loader = InputLoader(
            input_size=I, max_seq_len=Tmax, data_bits=self._in_bits, x_bits=f["x"].bits,
            n_h0=n_h0, n_c0=n.n_c0, h0_bits=f["hidden"].bits, c_bits=f["cell"].bits,
            c_depth=LD * H,
        )  # fmt: skip
        m.d.comb += [
            n.loader.enable.eq(phase == LOAD),
            n.loader.i.valid.eq(self.s_axis_tvalid),
            n.loader.i.payload.data.eq(self.s_axis_tdata),
            n.loader.i.payload.last.eq(self.s_axis_tlast),
            self.s_axis_tready.eq(n.loader.i.ready),
            start.eq(n.loader.start),
            n.T.eq(n.loader.T),
            error.eq(n.loader.error),
        ]
        wiring.connect(m, n.loader.x_w, n.x_w)
        if n.h0_w is not None:
            wiring.connect(m, n.loader.h0_w, n.h0_w)

        # ---- weight port: host words into the weight memory, only between sequences --------
        idle = Signal()
        m.d.comb += [
            idle.eq(phase == LOAD),
            n.wmem.load.payload.eq(self.w.payload),
            n.wmem.load.valid.eq(self.w.valid & idle),
            self.w.ready.eq(n.wmem.load.ready & idle),
        ]

        # ---- issue: matrix commands → weight memory -----------------------------------------
        m.d.comb += [
            n.wmem.cmd.valid.eq(n.computing & ~issue.done),
            n.wmem.cmd.payload.eq(issue.matrix),
            issue.advance.eq(n.wmem.cmd.valid & n.wmem.cmd.ready),
        ]

    def _dependencies(self, m, n):
        """Fetch: ``dep_ok`` when the beat on ``wmem.o`` has its true dependencies written."""
        DHo, I, L, S, sched = n.DHo, n.I, n.L, n.S, n.sched
        # ---- fetch: attach the vector elements; wait for true dependencies ------------------
        # A beat carries the S columns beat.col .. beat.col + S - 1 (slot s: column col + s).
        n.beat = n.wmem.o.payload
        n.in_len = Signal(range(max(I, DHo) + 1))
        m.d.comb += n.in_len.eq(Mux(n.fetch.layer == 0, I, DHo))
        any_in, any_rec = Signal(), Signal()
        m.d.comb += [any_in.eq(n.beat.col < n.in_len), any_rec.eq(n.beat.col + S - 1 >= n.in_len)]
        layer_ready = Signal()
        with m.Switch(n.fetch.layer):
            for layer in range(L):
                with m.Case(layer):
                    if layer == 0:
                        m.d.comb += layer_ready.eq(1)
                    else:
                        first = sched.first_pass_of_layer(layer)
                        m.d.comb += layer_ready.eq(n.wb.at_or_past(m, first))
        n.dep_ok = Signal()
        with m.Switch(n.fetch.kind):
            with m.Case(KIND_GATES):
                rec_ready = n.fetch.first_step | n.wb.at_or_past(m, n.fetch.p, n.fetch.s)
                m.d.comb += n.dep_ok.eq((~any_in | layer_ready) & (~any_rec | rec_ready))
            with m.Case(KIND_PROJ):
                m.d.comb += n.dep_ok.eq(n.wb.at_or_past(m, n.fetch.p, n.fetch.s, 1))
            if sched.head_pass is not None:
                with m.Case(KIND_HEAD):
                    m.d.comb += n.dep_ok.eq(n.wb.at_or_past(m, sched.head_pass))

    def _sources(self, m, n):
        """Fetch: the source buffer and read addresses of every slot of the beat being fetched."""
        DHo, H, Ho, I, LD, S, Tmax = n.DHo, n.H, n.Ho, n.I, n.LD, n.S, n.Tmax
        n_cols = Signal(range(max(I, DHo) + Ho + H + 1))  # columns of the current matrix
        m.d.comb += n_cols.eq(n.in_len + Ho)
        with m.Switch(n.fetch.kind):
            with m.Case(KIND_PROJ):
                m.d.comb += n_cols.eq(H)
            with m.Case(KIND_HEAD):
                m.d.comb += n_cols.eq(DHo)
        n.o_addr = Signal(range(max(2, Tmax * DHo)))  # slot 0's, shared with the drain
        state_base = Signal(range(max(2, LD * Ho + 1)))
        m.d.comb += state_base.eq(n.fetch.layer * DHo + n.fetch.direction * Ho)
        n.slot_src = []
        for slot in range(S):
            src, slot_o_addr = self._slot_source(
                m, slot, n.beat.col + slot, n.in_len, n_cols, n.fetch, n.x_rs[slot], n.m_rs[slot],
                n.h0_rs[slot], state_base,
            )  # fmt: skip
            n.slot_src.append(src)
            if slot == 0:
                m.d.comb += n.o_addr.eq(slot_o_addr)
            for ports in n.o_rs:
                if slot > 0:
                    m.d.comb += ports[slot].addr.eq(slot_o_addr)

    def _pacing(self, m, n):
        """Fetch: the stage register; ``paced`` holds a group's last beat for the regrouper."""
        P, layout = n.P, n.layout
        n.st_valid = Signal()
        n.st = Signal(n.wmem.o.payload.shape())
        n.st_srcs = [Signal.like(src, name=f"st_src{slot}") for slot, src in enumerate(n.slot_src)]
        n.advance = Signal()
        n.take = Signal()
        # Pacing: the last beat of a row group is taken at least ``emitter_cycles`` cycles
        # after the previous group's, so that the emitter has made room for its rows when
        # the result leaves the MVU (the MVU never stalls; the cycle model stays exact).
        n.paced = Signal()
        spacing = {kind: emitter_cycles(kind, P, P, n.V) for kind in ("gates", "proj", "head")}
        last_spacing = {mx.kind: emitter_cycles(mx.kind, P, mx.last_group_rows, n.V)
                        for mx in layout.matrices}  # fmt: skip
        longest = max(max(spacing.values()), max(last_spacing.values()))
        if longest > 1:
            gap = Signal(range(longest))  # cycles until the next group's last beat may go
            gap_load = Signal.like(gap)
            with m.Switch(n.fetch.kind):
                for kind, code in _KIND_CODES.items():
                    if kind in last_spacing:
                        with m.Case(code):
                            m.d.comb += gap_load.eq(
                                Mux(n.beat.end, last_spacing[kind], spacing[kind]) - 1
                            )
            m.d.comb += n.paced.eq(n.beat.last & (gap != 0))
            with m.If(n.take & n.beat.last):
                m.d.sync += gap.eq(gap_load)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)

    def _stage(self, m, n):
        """Fetch: take beats, read the vector elements, feed the matrix-vector unit."""
        S = n.S
        m.d.comb += [
            n.advance.eq(~n.st_valid | n.mvu.i.ready),
            n.wmem.o.ready.eq(n.computing & n.advance & n.dep_ok & ~n.paced),
            n.take.eq(n.wmem.o.valid & n.wmem.o.ready),
            n.fetch.advance.eq(n.take & n.beat.end),
        ]
        with m.If(n.advance):
            m.d.sync += [n.st_valid.eq(n.take), n.st.eq(n.beat)]
            m.d.sync += [reg.eq(src) for reg, src in zip(n.st_srcs, n.slot_src, strict=True)]
        vectors = []
        for slot in range(S):
            # (slot 0's obuf ports are shared with the drain: enabled below)
            ports = [n.x_rs[slot], n.m_rs[slot], n.h0_rs[slot]]
            ports += [bank_ports[slot] for bank_ports in n.o_rs] if slot else []
            m.d.comb += [port.en.eq(n.advance) for port in ports if port is not None]
            vector = Signal(signed(n.vec_bits), name=f"vector{slot}")
            with m.Switch(n.st_srcs[slot]):
                with m.Case(_SRC_X):
                    m.d.comb += vector.eq(n.x_rs[slot].data)
                for b, bank_ports in enumerate(n.o_rs):
                    with m.Case(_SRC_O0 + b):
                        m.d.comb += vector.eq(bank_ports[slot].data)
                if n.m_rs[slot] is not None:
                    with m.Case(_SRC_M):
                        m.d.comb += vector.eq(n.m_rs[slot].data)
                if n.h0_rs[slot] is not None:
                    with m.Case(_SRC_H0):
                        m.d.comb += vector.eq(n.h0_rs[slot].data)
                with m.Default():
                    m.d.comb += vector.eq(0)
            vectors.append(vector)
        mi = n.mvu.i.payload
        m.d.comb += [
            n.mvu.i.valid.eq(n.st_valid),
            mi.weights.eq(n.st.weights),
            mi.bias.eq(n.st.bias),
            mi.shift_sel.eq(n.st.shift_sel),
            mi.target_sel.eq(n.st.target_sel),
            mi.first.eq(n.st.first),
            mi.last.eq(n.st.last),
            mi.vector.eq(vectors[0] if S == 1 else Cat(*vectors)),
        ]

    def _post(self, m, n):
        """Regroup MVU rows into units (activations, cells, write addresses alongside) or rows."""
        D, DHo, H, Ho, LD, P, V = n.D, n.DHo, n.H, n.Ho, n.LD, n.P, n.V
        # ---- post: regroup MVU rows into hidden units (gates) or single rows -----------------
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
        units = n.regroup.unit.payload
        n.j = units.index  # (first) unit or row index within the item (one counter)
        # gates: up to V consecutive hidden units (i, f, g, o each) per cycle
        c_addr_w = Signal(range(max(2, LD * H)))
        fifo_a = SyncFIFOBuffered(width=len(c_addr_w) + 1, depth=_SIDEBAND_DEPTH)
        m.submodules.sideband_cell = fifo_a
        zero_c = Signal()
        m.d.comb += [
            c_addr_w.eq((n.post.layer * D + n.post.direction) * H + n.j),
            zero_c.eq(n.post.first_step & (not self._initial_state)),
        ]
        n.o_addr_w = Signal.like(n.o_addr)
        n.hn_addr_w = Signal(range(max(2, LD * Ho)))
        m.d.comb += [
            n.o_addr_w.eq(n.post.t * DHo + n.post.direction * Ho + n.j),
            n.hn_addr_w.eq(n.post.layer * DHo + n.post.direction * Ho + n.j),
        ]
        n.wb_fields = [c_addr_w, n.j, n.o_addr_w, n.hn_addr_w, n.post.layer[0],
                       n.post.last_step, Signal(), Signal(range(V + 1))]  # fmt: skip
        item_last_w, count_w = n.wb_fields[-2:]
        m.d.comb += [item_last_w.eq(n.j + units.count == H), count_w.eq(units.count)]
        wb_width = sum(len(s) for s in n.wb_fields)
        m.submodules.sideband_write = n.fifo_b = SyncFIFOBuffered(
            width=wb_width, depth=_SIDEBAND_DEPTH
        )
        gate_fire = Signal()
        m.d.comb += [
            n.act.i.valid.eq(n.regroup.unit.valid & fifo_a.w_rdy & n.fifo_b.w_rdy),
            n.regroup.unit.ready.eq(n.act.i.ready & fifo_a.w_rdy & n.fifo_b.w_rdy),
            gate_fire.eq(n.act.i.valid & n.act.i.ready),
            fifo_a.w_en.eq(gate_fire),
            fifo_a.w_data.eq(Cat(c_addr_w, zero_c)),
            n.fifo_b.w_en.eq(gate_fire),
        ]
        m.d.comb += n.fifo_b.w_data.eq(Cat(*n.wb_fields))
        m.d.comb += [n.act.i.payload[r].eq(units.rows[r]) for r in range(4 * V)]
        # projection / head: one row per cycle, written directly
        n.row_data = n.regroup.row.payload.data
        n.direct_en = Signal()
        m.d.comb += [n.regroup.row.ready.eq(1), n.direct_en.eq(n.regroup.row.valid)]

        # ---- cell inputs: activations + c_prev (the cells run in lockstep) --------------------
        a_c_addr = fifo_a.r_data[: len(c_addr_w)]
        a_zero = fifo_a.r_data[len(c_addr_w)]
        cells_ready = Signal()
        m.d.comb += cells_ready.eq(Cat(*(cell.i.ready for cell in n.cells)).all())
        for k, cell in enumerate(n.cells):
            ci, gates = cell.i.payload, n.act.o.payload
            m.d.comb += [
                n.c_rs[k].addr.eq(a_c_addr + k),
                cell.i.valid.eq(n.act.o.valid & fifo_a.r_rdy & cells_ready),
                ci.i.eq(gates[4 * k]),
                ci.f.eq(gates[4 * k + 1]),
                ci.g.eq(gates[4 * k + 2]),
                ci.o.eq(gates[4 * k + 3]),
                ci.c_prev.eq(Mux(a_zero, 0, n.c_rs[k].data)),
            ]
        m.d.comb += [
            n.act.o.ready.eq(cells_ready & fifo_a.r_rdy),
            fifo_a.r_en.eq(n.act.o.valid & n.act.o.ready),
        ]

    def _write_back(self, m, n):
        """Store ``c``, ``m``/``h``, ``h_n`` and head rows; advance the write-back cursor."""
        has_proj, head, out_rows = n.has_proj, n.head, n.out_rows
        # ---- write-back ------------------------------------------------------------------------
        fields, offset = {}, 0
        names = ("c_addr", "j", "o_addr", "hn_addr", "bank", "last_step", "item_last", "count")
        for name, sig in zip(names, n.wb_fields, strict=True):
            fields[name] = n.fifo_b.r_data[offset : offset + len(sig)]
            offset += len(sig)
        gate_write = Signal()
        m.d.comb += [
            gate_write.eq(n.cells[0].o.valid & n.fifo_b.r_rdy),
            n.fifo_b.r_en.eq(gate_write),
        ]
        m.d.comb += [cell.o.ready.eq(1) for cell in n.cells]

        def store(port, addr, value, enable=1):
            m.d.comb += [port.addr.eq(addr), port.data.eq(value), port.en.eq(enable)]

        with m.If(gate_write):
            for k, cell in enumerate(n.cells):  # unit j + k, written when k < count
                cm, real = cell.o.payload, fields["count"] > k
                store(n.c_ws[k], fields["c_addr"] + k, cm.c, real)
                if has_proj:
                    store(n.m_ws[k], fields["j"] + k, cm.m, real)
                    continue
                for b, ports in enumerate(n.o_ws):
                    store(ports[k], fields["o_addr"] + k, cm.m, real & (fields["bank"] == b))
                if n.hn_ws is not None:
                    store(n.hn_ws[k], fields["hn_addr"] + k, cm.m, real & fields["last_step"])
            with m.If(fields["item_last"]):
                m.d.comb += n.wb.advance.eq(1)
        if n.n_c0:
            with m.Elif(n.loader.c_w.en):  # c0 (LOAD phase only, when nothing is written back)
                store(n.c_ws[0], n.loader.c_w.addr, n.loader.c_w.data)
        with m.If(n.direct_en):
            with m.If(n.regroup.item_end):
                m.d.comb += n.wb.advance.eq(1)
            with m.If(n.post.kind == KIND_PROJ):
                for b, ports in enumerate(n.o_ws):
                    with m.If(n.post.layer[0] == b):
                        store(ports[0], n.o_addr_w, n.row_data)
                if n.hn_ws is not None:
                    with m.If(n.post.last_step):
                        store(n.hn_ws[0], n.hn_addr_w, n.row_data)
            if n.hd_w is not None:
                with m.If(n.post.kind == KIND_HEAD):
                    addr = n.post.t * out_rows + n.j if head.mode == "all" else n.j
                    store(n.hd_w, addr, n.row_data)

    def _drain(self, m, n):
        """DRAIN: the result drain on ``m_axis`` (sharing the top ``obuf``'s slot-0 port)."""
        DHo, H, Ho, L, LD, Tmax, f, head, out_rows = (
            n.DHo,
            n.H,
            n.Ho,
            n.L,
            n.LD,
            n.Tmax,
            n.f,
            n.head,
            n.out_rows,
        )
        # ---- DRAIN: results → m_axis -----------------------------------------------------------
        regions, region_ports = [], []  # (Region, the buffer's read port)
        if head is not None:
            per_step = out_rows if head.mode == "all" else 0
            regions.append(Region("headbuf", f["head_out"].bits, n.plan["headbuf"][1],
                                  per_step=per_step, fixed=out_rows - per_step))  # fmt: skip
            region_ports.append(n.hd_r)
        else:
            top = f"obuf{(L - 1) % 2}"
            regions.append(Region("obuf", f["hidden"].bits, n.plan[top][1], per_step=DHo))
            region_ports.append(None)  # slot 0's fetch port, shared: below
        if self._with_states:
            regions += [Region("hnbuf", f["hidden"].bits, LD * Ho, fixed=LD * Ho),
                        Region("cmem", f["cell"].bits, LD * H, fixed=LD * H)]  # fmt: skip
            region_ports += [n.hn_r, n.c_rd]
        drain = ResultDrain(regions, max_seq_len=Tmax, data_bits=self._out_bits)
        m.submodules.drain = drain
        m.d.comb += [drain.enable.eq(n.draining), drain.T.eq(n.T)]
        for r, port in zip(regions, region_ports, strict=True):
            if port is not None:
                wiring.connect(m, getattr(drain, r.name), port)
        # the obuf slot-0 read ports serve the fetch stage, and the drain while draining
        shared = drain.obuf if head is None else None
        for index, port in enumerate(n.o_r):
            drained = shared is not None and index == (L - 1) % 2
            m.d.comb += [
                port.addr.eq(Mux(n.draining, shared.addr, n.o_addr) if drained else n.o_addr),
                port.en.eq(Mux(n.draining, shared.en, n.advance) if drained else n.advance),
            ]
            if drained:
                m.d.comb += shared.data.eq(port.data)
        m.d.comb += [
            self.m_axis_tdata.eq(drain.o.payload.data),
            self.m_axis_tlast.eq(drain.o.payload.last),
            self.m_axis_tvalid.eq(drain.o.valid),
            drain.o.ready.eq(self.m_axis_tready),
            n.drain_done.eq(drain.done),
        ]
