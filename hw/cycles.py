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

Stalls before an item (nothing else ever waits):

* gates of step ``s > 0``: ``max(0, tail(previous item) - I_l)``: the input part ``W_ih·u``
  (``I_l`` beats) overlaps the previous step's tail; only the recurrent part waits;
* gates of step 0 of a new layer: ``tail(previous item)`` (its input is the previous layer);
  step 0 of the reverse direction of the same layer: no stall (``h0`` does not wait);
* projection: ``tail_gates`` of the same step; first head item: ``tail(previous item)``.

An item then ends ``max(stall + cols, spacing(previous group)) + (groups - 1) * max(cols,
spacing)`` cycles after the previous one (``stall + groups * cols`` whenever the spacing does
not bind, i.e. ``cols`` is at least ``ceil(P/4)`` for gates and ``P`` for projection/head).
A sequence of ``T`` steps costs, from its ``tlast`` being accepted to the first result on
``m_axis``: ``START + sum(item costs) + tail(last item) + DRAIN_START`` cycles, and the
results take one cycle per element (without back-pressure). Loading takes one cycle per input
element. The model is exact for every ``P`` in ``1 .. 4H``: tests compare it with simulated
cycle counts.

For one layer step without projection this is ``ceil(4H/P) * (I_l + H_out) +
max(0, tail_gates - I_l)``: within 10 % of the ideal ``ceil(4H/P) * (I_l + H_out)`` whenever
the tail is small against the step (H >= 32 with P <= H/2 for typical I).
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
    #: step: ``(kind, beats, tail, cols, spacing, last_spacing)`` (see the module docstring)
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
        passes = []
        for p in accelerator.schedule.passes:
            entries = []
            for index in p.matrices:
                mx = layout.matrices[index]
                beats = mx.groups * mx.chunks
                last_rows = mx.last_group_rows
                if mx.kind == "gates":
                    tail = tail_gates
                else:
                    tail = l_fetch + l_mvu + 1 + (last_rows - 1)
                spacing = emitter_cycles(mx.kind, P, P, V)
                last_spacing = emitter_cycles(mx.kind, P, last_rows, V)
                entries.append((mx.kind, beats, tail, mx.chunks, spacing, last_spacing))
            passes.append((p.kind, p.layer, p.single_step, tuple(entries)))
        # beats of a gates item before its first recurrent column: the input-only chunks
        sizes = tuple(q.layer_input_size(layer) // layout.simd for layer in range(q.num_layers))
        return cls(P, tuple(passes), sizes, 0, tail_gates, accelerator)

    @staticmethod
    def _item(stall: int, previous_spacing: int, entry: tuple) -> int:
        """Cycles from the previous item's last beat to this item's last beat."""
        _, beats, _, cols, spacing, _ = entry
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
                            stall = max(0, previous_tail - self.input_sizes[layer])
                        elif previous_layer is not None and layer != previous_layer:
                            stall = previous_tail
                        else:
                            stall = 0
                    elif item_kind == "proj":
                        stall = previous_tail
                    else:  # head
                        stall = previous_tail if s == 0 else 0
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
                previous_tail, previous_spacing = entries[-1][2], entries[-1][5]
                for entry in entries:
                    if entry[0] == "gates":
                        stall = max(0, previous_tail - self.input_sizes[layer])
                    else:
                        stall = previous_tail
                    total += self._item(stall, previous_spacing, entry)
                    previous_tail, previous_spacing = entry[2], entry[5]
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
