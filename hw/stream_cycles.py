"""The cycle model of :class:`~lstmfpga.hw.accelerator.LSTMAccelerator` in stream mode.

Stream mode runs the one-step schedule of :mod:`.stream_schedule` step after step, with the
items, tails and pacing of the sequence-mode model (:class:`~.cycles.CycleModel`, which
this module reads, so the two stay in step). Two figures:

* :attr:`StreamCycleModel.latency`: an isolated step (the previous one finished, the output
  stream ready): cycles from the step's last input element accepted to its first output
  element valid on ``m_axis`` (for a ``last`` head: from the ``tlast`` element to the head
  output). It is ``CycleModel.compute(1)``, the path of a one-step sequence in sequence mode
  (the stages hand a step on in the cycles the phases take there), plus
  :data:`FINAL_EXTRA` when a step has no every-step output (a ``last`` head: the drain
  turns to the sequence's final words a cycle later).
* :attr:`StreamCycleModel.interval`: the steady state with inputs always available and
  outputs always accepted: cycles between the ends of consecutive steps. Each item of a step
  waits only for true dependencies, the *tail* after the dependency's last beat: a gates
  item's input columns for the layer below (same step), the head for the top layer; a
  gates item's recurrent columns for its own layer's last item of the previous step and a
  projection for its gates as in sequence mode, unit by unit (``offset`` cycles after the
  producer's last beat, :mod:`.cycles`). Then each item ends
  ``max(stall + cols, spacing) + (groups - 1) * max(cols, spacing)`` cycles after the
  previous one (``CycleModel._item``). When the input (``I`` elements per step, one per
  cycle) or the output (one element per cycle) is slower, they set the interval instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cycles import CycleModel, dep_stall

__all__ = ["FINAL_EXTRA", "StreamCycleModel"]

#: Extra latency of a step without every-step output (a ``last`` head), from the drain.
FINAL_EXTRA = 1


@dataclass(frozen=True)
class StreamCycleModel:
    latency: int
    interval: int
    per_step_outputs: int
    input_size: int

    @classmethod
    def of(cls, accelerator) -> StreamCycleModel:
        if accelerator.mode != "stream":
            raise ValueError(f"accelerator mode must be 'stream', not {accelerator.mode!r}")
        model = CycleModel.of(accelerator)
        q = accelerator.model
        head = q.head
        if head is None:
            per_step = q.output_size
        else:
            per_step = head.out_features if head.mode == "all" else 0
        compute = _steady_interval(model)
        interval = max(compute, q.input_size, per_step)
        latency = model.compute(1) + (0 if per_step else FINAL_EXTRA)
        return cls(latency, interval, per_step, q.input_size)

    def sequence(self, T: int) -> int:
        """An upper estimate of a ``T``-step sequence's compute cycles beyond loading and
        draining (the simulators' cycle budgets)."""
        if T < 1:
            raise ValueError(f"T must be >= 1, not {T!r}")
        return self.latency + (T - 1) * self.interval

    def to_dict(self) -> dict:
        return {
            "formula": (
                "latency = CycleModel.compute(1) (+ FINAL_EXTRA for a last head; last input "
                "element of an isolated step accepted -> its first output valid); "
                "interval = steady cycles "
                "per step (items with true dependencies only; at least I input and the "
                "per-step output elements)"
            ),
            "latency": self.latency,
            "interval": self.interval,
            "per_step_outputs": self.per_step_outputs,
            "input_size": self.input_size,
        }

    @classmethod
    def from_dict(cls, info: dict) -> StreamCycleModel:
        """From :meth:`to_dict` (a manifest's ``stream_cycles``)."""
        return cls(*(int(info[k]) for k in ("latency", "interval", "per_step_outputs",
                                              "input_size")))  # fmt: skip


def _steady_interval(model: CycleModel, steps: int = 12) -> int:
    """Cycles per step once the step-major schedule repeats (the lstm passes, and an
    every-step head), by the item recurrence of the module docstring."""
    passes = [(kind, layer, entries) for kind, layer, single, entries in model.items
              if not (kind == "head" and single)]  # fmt: skip
    t, spacing = 0, 0
    last_end: dict = {}  # (pass index, sub) -> (end, tail) of the latest step
    ends = []
    for s in range(steps):
        current: dict = {}
        for p, (kind, _layer, entries) in enumerate(passes):
            for sub, entry in enumerate(entries):
                deps = []  # (end of the item depended on, its tail, or its results' times)
                if kind == "head":  # the top layer's units as they are written
                    deps.append((current[(p - 1, len(passes[p - 1][2]) - 1)][0], entry[6]))
                elif entry[0] == "proj":  # its gates' units as they are written
                    deps.append((current[(p, 0)][0], entry[6]))
                else:
                    if p > 0:
                        deps.append(current[(p - 1, len(passes[p - 1][2]) - 1)])
                    if s > 0:  # the previous step's h, unit by unit
                        deps.append((last_end[(p, len(entries) - 1)][0], entry[6]))
                stall = max([0] + [_stall(end - t, dep) for end, dep in deps])
                t += CycleModel._item(stall, spacing, entry)
                spacing = entry[5]
                current[(p, sub)] = (t, entry[2])
        last_end = current
        ends.append(t)
    return ends[-1] - ends[-2]


def _stall(delta: int, dep) -> int:
    """The stall for a dependency on an item that ended ``-delta`` cycles before the
    previous item: ``dep`` its tail (the whole item) or :func:`.cycles.dep_stall`'s."""
    return delta + dep if isinstance(dep, int) else dep_stall(dep, delta)
