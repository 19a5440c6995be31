"""The weight memory: streams the matrices of a :class:`~lstmfpga.hw.layout.WeightLayout`.

One command (a matrix index) makes :class:`WeightMemory` emit every beat of that matrix, row
group by row group, column by column: exactly the order the
:class:`~lstmfpga.hw.mvu.MatrixVectorUnit` consumes. A load port rewrites words at run time.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layout import WeightLayout, select_bits
from .pipeline import NO_RW_CHECK, SkidOutput, register
from .weight_beat import beat_layout, slot_width

__all__ = ["WeightMemory"]


class WeightMemory(wiring.Component):
    """Weight and bias memories with a matrix streamer.

    Parameters
    ----------
    layout : WeightLayout
        The memory image (initial contents), ``P = layout.lanes``.

    Members
    -------
    cmd : ``In(stream.Signature(range(len(layout.matrices))))``
        A matrix index (its position in ``layout.matrices``). Out-of-range codes select the
        last matrix.
    o : ``Out(stream.Signature(beat_layout))``
        For every accepted command, ``groups * cols`` beats in order ``for g in groups: for k
        in cols``. Fields:

        * ``weights``: ``ArrayLayout(signed(weight_bits), P)``, lane ``p`` = layout row
          ``g*P + p``, column ``k``;
        * ``bias``: ``ArrayLayout(signed(acc.bits), P)``, the row group's aligned biases
          (accumulator codes), the same on every beat of the group;
        * ``col`` (``k``), ``group`` (``g``): unsigned;
        * ``shift_sel``: index into ``layout.product_shifts`` of the segment holding ``k``;
        * ``target_sel``: index into ``layout.targets`` of the matrix's requantization target;
        * ``first`` (``k == 0``), ``last`` (``k == cols - 1``), ``end`` (last beat of the
          matrix);
        * the columns of the beat's ``S`` slots (slot ``s``: column ``c = k + s``), in the
          terms the vector fetch addresses its buffers with (``in_cols`` =
          :attr:`~.layout.Matrix.in_cols`): ``rec`` (bit ``s``: ``c >= in_cols``, a
          recurrent column), ``in_col`` (``c``) and ``rec_col`` (``c - in_cols``), the low
          bits of each (``in_col`` wide enough for every ``in_cols``, ``rec_col`` for
          every ``cols - in_cols``; meaningful where the column is of that kind), one per
          slot like ``shift_sel``; with ``S > 1``, ``pad`` (bit ``s``: ``c >= cols``, a
          padding column). They are registers of the beat, so the consumer compares no
          column.
    load : ``In(stream.Signature(load_layout))``
        Rewrites one word; always ready, written at the clock edge where ``valid`` is
        high. Fields: ``bias`` (1: bias memory, 0: weight memory), ``addr`` (word address),
        ``data`` (the word packed lane-major as :func:`~lstmfpga.hw.layout.pack` does: lane
        ``p`` in bits ``[p*w, (p+1)*w)`` with ``w = weight_bits`` or ``acc.bits``; unused
        high bits ignored). Loads may be issued at any time, also while streaming: a beat
        whose memory read happens after the write edge sees the new word. A read of the word
        being written in the same cycle returns the old word here, but that is not part of
        the contract (treat it as undefined; do not load a matrix while it is streamed).

    Timing
    ------
    ``latency`` = 2: a command accepted in cycle ``c`` gives its first beat valid in cycle
    ``c + 2`` (if ``o`` is not stalled). Throughput: one beat per cycle sustained; a
    command accepted while the previous matrix's last beat is issued continues without a
    bubble, so back-to-back commands stream back-to-back beats. ``cmd.ready`` is high when the
    streamer is idle, or when the previous matrix's last beat is being issued. Back-pressure
    on ``o``: the beat on ``o`` moves into a skid register (and is presented from there until
    taken) while the streamer advances once more; then the streamer and the memory reads
    (their ``en``) hold until the skid register empties. Nothing is lost or duplicated, and
    neither ``cmd.ready`` nor the memories' ``en`` and addresses depend combinationally on
    ``o.ready`` (they follow flip-flops only), which keeps the consumer's ready logic off the
    memories' timing paths. The weight memory is read at the next address (the address
    counter's input) into a data register with no reset and nothing between it and the
    memory, so synthesis makes it the block RAM's output register
    (:mod:`lstmfpga.synth.absorb`); the beat leaves from that register, not from the RAM.
    """

    #: Cycles from a command accepted to its first beat valid.
    latency = 2

    def __init__(self, layout: WeightLayout):
        if not isinstance(layout, WeightLayout):
            raise TypeError(f"layout must be a WeightLayout, not {layout!r}")
        self._layout = layout
        P, S = layout.lanes, layout.simd
        self._beat_layout = beat_layout(layout)
        self._load_layout = data.StructLayout(
            {
                "bias": 1,
                "addr": unsigned(select_bits(max(layout.depth, layout.bias_depth))),
                "data": unsigned(max(P * S * layout.weight_bits, P * layout.acc.bits)),
            }
        )
        super().__init__(
            {
                "cmd": In(stream.Signature(range(max(2, len(layout.matrices))))),
                "o": Out(stream.Signature(self._beat_layout)),
                "load": In(stream.Signature(self._load_layout)),
            }
        )

    @property
    def layout(self) -> WeightLayout:
        return self._layout

    @property
    def lanes(self) -> int:
        return self._layout.lanes

    @property
    def simd(self) -> int:
        return self._layout.simd

    @property
    def beat_layout(self) -> data.StructLayout:
        """Payload layout of ``o``."""
        return self._beat_layout

    @property
    def load_layout(self) -> data.StructLayout:
        """Payload layout of ``load``."""
        return self._load_layout

    def elaborate(self, platform):
        m = Module()
        n = SimpleNamespace()  # the signals the stages below share
        # stage B's beat reaches ``o`` through a skid register (parks it while ``o`` stalls)
        n.skid_out = SkidOutput(m, self.o, name="out")
        self._memories(m, n)
        self._matrix_params(m, n)
        self._address_counter(m, n)
        self._read_stage(m, n)
        n.skid_out.drive(n.pipe_valid, n.o)
        return m

    def _memories(self, m, n):
        """The weight and bias memories, their read ports (``n.w_rd``, ``n.b_rd``) and the
        load port (always ready, written directly)."""
        layout = self._layout
        P, S = layout.lanes, layout.simd
        wbits, abits = layout.weight_bits, layout.acc.bits
        # Depths of at least 2 keep every address at least one bit wide (no 0-bit ports).
        # ``no_rw_check``: the load port writes only between sequences, the reads that matter
        # happen while a matrix streams (``docs/accelerator.md``, weight port), so a read
        # never meets a write to its address in the same cycle, and synthesis needs no
        # collision logic (address comparators and a bypass in front of the read register).
        m.submodules.weights = wmem = Memory(
            shape=unsigned(P * S * wbits),
            depth=max(2, layout.depth),
            init=layout.packed_weights(),
            attrs=NO_RW_CHECK,
        )
        m.submodules.biases = bmem = Memory(
            shape=unsigned(P * abits),
            depth=max(2, layout.bias_depth),
            init=layout.packed_biases(),
            attrs=NO_RW_CHECK,
        )
        n.w_rd, n.b_rd = wmem.read_port(), bmem.read_port()
        w_wr, b_wr = wmem.write_port(), bmem.write_port()

        # -- load port: always ready, written directly --------------------------------------
        load = self.load.payload
        m.d.comb += [
            self.load.ready.eq(1),
            w_wr.addr.eq(load.addr),
            w_wr.data.eq(load.data),
            w_wr.en.eq(self.load.valid & ~load.bias),
            b_wr.addr.eq(load.addr),
            b_wr.data.eq(load.data),
            b_wr.en.eq(self.load.valid & load.bias),
        ]

    def _matrix_params(self, m, n):
        """Per-matrix constants selected by ``cmd`` (``n.next_params``) and the ones of the
        matrix being streamed (``n.cur``)."""
        layout, S = self._layout, self._layout.simd
        matrices = layout.matrices
        beat = self._beat_layout
        max_segments = n.max_segments = max(len(mat.segments) for mat in matrices)
        addr_shape = n.addr_shape = n.w_rd.addr.shape()
        baddr_shape = n.baddr_shape = n.b_rd.addr.shape()
        col_shape, group_shape = beat["col"].shape, beat["group"].shape
        shift_sel_shape = n.shift_sel_shape = unsigned(select_bits(len(layout.product_shifts)))
        target_sel_shape = beat["target_sel"].shape
        params = data.StructLayout(
            {
                "base": addr_shape,
                "bias_base": baddr_shape,
                "last_col": col_shape,  # first column of the last chunk
                "penult_col": col_shape,  # first column of the chunk before it (or 0)
                "one_chunk": 1,  # last_col == 0
                "one_beat": 1,  # one chunk and one group
                "in_cols": unsigned(col_shape.width + 1),
                "groups_m1": group_shape,
                "target": target_sel_shape,
                # segment s covers columns bound[s-1] .. bound[s]-1 (bound[-1] = cols)
                "bounds": data.ArrayLayout(unsigned(col_shape.width + 1), max_segments),
                "sels": data.ArrayLayout(shift_sel_shape, max_segments),
            }
        )
        next_params = n.next_params = Signal(params)
        n.cur = Signal(params)

        def assign(mat):
            bounds = [seg.start + seg.length for seg in mat.segments]
            sels = [seg.shift_index for seg in mat.segments]
            bounds += [mat.cols] * (max_segments - len(bounds))
            sels += [sels[-1]] * (max_segments - len(sels))
            return next_params.eq(
                params.const(
                    {
                        "base": mat.base,
                        "bias_base": mat.bias_base,
                        "last_col": (mat.chunks - 1) * S,
                        "penult_col": max(0, mat.chunks - 2) * S,
                        "one_chunk": int(mat.chunks == 1),
                        "one_beat": int(mat.chunks == 1 and mat.groups == 1),
                        "in_cols": mat.in_cols,
                        "groups_m1": mat.groups - 1,
                        "target": mat.target,
                        "bounds": bounds,
                        "sels": sels,
                    }
                )
            )

        if len(matrices) == 1:
            m.d.comb += assign(matrices[0])
        else:
            with m.Switch(self.cmd.payload):
                for index, mat in enumerate(matrices):
                    if index == len(matrices) - 1:
                        with m.Default():
                            m.d.comb += assign(mat)
                    else:
                        with m.Case(index):
                            m.d.comb += assign(mat)

    def _address_counter(self, m, n):
        """Stage A: the address counter over the chunks and groups of the current matrix,
        ``cmd.ready``, and each slot's shift select (``n.shift_sel``)."""
        S = self._layout.simd
        beat = self._beat_layout
        col_shape, group_shape = beat["col"].shape, beat["group"].shape
        addr_shape, baddr_shape = n.addr_shape, n.baddr_shape
        cur, next_params, max_segments = n.cur, n.next_params, n.max_segments
        active = Signal()
        addr = Signal(addr_shape)
        baddr = Signal(baddr_shape)
        k = Signal(col_shape)
        g = Signal(group_shape)
        # The streamer advances unless the skid register holds a beat (a flip-flop).
        adv = n.skid_out.advance
        # ``at_last``/``at_end`` (k on the last chunk, and of the last group) are flip-flops,
        # computed from the next counter values: ``cmd.ready`` and the next-address select
        # then start at registers (the address path into the block RAM stays short).
        at_last = Signal(init=1)
        at_end = Signal(init=1)
        m.d.comb += self.cmd.ready.eq(~active | (adv & at_end))
        # slot s of the chunk starting at column k holds column k + s
        slot_sels = []
        for slot in range(S):
            sel = Signal(n.shift_sel_shape, name=f"shift_sel{slot}")
            m.d.comb += sel.eq(cur.sels[max_segments - 1])
            for seg in reversed(range(max_segments - 1)):
                with m.If(k + slot < cur.bounds[seg]):
                    m.d.comb += sel.eq(cur.sels[seg])
            slot_sels.append(sel)
        shift_sel = slot_sels[0] if S == 1 else Cat(*slot_sels)
        n.columns = self._slot_columns(m, k, cur)

        # The next weight address is computed here and read at once: the block RAM's array
        # read of ``addr_next`` happens at the edge where ``addr`` takes it, so the data
        # register of stage B (``w_data``, the block RAM's output register) holds
        # ``mem[addr]`` one edge later, exactly what reading ``addr`` with an output latch
        # would give.
        # (The bias memory, small and often distributed RAM, keeps its address register: an
        # asynchronous LUT-RAM read behind the next-address logic would be a long path.)
        addr_next, baddr_next = Signal(addr_shape), Signal(baddr_shape)
        # ``addr + 1`` in a register beside ``addr`` (loaded with ``addr_next + 1``): no
        # carry chain between the address register and the block RAMs' address inputs
        addr_p1 = Signal(addr_shape, name="addr_p1", init=1)
        k_next, g_next, cur_next = Signal.like(k), Signal.like(g), Signal.like(cur)
        m.d.comb += [
            addr_next.eq(addr),
            baddr_next.eq(baddr),
            k_next.eq(k),
            g_next.eq(g),
            cur_next.eq(cur),
        ]
        # The next ``at_last``/``at_end`` of each case come from flip-flops (the matrix
        # constants and comparisons of the current counters), so the case select is the only
        # logic behind ``cmd.valid``: no adder or comparator after it.
        penult_k = Signal(name="penult_k")  # k + S is the last chunk
        last_g = Signal(name="last_g")  # g is the last group
        penult_g = Signal(name="penult_g")  # g + 1 is the last group
        m.d.comb += [
            penult_k.eq(k == cur.penult_col),
            last_g.eq(g == cur.groups_m1),
            penult_g.eq(g + 1 == cur.groups_m1),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [active.eq(1), at_last.eq(next_params.one_chunk),
                         at_end.eq(next_params.one_beat)]  # fmt: skip
            m.d.comb += [
                cur_next.eq(next_params),
                k_next.eq(0),
                g_next.eq(0),
                addr_next.eq(next_params.base),
                baddr_next.eq(next_params.bias_base),
            ]
        with m.Elif(active & adv):
            with m.If(at_end):
                m.d.sync += active.eq(0)
            with m.Elif(at_last):
                m.d.sync += [at_last.eq(cur.one_chunk), at_end.eq(cur.one_chunk & penult_g)]
                m.d.comb += [
                    k_next.eq(0),
                    g_next.eq(g + 1),
                    baddr_next.eq(baddr + 1),
                    addr_next.eq(addr_p1),
                ]
            with m.Else():
                m.d.sync += [at_last.eq(penult_k), at_end.eq(penult_k & last_g)]
                m.d.comb += [k_next.eq(k + S), addr_next.eq(addr_p1)]
        m.d.sync += [
            addr.eq(addr_next),
            addr_p1.eq(addr_next + 1),
            baddr.eq(baddr_next),
            k.eq(k_next),
            g.eq(g_next),
            cur.eq(cur_next),
        ]

        n.active, n.addr, n.baddr, n.k, n.g = active, addr, baddr, k, g
        n.adv, n.at_last, n.at_end = adv, at_last, at_end
        n.addr_next, n.shift_sel = addr_next, shift_sel

    def _slot_columns(self, m, k, cur) -> dict:
        """The beat fields ``rec``, ``in_col``, ``rec_col`` (and ``pad``) of the chunk at
        column ``k`` of matrix ``cur``, from registers (``k`` and the matrix constants)."""
        S, beat = self._layout.simd, self._beat_layout
        fields = {"rec": [], "in_col": [], "rec_col": [], "pad": []}
        for slot in range(S):
            col = k + slot
            fields["rec"].append(col >= cur.in_cols)
            fields["in_col"].append(col[: slot_width(beat, "in_col", S)])
            fields["rec_col"].append((col - cur.in_cols)[: slot_width(beat, "rec_col", S)])
            fields["pad"].append(col >= cur.bounds[-1])  # the last bound is ``cols``
        if S == 1:
            del fields["pad"]
        return {name: Cat(*values) for name, values in fields.items()}

    def _read_stage(self, m, n):
        """Stage B: the memory reads and the registered beat fields (``n.o``, valid when
        ``n.pipe_valid``)."""
        beat = self._beat_layout
        col_shape, group_shape = beat["col"].shape, beat["group"].shape
        target_sel_shape = beat["target_sel"].shape
        w_rd, b_rd, adv = n.w_rd, n.b_rd, n.adv
        meta = Signal(
            data.StructLayout(
                {
                    "col": col_shape,
                    "group": group_shape,
                    "shift_sel": beat["shift_sel"].shape,
                    "target_sel": target_sel_shape,
                    "first": 1,
                    "last": 1,
                    "end": 1,
                    **{name: beat[name].shape for name in n.columns},
                }
            )
        )
        m.d.comb += [
            w_rd.en.eq(1),
            w_rd.addr.eq(n.addr_next),
            b_rd.en.eq(adv),
            b_rd.addr.eq(n.baddr),
        ]
        w_data = register(m, adv, w_rd.data, name="w_data")
        pipe_valid = Signal()
        with m.If(adv):
            m.d.sync += [
                pipe_valid.eq(n.active),
                meta.col.eq(n.k),
                meta.group.eq(n.g),
                meta.shift_sel.eq(n.shift_sel),
                meta.target_sel.eq(n.cur.target),
                meta.first.eq(n.k == 0),
                meta.last.eq(n.at_last),
                meta.end.eq(n.at_end),
                *(getattr(meta, name).eq(value) for name, value in n.columns.items()),
            ]
        o = Signal(beat)  # the beat of stage B
        m.d.comb += [o.weights.eq(w_data), o.bias.eq(b_rd.data)]
        m.d.comb += [o[name].eq(meta[name]) for name in meta.shape().members]

        n.o, n.pipe_valid = o, pipe_valid
