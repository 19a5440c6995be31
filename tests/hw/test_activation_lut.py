# amaranth: UnusedElaboratable=no
"""ActivationLUT equals ActivationTable.lookup bit for bit, under random valid/ready stalls.

Small formats (s10.6 → s10.8) are checked on every input code; 16-bit formats on random
vectors plus edge codes (format ends, zero, the ends of each table's range).
"""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed
from amaranth.lib import data
from helpers.streams import run_stream

from lstmfpga.hw.activation import ActivationLUT
from lstmfpga.quant.activation import make_table
from lstmfpga.quant.fixed import FixedFormat

IN10, OUT10 = FixedFormat(10, 6), FixedFormat(10, 8)
SMALL = {
    "sig-interp": make_table("sigmoid", IN10, OUT10, step_log2=-3),
    "sig-direct": make_table("sigmoid", IN10, OUT10, step_log2=-2, interpolate=False),
    "tanh-interp-r2": make_table("tanh", IN10, OUT10, step_log2=-2, range_log2=2),
    "tanh-exact": make_table("tanh", IN10, OUT10, step_log2=-6),  # shift 0: direct, per code
    "sig-guard0": make_table("sigmoid", IN10, OUT10, step_log2=-4, range_log2=1, guard=0),
    "tanh-size1": make_table("tanh", IN10, OUT10, step_log2=-3, range_log2=-3),
    "sig-direct-size1": make_table(
        "sigmoid", IN10, OUT10, step_log2=-3, range_log2=-3, interpolate=False
    ),
    "tanh-direct-r0": make_table(
        "tanh", IN10, OUT10, step_log2=-3, range_log2=0, interpolate=False
    ),
}
SMALL_SETS = {
    "mixed8": tuple(SMALL),
    "direct3": ("sig-direct", "tanh-exact", "sig-direct-size1"),
    "single-interp": ("tanh-interp-r2",),
    "single-direct": ("tanh-direct-r0",),
}

PRE, GATE = FixedFormat(16, 11), FixedFormat(16, 14)
SIG16 = make_table("sigmoid", PRE, GATE, step_log2=-5, range_log2=4, guard=4)
TANH16 = make_table("tanh", PRE, GATE, step_log2=-7, range_log2=3, guard=4)
BIG = {
    "gates": (SIG16, SIG16, TANH16, SIG16),  # the accelerator's use
    "mixed": (
        make_table("sigmoid", PRE, GATE, step_log2=-6),  # whole input range
        make_table("tanh", PRE, GATE, step_log2=-5, range_log2=2, interpolate=False),
        make_table("tanh", PRE, GATE, step_log2=-11, range_log2=1),  # one entry per code
        make_table("sigmoid", PRE, GATE, step_log2=-2, range_log2=3, guard=8),
        make_table("tanh", PRE, GATE, step_log2=-4, range_log2=-4, guard=1),  # size 1
    ),
}


def _expect(tables, vectors: np.ndarray) -> list:
    return np.stack([t.lookup(vectors[:, e]) for e, t in enumerate(tables)], axis=1).tolist()


def _check(tables, vectors: np.ndarray, *, seed: int, idle: float, stall: float):
    lut = ActivationLUT(tables)
    vectors = np.asarray(vectors, dtype=np.int64)
    result = run_stream(lut, vectors.tolist(), seed=seed, idle=idle, stall=stall)
    expected = _expect(tables, vectors)
    assert len(result.outputs) == len(expected), f"seed={seed}"
    for j, (got, want) in enumerate(zip(result.outputs, expected, strict=True)):
        assert got == want, f"seed={seed} beat {j}: in {vectors[j].tolist()} got {got} want {want}"


def _edge_codes(tables, fmt: FixedFormat) -> np.ndarray:
    codes = {fmt.min_code, fmt.min_code + 1, -1, 0, 1, fmt.max_code - 1, fmt.max_code}
    for t in tables:
        end = t.size << t.shift  # first magnitude beyond the table
        for base in (end, 1 << t.shift, (t.size - 1) << t.shift):
            for d in (-2, -1, 0, 1, 2):
                codes.update((base + d, -(base + d)))
    return np.array(sorted(c for c in codes if fmt.min_code <= c <= fmt.max_code))


@pytest.mark.parametrize("name", list(SMALL_SETS))
def test_every_code_small_formats(name):
    tables = tuple(SMALL[k] for k in SMALL_SETS[name])
    codes = np.arange(IN10.min_code, IN10.max_code + 1)
    # Element e sees every code once, in a rotated order so the lanes of a beat differ.
    vectors = np.stack([np.roll(codes, 131 * e) for e in range(len(tables))], axis=1)
    _check(tables, vectors, seed=len(name), idle=0.25, stall=0.25)


@pytest.mark.parametrize(("name", "seed"), [("gates", 11), ("mixed", 12)])
def test_random_16bit(name, seed):
    tables = BIG[name]
    rng = np.random.default_rng(seed)
    n = len(tables)
    edges = _edge_codes(tables, PRE)
    edge_vectors = np.stack([np.roll(edges, 7 * e) for e in range(n)], axis=1)
    uniform = rng.integers(PRE.min_code, PRE.max_code + 1, size=(2000, n))
    # Mostly inside the tables' ranges, where interpolation does the work.
    inside = rng.integers(-(9 << PRE.frac), 9 << PRE.frac, size=(2000, n))
    vectors = np.concatenate([edge_vectors, uniform, inside])
    _check(tables, vectors, seed=seed, idle=0.2, stall=0.3)


@pytest.mark.parametrize(("idle", "stall", "seed"), [(0.0, 0.8, 21), (0.8, 0.0, 22)])
def test_heavy_stalls(idle, stall, seed):
    tables = BIG["gates"]
    rng = np.random.default_rng(seed)
    vectors = rng.integers(PRE.min_code, PRE.max_code + 1, size=(300, len(tables)))
    _check(tables, vectors, seed=seed, idle=idle, stall=stall)


@pytest.mark.parametrize(("name", "latency"), [("gates", 6), ("direct", 4)])
def test_latency_and_throughput(name, latency):
    tables = BIG["gates"] if name == "gates" else (BIG["mixed"][1], BIG["mixed"][1])
    lut = ActivationLUT(tables)
    assert lut.latency == latency  # the documented values
    rng = np.random.default_rng(5)
    vectors = rng.integers(PRE.min_code, PRE.max_code + 1, size=(40, len(tables)))
    result = run_stream(lut, vectors.tolist())  # no idle cycles, o.ready always high
    assert result.outputs == _expect(tables, vectors)
    result.assert_pipelined(lut.latency)


def test_signature_and_properties():
    tables = BIG["gates"]
    lut = ActivationLUT(list(tables))
    assert lut.tables == tables
    assert isinstance(lut.tables, tuple)
    assert lut.i.payload.shape() == data.ArrayLayout(signed(16), 4)
    assert lut.o.payload.shape() == data.ArrayLayout(signed(16), 4)
    small = ActivationLUT((SMALL["tanh-exact"],))
    assert small.o.payload.shape() == data.ArrayLayout(signed(10), 1)
    assert small.latency == 4


def test_argument_errors():
    with pytest.raises(TypeError, match=r"^tables must be a tuple of ActivationTable, not "):
        ActivationLUT(SIG16)
    with pytest.raises(TypeError, match=r"^tables must be a tuple of ActivationTable, not "):
        ActivationLUT((SIG16, "tanh"))
    with pytest.raises(ValueError, match=r"^tables must be a non-empty tuple of Activation"):
        ActivationLUT(())
    with pytest.raises(ValueError, match=r"^tables must share one in_fmt and one out_fmt, not "):
        ActivationLUT((SIG16, SMALL["sig-interp"]))
    other_out = make_table("tanh", PRE, FixedFormat(16, 13))
    with pytest.raises(ValueError, match=r"^tables must share one in_fmt and one out_fmt, not "):
        ActivationLUT((TANH16, other_out))


def test_converts_to_verilog():
    text = verilog.convert(ActivationLUT(BIG["gates"]), name="act")
    assert "module act" in text
