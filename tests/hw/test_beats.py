# amaranth: UnusedElaboratable=no
"""K-element beats (hw.beat_format.BeatFormat) and the width converters (hw.beats): the
packer's beats are BeatFormat.pack's, the unpacker's elements BeatFormat.unpack's, with
random valid/ready stalls on both sides; lanes are byte aligned, tkeep marks the partial
last beat of a sequence, and an element stream goes through packer and unpacker unchanged."""

import numpy as np
import pytest
from helpers.streams import Harness, expect_quiet, get_all, put_all, simulate

from lstmfpga.hw.beat_format import MAX_BEAT_ELEMENTS, BeatFormat, Beats, check_beat_elements
from lstmfpga.hw.beats import BeatPacker, BeatUnpacker

SEED = 91
#: (K, element bits): K = 1, powers of two, odd K; sub-byte, byte, odd and multi-byte codes.
FORMATS = [(1, 12), (2, 16), (3, 5), (4, 8), (4, 12), (5, 17)]


def sequences(fmt: BeatFormat, seed: int, lengths) -> tuple[np.ndarray, np.ndarray]:
    """Random codes over the whole range of ``element_bits`` (both extremes included) for
    sequences of ``lengths`` elements, and their ``last`` flags."""
    rng = np.random.default_rng(seed)
    bits = fmt.element_bits
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    codes = rng.integers(lo, hi + 1, sum(lengths))
    codes[:2] = [lo, hi]
    last = np.zeros(codes.size, bool)
    last[np.cumsum(lengths) - 1] = True
    return codes, last


def lengths_for(K: int) -> list[int]:
    """Sequence lengths: shorter than a beat, exactly one, a multiple, and one past it."""
    return [1, K, 3 * K, 2 * K + 1, max(1, K - 1), 7]


def case(K: int, bits: int, seed: int):
    """``(fmt, seed, codes, last)``: the format of ``K`` elements of ``bits`` and random
    sequences of :func:`lengths_for` ``K`` elements drawn from ``seed``."""
    fmt = BeatFormat(K, bits)
    return (fmt, seed, *sequences(fmt, seed, lengths_for(K)))


# -- the format ---------------------------------------------------------------------------------
def test_lanes_are_whole_bytes_and_a_beat_is_k_lanes():
    fmt = BeatFormat(4, 12)
    assert (fmt.lane_bytes, fmt.lane_bits, fmt.beat_bytes, fmt.beat_bits) == (2, 16, 8, 64)
    assert BeatFormat(3, 8).beat_bytes == 3 and BeatFormat(1, 17).beat_bytes == 3


def test_pack_puts_lanes_little_endian_and_keeps_only_the_partial_beats_lanes():
    fmt = BeatFormat(3, 12)
    beats = fmt.pack([1, -2, 0x7FF, -0x800], [False, False, False, True])
    assert beats.words() == [0x07FF_FFFE_0001, 0xF800]  # -2 sign-extended: 0xFFFE
    assert beats.keeps() == [0b111111, 0b000011]
    assert beats.tlast.tolist() == [False, True]


def test_each_sequence_starts_a_new_beat():
    fmt = BeatFormat(4, 8)
    beats = fmt.pack([1, 2, 3, 4, 5], [False, True, False, False, True])
    assert beats.words() == [0x0201, 0x050403]
    assert beats.keeps() == [0b0011, 0b0111] and beats.tlast.tolist() == [True, True]


@pytest.mark.parametrize(("K", "bits"), FORMATS)
def test_unpack_inverts_pack_and_the_bytes_do_not_depend_on_k(K, bits):
    fmt = BeatFormat(K, bits)
    codes, last = sequences(fmt, SEED + K, lengths_for(K))
    beats = fmt.pack(codes, last)
    got_codes, got_last = fmt.unpack(beats)
    np.testing.assert_array_equal(got_codes, codes)
    np.testing.assert_array_equal(got_last, last)
    assert len(beats) == int(fmt.beat_counts(lengths_for(K)).sum())
    one = BeatFormat(1, bits).pack(codes, last)
    assert beats.tdata[beats.tkeep].tobytes() == one.tdata.tobytes()


def test_unpack_stops_at_the_first_null_lane_and_ignores_padding_bits():
    fmt = BeatFormat(3, 4)
    tdata = np.array([[0xF5, 0x03, 0x07], [0x02, 0x09, 0x01]], np.uint8)
    keep = np.array([[1, 0, 1], [0, 1, 1]], bool)  # lane 2 after a null lane; null lane 0
    codes, last = fmt.unpack(Beats(tdata, keep, np.array([True, True])))
    assert codes.tolist() == [5] and last.tolist() == [True]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, f"beat_elements must be in 1..{MAX_BEAT_ELEMENTS}, not 0"),
        (MAX_BEAT_ELEMENTS + 1, ValueError, "beat_elements must be in 1.."),
        (2.0, TypeError, "beat_elements must be an integer, not 2.0"),
        (True, TypeError, "beat_elements must be an integer, not True"),
    ],
)
def test_bad_beat_elements_are_refused_in_one_line(value, error, message):
    with pytest.raises(error, match=message.replace(".", r"\.")):
        check_beat_elements(value)
    with pytest.raises(error, match="beat_elements must be"):
        BeatFormat(value, 8)


def test_bad_element_bits_and_streams_are_refused():
    with pytest.raises(ValueError, match=r"element_bits must be an integer in 1\.\.62, not 0"):
        BeatFormat(2, 0)
    with pytest.raises(ValueError, match="elements must be one or more whole sequences"):
        BeatFormat(2, 8).pack([1, 2], [True, False])
    with pytest.raises(TypeError, match="fmt must be a BeatFormat, not 4"):
        BeatPacker(4)


# -- the hardware -------------------------------------------------------------------------------
def run(dut, payloads, n_out: int, seed: int, idle: float, stall: float, *, cycles=None):
    """``payloads`` into ``dut.i`` and ``n_out`` beats out of ``dut.o``, with random gaps on
    both sides (seeded); nothing more may come out. With ``cycles`` (a list) the input
    transfer cycles are appended to it."""
    harness = Harness(dut)
    rng_in, rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    got = []

    async def producer(ctx):
        when = harness.cycle if cycles is not None else None
        sent = await put_all(ctx, dut.i, payloads, rng=rng_in, idle=idle, cycle=when)
        if cycles is not None:
            cycles.extend(sent)

    async def consumer(ctx):
        got.extend(await get_all(ctx, dut.o, n_out, rng=rng_out, stall=stall))
        await expect_quiet(ctx, dut.o, 8)

    simulate(harness, producer, consumer)
    return got


def element_payloads(codes, last) -> list[dict]:
    return [{"data": int(c), "last": bool(x)} for c, x in zip(codes, last, strict=True)]


def beat_payloads(beats: Beats) -> list[dict]:
    fields = zip(beats.words(), beats.keeps(), beats.tlast, strict=True)
    return [{"data": w, "keep": k, "last": bool(x)} for w, k, x in fields]


STALLS = [(0.0, 0.0), (0.4, 0.0), (0.0, 0.5), (0.3, 0.4)]


def every_format_and_stall(test):
    """Parametrize ``test`` over :data:`FORMATS` x :data:`STALLS`."""
    test = pytest.mark.parametrize(
        ("idle", "stall"), STALLS, ids=["free", "idle", "stall", "both"]
    )(test)
    return pytest.mark.parametrize(("K", "bits"), FORMATS)(test)


@every_format_and_stall
def test_packer_sends_the_reference_beats(K, bits, idle, stall):
    fmt, seed, codes, last = case(K, bits, SEED + 7 * K + bits)
    want = fmt.pack(codes, last)
    got = run(BeatPacker(fmt), element_payloads(codes, last), len(want), seed, idle, stall)
    assert [b["data"] for b in got] == want.words(), f"seed {seed}"
    assert [b["keep"] for b in got] == want.keeps()
    assert [bool(b["last"]) for b in got] == want.tlast.tolist()


@every_format_and_stall
def test_unpacker_gives_the_reference_elements(K, bits, idle, stall):
    fmt, seed, codes, last = case(K, bits, SEED + 11 * K + bits)
    beats = fmt.pack(codes, last)
    rng = np.random.default_rng(seed)
    padding = rng.integers(0, 256, beats.tdata.shape).astype(np.uint8)
    pad_mask = np.zeros(fmt.lane_bytes, np.uint8)  # the lane's bits above element_bits
    for b in range(fmt.lane_bytes):
        low = max(0, min(8, bits - 8 * b))
        pad_mask[b] = (0xFF << low) & 0xFF
    noisy = beats.tdata | (padding & np.tile(pad_mask, K))  # padding bits: ignored
    noisy = np.where(beats.tkeep, noisy, padding)  # null lanes: anything
    noisy_beats = Beats(noisy, beats.tkeep, beats.tlast)
    want_codes, want_last = fmt.unpack(noisy_beats)
    np.testing.assert_array_equal(want_codes, codes)  # the reference ignores them too
    got = run(BeatUnpacker(fmt), beat_payloads(noisy_beats), codes.size, seed, idle, stall)
    assert [e["data"] for e in got] == want_codes.tolist(), f"seed {seed}"
    assert [bool(e["last"]) for e in got] == want_last.tolist()


def test_unpacker_drops_lanes_after_a_null_one_as_the_reference_does():
    fmt = BeatFormat(3, 8)
    beats = Beats(
        np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8),
        np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], bool),
        np.array([False, True, True]),
    )
    want_codes, want_last = fmt.unpack(beats)
    assert want_codes.tolist() == [1, 7, 8] and want_last.tolist() == [False, False, True]
    got = run(BeatUnpacker(fmt), beat_payloads(beats), 3, SEED, 0.2, 0.2)
    assert [(e["data"], bool(e["last"])) for e in got] == [(1, False), (7, False), (8, True)]


def test_full_throughput_one_element_per_cycle_without_stalls():
    """Without stalls the packer takes an element every cycle: K elements per beat."""
    fmt = BeatFormat(4, 8)
    codes, last = sequences(fmt, SEED, [16])
    cycles = []
    got = run(BeatPacker(fmt), element_payloads(codes, last), 4, SEED, 0.0, 0.0, cycles=cycles)
    assert np.diff(cycles).tolist() == [1] * 15
    assert [b["data"] for b in got] == fmt.pack(codes, last).words()


@pytest.mark.parametrize(("K", "bits"), [(1, 12), (3, 5), (4, 16)])
def test_unpacker_gives_each_element_its_lanes_user_bit(K, bits):
    fmt, seed, codes, last = case(K, bits, SEED + 13 * K)
    user = np.random.default_rng(seed).random(codes.size) < 0.3
    beats = fmt.pack(codes, last, user)
    np.testing.assert_array_equal(fmt.users(beats), user)
    payloads = [p | {"user": u} for p, u in zip(beat_payloads(beats), beats.users(), strict=True)]
    got = run(BeatUnpacker(fmt, user=True), payloads, codes.size, seed, 0.3, 0.3)
    assert [e["user"] for e in got] == user.astype(int).tolist(), f"seed {seed}"
    assert [e["data"] for e in got] == codes.tolist()
    with pytest.raises(TypeError, match="user must be True or False, not 1"):
        BeatUnpacker(fmt, user=1)
    with pytest.raises(ValueError, match=r"user flags must be one per element \(2\), not 1"):
        BeatFormat(2, 8).pack([1, 2], [False, True], [True])
