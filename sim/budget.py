"""How long a simulation may wait for a sequence before it is declared stuck.

Every flow (Amaranth, Icarus, Verilator) gives each sequence a *cycle budget*: the cycles it
may take, counted from the moment the previous sequence's last result was accepted (from
the end of reset for the first one) to the moment its own last result is accepted. The
budget comes from the cycle model (:class:`lstmfpga.hw.cycles.CycleModel`), not from a
constant:

* the model's expectation for one sequence is ``load + compute(T) + drain`` with the stall
  pattern: ``n_in / (1 - in_stall) + compute(T) + n_out / (1 - out_stall)`` (a beat stalled
  with probability ``p`` takes ``1 / (1 - p)`` cycles on average);
* the budget is :data:`BUDGET_FACTOR` times that, plus :data:`BUDGET_SLACK` cycles (for an
  unlucky run of stalls, and for a cycle model that is off by a few cycles).

A sequence that exceeds its budget ends the run with :class:`SimulationStuck` (a
:class:`lstmfpga.errors.SimulationError`, re-exported here), a one-line
error (``lstmfpga: error: ...`` at the command line, exit code 2) naming the sequence, the
cycles waited and the model's expectation. ``cycle_budget=N`` (``simulate --cycle-budget
N``) replaces the computed budget by ``N`` cycles per sequence, e.g. to give up early, or in
tests, to make a healthy design look stuck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import SimulationError

__all__ = [
    "BUDGET_FACTOR",
    "BUDGET_SLACK",
    "CycleBudget",
    "SimulationError",
    "SimulationStuck",
]

#: The budget is this multiple of the cycle model's expectation for one sequence ...
BUDGET_FACTOR = 4
#: ... plus this many cycles.
BUDGET_SLACK = 1_000


class SimulationStuck(SimulationError):
    """A sequence exceeded its cycle budget. Attributes: ``simulator``, ``sequence`` (index
    in the batch), ``received`` and ``expected_outputs`` (results of that sequence),
    ``waited`` (cycles), ``budget`` (:class:`CycleBudget`), ``seed``."""

    def __init__(
        self,
        *,
        simulator: str,
        sequence: int,
        sequences: int,
        received: int,
        expected_outputs: int,
        waited: int,
        budget: CycleBudget,
        seed: int,
    ):
        self.simulator = simulator
        self.sequence = sequence
        self.sequences = sequences
        self.received = received
        self.expected_outputs = expected_outputs
        self.waited = waited
        self.budget = budget
        self.seed = seed
        super().__init__(
            f"{simulator} simulation stuck: sequence {sequence} (of {sequences}) produced "
            f"{received} of {expected_outputs} results after waiting {waited} cycles; "
            f"{budget.describe()} (seed {seed})"
        )


@dataclass(frozen=True)
class CycleBudget:
    """The cycles one sequence may take: ``cycles``; ``expected`` is the cycle model's
    expectation (``None`` when the design has no cycle model); ``override`` tells whether
    ``cycles`` was given by the caller rather than computed."""

    cycles: int
    expected: int | None
    override: bool = False

    @classmethod
    def of(
        cls,
        compute: int | None,
        n_in: int,
        n_out: int,
        *,
        in_stall: float = 0.0,
        out_stall: float = 0.0,
        override: int | None = None,
    ) -> CycleBudget:
        """The budget of a sequence of ``n_in`` input and ``n_out`` output elements whose
        compute phase the cycle model puts at ``compute`` cycles (``None``: unknown, then
        ``64 * (n_in + n_out)`` stands in for it). ``override``: a positive number of cycles
        that replaces the computed budget."""
        expected = None
        if compute is not None:
            load = n_in / max(1e-6, 1 - in_stall)
            drain = n_out / max(1e-6, 1 - out_stall)
            expected = math.ceil(load + compute + drain)
        if override is not None:
            if not isinstance(override, int) or isinstance(override, bool) or override < 1:
                raise ValueError(
                    f"cycle_budget must be a positive number of cycles, not {override!r}"
                )
            return cls(override, expected, True)
        basis = expected if expected is not None else 64 * (n_in + n_out)
        return cls(BUDGET_FACTOR * basis + BUDGET_SLACK, expected, False)

    def describe(self) -> str:
        model = (
            "the design has no cycle model"
            if self.expected is None
            else f"the cycle model expects {self.expected} cycles per sequence"
        )
        if self.override:
            return f"{model}, the budget was set to {self.cycles} cycles"
        if self.expected is None:
            return f"{model}, budget {self.cycles} cycles"
        return f"{model}, budget {BUDGET_FACTOR} x {self.expected} + {BUDGET_SLACK} = {self.cycles}"

    def stuck(self, *, simulator, sequence, sequences, received, expected_outputs, waited, seed):
        """The :class:`SimulationStuck` error for this budget."""
        return SimulationStuck(
            simulator=simulator,
            sequence=sequence,
            sequences=sequences,
            received=received,
            expected_outputs=expected_outputs,
            waited=waited,
            budget=self,
            seed=seed,
        )
