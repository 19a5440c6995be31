"""A randomized sweep: random geometries, bit-exact in Verilator against the golden model.

Marked ``slow``. CI runs it at its small size (``LSTMFPGA_SWEEP=small``, the default: 4
models); ``LSTMFPGA_SWEEP=large`` runs 24. Each model draws its layers (1-3), directions,
projection, bias, head (none/last/all), odd or even I and H, a lane count among all the
divisors of 4H (not only powers of two) and a sequence length from a seeded generator; the
seed is in the test id.
"""

import os

import numpy as np
import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.quant import golden
from lstmfpga.sim.cocotb_flow import run_cocotb
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel

SIZES = {"small": 4, "large": 24}
COUNT = SIZES[os.environ.get("LSTMFPGA_SWEEP", "small")]


def divisors(n: int) -> list[int]:
    """Every lane count the hardware takes for ``4*hidden_size == n`` (not only powers of 2)."""
    return [p for p in range(1, n + 1) if n % p == 0]


def draw(seed: int):
    rng = np.random.default_rng(seed)
    hidden = int(rng.integers(1, 9))
    lanes = int(rng.choice(divisors(4 * hidden)))
    kwargs = dict(
        input_size=int(rng.integers(1, 7)),
        hidden_size=hidden,
        num_layers=int(rng.integers(1, 4)),
        bidirectional=bool(rng.integers(2)),
        proj_size=int(rng.integers(0, hidden)) if hidden > 1 and rng.integers(2) else 0,
        bias=bool(rng.integers(2)),
        head=[None, "last", "all"][int(rng.integers(3))],
        head_out=int(rng.integers(1, 5)),
    )
    return kwargs, lanes, int(rng.integers(1, 12))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 100 + COUNT))
def test_random_model_is_bit_exact_in_verilator(seed, tmp_path_factory):
    kwargs, lanes, T = draw(seed)
    _, q = random_qmodel(seed, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, max_seq_len=T, with_states=bool(seed % 2))
    x = golden.quantize_inputs(q, random_inputs(seed, 5, T, q.input_size))
    expected = golden.run(q, x)
    result = run_cocotb(acc, x, simulator="verilator", in_stall=0.2, out_stall=0.3, seed=seed)
    geom = StreamGeometry.of(q, with_states=acc.with_states)
    for b, got in enumerate(result.outputs):
        want = pack_outputs(geom, expected.prediction, b, expected.h_n, expected.c_n)
        assert np.array_equal(got, want), f"seed {seed} {kwargs} lanes={lanes} T={T} seq {b}"
