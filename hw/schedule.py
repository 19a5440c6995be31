"""The accelerator's compute schedule, and a hardware cursor that walks it.

The schedule is layer-major. For each layer ``l`` and direction ``d`` (a *pass*), for each
step ``s = 0 .. T-1`` (time ``t = s`` forwards, ``t = T-1-s`` in reverse) it runs one *item*:
the ``gates`` matrix (``[W_ih | W_hh] · [u_t ; h_prev]``), then, with a projection, the
``proj`` matrix (``W_hr · m_t``). After the last layer, a head pass runs the ``head`` matrix
once (``last``: on ``t = T-1``) or at every timestep (``all``). ``T`` is the run-time length of
the current sequence.

Several pipeline stages of the accelerator follow the same schedule at different points
(issuing weight commands, fetching vectors, writing results); each owns a
:class:`ScheduleCursor` component that it advances when it finishes an item. Because the datapath is
in-order and lossless, the cursors never need to exchange tags.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "KIND_GATES",
    "KIND_HEAD",
    "KIND_PROJ",
    "Pass",
    "Schedule",
    "ScheduleCursor",
    "at_or_past",
]

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


class ScheduleCursor(wiring.Component):
    """Hardware position in a :class:`Schedule`: pass ``p``, step ``s``, item ``sub``.

    Parameters
    ----------
    schedule : Schedule
    max_seq_len : int
        Longest ``T`` (sets the widths of ``s``, ``t``, ``t_prev`` and ``T``).

    Members
    -------
    T : ``In(range(max_seq_len + 1))``
        The current sequence's length (``>= 1`` while the cursor is used).
    advance : ``In(1)``
        One item finished: move to the next one (ignored when ``done``).
    restart : ``In(1)``
        Back to the first item (takes precedence over ``advance``).
    p, s, sub : ``Out``
        The position: pass, step, item within the step (registers).
    matrix, kind, layer, direction, t, t_prev, first_step, last_step, last_sub, done : ``Out``
        Combinational from the position: the item's matrix index and ``KIND_*``, its layer
        and direction, its timestep ``t``, the timestep ``t_prev`` whose ``h`` is its
        recurrent input, whether it is the first/last step of its pass or the last item of
        its step, and ``done`` (past the last item).

    Timing: ``advance`` and ``restart`` act at the next clock edge; the outputs always
    describe the current position (``latency`` 0): ``kind``, ``layer``, ``direction``,
    ``matrix``, ``first_step``, ``last_sub`` and ``done`` are flip-flops (decoded from the
    advanced position, computed from the registers only, and loaded with it: ``advance`` and
    ``restart`` only select what the registers load); ``t``, ``t_prev`` and ``last_step``,
    which depend on ``T``, follow the position combinationally (``last_step`` as an equality
    of ``T`` with a register holding ``s + 1``; a forward pass's ``t_prev`` is a register
    holding ``s - 1``; ``T - 1`` is a register following ``T`` one cycle late, so ``T`` must
    not change while the cursor is past its first pass, as it does not: it is set with
    ``restart``).
    """

    #: Cycles from the position to the outputs that describe it (none).
    latency = 0

    def __init__(self, schedule: Schedule, max_seq_len: int):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, not {schedule!r}")
        if not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool) or max_seq_len < 1:
            raise ValueError(f"max_seq_len must be a positive integer, not {max_seq_len!r}")
        self.schedule = schedule
        self.max_seq_len = max_seq_len
        n_pass = len(schedule.passes)
        n_mat = 1 + max(max(p.matrices) for p in schedule.passes)
        layers = max(1, 1 + max(p.layer for p in schedule.passes))
        super().__init__(
            {
                "T": In(range(max_seq_len + 1)),
                "advance": In(1),
                "restart": In(1),
                "p": Out(range(n_pass + 1)),
                "s": Out(range(max_seq_len + 1)),
                "sub": Out(range(max(2, schedule.items_per_step))),
                "matrix": Out(range(max(2, n_mat))),
                "kind": Out(range(3)),
                "layer": Out(range(max(2, layers))),
                "direction": Out(1),
                "t": Out(range(max_seq_len + 1)),
                "t_prev": Out(range(max_seq_len + 2)),
                "first_step": Out(1),
                "last_step": Out(1),
                "last_sub": Out(1),
                "done": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        sched, T = self.schedule, self.T
        p, s, sub = Signal.like(self.p), Signal.like(self.s), Signal.like(self.sub)
        m.d.comb += [self.p.eq(p), self.s.eq(s), self.sub.eq(sub)]
        # The item fields are flip-flops: decoded from the advanced position and registered
        # with it, so no decoder stands between the position and the users of ``kind`` etc.
        fields = {"kind": self.kind, "layer": self.layer, "direction": self.direction,
                  "matrix": self.matrix, "first_step": self.first_step,
                  "last_sub": self.last_sub, "done": self.done, "reverse": Signal(1),
                  "single": Signal(1)}  # fmt: skip
        regs = {name: Signal.like(out, name=f"{name}_r", init=self._decoded(0, 0, name))
                for name, out in fields.items()}  # fmt: skip
        m.d.comb += [
            fields[name].eq(reg) for name, reg in regs.items() if name in self.signature.members
        ]
        # ``s_next`` = ``s + 1`` (a register beside ``s``): ``last_step`` is an equality of
        # registers, no subtractor before the comparison.
        s_next = Signal(range(self.max_seq_len + 2), name="s_next", init=1)
        # ``s_prev`` = ``s - 1`` (modulo its width), a register: a forward pass's ``t_prev``.
        s_prev = Signal.like(self.t_prev, name="s_prev", init=-1 % 2 ** len(self.t_prev))
        one_step = regs["single"] | regs["done"]
        m.d.comb += self.last_step.eq(Mux(one_step, s_next == 1, s_next == T))
        # ``T - 1`` in a register loaded every cycle: valid from the second cycle after ``T``
        # changes; only single-step and reverse passes read it, and they never come first
        # (the walk starts with layer 0's forward pass), so a cursor restarted with a new
        # ``T`` reaches them two cycles later at the earliest.
        T_m1 = Signal.like(self.t, name="T_m1")
        m.d.sync += T_m1.eq(T - 1)
        with m.If(regs["single"]):
            m.d.comb += [self.t.eq(T_m1), self.t_prev.eq(T)]
        with m.Elif(regs["reverse"]):
            m.d.comb += [self.t.eq(T_m1 - s), self.t_prev.eq(T - s)]
        with m.Else():
            m.d.comb += [self.t.eq(s), self.t_prev.eq(s_prev)]

        # The advanced position and its fields come from the registers only; ``advance`` and
        # ``restart`` just choose what the registers load (no logic behind them).
        adv_p, adv_s, adv_sub = Signal.like(p), Signal.like(s), Signal.like(sub)
        adv_s_next, adv_s_prev = Signal.like(s_next), Signal.like(s_prev)
        m.d.comb += [adv_p.eq(p), adv_s.eq(s), adv_sub.eq(sub + 1), adv_s_next.eq(s_next),
                     adv_s_prev.eq(s_prev)]  # fmt: skip
        with m.If(self.last_sub):
            m.d.comb += adv_sub.eq(0)
            with m.If(~self.last_step):
                m.d.comb += [adv_s.eq(s_next), adv_s_next.eq(s_next + 1), adv_s_prev.eq(s)]
            with m.Else():
                m.d.comb += [adv_s.eq(0), adv_p.eq(p + 1), adv_s_next.eq(1),
                             adv_s_prev.eq(s_prev.init)]  # fmt: skip
        adv = {name: Signal.like(reg, name=f"{name}_adv") for name, reg in regs.items()}
        m.d.comb += [adv["first_step"].eq(adv_s == 0),
                     adv["done"].eq(adv_p == len(sched.passes))]  # fmt: skip
        for name in ("layer", "direction", "reverse", "single", "kind", "matrix", "last_sub"):
            m.d.comb += adv[name].eq(regs[name])
        with m.Switch(adv_p):
            for index, ps in enumerate(sched.passes):
                with m.Case(index):
                    for name in ("layer", "direction", "reverse", "single"):
                        m.d.comb += adv[name].eq(self._decoded(index, 0, name))
                    with m.Switch(adv_sub):
                        for index_sub in range(len(ps.matrices)):
                            with m.Case(index_sub):
                                for name in ("kind", "matrix", "last_sub"):
                                    value = self._decoded(index, index_sub, name)
                                    m.d.comb += adv[name].eq(value)
            with m.Default():  # past the last pass
                m.d.comb += adv["last_sub"].eq(1)
        with m.If(self.restart):
            m.d.sync += [p.eq(0), s.eq(0), sub.eq(0), s_next.eq(1), s_prev.eq(s_prev.init)]
            m.d.sync += [reg.eq(self._decoded(0, 0, name)) for name, reg in regs.items()]
        with m.Elif(self.advance & ~self.done):
            m.d.sync += [p.eq(adv_p), s.eq(adv_s), sub.eq(adv_sub), s_next.eq(adv_s_next),
                         s_prev.eq(adv_s_prev)]  # fmt: skip
            m.d.sync += [reg.eq(adv[name]) for name, reg in regs.items()]
        return m

    def _decoded(self, p: int, sub: int, name: str) -> int:
        """Field ``name`` at position ``(p, s, sub)`` (``s`` = 0 for ``first_step``)."""
        passes = self.schedule.passes
        if name == "done":
            return int(p == len(passes))
        if name == "first_step":
            return 1
        ps = passes[p]
        kinds = [KIND_GATES, KIND_PROJ] if ps.kind == "lstm" else [KIND_HEAD]
        return {"kind": kinds[sub], "layer": max(ps.layer, 0), "direction": ps.direction,
                "matrix": ps.matrices[sub], "last_sub": int(sub == len(ps.matrices) - 1),
                "reverse": int(ps.reverse), "single": int(ps.single_step)}[name]  # fmt: skip

    def at_or_past(self, m: Module, p: int | Signal, s=None, sub=None) -> Signal:
        """1 when this cursor is at or past position ``(p, s, sub)`` (lexicographic): a
        comparator added to the parent module ``m``, reading the ``p``, ``s``, ``sub``
        outputs."""
        return at_or_past(m, (self.p, self.s, self.sub), p, s, sub)


def at_or_past(m: Module, position, p, s=None, sub=None) -> Signal:
    """1 when ``position`` (``(p, s, sub)`` values, e.g. a cursor's outputs) is at or past
    ``(p, s, sub)`` (lexicographic; ``s``/``sub`` None: compare the leading fields only): a
    comparator added to module ``m``."""
    cp, cs, csub = position
    flag = Signal()
    if s is None:
        m.d.comb += flag.eq(cp >= p)
    elif sub is None:
        m.d.comb += flag.eq((cp > p) | ((cp == p) & (cs >= s)))
    else:
        m.d.comb += flag.eq(
            (cp > p) | ((cp == p) & (cs > s)) | ((cp == p) & (cs == s) & (csub >= sub))
        )
    return flag
