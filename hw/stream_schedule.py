"""The stream-mode schedule: step-major, one step at a time, of a unidirectional model.

In stream mode (:class:`~.accelerator.LSTMAccelerator` with ``mode="stream"``) every
timestep runs the items of the sequence-mode schedule of a one-step sequence
(:class:`~.schedule.Schedule` with ``T = 1``, which for one direction is step-major): layer 0
``gates`` (and ``proj``), layer 1, ..., then the head when it runs on every step (``all``).
A ``last`` head runs once, after the step whose input carried ``tlast``. The number of steps
is not known in advance: each stage's :class:`~.schedule.ScheduleCursor` is restarted at the
end of every step (:func:`step_end`) and the stage counts its steps modulo
``2**STEP_BITS``; stages compare step counts with :func:`step_lead`.

Buffers become rings: the input ``x`` of :data:`RING` steps, the layer outputs of
:data:`SLOTS` steps (the recurrent input reads the previous slot; the drain reads the top
layer's), the head outputs of :data:`SLOTS` steps.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal

__all__ = ["RING", "SLOTS", "STEP_BITS", "step_end", "step_lead", "stream_steps"]

#: Input steps the ``x`` ring holds (the loader runs at most this far ahead of the drain).
RING = 4
#: Steps of layer outputs and head outputs kept (the drain may lag this far behind).
SLOTS = 4
#: Width of the step counters (modulo ``2**STEP_BITS``; far more than any lead).
STEP_BITS = 8


def step_lead(m: Module, ahead, behind, name: str = "lead") -> Signal:
    """``(ahead - behind) mod 2**STEP_BITS``: how many steps counter ``ahead`` leads
    ``behind`` (a signal added to ``m``)."""
    lead = Signal(STEP_BITS, name=name)
    m.d.comb += lead.eq(ahead - behind)
    return lead


def step_end(m: Module, schedule, p, last_sub, step_last, name: str = "step_end") -> Signal:
    """1 when the item at pass ``p`` (with ``last_sub``: the last item of its pass) is the
    last item of a step: the head's (``all``, or ``last`` on the step that carried
    ``tlast``), else the top layer's last item (without a head, or a ``last`` head on another
    step)."""
    end = Signal(name=name)
    head = schedule.head_pass
    top = len(schedule.passes) - 1 if head is None else head - 1
    at_top = (p == top) & last_sub
    if head is None:
        m.d.comb += end.eq(at_top)
    elif schedule.passes[head].single_step:
        m.d.comb += end.eq((at_top & ~step_last) | (p == head))
    else:
        m.d.comb += end.eq(p == head)
    return end


def stream_steps(schedule, last: bool):
    """Python model of one step: ``(pass index, sub)`` in order (``last``: the step carried
    ``tlast``, so a ``last`` head runs after it)."""
    for index, p in enumerate(schedule.passes):
        if p.kind == "head" and p.single_step and not last:
            continue
        for sub in range(len(p.matrices)):
            yield index, sub
