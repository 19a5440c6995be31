"""The cycle budget of a sequence comes from the cycle model and the stall pattern."""

import pytest

from lstmfpga.errors import LstmfpgaError
from lstmfpga.sim.budget import (
    BUDGET_FACTOR,
    BUDGET_SLACK,
    CycleBudget,
    SimulationError,
    SimulationStuck,
)


def test_default_budget_is_a_multiple_of_the_models_expectation_plus_slack():
    budget = CycleBudget.of(200, 30, 10)
    assert budget.expected == 240 and not budget.override
    assert budget.cycles == BUDGET_FACTOR * 240 + BUDGET_SLACK == 1960
    assert (
        budget.describe()
        == "the cycle model expects 240 cycles per sequence, budget 4 x 240 + 1000 = 1960"
    )


def test_stalls_stretch_loading_and_draining_not_computing():
    # A beat stalled with probability p takes 1 / (1 - p) cycles on average.
    budget = CycleBudget.of(200, 30, 10, in_stall=0.5, out_stall=0.75)
    assert budget.expected == 60 + 200 + 40
    assert budget.cycles == 4 * 300 + 1000


def test_an_override_replaces_the_budget_and_keeps_the_expectation():
    budget = CycleBudget.of(200, 30, 10, override=17)
    assert (budget.cycles, budget.expected, budget.override) == (17, 240, True)
    assert budget.describe().endswith("the budget was set to 17 cycles")


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_an_override_must_be_a_positive_integer(bad):
    with pytest.raises(
        ValueError, match=f"cycle_budget must be a positive number of cycles, not {bad!r}"
    ):
        CycleBudget.of(200, 30, 10, override=bad)


def test_a_design_without_cycle_model_gets_a_bound_from_its_stream_lengths():
    budget = CycleBudget.of(None, 30, 10)
    assert budget.expected is None and budget.cycles == 4 * 64 * 40 + 1000
    assert budget.describe().startswith("the design has no cycle model")


def test_the_stuck_error_is_one_lstmfpga_error_line():
    error = CycleBudget.of(200, 30, 10).stuck(
        simulator="icarus", sequence=3, sequences=8, received=2, expected_outputs=10,
        waited=1960, seed=7,
    )  # fmt: skip
    assert isinstance(error, SimulationStuck) and isinstance(error, SimulationError)
    assert isinstance(error, LstmfpgaError)  # the CLI prints it as one line, exit code 2
    assert str(error) == (
        "icarus simulation stuck: sequence 3 (of 8) produced 2 of 10 results after waiting "
        "1960 cycles; the cycle model expects 240 cycles per sequence, budget 4 x 240 + 1000 "
        "= 1960 (seed 7)"
    )
