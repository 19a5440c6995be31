"""Fixtures shared by the tests/sim tests (a test module's own fixture of the same name wins)."""

import pytest
from sim_flow_cases import CASES, build_case, cache_root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The session's simulator build cache (:func:`helpers.sim_cache.cache_root`)."""
    return cache_root(tmp_path_factory)


@pytest.fixture(scope="module")
def cases():
    """Every :data:`sim_flow_cases.CASES` case built (:func:`sim_flow_cases.build_case`)."""
    return {name: build_case(name) for name in CASES}
