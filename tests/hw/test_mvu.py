# amaranth: UnusedElaboratable=no
"""MatrixVectorUnit == quant.golden.dot_accumulate + quant.fixed.requantize, bit for bit."""

from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.hdl import Array, Const, Fragment, Signal, signed
from helpers.lstm_models import array, make_model
from helpers.streams import Harness, expect_quiet, get_n, put_all, simulate

from lstmfpga.hw.layout import Target, WeightLayout
from lstmfpga.hw.mvu import MatrixVectorUnit
from lstmfpga.hw.weights import WeightMemory
from lstmfpga.quant.fixed import ROUNDING_MODES, FixedFormat, bits_for_range, shift_round
from lstmfpga.quant.fixed import requantize as golden_requantize
from lstmfpga.quant.golden import dot_accumulate
from lstmfpga.quant.golden import run as golden_run

WEIGHT_BITS, VECTOR_BITS = 8, 16
PRODUCT_SHIFTS = (0, 2, 5)


@dataclass
class Job:
    """One matrix: padded weights (R, K), a vector (K,), shift indices (K,), biases (R,)."""

    weights: np.ndarray
    vector: np.ndarray
    shift_sel: np.ndarray
    bias: np.ndarray
    target: int
    shifts: tuple = PRODUCT_SHIFTS

    def beats(self, lanes):
        rows, cols = self.weights.shape
        for g in range(rows // lanes):
            rs = slice(g * lanes, (g + 1) * lanes)
            for k in range(cols):
                yield {
                    "weights": self.weights[rs, k].tolist(),
                    "vector": int(self.vector[k]),
                    "bias": self.bias[rs].tolist(),
                    "shift_sel": int(self.shift_sel[k]),
                    "target_sel": self.target,
                    "first": int(k == 0),
                    "last": int(k == cols - 1),
                }

    def expected(self, targets, rounding, overflow, lanes):
        """``(codes, flags, target)`` per row group, from the golden primitives (``target``:
        the index the beat carries, which tensor its flags count in)."""
        shifts = np.array(self.shifts)[self.shift_sel]
        acc = dot_accumulate(self.weights, self.vector, shifts, self.bias)
        _, shift, fmt = targets[self.target]
        codes, _ = golden_requantize(acc, shift, fmt, rounding, overflow)
        flags = fmt.overflows(shift_round(acc, shift, rounding))
        out = []
        for g in range(len(acc) // lanes):
            rs = slice(g * lanes, (g + 1) * lanes)
            flag_bits = int(sum(int(f) << p for p, f in enumerate(flags[rs])))
            out.append((codes[rs].tolist(), flag_bits, self.target))
        return out


def _codes(rng, bits, shape, pattern):
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if pattern == "min":
        return np.full(shape, low, np.int64)
    if pattern == "max":
        return np.full(shape, high, np.int64)
    if pattern == "small":
        return rng.integers(-3, 4, shape)
    return rng.integers(low, high + 1, shape)


def _pad(rows, lanes):
    return -(-rows // lanes) * lanes


def make_case(lanes, I, H, seed, patterns=("random", "random"), vector_bits=VECTOR_BITS):
    """Three matrices like an LSTM's: gates (4H x I+H, two segments), proj, head."""
    rng = np.random.default_rng(seed)
    w_pat, v_pat = patterns
    wmag, vmag = 1 << (WEIGHT_BITS - 1), 1 << (vector_bits - 1)
    bias_mag = (wmag * vmag) << max(PRODUCT_SHIFTS)
    H_out = max(1, H - 1)
    shapes = [(4 * H, [(I, 2), (H, 1)]), (H_out, [(H, 0)]), (3, [(H, 1)])]
    jobs, bound = [], 0
    for target, (rows, segments) in enumerate(shapes):
        sel = np.concatenate([np.full(n, s) for n, s in segments])
        cols = len(sel)
        weights = np.zeros((_pad(rows, lanes), cols), np.int64)
        bias = np.zeros(_pad(rows, lanes), np.int64)
        weights[:rows] = _codes(rng, WEIGHT_BITS, (rows, cols), w_pat)
        if w_pat in ("min", "max"):
            bias[:rows] = bias_mag if w_pat == v_pat else -bias_mag
        elif w_pat == "small":
            bias[:rows] = rng.integers(-7, 8, rows)
        else:
            bias[:rows] = rng.integers(-bias_mag, bias_mag + 1, rows)
        vector = _codes(rng, vector_bits, (cols,), v_pat)
        jobs.append(Job(weights, vector, sel, bias, target))
        bound = max(bound, sum(wmag * vmag << PRODUCT_SHIFTS[s] for s in sel) + bias_mag)
    acc = FixedFormat(bits_for_range(-bound, bound), 0)
    if w_pat == "small":
        targets = (Target("preact", 2, FixedFormat(16, 0)), Target("hidden", 1, FixedFormat(4, 0)),
                   Target("head_out", 3, FixedFormat(12, 0)))  # fmt: skip
    else:
        targets = (Target("preact", acc.bits - 16, FixedFormat(16, 0)),
                   Target("hidden", acc.bits - 9, FixedFormat(8, 0)),
                   Target("head_out", -1, FixedFormat(12, 0)))  # fmt: skip
    return jobs, acc, targets


def run_mvu(dut, jobs, seed, idle=0.0, stall=0.0, computed=None):
    """Stream ``jobs`` back to back; return the input and output (payload, cycle) lists.
    ``computed`` (a list) collects ``(saturated, target)`` of every cycle with
    ``dut.computed.valid``."""
    harness = Harness(dut)
    beats = [b for job in jobs for b in job.beats(dut.lanes)]
    n_out = sum(len(job.weights) // dut.lanes for job in jobs)
    got = {}

    async def monitor(ctx):
        done = dut.computed
        while True:
            _, _, valid, saturated, target = await ctx.tick().sample(
                done.valid, done.saturated, done.target
            )
            if valid and computed is not None:
                computed.append((int(saturated), int(target)))

    async def producer(ctx):
        got["in"] = await put_all(ctx, dut.i, beats, rng=np.random.default_rng([seed, 1]),
                                  idle=idle, cycle=harness.cycle)  # fmt: skip

    async def consumer(ctx):
        got["out"] = await get_n(ctx, dut.o, n_out, rng=np.random.default_rng([seed, 2]),
                                 stall=stall, cycle=harness.cycle)  # fmt: skip
        await expect_quiet(ctx, dut.o, dut.latency + 2)

    simulate(harness, producer, consumer, background=(monitor,))
    return got["in"], got["out"]


def check(dut, jobs, outputs, seed):
    expected = [e for job in jobs for e in job.expected(dut.targets, dut.rounding, dut.overflow,
                                                         dut.lanes)]  # fmt: skip
    assert len(outputs) == len(expected)
    for index, ((payload, _), want) in enumerate(zip(outputs, expected, strict=True)):
        got = (array(payload.data, dut.lanes), int(payload.saturated), int(payload.target))
        assert got == want, f"seed {seed}: row group {index}"


def build(lanes, acc, targets, rounding="half_even", overflow="saturate"):
    return MatrixVectorUnit(lanes, WEIGHT_BITS, VECTOR_BITS, acc, PRODUCT_SHIFTS, targets,
                            rounding, overflow)  # fmt: skip


# (lanes, I, H); "4H" means lanes = 4 * H (one row group per gates matrix).
GEOMETRIES = [
    (1, 1, 1),
    (1, 3, 3),
    (2, 3, 1),
    (2, 8, 3),
    (4, 20, 3),
    (4, 1, 8),
    (8, 32, 8),
    (8, 3, 20),
    (8, 1, 32),
    ("4H", 8, 3),
    ("4H", 20, 8),
    ("4H", 3, 20),
]


@pytest.mark.parametrize(("lanes", "I", "H"), GEOMETRIES)
def test_matches_golden_with_stalls(lanes, I, H):
    lanes = 4 * H if lanes == "4H" else lanes
    seed = 1000 * lanes + 10 * I + H
    jobs, acc, targets = make_case(lanes, I, H, seed)
    dut = build(lanes, acc, targets)
    _, outputs = run_mvu(dut, jobs, seed, idle=0.3, stall=0.5)
    check(dut, jobs, outputs, seed)


@pytest.mark.parametrize(
    ("w_pat", "v_pat"), [("min", "min"), ("max", "min"), ("min", "max"), ("max", "max")]
)
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_saturating_extremes(w_pat, v_pat, overflow):
    seed = 7
    jobs, acc, targets = make_case(4, 3, 3, seed, (w_pat, v_pat))
    dut = build(4, acc, targets, overflow=overflow)
    _, outputs = run_mvu(dut, jobs, seed, idle=0.2, stall=0.2)
    check(dut, jobs, outputs, seed)
    # the narrow targets really saturate on these inputs
    assert any(payload.saturated for payload, _ in outputs)


@pytest.mark.parametrize("stall", [0.0, 0.7])
def test_computed_reports_every_result_once_whatever_the_back_pressure(stall):
    """``computed`` gives each row group's saturated lanes and target exactly once, in order,
    the same as the results on ``o`` (what a saturation counter reads, :mod:`.saturation`)."""
    seed = 7
    jobs, acc, targets = make_case(4, 3, 3, seed, ("max", "min"))
    dut = build(4, acc, targets)
    computed = []
    _, outputs = run_mvu(dut, jobs, seed, idle=0.2, stall=stall, computed=computed)
    check(dut, jobs, outputs, seed)
    assert computed == [(int(p.saturated), int(p.target)) for p, _ in outputs]
    assert any(saturated for saturated, _ in computed)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
@pytest.mark.parametrize("pattern", ["small", "random"])
def test_rounding_modes(rounding, overflow, pattern):
    seed = 11
    jobs, acc, targets = make_case(2, 3, 3, seed, (pattern, pattern))
    dut = build(2, acc, targets, rounding, overflow)
    _, outputs = run_mvu(dut, jobs, seed)
    check(dut, jobs, outputs, seed)


@pytest.mark.parametrize(("lanes", "I", "H"), [(1, 1, 1), (4, 3, 5), (8, 8, 2)])
def test_back_to_back_throughput_and_latency(lanes, I, H):
    seed = 3
    jobs, acc, targets = make_case(lanes, I, H, seed)
    dut = build(lanes, acc, targets)
    accepted, outputs = run_mvu(dut, jobs, seed)
    check(dut, jobs, outputs, seed)
    # one beat per cycle, no bubble anywhere
    assert accepted == list(range(accepted[0], accepted[0] + len(accepted)))
    # each row group's result appears `latency` cycles after its last beat
    last_beats = [i for i, b in enumerate(b for j in jobs for b in j.beats(lanes)) if b["last"]]
    assert [c for _, c in outputs] == [accepted[i] + dut.latency for i in last_beats]
    # a whole matrix costs groups * cols + latency cycles
    start_beat = start_group = 0
    for job in jobs:
        groups, cols = len(job.weights) // lanes, job.weights.shape[1]
        span = outputs[start_group + groups - 1][1] - accepted[start_beat] + 1
        assert span == groups * cols + dut.latency
        start_beat += groups * cols
        start_group += groups


class ChunkedJob:
    """A :class:`Job` for a ``simd``-column unit: columns in chunks of ``simd``, the last
    chunk padded with zero weights (its vector elements the most negative code, which must
    not matter)."""

    def __init__(self, job, simd, vector_bits):
        self.job, self.weights, self.simd, self.pad = (
            job,
            job.weights,
            simd,
            -(1 << (vector_bits - 1)),
        )

    def beats(self, lanes):
        job, S = self.job, self.simd
        rows, cols = job.weights.shape
        width = -(-cols // S) * S
        wide = np.zeros((rows, width), np.int64)
        wide[:, :cols] = job.weights
        vector, sel = np.full(width, self.pad, np.int64), np.zeros(width, np.int64)
        vector[:cols], sel[:cols] = job.vector, job.shift_sel
        yield from Job(wide, vector, sel, job.bias, job.target).beats(lanes)  # one column each

    def chunks(self, lanes):
        beats = list(self.beats(lanes))
        S = self.simd
        for c in range(0, len(beats), S):
            group = beats[c : c + S]
            yield {
                "weights": [w for p in range(lanes) for w in (b["weights"][p] for b in group)],
                "vector": [b["vector"] for b in group],
                "bias": group[0]["bias"],
                "shift_sel": [b["shift_sel"] for b in group],
                "target_sel": group[0]["target_sel"],
                "first": group[0]["first"],
                "last": group[-1]["last"],
            }


@pytest.mark.parametrize(("lanes", "simd"), [(1, 1), (4, 1), (3, 2), (4, 3), (8, 4)])
def test_preshifted_vector_matches_golden_with_stalls(lanes, simd):
    """Product shifts that fit the multiplier with the vector element (12 + 5 <= 18 bits)
    are applied to the element once per slot instead of to every lane's product: the same
    results, for one and several columns per beat."""
    seed = 50 * lanes + simd
    jobs, acc, targets = make_case(lanes, 5, 3, seed, vector_bits=12)
    dut = MatrixVectorUnit(lanes, WEIGHT_BITS, 12, acc, PRODUCT_SHIFTS, targets, simd=simd)
    assert dut.preshift
    assert not build(lanes, acc, targets).preshift  # 16 + 5 bits: shifted behind the product

    class Beats:  # run_mvu streams job.beats(lanes)
        def __init__(self, job):
            self.chunked, self.weights = ChunkedJob(job, simd, 12), job.weights

        def beats(self, lanes):
            return self.chunked.chunks(lanes) if simd > 1 else self.chunked.job.beats(lanes)

    _, outputs = run_mvu(dut, [Beats(j) for j in jobs], seed, idle=0.3, stall=0.5)
    check(dut, jobs, outputs, seed)


@pytest.mark.parametrize("vector_bits", [16, 12])
@pytest.mark.parametrize(
    ("lanes", "simd", "I", "H"), [(1, 1, 5, 2), (4, 1, 1, 2), (3, 2, 5, 5), (8, 3, 2, 7)]
)
def test_held_bias_matches_golden_with_stalls(lanes, simd, I, H, vector_bits):
    """Row groups of at least 3 beats (2 with one column per beat) let the unit keep a
    group's bias in one register from its first beat on: the same results as carrying it
    through the pipeline, back to back and under stalls."""
    seed = 70 * lanes + simd
    jobs, acc, targets = make_case(lanes, I, H, seed, vector_bits=vector_bits)
    beats = min(-(-job.weights.shape[1] // simd) for job in jobs)
    dut = MatrixVectorUnit(lanes, WEIGHT_BITS, vector_bits, acc, PRODUCT_SHIFTS, targets,
                           simd=simd, min_group_beats=beats)  # fmt: skip
    assert dut.held_bias and beats == (2 if simd == 1 else 3)
    assert not MatrixVectorUnit(lanes, WEIGHT_BITS, vector_bits, acc, PRODUCT_SHIFTS, targets,
                                simd=simd, min_group_beats=beats - 1).held_bias  # fmt: skip

    class Beats:  # run_mvu streams job.beats(lanes)
        def __init__(self, job):
            self.chunked, self.weights = ChunkedJob(job, simd, vector_bits), job.weights

        def beats(self, lanes):
            return self.chunked.chunks(lanes) if simd > 1 else self.chunked.job.beats(lanes)

    _, outputs = run_mvu(dut, [Beats(j) for j in jobs], seed, idle=0.3, stall=0.5)
    check(dut, jobs, outputs, seed)
    _, outputs = run_mvu(dut, [Beats(j) for j in jobs], seed)  # back to back
    check(dut, jobs, outputs, seed)


def test_single_shift_single_target():
    """No shift or target multiplexer: one product shift, one target, odd lane count."""
    rng = np.random.default_rng(21)
    lanes, rows, cols = 3, 7, 5
    weights = np.zeros((_pad(rows, lanes), cols), np.int64)
    weights[:rows] = rng.integers(-128, 128, (rows, cols))
    bias = rng.integers(-(1 << 20), 1 << 20, len(weights))
    jobs = [Job(weights, rng.integers(-(1 << 15), 1 << 15, cols), np.zeros(cols, int), bias, 0,
                (3,)) for _ in range(2)]  # fmt: skip
    targets = (Target("head_out", 9, FixedFormat(10, 0)),)
    dut = MatrixVectorUnit(lanes, 8, 16, FixedFormat(30, 0), (3,), targets, "half_up")
    _, outputs = run_mvu(dut, jobs, 21, idle=0.3, stall=0.5)
    check(dut, jobs, outputs, 21)


def test_weight_memory_feeds_mvu_and_matches_golden_trace():
    """WeightMemory → MVU on a whole model's matrices equals slices of golden.run's trace."""
    model, x = make_model(input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                          proj_size=3, head=3, seed=5)  # fmt: skip
    x_codes = model.formats["x"].quantize(x, model.rounding)
    result = golden_run(model, x_codes, trace=True)
    layout = WeightLayout.of(model, 4)
    b, t = 1, 2  # one batch element, one timestep
    jobs = []  # (matrix index, vector codes, expected codes in layout row order)
    H = model.hidden_size
    order = [q * H + j for j in range(H) for q in range(4)]
    for (l, d), rec in sorted(result.trace.items()):
        u = x_codes[b, t] if l == 0 else np.concatenate([result.trace[(0, dd)]["h"][b, t]
                                                          for dd in range(2)])  # fmt: skip
        t_prev = t + 1 if d else t - 1
        h_prev = rec["h"][b, t_prev]
        jobs.append((layout.index("gates", l, d), np.concatenate([u, h_prev]),
                     rec["preact"][b, t][order]))  # fmt: skip
        jobs.append((layout.index("proj", l, d), rec["m"][b, t], rec["h"][b, t]))
    last = np.concatenate([result.trace[(1, dd)]["h"][b, -1] for dd in range(2)])
    jobs.append((layout.index("head"), last, result.head[b]))

    wm = WeightMemory(layout)
    mvu = MatrixVectorUnit.of(layout)
    sel = Signal(range(len(jobs)))
    max_cols = max(m.cols for m in layout.matrices)
    table = Array(
        Array(Const(int(v[k]) if k < len(v) else 0, signed(layout.vector_bits))
              for k in range(max_cols))
        for _, v, _ in jobs
    )  # fmt: skip

    def connect(m):
        m.submodules.wm = wm
        o, i = wm.o.payload, mvu.i.payload
        fields = ("weights", "bias", "shift_sel", "target_sel", "first", "last")
        m.d.comb += [getattr(i, f).eq(getattr(o, f)) for f in fields]
        m.d.comb += [
            mvu.i.valid.eq(wm.o.valid),
            wm.o.ready.eq(mvu.i.ready),
            i.vector.eq(table[sel][o.col]),
        ]

    harness = Harness(mvu, connect)
    got = []

    async def bench(ctx):
        for index, (matrix, _, expected) in enumerate(jobs):
            ctx.set(sel, index)
            await put_all(ctx, wm.cmd, [matrix])
            groups = layout.matrices[matrix].groups
            outs = await get_n(ctx, mvu.o, groups, rng=np.random.default_rng(index), stall=0.3)
            codes = [c for payload in outs for c in array(payload.data, layout.lanes)]
            got.append((layout.matrices[matrix].name, codes[: len(expected)]))
        await expect_quiet(ctx, mvu.o, 8)

    simulate(harness, bench)
    assert got == [(layout.matrices[m].name, e.tolist()) for m, _, e in jobs]


def _targets():
    return (Target("preact", 3, FixedFormat(16, 10)),)


def test_properties():
    acc = FixedFormat(30, 20)
    dut = MatrixVectorUnit(4, 8, 16, acc, (0, 3), (*_targets(), ("h", -1, FixedFormat(8, 2))),
                           "half_up", "wrap")  # fmt: skip
    assert (dut.lanes, dut.weight_bits, dut.vector_bits, dut.acc) == (4, 8, 16, acc)
    assert dut.product_shifts == (0, 3)
    assert dut.targets == (_targets()[0], Target("h", -1, FixedFormat(8, 2)))
    assert (dut.rounding, dut.overflow, dut.out_bits, dut.latency) == ("half_up", "wrap", 16, 5)
    assert set(dut.signature.members) == {"i", "o", "computed"}
    assert dut.i.payload.shape() == dut.in_layout
    assert set(dut.in_layout.members) == {"weights", "vector", "bias", "shift_sel",
                                          "target_sel", "first", "last"}  # fmt: skip
    assert set(dut.out_layout.members) == {"data", "saturated", "target"}


def test_of_layout():
    model, _ = make_model(input_size=3, hidden_size=2, proj_size=1)
    layout = WeightLayout.of(model, 8)
    dut = MatrixVectorUnit.of(layout)
    Fragment.get(dut, None)  # elaborates (and marks it used)
    assert (dut.lanes, dut.weight_bits, dut.acc) == (8, layout.weight_bits, layout.acc)
    assert dut.product_shifts == layout.product_shifts and dut.targets == layout.targets
    assert (dut.rounding, dut.overflow) == (model.rounding, model.overflow)
    assert dut.vector_bits == 16
    with pytest.raises(TypeError, match=r"^layout must be a WeightLayout, not 3$"):
        MatrixVectorUnit.of(3)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lanes": 0}, ValueError, r"^lanes must be >= 1, not 0$"),
        ({"lanes": "4"}, TypeError, r"^lanes must be an integer, not '4'$"),
        ({"weight_bits": 1}, ValueError, r"^weight_bits must be in 2..62, not 1$"),
        ({"vector_bits": 2.0}, TypeError, r"^vector_bits must be an integer, not 2.0$"),
        ({"acc": 30}, TypeError, r"^acc must be a FixedFormat, not 30$"),
        ({"acc": FixedFormat(8, 0, False)}, ValueError, r"^acc must be a signed format"),
        ({"product_shifts": ()}, ValueError, r"^product_shifts must not be empty, not \(\)$"),
        ({"product_shifts": (-1,)}, ValueError, r"^product shift must be in 0..62, not -1$"),
        ({"product_shifts": 3}, TypeError, r"^product_shifts must be a sequence of integers"),
        ({"targets": []}, ValueError, r"^targets must not be empty, not \[\]$"),
        ({"targets": [(1, 2)]}, TypeError, r"^target must be a \(role, shift, format\) tuple"),
        ({"targets": [("a", 1, "s8.2")]}, TypeError, r"^target format must be a FixedFormat"),
        ({"rounding": "up"}, ValueError, r"^rounding must be one of .*, not 'up'$"),
        ({"overflow": "clip"}, ValueError, r"^overflow must be one of .*, not 'clip'$"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    args = {"lanes": 4, "weight_bits": 8, "vector_bits": 16, "acc": FixedFormat(30, 20),
            "product_shifts": (0,), "targets": _targets()}  # fmt: skip
    args.update(kwargs)
    with pytest.raises(error, match=message):
        MatrixVectorUnit(**args)
