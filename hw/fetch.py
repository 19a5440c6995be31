"""The fetch stage: weight beats + their vector elements, into the matrix-vector unit.

:class:`VectorFetch` sits between the :class:`~.weights.WeightMemory` and the
:class:`~.mvu.MatrixVectorUnit` of :class:`~.accelerator.LSTMAccelerator`. It walks the
schedule (its own :class:`~.schedule.ScheduleCursor`), attaches to every beat the vector
elements of its ``S`` columns read from the data buffers, takes a beat only when its true
dependencies are written (read from the write-back cursor's position) and paces the row
groups for the regrouper (:func:`~.regroup.emitter_cycles`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from .layout import WeightLayout
from .pipeline import SkidOutput, register
from .plans import addr_width, buffer_plan, stream_buffer_plan
from .regroup import emitter_cycles
from .schedule import KIND_GATES, KIND_HEAD, KIND_PROJ, Schedule, ScheduleCursor, at_or_past
from .stream_schedule import RING, SLOTS, STEP_BITS, step_end, step_lead
from .weight_beat import beat_layout

__all__ = ["SOURCES", "VectorFetch"]

_SRC_ZERO, _SRC_X, _SRC_O0, _SRC_O1, _SRC_M, _SRC_H0 = range(6)
#: The source of a vector element, by code: 0, ``x``, ``obuf0``, ``obuf1``, ``mbuf``, ``h0``.
SOURCES = ("zero", "xbuf", "obuf0", "obuf1", "mbuf", "h0buf")
_KIND_CODES = {"gates": KIND_GATES, "proj": KIND_PROJ, "head": KIND_HEAD}


class VectorFetch(wiring.Component):
    """Fetches the vector elements of every weight beat and passes both to the MVU.

    Parameters
    ----------
    model : QuantizedModel
        The geometry (sizes, layers, directions, projection, head) and buffer formats.
    layout : WeightLayout
        The weight memory's layout (``lanes`` P, ``simd`` S, the matrices).
    schedule : Schedule
    max_seq_len : int
    initial_state : bool
        The recurrent input of a pass's first step is ``h0buf`` (else 0).
    cells : int
        The regrouper's units per cycle (sets the pacing).
    out_layout : StructLayout
        The MVU's input layout (``MatrixVectorUnit.in_layout``).
    stream_mode : bool
        Stream mode (:mod:`.stream_schedule`, unidirectional models, ``max_seq_len`` 1): the
        cursor restarts after every step, the buffers are the rings of
        :func:`.plans.stream_buffer_plan`, and the members below marked *stream* exist.

    Members
    -------
    T, restart : ``In``
        The sequence length and the restart of the schedule (the fetch cursor's inputs).
    enable : ``In(1)``
        Beats are taken only while it is high (the COMPUTE phase).
    wb_p, wb_s, wb_sub : ``In``
        The write-back cursor's position: every item before it is written (it is never past
        the item the fetch is at).
    wb_written : ``In``
        Units or rows of the item at that position written so far (``WriteBack.written``;
        they are written in increasing index order).
    i : ``In(stream.Signature(WeightMemory.beat_layout))``
        The weight beats, in schedule order.
    o : ``Out(stream.Signature(out_layout))``
        The beat's ``weights``, ``bias``, ``shift_sel``, ``target_sel``, ``first``, ``last``
        and ``vector`` (slot ``k``: column ``col + k`` of the matrix's input vector, 0 past
        its last column).
    xbuf_r<k>, obuf<b>_r<k>, mbuf_r<k>, h0buf_r<k> : ``In(ReadPort.Signature(...))``
        Read port ``k`` (slot ``k``, ``0 .. S-1``) of each data buffer this model has
        (``obuf1`` with two or more layers, ``mbuf`` with a projection, ``h0buf`` with
        ``initial_state``); synchronous, read with ``en``.
    n : ``Out(STEP_BITS)``, *stream*
        Steps finished (modulo ``2**STEP_BITS``): the current step's number.
    wb_n : ``In(STEP_BITS)``, *stream*
        The write-back's step count (``wb_p``, ``wb_s``, ``wb_sub`` are its position in it).
    x_ready, step_reset, step_last : ``In(1)``, *stream*
        Step ``n``'s input is loaded; its state is reset first (the recurrent input is
        ``h0buf`` or 0); its input carried ``tlast`` (a ``last`` head follows it). The last
        two are read from the first beat of the step on (``x_ready`` then holds).
    out_free : ``In(1)``, *stream*
        The output slot of step ``n`` has been drained: beats of step ``n`` wait for it.

    Dependencies (a beat is taken only when they hold): a gates beat with input columns of
    a layer above 0 waits until every pass of the layer below is written; one with
    recurrent columns, at a step above 0, until the previous step of its pass has written
    the units (rows, with a projection) it reads: ``wb_written`` above its last slot's
    ``rec_col`` while the write-back is at that step's last item (a beat ending in padding
    waits for the whole item); a projection beat until the gates of its step have written
    the units it reads; the head until every LSTM pass (a unidirectional model's: until
    the top layer's last item has written the units it reads). In stream mode the same:
    layer 0's input columns wait for ``x_ready``, a layer above for the layer below in the
    same step, the recurrent columns (unless ``step_reset``) for the units they read of the
    layer's step ``n - 1``, and every beat for ``out_free``. Pacing: the
    last beat of a row group is taken at least :func:`~.regroup.emitter_cycles` cycles
    after the previous group's.

    Timing: ``latency`` 2: a beat taken in cycle ``c`` is valid on ``o`` in cycle ``c + 2``
    (buffer read, then the read data's register: every read port's data goes straight
    into a register, so synthesis can use the block RAM's output register). One beat per
    cycle while ``o`` is ready. Back-pressure on ``o``: the beat on ``o`` moves into a skid
    register (presented from there until taken) while both stages advance once more; then
    they hold until it empties (:class:`~.pipeline.SkidOutput`), so ``i.ready``, the read
    ports' ``en`` and the stages' enables follow flip-flops, never ``o.ready``.
    """

    #: Cycles from a beat taken on ``i`` to it being valid on ``o``.
    latency = 2

    def __init__(self, model, layout: WeightLayout, schedule: Schedule, *, max_seq_len: int,
                 initial_state: bool, cells: int, out_layout: data.StructLayout,
                 stream_mode: bool = False):  # fmt: skip
        if not isinstance(layout, WeightLayout):
            raise TypeError(f"layout must be a WeightLayout, not {layout!r}")
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, not {schedule!r}")
        self._model, self._layout, self._schedule = model, layout, schedule
        self._Tmax, self._initial_state, self._cells = max_seq_len, bool(initial_state), cells
        self._stream = bool(stream_mode)
        if self._stream and model.num_directions != 1:
            raise ValueError("stream mode needs a unidirectional model")
        self._cursor = ScheduleCursor(schedule, max_seq_len)  # validates max_seq_len
        S = layout.simd
        if self._stream:
            plan = stream_buffer_plan(model, ring=RING, slots=SLOTS,
                                      initial_state=initial_state, with_states=False)  # fmt: skip
        else:
            plan = buffer_plan(model, max_seq_len, initial_state=initial_state, with_states=False)
        self._buffers = buffers = {name: plan[name] for name in SOURCES if name in plan}
        vec = out_layout["vector"].shape
        self._vec_shape = vec.elem_shape if isinstance(vec, data.ArrayLayout) else vec
        cur = self._cursor.signature.members
        head_rows = model.head.out_features if model.head is not None else 0
        members = {
            "T": In(range(max_seq_len + 1)),
            "restart": In(1),
            "enable": In(1),
            "wb_p": In(cur["p"].shape),
            "wb_s": In(cur["s"].shape),
            "wb_sub": In(cur["sub"].shape),
            "wb_written": In(range(max(model.hidden_size, model.output_size, head_rows, 1) + 1)),
            "i": In(stream.Signature(beat_layout(layout))),
            "o": Out(stream.Signature(out_layout)),
        }
        if self._stream:
            members |= {"n": Out(STEP_BITS), "wb_n": In(STEP_BITS), "x_ready": In(1),
                        "step_reset": In(1), "step_last": In(1), "out_free": In(1)}  # fmt: skip
        for name, (bits, depth) in buffers.items():
            for k in range(S):
                members[f"{name}_r{k}"] = In(
                    ReadPort.Signature(addr_width=addr_width(depth), shape=signed(bits))
                )
        super().__init__(members)

    @property
    def buffers(self) -> dict[str, tuple[int, int]]:
        """The buffers read: ``{name: (bits, depth)}`` (:func:`.plans.buffer_plan`'s)."""
        return dict(self._buffers)

    def ports(self, name: str) -> list:
        """The ``S`` read port members of buffer ``name``."""
        return [getattr(self, f"{name}_r{k}") for k in range(self._layout.simd)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.cursor = cur = self._cursor
        m.d.comb += [cur.T.eq(self.T), cur.restart.eq(self.restart)]
        take = Signal()
        if self._stream:
            dep_ok = self._stream_dependencies(m, cur, take)
        else:
            dep_ok = self._dependencies(m, cur, take)
        srcs = self._sources(m, cur)
        paced = self._pacing(m, cur, take)
        self._stage(m, cur, srcs, dep_ok, paced, take)
        return m

    @property
    def _dho(self) -> int:
        return self._model.num_directions * self._model.output_size

    def _any_columns(self, m):
        """``(any_in, any_rec)``: the beat on ``i`` has an input (a recurrent) column (its
        first slot is not, its last slot is recurrent: registered beat flags)."""
        rec = self.i.payload.rec
        any_in, any_rec = Signal(), Signal()
        m.d.comb += [any_in.eq(~rec[0]), any_rec.eq(rec[-1])]
        return any_in, any_rec

    def _early(self, m, cur, take, at_producer) -> Signal:
        """1 when the write-back, at the item that writes the vector the beat on ``i`` reads
        (``at_producer``, per kind), had written every result the beat reads one cycle ago:
        a flip-flop, so no comparator stands before ``i.ready``.

        The beat's last column ``need`` (``col + S - 1``; a register the fetch keeps itself:
        every row group starts at column 0 and goes up by ``S``, so it never reads the beat's
        fields) reads result ``need - first`` (``first``: the layer input's columns before
        ``h`` in a gates row, else 0), written once ``written + first > need``. Each cycle
        registers that for the beat that will be on ``i`` next: this one if it is not taken,
        else its successor (``need + S``, or ``S - 1`` after a row group's last beat); after
        an item's last beat, 0 (the next item's first beat waits a cycle). A beat ending in
        padding reads past the last result, so it never goes early."""
        q, S, beat = self._model, self._layout.simd, self.i.payload
        first = Signal(range(max(q.input_size, self._dho) + 1), name="early_first")
        with m.If(cur.kind == KIND_GATES):
            m.d.comb += first.eq(Mux(cur.layer == 0, q.input_size, self._dho))
        longest = max(mx.chunks for mx in self._layout.matrices) * S
        # ``need`` and ``need + S`` both registers (no adder before the comparison)
        need = Signal(range(longest + S), name="early_need", init=S - 1)
        need_succ = Signal(range(longest + 2 * S), name="early_need_succ", init=2 * S - 1)
        lhs = Signal(range(2 * max(q.input_size, self._dho, q.hidden_size) + 2), name="early_lhs")
        m.d.comb += lhs.eq(self.wb_written + first)
        with m.If(take):
            m.d.sync += [need.eq(Mux(beat.last, S - 1, need_succ)),
                         need_succ.eq(Mux(beat.last, 2 * S - 1, need_succ + S))]  # fmt: skip
        with m.If(self.restart):
            m.d.sync += [need.eq(S - 1), need_succ.eq(2 * S - 1)]
        same, succ, group = (Signal(name=f"early_{n}") for n in ("same", "succ", "group"))
        m.d.comb += [same.eq(lhs > need), succ.eq(lhs > need_succ), group.eq(lhs > S - 1)]
        early = Signal(name="early")
        with m.If(take):
            m.d.sync += early.eq(at_producer & ~beat.end & Mux(beat.last, group, succ))
        with m.Else():
            m.d.sync += early.eq(at_producer & same)
        return early

    def _dependencies(self, m, cur, take):
        """``dep_ok``: the beat on ``i`` has its true dependencies written."""
        sched = self._schedule
        wb = (self.wb_p, self.wb_s, self.wb_sub)
        any_in, any_rec = self._any_columns(m)
        layer_ready = Signal()
        with m.Switch(cur.layer):
            for layer in range(self._model.num_layers):
                with m.Case(layer):
                    if layer == 0:
                        m.d.comb += layer_ready.eq(1)
                    else:
                        first = sched.first_pass_of_layer(layer)
                        m.d.comb += layer_ready.eq(at_or_past(m, wb, first))
        # The write-back is never past the fetch's own item (it writes only what was
        # fetched), so "at or past (p, s[, 1])" of the item itself is an equality: no
        # magnitude comparator before ``i.ready``.
        same_p, same_step = Signal(), Signal()
        m.d.comb += [same_p.eq(self.wb_p == cur.p), same_step.eq(same_p & (self.wb_s == cur.s))]
        # Finer: unit ``u`` of the item being written may be read once ``written > u``. The
        # recurrent ``h`` of step ``s > 0`` is the previous step's last item of the same pass
        # (gates, or the projection: ``sub`` = its items - 1); with the write-back in the same
        # pass and not at step ``s``, it is exactly there (the fetch took every beat of step
        # ``s - 1``, whose last columns needed all of step ``s - 2``). A projection reads
        # ``m`` of its own step's gates, in index order too.
        last_sub = sched.items_per_step - 1
        at_producer = Signal()
        with m.Switch(cur.kind):
            with m.Case(KIND_GATES):
                m.d.comb += at_producer.eq(same_p & (self.wb_sub == last_sub))
            with m.Case(KIND_PROJ):
                m.d.comb += at_producer.eq(same_step & (self.wb_sub == 0))
            if sched.head_pass is not None:
                with m.Case(KIND_HEAD):
                    m.d.comb += at_producer.eq(self._at_top(sched))
        early = self._early(m, cur, take, at_producer)
        dep_ok = Signal()
        with m.Switch(cur.kind):
            with m.Case(KIND_GATES):
                rec_ready = cur.first_step | same_step | early
                m.d.comb += dep_ok.eq((~any_in | layer_ready) & (~any_rec | rec_ready))
            with m.Case(KIND_PROJ):
                m.d.comb += dep_ok.eq(same_step & ((self.wb_sub != 0) | early))
            if sched.head_pass is not None:
                with m.Case(KIND_HEAD):
                    m.d.comb += dep_ok.eq(at_or_past(m, wb, sched.head_pass) | early)
        return dep_ok

    def _at_top(self, sched):
        """The write-back at the item a unidirectional model's head reads: the top layer's
        last item (at its last step: the fetch took every beat of that step, whose last
        columns needed all of the step before). Two directions: never (the head's columns
        are both passes' ``h``, not one item's)."""
        if self._model.num_directions != 1:
            return Const(0, 1)
        top = sched.head_pass - 1
        return (self.wb_p == top) & (self.wb_sub == len(sched.passes[top].matrices) - 1)

    def _stream_dependencies(self, m, cur, take):
        """``dep_ok`` in stream mode (see the class docstring)."""
        wb_p, wb_sub = self.wb_p, self.wb_sub
        any_in, any_rec = self._any_columns(m)
        lag = step_lead(m, self.n, self.wb_n, name="wb_lag")  # 0: write-back in step n
        same, prev = lag == 0, lag == 1
        in_ready = Signal()
        with m.Switch(cur.layer):
            for layer in range(self._model.num_layers):
                with m.Case(layer):  # pass index == layer (one direction)
                    m.d.comb += in_ready.eq(self.x_ready if layer == 0 else same & (wb_p >= layer))
        # finer, as in sequence mode: the previous step's last item of this layer's pass
        # (pass index == layer) being written, far enough (``written``), or a projection's own
        # gates
        sched = self._schedule
        last_sub = sched.items_per_step - 1
        at_producer = Signal()
        with m.Switch(cur.kind):
            with m.Case(KIND_GATES):
                m.d.comb += at_producer.eq(prev & (wb_p == cur.p) & (wb_sub == last_sub))
            with m.Case(KIND_PROJ):
                m.d.comb += at_producer.eq(same & (wb_p == cur.p) & (wb_sub == 0))
            if sched.head_pass is not None:
                with m.Case(KIND_HEAD):
                    m.d.comb += at_producer.eq(same & self._at_top(sched))
        early = self._early(m, cur, take, at_producer)
        rec_ready = self.step_reset | same | (prev & (wb_p > cur.layer)) | early
        dep_ok = Signal()
        with m.Switch(cur.kind):
            with m.Case(KIND_GATES):
                m.d.comb += dep_ok.eq((~any_in | in_ready) & (~any_rec | rec_ready))
            with m.Case(KIND_PROJ):
                gates_done = (wb_p > cur.p) | ((wb_p == cur.p) & (wb_sub >= 1))
                m.d.comb += dep_ok.eq((same & gates_done) | early)
            if sched.head_pass is not None:
                with m.Case(KIND_HEAD):
                    m.d.comb += dep_ok.eq((same & (wb_p >= sched.head_pass)) | early)
        ok = Signal()
        m.d.comb += ok.eq(dep_ok & self.out_free)
        return ok

    def _stream_bases(self, m, cur):
        """Stream mode: the ring addresses of step ``n``'s ``x`` and of the layer outputs
        (word ``(slot * ceil(L/2) + layer // 2) * H_out``): ``(x, input, recurrent, head)``."""
        q = self._model
        I, Ho, L = q.input_size, q.output_size, q.num_layers
        stride = -(-L // 2) * Ho
        slot_bits = (SLOTS - 1).bit_length()
        o_depth = self._buffers["obuf0"][1]
        x_base = Signal(range(RING * I), name="x_base")
        in_base = Signal(range(o_depth), name="in_base")
        rec_base = Signal(range(o_depth), name="rec_base")
        head_base = Signal(range(o_depth), name="head_base")
        slot, prev = Signal(slot_bits, name="slot"), Signal(slot_bits, name="prev_slot")
        m.d.comb += [
            x_base.eq(self.n[: (RING - 1).bit_length()] * I),
            slot.eq(self.n),
            prev.eq(self.n - 1),
            head_base.eq(slot * stride + (L - 1) // 2 * Ho),
        ]
        with m.Switch(cur.layer):
            for layer in range(L):
                with m.Case(layer):
                    below = (layer - 1) // 2 * Ho if layer else 0
                    m.d.comb += [in_base.eq(slot * stride + below),
                                 rec_base.eq(prev * stride + layer // 2 * Ho)]  # fmt: skip
        return x_base, in_base, rec_base, head_base

    def _sources(self, m, cur):
        """The source (``SOURCES`` code) of every slot of the beat on ``i``; drives the read
        addresses."""
        q, S = self._model, self._layout.simd
        Ho, DHo = q.output_size, self._dho
        state_base = Signal(range(max(2, q.num_layers * DHo + 1)))
        m.d.comb += state_base.eq(cur.layer * DHo + cur.direction * Ho)
        bases = self._stream_bases(m, cur) if self._stream else None
        return [self._slot_source(m, k, cur, state_base, bases) for k in range(S)]

    def _slot_source(self, m, k, cur, state_base, bases=None):
        """Source of slot ``k``'s column and the read addresses of slot ``k``: from the
        beat's registered column fields, the column's index in the vector it reads (``in_col``:
        of a layer input, a projection or head vector; ``rec_k``: of the recurrent ``h``), cut
        to the width that vector's length needs."""
        q, beat = self._model, self.i.payload
        I, H, Ho, L, DHo = q.input_size, q.hidden_size, q.output_size, q.num_layers, self._dho
        is_rec = Signal(name=f"is_rec{k}")
        in_col, rec_k = _slot(beat.in_col, k), _low(_slot(beat.rec_col, k), Ho)
        m.d.comb += is_rec.eq(beat.rec[k])
        src = Signal(range(len(SOURCES)), name=f"src{k}")
        o_addr = Signal(range(max(2, self._buffers["obuf0"][1])), name=f"o_addr{k}")
        x_addr = Signal(range(max(2, self._buffers["xbuf"][1])), name=f"x_addr{k}")
        if bases is None:  # sequence mode: buffers indexed by t
            x_in, o_in = cur.t * I + _low(in_col, I), cur.t * DHo + _low(in_col, DHo)
            o_rec = cur.t_prev * DHo + cur.direction * Ho + rec_k
            o_head = cur.t * DHo + _low(in_col, DHo)
            first = cur.first_step
        else:  # stream mode: rings indexed by the step count
            x_in, o_in = bases[0] + _low(in_col, I), bases[1] + _low(in_col, DHo)
            o_rec, o_head = bases[2] + rec_k, bases[3] + _low(in_col, DHo)
            first = self.step_reset
        with m.Switch(cur.kind):
            with m.Case(KIND_GATES):
                with m.If(~is_rec):
                    with m.If(cur.layer == 0):
                        m.d.comb += [src.eq(_SRC_X), x_addr.eq(x_in)]
                    with m.Else():
                        bank = Mux(cur.layer[0], _SRC_O0, _SRC_O1)  # layer l-1's bank
                        m.d.comb += [src.eq(bank), o_addr.eq(o_in)]
                with m.Elif(first):
                    m.d.comb += src.eq(_SRC_H0 if self._initial_state else _SRC_ZERO)
                with m.Else():
                    bank = Mux(cur.layer[0], _SRC_O1, _SRC_O0)  # layer l's own bank
                    m.d.comb += [src.eq(bank), o_addr.eq(o_rec)]
            with m.Case(KIND_PROJ):
                m.d.comb += src.eq(_SRC_M)
            with m.Case(KIND_HEAD):
                top = _SRC_O1 if (L - 1) % 2 else _SRC_O0
                m.d.comb += [src.eq(top), o_addr.eq(o_head)]
        if self._layout.simd > 1:
            with m.If(beat.pad[k]):
                m.d.comb += src.eq(_SRC_ZERO)
        addrs = {"xbuf": x_addr, "obuf0": o_addr, "obuf1": o_addr, "mbuf": _low(in_col, H),
                 "h0buf": state_base + rec_k}  # fmt: skip
        for name in self._buffers:
            m.d.comb += getattr(self, f"{name}_r{k}").addr.eq(addrs[name])
        return src

    def _pacing(self, m, cur, take):
        """``paced``: hold a group's last beat until the regrouper has room for its rows."""
        P, V, beat = self._layout.lanes, self._cells, self.i.payload
        spacing = {kind: emitter_cycles(kind, P, P, V) for kind in _KIND_CODES}
        last_spacing = {mx.kind: emitter_cycles(mx.kind, P, mx.last_group_rows, V)
                        for mx in self._layout.matrices}  # fmt: skip
        paced = Signal()
        longest = max(max(spacing.values()), max(last_spacing.values()))
        if longest > 1:
            gap = Signal(range(longest))  # cycles until the next group's last beat may go
            gap_load = Signal.like(gap)
            with m.Switch(cur.kind):
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
        return paced

    def _stage(self, m, cur, srcs, dep_ok, paced, take):
        """Two stages under one enable: the buffer reads, then the read data's registers."""
        S, beat = self._layout.simd, self.i.payload
        valid1, valid2 = Signal(), Signal()
        beat1, beat2 = Signal.like(beat, name="beat1"), Signal.like(beat, name="beat2")
        # ``o`` through a skid register: the stages' enable (the read ports' ``en``, every
        # register's, ``i.ready``'s) is a flip-flop, not a function of ``o.ready``.
        skid_out = SkidOutput(m, self.o, name="out")
        advance = skid_out.advance
        m.d.comb += [
            self.i.ready.eq(self.enable & advance & dep_ok & ~paced),
            take.eq(self.i.valid & self.i.ready),
            cur.advance.eq(take & beat.end),
        ]
        if self._stream:  # restart the cursor after each step, and count the steps
            n = Signal(STEP_BITS, name="step")
            wrap = Signal()
            end = step_end(m, self._schedule, cur.p, cur.last_sub, self.step_last)
            m.d.comb += [self.n.eq(n), wrap.eq(take & beat.end & end),
                         cur.restart.eq(self.restart | wrap)]  # fmt: skip
            with m.If(wrap):
                m.d.sync += n.eq(n + 1)
        with m.If(advance):
            m.d.sync += [valid1.eq(take), beat1.eq(beat), valid2.eq(valid1), beat2.eq(beat1)]
        vectors = []
        for k, src in enumerate(srcs):
            src2 = register(m, advance, register(m, advance, src, name=f"src{k}_1"),
                            name=f"src{k}_2")  # fmt: skip
            data_regs = {}
            for name in self._buffers:  # each read port's data straight into a register
                port = getattr(self, f"{name}_r{k}")
                m.d.comb += port.en.eq(advance)
                data_regs[name] = register(m, advance, port.data, name=f"{name}_d{k}")
            vector = Signal(self._vec_shape, name=f"vector{k}")
            with m.Switch(src2):
                for name, data_reg in data_regs.items():
                    with m.Case(SOURCES.index(name)):
                        m.d.comb += vector.eq(data_reg)
                with m.Default():
                    m.d.comb += vector.eq(0)
            vectors.append(vector)
        o = Signal.like(self.o.payload, name="out")
        m.d.comb += o.vector.eq(vectors[0] if S == 1 else Cat(*vectors))
        for field in ("weights", "bias", "shift_sel", "target_sel", "first", "last"):
            m.d.comb += getattr(o, field).eq(getattr(beat2, field))
        skid_out.drive(valid2, o)


def _slot(field, k: int):
    """Slot ``k`` of a per-slot beat field (the field itself with one slot)."""
    return field[k] if isinstance(field, data.View) else field


def _low(value, length: int):
    """The low bits of ``value`` that index a vector of ``length`` elements: an index known
    to be below ``length``, cut so that ``base + index`` needs no more carry than that."""
    return value[: min(len(value), max(1, (length - 1).bit_length()))]
