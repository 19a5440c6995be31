"""The accelerator's compute schedule, and a hardware cursor that walks it.

The schedule is layer-major. For each layer ``l`` and direction ``d`` (a *pass*), for each
step ``s = 0 .. T-1`` (time ``t = s`` forwards, ``t = T-1-s`` in reverse) it runs one *item*:
the ``gates`` matrix (``[W_ih | W_hh] · [u_t ; h_prev]``), then, with a projection, the
``proj`` matrix (``W_hr · m_t``). After the last layer, a head pass runs the ``head`` matrix
once (``last``: on ``t = T-1``) or at every timestep (``all``). ``T`` is the run-time length of
the current sequence.

Several pipeline stages of the accelerator follow the same schedule at different points
(issuing weight commands, fetching vectors, writing results); each owns a
:class:`ScheduleCursor` that it advances when it finishes an item. Because the datapath is
in-order and lossless, the cursors never need to exchange tags.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Signal

__all__ = ["KIND_GATES", "KIND_HEAD", "KIND_PROJ", "Pass", "Schedule", "ScheduleCursor"]

KIND_GATES, KIND_PROJ, KIND_HEAD = 0, 1, 2


@dataclass(frozen=True)
class Pass:
    """One pass of the schedule: an LSTM (layer, direction), or the head."""

    kind: str  # "lstm" or "head"
    layer: int
    direction: int
    matrices: tuple[int, ...]  # matrix indices of the items of one step, in order
    reverse: bool = False  # time runs T-1 .. 0
    single_step: bool = False  # head "last": one step, at t = T-1


@dataclass(frozen=True)
class Schedule:
    passes: tuple[Pass, ...]

    @classmethod
    def of(cls, layout) -> Schedule:
        """The schedule of a :class:`~lstmfpga.hw.layout.WeightLayout`'s matrices."""
        passes = []
        by_key = {
            (mx.kind, mx.layer, mx.direction): index for index, mx in enumerate(layout.matrices)
        }
        layers = sorted({mx.layer for mx in layout.matrices if mx.kind == "gates"})
        for layer in layers:
            directions = sorted(
                {mx.direction for mx in layout.matrices if mx.kind == "gates" and mx.layer == layer}
            )
            for d in directions:
                items = [by_key[("gates", layer, d)]]
                if ("proj", layer, d) in by_key:
                    items.append(by_key[("proj", layer, d)])
                passes.append(Pass("lstm", layer, d, tuple(items), reverse=bool(d)))
        head = [index for index, mx in enumerate(layout.matrices) if mx.kind == "head"]
        if head:
            passes.append(Pass("head", -1, 0, (head[0],), single_step=layout.head_mode == "last"))
        return cls(tuple(passes))

    @property
    def items_per_step(self) -> int:
        return max(len(p.matrices) for p in self.passes)

    def first_pass_of_layer(self, layer: int) -> int:
        return next(i for i, p in enumerate(self.passes) if p.kind == "lstm" and p.layer == layer)

    @property
    def head_pass(self) -> int | None:
        return next((i for i, p in enumerate(self.passes) if p.kind == "head"), None)

    def items(self, T: int):
        """Python model of the walk: ``(pass index, step, sub, t)`` in order (for tests)."""
        for index, p in enumerate(self.passes):
            steps = 1 if p.single_step else T
            for s in range(steps):
                t = T - 1 if p.single_step else (T - 1 - s if p.reverse else s)
                for sub in range(len(p.matrices)):
                    yield index, s, sub, t


class ScheduleCursor:
    """Hardware position in a :class:`Schedule`: pass ``p``, step ``s``, item ``sub``.

    Build with :meth:`elaborate` into a module; drive ``advance`` (one item finished) and
    ``restart`` (back to the beginning, for the next sequence). Combinational outputs:
    ``matrix``, ``kind`` (``KIND_*``), ``layer``, ``direction``, ``t`` (the timestep of the
    item), ``t_prev`` (the timestep whose ``h`` is recurrent input), ``first_step``,
    ``last_step``, ``done`` (past the last item).
    """

    def __init__(self, schedule: Schedule, max_seq_len: int, name: str):
        self.schedule = schedule
        n_pass = len(schedule.passes)
        n_mat = 1 + max(max(p.matrices) for p in schedule.passes)
        layers = max(1, 1 + max(p.layer for p in schedule.passes))
        self.advance = Signal(name=f"{name}_advance")
        self.restart = Signal(name=f"{name}_restart")
        self.p = Signal(range(n_pass + 1), name=f"{name}_p")
        self.s = Signal(range(max_seq_len + 1), name=f"{name}_s")
        self.sub = Signal(range(max(2, schedule.items_per_step)), name=f"{name}_sub")
        self.matrix = Signal(range(max(2, n_mat)), name=f"{name}_matrix")
        self.kind = Signal(range(3), name=f"{name}_kind")
        self.layer = Signal(range(max(2, layers)), name=f"{name}_layer")
        self.direction = Signal(name=f"{name}_direction")
        self.t = Signal(range(max_seq_len + 1), name=f"{name}_t")
        self.t_prev = Signal(range(max_seq_len + 2), name=f"{name}_t_prev")
        self.first_step = Signal(name=f"{name}_first_step")
        self.last_step = Signal(name=f"{name}_last_step")
        self.last_sub = Signal(name=f"{name}_last_sub")
        self.done = Signal(name=f"{name}_done")
        self.max_seq_len = max_seq_len

    def elaborate(self, m: Module, T: Signal) -> None:
        """Add the cursor's logic to ``m``; ``T`` is the sequence length (>= 1)."""
        sched = self.schedule
        steps = Signal.like(self.s, name=self.s.name + "_steps")
        n_sub = Signal(range(sched.items_per_step + 1), name=self.sub.name + "_n")
        reverse, single = Signal(), Signal()
        m.d.comb += [
            self.done.eq(self.p == len(sched.passes)),
            self.first_step.eq(self.s == 0),
            self.last_step.eq(self.s == steps - 1),
            self.last_sub.eq(self.sub == n_sub - 1),
        ]
        with m.Switch(self.p):
            for index, ps in enumerate(sched.passes):
                with m.Case(index):
                    kind_of_sub = [KIND_GATES, KIND_PROJ] if ps.kind == "lstm" else [KIND_HEAD]
                    m.d.comb += [
                        n_sub.eq(len(ps.matrices)),
                        reverse.eq(ps.reverse),
                        single.eq(ps.single_step),
                        self.layer.eq(max(ps.layer, 0)),
                        self.direction.eq(ps.direction),
                        steps.eq(1 if ps.single_step else T),
                    ]
                    with m.Switch(self.sub):
                        for sub, matrix in enumerate(ps.matrices):
                            with m.Case(sub):
                                m.d.comb += [
                                    self.matrix.eq(matrix),
                                    self.kind.eq(kind_of_sub[sub]),
                                ]
            with m.Default():
                m.d.comb += [n_sub.eq(1), steps.eq(1)]
        with m.If(single):
            m.d.comb += [self.t.eq(T - 1), self.t_prev.eq(T)]
        with m.Elif(reverse):
            m.d.comb += [self.t.eq(T - 1 - self.s), self.t_prev.eq(T - self.s)]
        with m.Else():
            m.d.comb += [self.t.eq(self.s), self.t_prev.eq(self.s - 1)]

        with m.If(self.restart):
            m.d.sync += [self.p.eq(0), self.s.eq(0), self.sub.eq(0)]
        with m.Elif(self.advance & ~self.done):
            with m.If(~self.last_sub):
                m.d.sync += self.sub.eq(self.sub + 1)
            with m.Else():
                m.d.sync += self.sub.eq(0)
                with m.If(~self.last_step):
                    m.d.sync += self.s.eq(self.s + 1)
                with m.Else():
                    m.d.sync += [self.s.eq(0), self.p.eq(self.p + 1)]

    def at_or_past(self, m: Module, p: int | Signal, s=None, sub=None) -> Signal:
        """1 when this cursor is at or past position ``(p, s, sub)`` (lexicographic)."""
        flag = Signal()
        if s is None:
            m.d.comb += flag.eq(self.p >= p)
        elif sub is None:
            m.d.comb += flag.eq((self.p > p) | ((self.p == p) & (self.s >= s)))
        else:
            m.d.comb += flag.eq(
                (self.p > p)
                | ((self.p == p) & (self.s > s))
                | ((self.p == p) & (self.s == s) & (self.sub >= sub))
            )
        return flag
