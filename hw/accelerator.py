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

Datapath (each stage a component; this top only joins them): :class:`~.loader.InputLoader`
writes the input buffers; :class:`~.weights.WeightMemory` streams each matrix's row groups;
:class:`~.fetch.VectorFetch` attaches the vector elements (input part, recurrent part,
projection input, head input) read from the buffers, stalling only for true dependencies;
the :class:`~.mvu.MatrixVectorUnit` accumulates and requantizes P rows at a time;
:class:`~.regroup.GateRegrouper` regroups its outputs into up to V hidden units (four gate
pre-activations each) for the :class:`~.cellbank.CellBank` (activation tables and V cell
datapaths), or into single rows (projection, head); :class:`~.writeback.WriteBack` stores
them and tracks the position the fetch stage waits for; :class:`~.drain.ResultDrain`
streams the results out. The buffers and multipliers are those of :mod:`.plans`.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..quant.model import QuantizedModel
from .drain import ResultDrain, result_regions
from .fetch import VectorFetch
from .gru_cellbank import accelerator_cell_bank
from .layout import WeightLayout
from .loader import InputLoader
from .mvu import MatrixVectorUnit
from .pipeline import NO_RW_CHECK
from .plans import buffer_plan, memory_plan, multiplier_plan, state_format, stream_buffer_plan
from .regroup import GateRegrouper, emitter_cycles
from .schedule import Schedule, ScheduleCursor
from .stream_geometry import StreamGeometry
from .weights import WeightMemory
from .writeback import WriteBack

__all__ = ["MODES", "LSTMAccelerator", "check_mode", "default_cells", "emitter_cycles"]

#: Operating modes: whole sequences buffered (``"sequence"``), or step by step (``"stream"``).
MODES = ("sequence", "stream")


def check_mode(mode, model, name: str = "mode") -> str:
    """``mode`` if ``model`` can be built in it, else ``ValueError`` (one line; ``name`` is
    the option's name in the message, e.g. ``--mode``)."""
    if mode not in MODES:
        raise ValueError(f"{name} must be 'sequence' or 'stream', not {mode!r}")
    if mode == "stream" and model.num_directions != 1:
        stream = "--mode stream" if name.startswith("-") else f"{name} 'stream'"
        raise ValueError(
            f"{stream} needs a unidirectional model, not a bidirectional one: the reverse "
            "direction needs the whole sequence before its first step"
        )
    return mode


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
    mode : str
        ``"sequence"`` (the default: LOAD, COMPUTE, DRAIN per sequence, up to
        ``max_seq_len`` steps) or ``"stream"`` (unidirectional models: each step's output
        leaves as soon as it is computed, sequences of any length, state kept across
        sequences on request; ``max_seq_len`` does not apply). Stream mode adds the inputs
        ``s_axis_tuser`` (on the first element of a step's ``x`` vector: reset the state
        before that step) and ``keep_state`` (1: carry the state over ``tlast``; 0, also
        when left undriven: reset it before every sequence's first step). See
        ``docs/accelerator.md`` and :mod:`.stream_top`.
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
        mode: str = "sequence",
    ):
        try:
            if not isinstance(model, QuantizedModel):
                raise TypeError(f"model must be a QuantizedModel, not {model!r}")
            check_mode(mode, model)
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
        self._model, self._lanes, self._simd, self._cells = model, lanes, simd, cells
        self._max_seq_len, self._mode = max_seq_len, mode
        self._with_states, self._initial_state = bool(with_states), bool(initial_state)
        self._schedule = Schedule.of(self._layout)
        f = model.formats
        states = [f["hidden"].bits, state_format(model).bits]
        self._in_bits = max([f["x"].bits] + (states if self._initial_state else []))
        self._out_bits = max([model.output_format.bits] + (states if self._with_states else []))
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
            | ({"s_axis_tuser": In(1), "keep_state": In(1)} if mode == "stream" else {})
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
    def mode(self) -> str:
        return self._mode

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
        """On-chip data buffers: ``{name: (width, depth)}`` (:func:`.plans.buffer_plan`, or in
        stream mode :func:`.plans.stream_buffer_plan`)."""
        if self._mode == "stream":
            from .stream_schedule import RING, SLOTS

            return stream_buffer_plan(self._model, ring=RING, slots=SLOTS,
                                      initial_state=self._initial_state,
                                      with_states=self._with_states)  # fmt: skip
        return buffer_plan(self._model, self._max_seq_len, initial_state=self._initial_state,
                           with_states=self._with_states)  # fmt: skip

    def memory_plan(self) -> list[dict]:
        """Every memory of the design: weights, biases, activation ROMs and buffers."""
        return memory_plan(self._model, self._layout, self.buffer_plan())

    def multiplier_plan(self) -> list[dict]:
        """Hardware multipliers: where, how many, operand widths (the MVU's ``P * S``, then
        those of the ``V`` activation + cell units)."""
        return multiplier_plan(self._model, self._layout, self._cells)

    # -- hardware -----------------------------------------------------------------------------
    def elaborate(self, platform):
        if self._mode == "stream":
            from .stream_top import elaborate_stream

            return elaborate_stream(self)
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
        self._fetch(m, n)
        self._post(m, n)
        self._write_back(m, n)
        self._drain(m, n)
        return m

    def _blocks(self, m, n):
        """The weight memory, the MVU, the buffers and the ports that are not a stage's."""
        f, layout, q = n.f, n.layout, n.q
        m.submodules.weights = n.wmem = WeightMemory(layout)
        n.vec_bits = max(f["x"].bits, f["hidden"].bits)
        m.submodules.mvu = n.mvu = MatrixVectorUnit.of(layout, n.vec_bits, q.rounding, q.overflow)

        # No read meets a write to its address in the same cycle with its data used (the
        # fetch waits for true dependencies; inputs are written in LOAD, results read in
        # DRAIN), so the buffers need no collision logic (``NO_RW_CHECK``).
        def memory(name, fmt_bits, depth):
            mem = Memory(shape=signed(fmt_bits), depth=max(2, depth), init=[],
                         attrs=NO_RW_CHECK)  # no 0-bit addr  # fmt: skip
            m.submodules[name] = mem
            return mem

        n.plan = self.buffer_plan()
        mems = {name: memory(name, width, depth) for name, (width, depth) in n.plan.items()}
        # the stages get their ports where they are joined: the fetch stage's reads
        # (``_fetch``), the write-back's writes (``_write_back``), the drain's reads; here the
        # input loader's writes and the cells' c_prev reads
        n.mems = mems
        n.x_w = mems["xbuf"].write_port()
        n.h0_w = mems["h0buf"].write_port() if "h0buf" in mems else None
        n.c_rs = [mems["cmem"].read_port(domain="comb") for _ in range(n.V)]

    def _phase(self, m, n):
        """LOAD / COMPUTE / DRAIN, the schedule cursors, the input loader, the commands."""
        H, Ho, I, LD, Tmax, f, sched = n.H, n.Ho, n.I, n.LD, n.Tmax, n.f, n.sched
        LOAD, COMPUTE, DRAIN = 0, 1, 2
        phase = Signal(2, init=LOAD)
        n.T = Signal(range(Tmax + 1))
        start = Signal()
        error = Signal()
        m.d.comb += [self.error.eq(error), self.busy.eq(phase != LOAD)]
        n.computing, n.draining = Signal(), Signal()
        m.d.comb += [n.computing.eq(phase == COMPUTE), n.draining.eq(phase == DRAIN)]

        out_bits = n.mvu.o.payload.data.shape().elem_shape.width
        m.submodules.write_back = n.wb = WriteBack(
            n.q, sched, max_seq_len=Tmax, cells=n.V, row_bits=out_bits,
            with_states=self._with_states,
        )  # fmt: skip
        cursors = {name: ScheduleCursor(sched, Tmax) for name in ("issue", "post")}
        for name, cur in cursors.items():
            m.submodules[f"{name}_cursor"] = cur
        for cur in (*cursors.values(), n.wb):
            m.d.comb += [cur.T.eq(n.T), cur.restart.eq(start)]
        issue, n.post = cursors["issue"], cursors["post"]
        n.start = start

        n.drain_done = Signal()
        with m.If(start):
            m.d.sync += phase.eq(COMPUTE)
        with m.If(n.computing & n.wb.done):
            m.d.sync += phase.eq(DRAIN)
        with m.If(n.drain_done):
            m.d.sync += phase.eq(LOAD)

        # ---- LOAD: s_axis → xbuf (and h0buf, cmem) --------------------------------------------
        n_h0, n.n_c0 = (LD * Ho, LD * H) if self._initial_state else (0, 0)
        if n.q.cell == "gru":
            n.n_c0 = 0  # no c0: the state memory cmem gets h0 (``_write_back``)
        m.submodules.loader = n.loader = InputLoader(
            input_size=I, max_seq_len=Tmax, data_bits=self._in_bits, x_bits=f["x"].bits,
            n_h0=n_h0, n_c0=n.n_c0, h0_bits=f["hidden"].bits, c_bits=state_format(n.q).bits,
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

    def _fetch(self, m, n):
        """The fetch stage between the weight memory and the MVU, with its buffer reads."""
        m.submodules.fetch = n.fetch = fetch = VectorFetch(
            n.q, n.layout, n.sched, max_seq_len=n.Tmax, initial_state=self._initial_state,
            cells=n.V, out_layout=n.mvu.in_layout,
        )  # fmt: skip
        m.d.comb += [
            fetch.T.eq(n.T),
            fetch.restart.eq(n.start),
            fetch.enable.eq(n.computing),
            fetch.wb_p.eq(n.wb.p),
            fetch.wb_s.eq(n.wb.s),
            fetch.wb_sub.eq(n.wb.sub),
        ]
        wiring.connect(m, n.wmem.o, fetch.i)
        wiring.connect(m, fetch.o, n.mvu.i)
        # every slot of every buffer gets its own read port, except slot 0 of the top
        # layer's output buffer, which the drain shares (``_drain``)
        n.shared_read = None
        for name in fetch.buffers:
            mem = n.mems[name]
            for k, member in enumerate(fetch.ports(name)):
                port = mem.read_port()
                if n.head is None and k == 0 and name == f"obuf{(n.L - 1) % 2}":
                    n.shared_read = (member, port)
                else:
                    wiring.connect(m, member, port)

    def _post(self, m, n):
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
        # gates: up to V consecutive hidden units per cycle into the cells
        m.submodules.cells = n.cellbank = bank = accelerator_cell_bank(
            n.q, cells=V, in_bits=out_bits, c_depth=LD * H
        )
        units, i = n.regroup.unit.payload, bank.i.payload
        m.d.comb += [
            bank.i.valid.eq(n.regroup.unit.valid),
            n.regroup.unit.ready.eq(bank.i.ready),
            i.rows.eq(units.rows),
            i.count.eq(units.count),
            i.c_addr.eq((n.post.layer * D + n.post.direction) * H + units.index),
            i.zero_c.eq(n.post.first_step & (not self._initial_state)),
        ]
        for k, port in enumerate(n.c_rs):  # (combinational ports: no enable)
            member = getattr(bank, f"c_r{k}")
            m.d.comb += [port.addr.eq(member.addr), member.data.eq(port.data)]
        # projection / head: one row per cycle, written directly
        m.d.comb += [
            n.wb.rows.valid.eq(n.regroup.row.valid),
            n.wb.rows.payload.eq(n.regroup.row.payload.data),
            n.regroup.row.ready.eq(n.wb.rows.ready),
        ]

    def _write_back(self, m, n):
        """The cells' results into the write-back, and its write ports onto the buffers."""
        wiring.connect(m, n.cellbank.o, n.wb.units)
        for name in n.wb.buffers:
            for member in n.wb.ports(name):
                wiring.connect(m, member, n.mems[name].write_port())
        if n.n_c0:
            wiring.connect(m, n.loader.c_w, n.wb.c0)
        elif n.q.cell == "gru" and self._initial_state:  # h0 into h0buf and the state memory
            h0_w, c0 = n.loader.h0_w, n.wb.c0
            m.d.comb += [c0.addr.eq(h0_w.addr), c0.data.eq(h0_w.data), c0.en.eq(h0_w.en)]

    def _drain(self, m, n):
        """DRAIN: the result drain on ``m_axis`` (sharing the top ``obuf``'s slot-0 port)."""
        regions = result_regions(n.q, n.plan, with_states=self._with_states)
        drain = ResultDrain([r for r, _ in regions], max_seq_len=n.Tmax, data_bits=self._out_bits)
        m.submodules.drain = drain
        m.d.comb += [drain.enable.eq(n.draining), drain.T.eq(n.T)]
        for region, buffer in regions:
            if region.name != "obuf":
                wiring.connect(m, getattr(drain, region.name), n.mems[buffer].read_port())
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
            self.m_axis_tdata.eq(drain.o.payload.data),
            self.m_axis_tlast.eq(drain.o.payload.last),
            self.m_axis_tvalid.eq(drain.o.valid),
            drain.o.ready.eq(self.m_axis_tready),
            n.drain_done.eq(drain.done),
        ]
