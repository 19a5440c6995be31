"""The analytic cycle model of :class:`~lstmfpga.hw.accelerator.LSTMAccelerator`.

Every matrix item of the schedule streams ``groups * chunks`` weight beats, one per cycle
(``groups = ceil(rows / P)``, ``chunks = ceil(cols / S)`` with ``S = simd``; below, ``cols``
stands for ``chunks`` and ``I_l`` for the input-only beats ``floor(I_l / S)``;
``cols = I_l + H_out`` for gates, ``H`` for the projection,
``D * H_out`` for the head). The emitter passes on at most ``V = cells`` hidden units (gates)
or one row (projection, head) per cycle, so the fetch stage takes the last beat of a row group
at least ``spacing`` cycles after the previous group's last beat
(:func:`~.regroup.emitter_cycles`: ``ceil(ceil(r/4)/V)`` after a gate group of ``r`` real
rows, ``ceil(ceil(P/4)/V)`` for a full one; after a
projection/head group its real rows, ``P`` or, in an item's padded last group, fewer); the
matrix-vector unit then never waits. Between
items the fetch stage stalls only for true dependencies, for the *tail* of the item it
depends on: the cycles from that item's last beat leaving the weight memory until its last
result is written back.

* ``tail_gates = L_fetch + L_mvu + 1 (regroup) + (ceil(ceil(r/4)/V) - 1) + L_act + L_cell``
  (``L_fetch = VectorFetch.latency = 2``: buffer read, read data register), ``r`` the real
  rows of the last gate group (``P`` when ``P`` divides ``4H``, else
  ``4H - (groups - 1) * P``: the padding rows leave with the last unit);
* ``tail_rows = L_fetch + L_mvu + 1 + (rows - 1) mod P`` (projection and head rows are written one
  per cycle).

Stalls before an item (nothing else ever waits). A row group reads the vector's columns in
index order, and the write-back writes an item's results (units, rows) in index order, so a
beat that reads results of the item being written waits only for the results it reads (the
fetch compares the write-back's ``written`` count with the beat's last column). Result ``k``
of a producing item may be read ``A(k)`` cycles after its last beat: for a ``gates``
producer, unit ``u`` completes in group ``g = (4u + 3) // P`` (its last row) as the ``j``-th
unit that group completes, so ``A(u) = ready_gates + floor(j / V) - (groups - 1 - g) *
max(chunks, spacing)`` with ``ready_gates = L_fetch + L_mvu + 1 + L_act + L_cell``; for a row
producer (projection) ``A(r) = L_fetch + L_mvu + 1 + r mod P - (groups - 1 - r // P) *
max(chunks, spacing)``; ``A`` of the last result is the producer's tail. Beat ``i`` of a row
group (last column ``c = i*S + S - 1``) reads result ``k_i = c - first`` (``first = I_l``
for the recurrent ``h`` of a gates item, 0 for a projection's ``m`` and the head's ``h``;
the last result when its last slot is padding). The fetch sees a partly written producer
through a registered flag, one cycle late, and an item's first beat not in the cycle it
arrives, so beat ``i`` goes at the earliest ``A'(k_i) = min(A(k_i) + 1, tail)`` cycles
after the producer's last beat (``min(max(A(k_0) + 1, 1), tail)`` for beat 0): with the
producer the previous item the stall is ``max(0, max_i (A'(k_i) - i))``
(:func:`dep_stall`, which also takes a producer that ended earlier, for stream mode):

* gates of step ``s > 0``: that stall against the previous step's last item of the
  same pass (gates, or the projection); with one unit per row group and the tail shorter
  than a group this is ``max(0, tail_gates - (chunks - 1))``: only the first group's last
  beats can wait (the whole-vector wait it replaces was ``tail - I_l``);
* gates of step 0 of a new layer: ``tail(previous item)`` (its input is the previous layer,
  read at time ``t``, not in the order it was written: whole-vector);
  step 0 of the reverse direction of the same layer: no stall (``h0`` does not wait);
* projection: that stall against the gates of the same step;
* first head item: that stall against the top layer's last item of a unidirectional
  model (its ``h`` is the head's input vector, in index order); ``tail(previous item)``
  with two directions (the head reads both passes' ``h``: whole-vector).

An item then ends ``max(stall + cols, spacing(previous group)) + (groups - 1) * max(cols,
spacing)`` cycles after the previous one (``stall + groups * cols`` whenever the spacing does
not bind, i.e. ``cols`` is at least ``ceil(P/4)`` for gates and ``P`` for projection/head).
A sequence of ``T`` steps costs, from its ``tlast`` being accepted to the first result on
``m_axis``: ``START + sum(item costs) + tail(last item) + DRAIN_START`` cycles, and the
results take one cycle per element (without back-pressure). Loading takes one cycle per input
element. The model is exact for every ``P`` in ``1 .. 4H``: tests compare it with simulated
cycle counts.

For one layer step without projection this is ``ceil(4H/P) * ceil((I_l + H_out)/S)`` plus
that stall: the ideal whenever the first row group's beats outlast the previous step's
tail (the digits model at P = 8: 640 cycles, the ideal; 660 with the whole-vector wait).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CycleModel"]

#: From ``tlast`` accepted to the first weight beat (phase change, command, memory latency).
START = 4
#: From the last write-back to the first result valid on ``m_axis`` (phase change, read).
DRAIN_START = 2


@dataclass(frozen=True)
class CycleModel:
    lanes: int
    #: per schedule pass: ``(kind, layer, single_step, entries)``, one entry per item of a
    #: step: ``(kind, beats, tail, cols, spacing, last_spacing, dep)`` (see the module
    #: docstring; ``dep``: :func:`_offset`'s, None for a bidirectional model's head)
    items: tuple
    input_sizes: tuple[int, ...]  # per layer: input-only beats of a gates item, I_l // S
    output_elements: int  # per sequence, excluding T-dependence (see result_length)
    tail_gates: int
    accelerator: object

    @classmethod
    def of(cls, accelerator) -> CycleModel:
        from .activation import lookup_latency
        from .cell import cell_latency
        from .fetch import VectorFetch
        from .mvu import mvu_latency
        from .regroup import emitter_cycles

        q, layout, P = accelerator.model, accelerator.layout, accelerator.lanes
        V = accelerator.cells
        tables = q.tables
        if q.cell == "gru":  # the GRU cell does its own lookups
            from .gru_cell import gru_cell_latency

            l_act, l_cell = 0, gru_cell_latency(tables["sigmoid"], tables["tanh_gate"])
        else:
            l_act = lookup_latency((tables["sigmoid"], tables["tanh_gate"]))
            l_cell = cell_latency(tables["tanh_cell"])
        l_mvu = mvu_latency(layout.simd)
        gates = next(mx for mx in layout.matrices if mx.kind == "gates")
        unit_beats_last = emitter_cycles("gates", P, gates.last_group_rows, V)
        l_fetch = VectorFetch.latency
        tail_gates = l_fetch + l_mvu + 1 + (unit_beats_last - 1) + l_act + l_cell
        S = layout.simd
        ready = {"gates": l_fetch + l_mvu + 1 + l_act + l_cell, "rows": l_fetch + l_mvu + 1}
        passes, passes_in = [], accelerator.schedule.passes
        for p in passes_in:
            entries = []
            mxs = [layout.matrices[index] for index in p.matrices]
            for sub, mx in enumerate(mxs):
                beats = mx.groups * mx.chunks
                last_rows = mx.last_group_rows
                if mx.kind == "gates":
                    tail = tail_gates
                else:
                    tail = l_fetch + l_mvu + 1 + (last_rows - 1)
                spacing = emitter_cycles(mx.kind, P, P, V)
                last_spacing = emitter_cycles(mx.kind, P, last_rows, V)
                offset = None  # the dependency on the item that writes this one's vector
                if mx.kind != "head":
                    producer = mxs[sub - 1]  # gates: the last item of the pass (previous step)
                elif q.num_directions == 1:  # the top layer's last item
                    producer = layout.matrices[passes_in[len(passes) - 1].matrices[-1]]
                else:  # both directions' h: whole passes
                    producer = None
                if producer is not None:
                    times = _ready_times(producer, P, V, ready, emitter_cycles)
                    first = mx.in_cols if mx.kind == "gates" else 0
                    offset = _offset(times, mx.chunks, S, first, mx.cols)
                entries.append((mx.kind, beats, tail, mx.chunks, spacing, last_spacing, offset))
            passes.append((p.kind, p.layer, p.single_step, tuple(entries)))
        # beats of a gates item before its first recurrent column: the input-only chunks
        sizes = tuple(q.layer_input_size(layer) // layout.simd for layer in range(q.num_layers))
        return cls(P, tuple(passes), sizes, 0, tail_gates, accelerator)

    @staticmethod
    def _item(stall: int, previous_spacing: int, entry: tuple) -> int:
        """Cycles from the previous item's last beat to this item's last beat."""
        _, beats, _, cols, spacing, _, _ = entry
        groups = beats // cols
        return max(stall + cols, previous_spacing) + (groups - 1) * max(cols, spacing)

    def compute(self, T: int) -> int:
        """Cycles from the input's ``tlast`` accepted to the first result valid."""
        if T < 1:
            raise ValueError(f"T must be >= 1, not {T!r}")
        t = START
        previous_tail, previous_spacing, previous_layer = 0, 0, None
        for _kind, layer, single, entries in self.items:
            steps = 1 if single else T
            for s in range(steps):
                for entry in entries:
                    item_kind, tail = entry[0], entry[2]
                    if item_kind == "gates":
                        if s > 0:
                            stall = dep_stall(entry[6], 0)
                        elif previous_layer is not None and layer != previous_layer:
                            stall = previous_tail
                        else:
                            stall = 0
                    elif item_kind == "proj":
                        stall = dep_stall(entry[6], 0)
                    elif s > 0:  # head
                        stall = 0
                    else:
                        stall = previous_tail if entry[6] is None else dep_stall(entry[6], 0)
                    t += self._item(stall, previous_spacing, entry)
                    previous_tail, previous_spacing = tail, entry[5]
            previous_layer = layer
        return t + previous_tail + DRAIN_START

    def sequence(self, T: int) -> int:
        """Cycles for one whole sequence without stalls: load + compute + drain."""
        acc = self.accelerator
        return acc.input_length(T) + self.compute(T) + acc.result_length(T)

    def batch(self, Ts) -> int:
        """Cycles of back-to-back sequences of lengths ``Ts`` (in that order), from the first
        input element's transfer to the last result's, both included, when the host offers
        every input element as soon as it can be taken and takes every result at once.

        Cycle ``c`` counts from the first element's transfer (``c = 0``). A sequence's
        first result is valid ``compute(T) - 1`` cycles after its ``tlast`` transfer.
        ``buffers=1``: each sequence costs ``input_length + compute(T) + result_length - 2``
        (the next one's first element is taken in the cycle after the last result).
        ``buffers=2``: sequence ``k`` starts computing at ``s_k = max(l_k, f_{k-1} + 1)``
        (``l_k`` its ``tlast``, ``f`` the hand-off of the previous one's results to the
        drain), hands off at ``f_k = max(s_k + compute(T) - DRAIN_START - 1, e_{k-1} + 1)``
        (``e`` the previous drain's last result) and drains until ``e_k = f_k + 1 +
        result_length``; the next sequence's first element is taken at ``s_k + 1``."""
        acc = self.accelerator
        Ts = [int(T) for T in Ts]
        if not Ts:
            raise ValueError("Ts must name at least one sequence length, not []")
        first, handoff, drained = 0, None, None
        for T in Ts:
            last_in = first + acc.input_length(T) - 1
            start = last_in if handoff is None or acc.buffers == 1 else max(last_in, handoff + 1)
            handoff = start + self.compute(T) - DRAIN_START - 1
            if drained is not None and acc.buffers == 2:
                handoff = max(handoff, drained + 1)
            drained = handoff + 1 + acc.result_length(T)
            first = start + 1 if acc.buffers == 2 else drained + 1
        return drained + 1

    def sequences(self, B: int, T: int) -> int:
        """:meth:`batch` of ``B`` sequences of ``T`` steps."""
        if not isinstance(B, int) or B < 1:
            raise ValueError(f"B must be a positive integer, not {B!r}")
        return self.batch([T] * B)

    def interval(self, T: int) -> int:
        """Steady cycles per sequence of back-to-back sequences of ``T`` steps (the step of
        :meth:`sequences` in ``B``): with ``buffers=1`` a whole sequence (``input_length +
        compute(T) + result_length - 2``); with ``buffers=2`` the slowest of compute
        (``compute(T) - 2``), load (``input_length``) and drain (``result_length + 2``)."""
        acc = self.accelerator
        n_in, n_out, compute = acc.input_length(T), acc.result_length(T), self.compute(T)
        if acc.buffers == 1:
            return n_in + compute + n_out - 2
        return max(compute - 2, n_in, n_out + 2)

    def step(self, layer: int = 0) -> int:
        """Steady-state cycles of one step of ``layer`` (gates, and projection if any)."""
        for kind, lay, _, entries in self.items:
            if kind == "lstm" and lay == layer:
                total = 0
                previous_spacing = entries[-1][5]
                for entry in entries:
                    total += self._item(dep_stall(entry[6], 0), previous_spacing, entry)
                    previous_spacing = entry[5]
                return total
        raise ValueError(f"layer must be in 0..{len(self.input_sizes) - 1}, not {layer!r}")

    def ideal_step(self, layer: int = 0) -> int:
        """The bound the issue sets: ``ceil(4H/P) * ceil((I_l + H_out) / S)`` (gates only)."""
        for kind, lay, _, entries in self.items:
            if kind == "lstm" and lay == layer:
                return entries[0][1]
        raise ValueError(f"layer must be in 0..{len(self.input_sizes) - 1}, not {layer!r}")

    def to_dict(self) -> dict:
        acc = self.accelerator
        samples = sorted({1, min(8, acc.max_seq_len), acc.max_seq_len})
        return {
            "formula": (
                "compute(T) = START + sum over items (stall + groups*chunks, "
                "chunks = ceil(cols/S), or the emitter "
                "pacing when it binds) + tail + DRAIN_START; "
                f"steady layer-0 step = {self.step(0)} cycles "
                f"(ideal ceil(4H/P)*ceil((I+H_out)/S) = {self.ideal_step(0)}); "
                "load = input elements, drain = output elements (1 per cycle)"
            ),
            "tail_gates": self.tail_gates,
            "step": {str(layer): self.step(layer) for layer in range(len(self.input_sizes))},
            "ideal_step": {
                str(layer): self.ideal_step(layer) for layer in range(len(self.input_sizes))
            },
            "compute": {str(T): self.compute(T) for T in samples},
            "per_sequence": {str(T): self.sequence(T) for T in samples},
        } | ({} if acc.buffers == 1 else {
            # (buffers=1 keeps the manifest of the designs generated before buffers existed)
            "overlap": "buffers = 2: back-to-back sequences cost interval(T) = max(compute - "
                       "2, load, drain + 2) each (the first load and the last drain besides)",
            "interval": {str(T): self.interval(T) for T in samples},
        })  # fmt: skip


def _ready_times(mx, P: int, V: int, ready: dict, emitter_cycles) -> list[int]:
    """For each result (hidden unit of a ``gates`` item, row of a ``proj`` item) of ``mx``:
    the cycles from the item's last beat until a beat reading it may be taken (the item's
    tail for its last result). Group ``g``'s last beat leaves ``(groups - 1 - g) *
    max(chunks, spacing)`` cycles before the item's last one; a unit completes in the group
    of its last row (``(4u + 3) // P``) and the units a group completes leave ``V`` per cycle,
    a row group's rows one per cycle."""
    step = max(mx.chunks, emitter_cycles(mx.kind, P, P, V))
    times = []
    if mx.kind == "gates":
        for u in range(mx.rows // 4):
            g = (4 * u + 3) // P
            first = max(0, -(-(g * P - 3) // 4))  # the first unit group g completes
            times.append(ready["gates"] + (u - first) // V - (mx.groups - 1 - g) * step)
    else:
        for r in range(mx.rows):
            g = r // P
            times.append(ready["rows"] + r % P - (mx.groups - 1 - g) * step)
    return times


def _offset(times: list[int], chunks: int, S: int, first: int, cols: int) -> tuple:
    """The dependency of a row group's beats on the producing item's results ``times``
    (:func:`_ready_times`): beat ``i``'s last column ``c = i*S + S - 1`` reads result
    ``k_i = c - first`` (``first``: the columns before the producer's, the layer input's;
    the last result when ``c >= cols``, padding). The fetch sees a partly written producer
    one cycle late (a registered flag), so beat ``i`` may go ``min(times[k_i] + 1, tail)``
    cycles after the producer's last beat (the whole item at ``tail``); an item's first beat,
    not in the cycle it arrives. Returns ``(rest, first_beat, tail)``: ``rest`` the largest
    ``min(times[k_i] + 1, tail) - i`` over the beats ``i >= 1`` that read the producer,
    ``first_beat`` ``times[k_0]`` when beat 0 reads it (else None); :func:`dep_stall`
    turns it into a stall."""
    tail = times[-1]
    rest, first_beat = None, None
    for i in range(chunks):
        c = i * S + S - 1
        if c < first:
            continue
        a = times[c - first] if c < cols else tail
        if i == 0:
            first_beat = a
        else:
            value = min(a + 1, tail) - i
            rest = value if rest is None else max(rest, value)
    return rest, first_beat, tail


def dep_stall(dep: tuple, delta: int) -> int:
    """Stall of an item (cycles added before its first beat) whose beats read a producing
    item (:func:`_offset`'s ``dep``) that ended ``-delta`` cycles before the previous
    item (``delta = 0``: the producer is the previous item)."""
    rest, first_beat, tail = dep
    stall = 0
    if rest is not None:
        stall = max(stall, delta + rest)
    if first_beat is not None:
        stall = max(stall, min(max(1, delta + first_beat + 1), delta + tail))
    return stall
