# amaranth: UnusedElaboratable=no
"""Shared pieces of the tests/sim tests: models, golden expectations and the build cache.

Every test module points the cocotb flow at one cache directory per test session (shared by
pytest-xdist workers), so a design is compiled once per session whatever test needs it;
the content cache (and its lock file) makes that safe.
"""

import numpy as np
from helpers.sim_cache import cache_root  # noqa: F401 (re-exported for the tests/sim tests)

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.quant import golden
from lstmfpga.sim.lint import verilator_lint
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel

#: A subset of tests/hw/test_accelerator.py's CASES: (model kwargs, lanes, T, batch, options).
CASES = {
    "P1-odd": (dict(input_size=2, hidden_size=3, head="last"), 1, 3, 2, {}),
    "3layer-bidir-proj-states": (
        dict(input_size=2, hidden_size=4, num_layers=3, bidirectional=True, proj_size=3,
             head="all", head_out=2),
        8, 3, 2, dict(with_states=True, initial_state=True),
    ),
}  # fmt: skip
MAX_SEQ_LEN = 8


def seed_of(name: str) -> int:
    return sum(map(ord, name))


def build_case(name: str):
    """``(spec, qmodel, accelerator, x_codes, h0, c0)`` for a case (seeded by its name)."""
    kwargs, lanes, T, batch, options = CASES[name]
    seed = seed_of(name)
    spec, q = random_qmodel(seed, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=MAX_SEQ_LEN, **options)
    x_codes = golden.quantize_inputs(q, random_inputs(seed, batch, T, q.input_size))
    h0, c0 = initial_states(q, batch, seed) if options.get("initial_state") else (None, None)
    return spec, q, acc, x_codes, h0, c0


def initial_states(q, batch: int, seed: int):
    """Random ``(h0, c0)`` codes of the hidden and cell formats (seeded)."""
    rng = np.random.default_rng(seed)
    LD = q.num_layers * q.num_directions
    h0 = q.formats["hidden"].quantize(rng.normal(0, 0.3, (LD, batch, q.output_size)))
    c0 = q.formats["cell"].quantize(rng.normal(0, 0.3, (LD, batch, q.hidden_size)))
    return h0, c0


def assert_bit_and_cycle_exact_in_verilator(name, acc, x, h0, c0, seed, cache) -> None:
    """``acc`` in Verilator equals the golden model without and with random stalls, and its
    compute cycles equal the cycle model's."""
    from lstmfpga.hw.cycles import CycleModel
    from lstmfpga.sim.cocotb_flow import run_cocotb

    want = expected_outputs(acc, x, h0, c0)
    T = x.shape[1]
    plain = run_cocotb(acc, x, h0, c0, simulator="verilator", build_dir=cache)
    assert not plain.error
    assert_outputs_equal(plain.outputs, want, f"{name} in verilator")
    model = CycleModel.of(acc).compute(T)
    for b, cycles in enumerate(plain.cycles):
        assert cycles.compute == model, f"{name}, sequence {b}: {cycles}"
        assert cycles.last_out - cycles.first_out + 1 == acc.result_length(T)
    stalled = run_cocotb(
        acc, x, h0, c0, simulator="verilator", in_stall=0.3, out_stall=0.4, seed=seed,
        build_dir=cache,
    )  # fmt: skip
    assert not stalled.error
    assert_outputs_equal(stalled.outputs, want, f"{name} in verilator with stalls (seed {seed})")
    assert stalled.total_cycles > plain.total_cycles, "no stall happened"


def expected_outputs(acc, x_codes, h0=None, c0=None) -> list[np.ndarray]:
    """The golden model's ``m_axis`` elements, per sequence."""
    q = acc.model
    result = golden.run(q, x_codes, h0, c0)
    geom = StreamGeometry.of(q, with_states=acc.with_states, initial_state=acc.initial_state)
    return [
        pack_outputs(geom, result.prediction, b, result.h_n, result.c_n)
        for b in range(len(x_codes))
    ]


def assert_outputs_equal(got, want, what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} sequences, expected {len(want)}"
    for b, (g, w) in enumerate(zip(got, want, strict=True)):
        bad = np.flatnonzero(g != w) if g.shape == w.shape else np.arange(max(g.size, w.size))
        assert g.shape == w.shape and bad.size == 0, (
            f"{what}, sequence {b}: {bad.size} mismatches, first at {bad[:5]}: "
            f"got {g[bad[:5]] if g.shape == w.shape else g.shape} "
            f"expected {w[bad[:5]] if g.shape == w.shape else w.shape}"
        )


def assert_verilator_lint_clean(folder, top: str = "lstm_accel") -> None:
    """``verilator --lint-only -Wall`` with the project's waivers passes on ``folder/top.v``."""
    problems = verilator_lint(folder, top)
    assert problems == "", problems[:3000]
