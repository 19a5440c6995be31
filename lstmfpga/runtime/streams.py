"""Input beats from arrays and arrays from output beats, for a :class:`HardwareDesign`.

The stream contract is the accelerator's (``docs/accelerator.md``): per sequence, with
``initial_state``, ``h0`` then ``c0`` codes, then ``x`` time-major, ``tlast`` on the last
beat; the results in the order and shapes of ``lstmfpga predict --raw`` (then ``h_n``,
``c_n`` with ``with_states``). An element is one code in the low bits of its lane, two's
complement; a beat carries one element, or ``K`` in byte-aligned lanes when the design was
built with ``beat_elements=K`` (:class:`lstmfpga.hw.beat_format.BeatFormat`, ``tkeep`` on a
sequence's partial last beat). :meth:`BeatStream.to_bytes` gives the bytes a DMA engine
moves (each element's lane, little-endian, back to back: the same bytes for every ``K``),
:meth:`BeatStream.beats` the bus beats (``tdata``, ``tkeep``, ``tlast``);
:func:`decode_outputs` takes result elements, :func:`decode_beats` result beats and
:func:`decode_bytes` the bytes a DMA engine received.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hw.beat_format import BeatFormat, Beats
from ..quant.fixed import FixedFormat, check_codes
from ..sim.streams import pack_inputs, unpack_outputs
from .design import HardwareDesign, StreamError

__all__ = [
    "BeatStream",
    "Results",
    "decode_beats",
    "decode_bytes",
    "decode_outputs",
    "encode_codes",
    "encode_inputs",
]


@dataclass(frozen=True, eq=False)
class BeatStream:
    """The input elements: ``data`` (``uint64``, each element's ``bits``-wide lane) and
    ``last`` (``bool``, the sequence's last element), sent ``elements`` per beat (``K``);
    for a stream-mode design ``user`` (``bool``, ``tuser``: reset the state before the step
    whose first ``x`` element it marks)."""

    data: np.ndarray
    last: np.ndarray
    bits: int
    elements: int = 1
    user: np.ndarray | None = None

    def __len__(self) -> int:
        """Elements (with one element per beat: beats)."""
        return int(self.data.size)

    @property
    def lane_bytes(self) -> int:
        return -(-self.bits // 8)

    @property
    def beat_bytes(self) -> int:
        """Bytes of a beat's ``tdata``."""
        return self.elements * self.lane_bytes

    def to_bytes(self) -> bytes:
        """Each element as ``lane_bytes`` little-endian bytes, back to back (``tlast`` is
        not in the bytes: it is the last beat of each DMA transfer, see :meth:`sequences`;
        with ``K`` elements per beat the engine's ``tkeep`` marks a transfer's partial last
        beat)."""
        raw = self.data.astype("<u8").view(np.uint8).reshape(-1, 8)
        return raw[:, : self.lane_bytes].tobytes()

    def beats(self) -> Beats:
        """The bus beats: ``K`` elements each, a sequence's last beat partial (``tkeep``)."""
        return BeatFormat(self.elements, self.bits).pack_words(self.data, self.last, self.user)

    def sequences(self) -> list[BeatStream]:
        """One stream per sequence (split after every ``tlast``)."""
        ends = np.flatnonzero(self.last) + 1
        starts = np.r_[0, ends[:-1]]
        user = self.user
        out = []
        for a, b in zip(starts, ends, strict=True):
            part = None if user is None else user[a:b]
            out.append(BeatStream(self.data[a:b], self.last[a:b], self.bits, self.elements, part))
        return out


@dataclass(frozen=True, eq=False)
class Results:
    """Decoded results: ``prediction`` codes in the shape of ``lstmfpga predict --raw``
    (``(B, out)``, ``(B, T, out)`` or ``(B, T, D*H_out)``), and with ``with_states``
    ``h_n`` ``(L*D, B, H_out)`` and ``c_n`` ``(L*D, B, H)`` codes; :meth:`floats` dequantizes
    them."""

    prediction: np.ndarray
    h_n: np.ndarray | None
    c_n: np.ndarray | None
    formats: dict[str, FixedFormat]

    def floats(self) -> dict[str, np.ndarray]:
        """``prediction`` (in the output format, as ``lstmfpga predict``), ``h_n`` and
        ``c_n`` as float64."""
        out = {"prediction": self.formats["output"].dequantize(self.prediction)}
        if self.h_n is not None:
            out["h_n"] = self.formats["hidden"].dequantize(self.h_n)
            if self.c_n is not None:  # a GRU design has no c_n
                out["c_n"] = self.formats["cell"].dequantize(self.c_n)
        return out


def _as_floats(name: str, values, shape: tuple) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind not in "fiu" or values.dtype == np.bool_:
        raise StreamError(f"{name} must be a float array, not dtype {values.dtype}")
    if values.shape != shape:
        raise StreamError(f"{name} must have shape {shape}, not {values.shape}")
    if not np.all(np.isfinite(values)):
        raise StreamError(f"{name} must be finite, not NaN or Inf")
    return values


def _check_x_shape(design: HardwareDesign, shape: tuple) -> None:
    if len(shape) != 3 or shape[2] != design.input_size or 0 in shape:
        raise StreamError(f"inputs must have shape (batch, seq, {design.input_size}), not {shape}")
    if shape[1] > design.max_seq_len and design.mode != "stream":
        raise StreamError(
            f"sequence length must be at most the design's max_seq_len {design.max_seq_len}, "
            f"not {shape[1]}"
        )


def encode_inputs(design: HardwareDesign, x, h0=None, c0=None, *, resets=None) -> BeatStream:
    """Float inputs ``(batch, seq, input_size)`` (and float ``h0`` ``(L*D, B, H_out)``,
    ``c0`` ``(L*D, B, H)`` for a design with ``initial_state``; zeros when omitted) → the
    input beats of every sequence, quantized exactly as ``lstmfpga predict`` does: ``x``
    with the model's rounding and overflow rules, the states with its rounding, saturating.
    ``resets`` (stream mode, see :func:`encode_codes`)."""
    if design.rounding is None:
        raise StreamError(
            f"{design.where} does not record the model's rounding and overflow rules: "
            "encode integer codes with encode_codes"
        )
    x = np.asarray(x)
    _check_x_shape(design, x.shape)
    x = _as_floats("inputs", x, x.shape)
    B = x.shape[0]
    f = design.formats
    x_codes = f["x"].quantize(x, design.rounding, design.overflow)
    states = []
    for name, role, size, value in (("h0", "hidden", design.output_size, h0),
                                    ("c0", "cell", design.hidden_size, c0)):  # fmt: skip
        if value is not None:
            value = _as_floats(name, value, (design.states, B, size))
            value = f[role].quantize(value, design.rounding, "saturate")
        states.append(value)
    return encode_codes(design, x_codes, *states, resets=resets)


def _check_codes(name: str, codes, shape: tuple, fmt: FixedFormat) -> np.ndarray:
    return check_codes(name, codes, shape, fmt, StreamError)


def encode_codes(design: HardwareDesign, x_codes, h0=None, c0=None, *, resets=None) -> BeatStream:
    """Input codes ``(batch, seq, input_size)`` (``x`` format; ``h0``/``c0`` codes in the
    ``hidden``/``cell`` formats with ``initial_state``, zeros when omitted) → input beats.
    For a stream-mode design ``resets`` ``(batch, seq)`` (booleans, default none) sets
    ``tuser`` on the first ``x`` element of step ``t`` of sequence ``b``: the state is reset
    before that step."""
    x_codes = np.asarray(x_codes)
    _check_x_shape(design, x_codes.shape)
    x_codes = _check_codes("input codes", x_codes, x_codes.shape, design.formats["x"])
    B = x_codes.shape[0]
    if not design.initial_state and (h0 is not None or c0 is not None):
        raise StreamError("h0/c0 need a design built with initial_state")
    if c0 is not None and not design.geometry.cell_state:
        raise StreamError("c0 must be None for a GRU design (no cell state)")
    if design.initial_state:
        L = design.states
        h0 = np.zeros((L, B, design.output_size), np.int64) if h0 is None else _check_codes(
            "h0", h0, (L, B, design.output_size), design.formats["hidden"])  # fmt: skip
        if design.geometry.cell_state:
            c0 = np.zeros((L, B, design.hidden_size), np.int64) if c0 is None else _check_codes(
                "c0", c0, (L, B, design.hidden_size), design.formats["cell"])  # fmt: skip
    geom = design.geometry
    per_sequence = [pack_inputs(geom, x_codes, b, h0, c0) for b in range(B)]
    codes = np.concatenate(per_sequence)
    last = np.zeros(codes.size, bool)
    last[np.cumsum([p.size for p in per_sequence]) - 1] = True
    mask = np.uint64((1 << design.in_bits) - 1)
    K = design.beat_elements
    user = _users(design, x_codes.shape, resets, [p.size for p in per_sequence])
    return BeatStream(codes.astype(np.uint64) & mask, last, design.in_beat_bits // K, K, user)


def _users(design: HardwareDesign, shape: tuple, resets, lengths: list[int]):
    """The ``tuser`` flag per input element (stream mode; ``None`` in sequence mode)."""
    B, T, I = shape
    if design.mode != "stream":
        if resets is not None:
            raise StreamError("resets need a stream-mode design (tuser), not a sequence-mode one")
        return None
    user = np.zeros((B, max(lengths)), bool)
    if resets is not None:
        resets = np.asarray(resets)
        if resets.shape != (B, T) or resets.dtype != np.bool_:
            raise StreamError(
                f"resets must be a ({B}, {T}) boolean array, not {resets.dtype} {resets.shape}"
            )
        first = lengths[0] - T * I  # the initial-state elements before x
        user[:, first : first + T * I : I] = resets
    return user.reshape(-1)


def decode_outputs(design: HardwareDesign, data, T: int, *, last=None) -> Results:
    """The output beats of ``B`` sequences of ``T`` steps (``tdata`` words; ``last`` their
    ``tlast`` flags, checked when given) → :class:`Results`. Raises :class:`StreamError`
    when the beats are not whole results."""
    longest = None if design.mode == "stream" else design.max_seq_len  # stream: any length
    if not isinstance(T, int) or isinstance(T, bool) or not 1 <= T <= (longest or T):
        raise StreamError(f"T must be in 1..{longest or 'any'}, not {T!r}")
    data = np.asarray(data)
    if data.ndim != 1 or data.dtype.kind not in "iu":
        raise StreamError(
            f"output beats must be a 1-D integer array, not {data.dtype} {data.shape}"
        )
    geom = design.geometry
    n = geom.output_length(T)
    if data.size == 0 or data.size % n:
        raise StreamError(
            f"output beats must be whole results of {n} beats for T={T}, not {data.size} beats"
        )
    B = data.size // n
    if last is not None:
        last = np.asarray(last, bool)
        want = np.zeros(data.size, bool)
        want[n - 1 :: n] = True
        if last.shape != want.shape or not np.array_equal(last, want):
            if last.shape != want.shape:
                raise StreamError(
                    f"tlast flags must be one per beat ({data.size}), not {last.shape}"
                )
            bad = int(np.flatnonzero(last != want)[0])
            raise StreamError(
                f"tlast must be on the last beat of every {n}-beat result (T={T}), "
                f"not {'on' if last[bad] else 'missing on'} beat {bad}"
            )
    bits = design.out_bits
    words = data.astype(np.uint64) & np.uint64((1 << bits) - 1)
    sign = np.uint64(1 << (bits - 1))
    codes = words.astype(np.int64) - ((words & sign) != 0).astype(np.int64) * (1 << bits)
    parts = [unpack_outputs(geom, codes[b * n : (b + 1) * n], T) for b in range(B)]
    prediction = np.stack([p["prediction"] for p in parts])
    h_n = c_n = None
    if design.with_states:
        h_n = np.stack([p["h_n"] for p in parts], axis=1)
        if design.geometry.cell_state:  # a GRU design has no c_n
            c_n = np.stack([p["c_n"] for p in parts], axis=1)
    f = design.formats
    return Results(prediction, h_n, c_n, {"output": design.output_format, "hidden": f["hidden"],
                                          "cell": f.get("cell")})  # fmt: skip


def decode_beats(design: HardwareDesign, beats: Beats, T: int) -> Results:
    """Result beats (``tdata``, ``tkeep``, ``tlast`` of ``m_axis``:
    :class:`~lstmfpga.hw.beat_format.Beats`) of ``B`` sequences of ``T`` steps →
    :class:`Results`; each sequence's ``tlast`` is checked."""
    fmt = design.out_format
    tdata, tkeep = np.asarray(beats.tdata), np.asarray(beats.tkeep)
    if tdata.ndim != 2 or tdata.shape[1] != fmt.beat_bytes or tkeep.shape != tdata.shape:
        raise StreamError(
            f"result beats must be (n, {fmt.beat_bytes}) tdata and tkeep bytes, not "
            f"{tdata.shape} and {tkeep.shape}"
        )
    if np.asarray(beats.tlast).shape != (tdata.shape[0],):
        raise StreamError(f"tlast flags must be one per beat ({tdata.shape[0]})")
    codes, last = fmt.unpack(beats)
    return decode_outputs(design, fmt.lane_words(codes), T, last=last)


def decode_bytes(design: HardwareDesign, data: bytes, T: int, *, last=None) -> Results:
    """The bytes a DMA engine received from ``m_axis`` (each result element's lane,
    little-endian, back to back, for ``B`` sequences of ``T`` steps) → :class:`Results`;
    ``last`` (one flag per element: the ends of the received transfers) is checked when
    given."""
    lane = design.out_format.lane_bytes
    raw = np.frombuffer(bytes(data), np.uint8)
    if raw.size % lane:
        raise StreamError(f"result bytes must be whole {lane}-byte elements, not {raw.size} bytes")
    padded = np.zeros((raw.size // lane, 8), np.uint8)
    padded[:, :lane] = raw.reshape(-1, lane)
    return decode_outputs(design, padded.view("<u8")[:, 0], T, last=last)
