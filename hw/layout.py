"""The on-chip weight memory image: which word holds which weight, in which order.

:meth:`WeightLayout.of` turns a :class:`~lstmfpga.quant.model.QuantizedModel` into the
contents of two memories for a matrix-vector unit with ``P`` MAC lanes of ``S`` multipliers
each (``simd``; pure Python/NumPy; no numbers are re-derived here, every shift and format
comes from the model):

* the **weight memory**: one word holds ``P * S`` weight codes (lane ``p``, slot ``s`` in bits
  ``[(p*S + s)*weight_bits, (p*S + s + 1)*weight_bits)``, two's complement) of one *chunk*
  of ``S`` consecutive columns of one row group (columns past the matrix's last are zero);
* the **bias memory**: one word holds the ``P`` aligned biases (accumulator codes) of one
  row group.

Matrices are stored one after the other in program order: for each layer ``l`` and direction
``d``, the ``gates`` matrix (``W_ih | W_hh``, rows in unit-major order), then the ``proj``
matrix (``W_hr``, with a projection); then the ``head`` matrix (with a head). A GRU's
``gates`` matrix is :func:`.gru_layout.gru_gate_rows`' (``4H`` rows ``r, z, n_x, n_h`` per
unit against the same vector, target :data:`GRU_SUMS`: the exact accumulator). A matrix of
``groups`` row groups and ``chunks = ceil(cols / S)`` column chunks occupies the weight words
``base .. base + groups*chunks - 1``: word ``base + g*chunks + c`` holds columns
``c*S .. c*S + S - 1`` of rows ``g*P .. g*P + P - 1``, so a linear counter streams the whole
matrix. See ``docs/memory.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..quant.fixed import FixedFormat
from ..quant.model import QuantizedModel

__all__ = [
    "GRU_SUMS",
    "KINDS",
    "Matrix",
    "Segment",
    "Target",
    "WeightLayout",
    "at_least",
    "pack",
    "select_bits",
    "unit_major",
]

#: Matrix kinds, in the order they appear for one (layer, direction); ``head`` comes last.
KINDS = ("gates", "proj", "head")

#: The target role of a GRU's gate rows: every row leaves the MVU as its exact accumulator
#: value (:mod:`.gru_layout`).
GRU_SUMS = "gru_sums"


class Segment(NamedTuple):
    """Columns ``start .. start + length - 1`` of a matrix share one product shift:
    ``product_shifts[shift_index] == shift`` (a left shift into the accumulator)."""

    start: int
    length: int
    shift: int
    shift_index: int


class Target(NamedTuple):
    """A requantization target: accumulator ``>> shift`` (rounded) into ``fmt`` (data ``role``)."""

    role: str
    shift: int
    fmt: FixedFormat


@dataclass(frozen=True, eq=False)
class Matrix:
    """One matrix of the program, as stored in the memories.

    ``codes`` is ``(padded_rows, cols)`` int64 weight codes in layout row order (zero rows
    pad ``rows`` up to ``padded_rows = groups * lanes``); ``bias`` is ``(padded_rows,)``
    accumulator codes (zeros for padding and for matrices without a bias). ``in_cols`` is the
    number of leading columns that read the layer's input (a ``gates`` matrix's ``W_ih``
    part; the recurrent columns follow); every column of a ``proj`` or ``head`` matrix
    (``in_cols == cols``; None: the same).
    """

    name: str
    layer: int | None
    direction: int | None
    kind: str
    rows: int
    padded_rows: int
    groups: int
    cols: int
    base: int
    bias_base: int
    segments: tuple[Segment, ...]
    target: int
    codes: np.ndarray
    bias: np.ndarray
    simd: int = 1
    in_cols: int | None = None

    def __post_init__(self):
        if self.in_cols is None:
            object.__setattr__(self, "in_cols", self.cols)

    @property
    def chunks(self) -> int:
        """Column chunks of ``simd`` columns (beats per row group): ``ceil(cols / simd)``."""
        return -(-self.cols // self.simd)

    @property
    def last_group_rows(self) -> int:
        """Rows of the last row group that are not padding (``P`` when nothing is padded)."""
        return self.rows - (self.groups - 1) * (self.padded_rows // self.groups)

    @property
    def words(self) -> int:
        """Weight words (= beats, = cycles to stream it): ``groups * chunks``."""
        return self.groups * self.chunks

    def shift_index(self, col: int) -> int:
        """Index into ``product_shifts`` of the segment holding column ``col``."""
        for seg in self.segments:
            if seg.start <= col < seg.start + seg.length:
                return seg.shift_index
        raise ValueError(f"col must be in 0..{self.cols - 1}, not {col!r}")


def unit_major(rows: np.ndarray, hidden_size: int) -> np.ndarray:
    """Reorder gate rows from PyTorch's gate-major order to unit-major order.

    Row ``4*j + q`` of the result is row ``q*H + j`` of ``rows`` (``q`` in ``i, f, g, o``
    order), so the four gates of hidden unit ``j`` are adjacent.
    """
    H = hidden_size
    order = (np.arange(4)[None, :] * H + np.arange(H)[:, None]).reshape(-1)
    return np.asarray(rows)[order]


def at_least(name: str, value, low: int) -> int:
    """``value`` if it is an integer (not a bool) ``>= low``, else ``ValueError`` in the
    usual shape (the parameter check of the accelerator's components)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    return value


def select_bits(count: int) -> int:
    """Width of a select signal choosing one of ``count`` items (at least one bit)."""
    return max(1, (count - 1).bit_length())


def pack(words, bits: int) -> list[int]:
    """Pack each row of ``words`` (``(depth, n)`` signed codes) into one integer.

    Element ``e`` occupies bits ``[e*bits, (e+1)*bits)`` in two's complement; the result is a
    list of non-negative Python ints (a :class:`~amaranth.lib.memory.Memory` ``init``).
    """
    words = np.asarray(words, dtype=np.int64)
    if words.ndim != 2:
        raise ValueError(f"words must be a 2-D array, not {words.ndim}-D")
    mask = (1 << bits) - 1
    packed = []
    for row in words.tolist():
        value = 0
        for e, code in enumerate(row):
            value |= (int(code) & mask) << (e * bits)
        packed.append(value)
    return packed


@dataclass(frozen=True, eq=False)
class WeightLayout:
    """The memory image for ``lanes`` MAC lanes. Build it with :meth:`of`.

    Members
    -------
    lanes : int
        ``P``, the number of MAC lanes (weights per memory word).
    matrices : tuple of Matrix
        In program order; a matrix's index in this tuple is its command code.
    weight_bits : int
        Width of one weight code (signed): the widest weight tensor of the model.
    acc : FixedFormat
        Accumulator format (the bias words hold ``acc.bits``-wide codes).
    product_shifts : tuple of int
        The distinct left shifts of ``w * v`` products into the accumulator (sorted).
    targets : tuple of Target
        The requantization targets ``(role, shift, fmt)``, ``shift = model.requant_shift(role)``.
    weight_words, bias_words : numpy.ndarray
        ``(depth, P)`` and ``(bias_depth, P)`` int64 codes, lane-major.
    vector_bits : int
        Width of the vector elements fed with the weights (``x`` and ``hidden``).
    rounding, overflow : str
        The model's requantization rules.
    head_mode : str or None
        The head's mode (``"last"`` or ``"all"``), ``None`` without a head.
    simd : int
        ``S``, columns per beat (multipliers per lane): a word holds ``P * S`` weights.
    """

    lanes: int
    matrices: tuple[Matrix, ...]
    weight_bits: int
    acc: FixedFormat
    product_shifts: tuple[int, ...]
    targets: tuple[Target, ...]
    weight_words: np.ndarray
    bias_words: np.ndarray
    vector_bits: int
    rounding: str
    overflow: str
    head_mode: str | None = None
    simd: int = 1

    @property
    def depth(self) -> int:
        """Weight memory depth (words)."""
        return int(self.weight_words.shape[0])

    @property
    def bias_depth(self) -> int:
        """Bias memory depth (words, one per row group)."""
        return int(self.bias_words.shape[0])

    @property
    def acc_bits(self) -> int:
        return self.acc.bits

    @property
    def total_beats(self) -> int:
        """Beats to stream every matrix once (``depth``)."""
        return self.depth

    def index(self, kind: str, layer: int | None = None, direction: int | None = None) -> int:
        """Command code of the ``kind`` matrix of ``(layer, direction)`` (``head``: no args)."""
        for i, m in enumerate(self.matrices):
            if m.kind == kind and m.layer == layer and m.direction == direction:
                return i
        raise KeyError(f"no {kind} matrix for layer {layer!r}, direction {direction!r}")

    def matrix(self, name: str) -> Matrix:
        for m in self.matrices:
            if m.name == name:
                return m
        raise KeyError(f"no matrix named {name!r}")

    def packed_weights(self) -> list[int]:
        """The weight memory ``init`` (see :func:`pack`)."""
        return pack(self.weight_words, self.weight_bits)

    def packed_biases(self) -> list[int]:
        """The bias memory ``init`` (see :func:`pack`)."""
        return pack(self.bias_words, self.acc.bits)

    @classmethod
    def of(cls, model: QuantizedModel, lanes: int, simd: int = 1) -> WeightLayout:
        """Lay out every matrix of ``model`` for ``lanes`` MAC lanes of ``simd`` multipliers.

        Raises ``TypeError``/``ValueError`` for a bad ``model``, ``lanes`` or ``simd``;
        ``lanes`` may be anything from 1 to ``4 * hidden_size`` (the gate rows): the last row
        group of a matrix with fewer rows than a multiple of ``lanes`` is padded with zero
        rows (zero weights, zero bias); ``simd`` may be anything from 1 to the longest row
        (``max cols``): the last chunk of a shorter matrix is padded with zero columns.
        """
        P, S = _check_geometry(model, lanes, simd)
        raw = _raw_matrices(model)
        product_shifts = tuple(sorted({s for r in raw for _, s in r.segments}))
        target_roles, targets = _targets(model, raw)
        matrices, weight_words, bias_words = _place(raw, P, S, product_shifts, target_roles)
        vector_bits = max(model.formats["x"].bits, model.formats["hidden"].bits)
        return cls(P, matrices, model.widest_weight_bits(), model.acc, product_shifts, targets,
                   weight_words, bias_words, vector_bits, model.rounding, model.overflow,
                   None if model.head is None else model.head.mode, S)  # fmt: skip


class _Raw(NamedTuple):
    """One matrix before placement: ``codes`` ``(rows, cols)`` in layout row order, ``bias``
    ``(rows,)``, ``segments`` ``[(length, shift)]`` over the columns, the target ``role``."""

    name: str
    layer: int | None
    direction: int | None
    kind: str
    codes: np.ndarray
    bias: np.ndarray
    segments: list
    role: str
    in_cols: int | None = None  # columns of the layer input (None: all)


def _check_geometry(model, lanes, simd) -> tuple[int, int]:
    """``(P, S)``: ``lanes`` and ``simd`` checked against ``model`` (see
    :meth:`WeightLayout.of`)."""
    if not isinstance(model, QuantizedModel):
        raise TypeError(f"model must be a QuantizedModel, not {model!r}")
    if not isinstance(lanes, int) or isinstance(lanes, bool):
        raise TypeError(f"lanes must be an integer, not {lanes!r}")
    H = model.hidden_size
    if not 1 <= lanes <= 4 * H:
        raise ValueError(f"lanes must be in 1..{4 * H} (4*hidden_size), not {lanes!r}")
    H_out, D = model.output_size, model.num_directions
    longest = max(model.layer_input_size(l) for l in range(model.num_layers)) + H_out
    longest = max(longest, H if model.proj_size else 0, D * H_out)
    if not isinstance(simd, int) or isinstance(simd, bool):
        raise TypeError(f"simd must be an integer, not {simd!r}")
    if not 1 <= simd <= longest:
        raise ValueError(f"simd must be in 1..{longest} (the longest matrix row), not {simd!r}")
    return lanes, simd


def _raw_matrices(model) -> list[_Raw]:
    """The model's matrices in program order (see the module docstring)."""
    H, H_out, D = model.hidden_size, model.output_size, model.num_directions
    raw = []
    gru = model.cell == "gru"
    for l, directions in enumerate(model.layers):
        for d, q in enumerate(directions):
            suffix = f"l{l}" + ("_reverse" if d else "")
            if gru:  # the GRU's rows r, z, n_x, n_h in this geometry, all exact
                from .gru_layout import gru_gate_rows

                rows = gru_gate_rows(model, l, d)
                raw.append(_Raw(f"{suffix}_gates", l, d, "gates", rows.codes, rows.bias,
                                [(seg.length, seg.shift) for seg in rows.segments],
                                rows.target.role, model.layer_input_size(l)))  # fmt: skip
                continue
            s_in, s_rec, _ = model.gate_shifts(l, d)
            codes = np.concatenate([q.w_ih.codes, q.w_hh.codes], axis=1)
            raw.append(_Raw(f"{suffix}_gates", l, d, "gates", unit_major(codes, H),
                            unit_major(model.aligned_gate_bias(l, d), H),
                            [(q.w_ih.codes.shape[1], s_in), (q.w_hh.codes.shape[1], s_rec)],
                            "preact", q.w_ih.codes.shape[1]))  # fmt: skip
            if q.w_hr is not None:
                raw.append(_Raw(f"{suffix}_proj", l, d, "proj", q.w_hr.codes,
                                np.zeros(H_out, np.int64), [(H, model.proj_shift(l, d))],
                                "hidden"))  # fmt: skip
    if model.head is not None:
        raw.append(_Raw("head", None, None, "head", model.head.weight.codes,
                        model.aligned_head_bias(), [(D * H_out, model.head_shifts()[0])],
                        "head_out"))  # fmt: skip
    return raw


def _targets(model, raw: list[_Raw]) -> tuple[list[str], tuple[Target, ...]]:
    """The roles the matrices requantize into (in a fixed order) and their targets."""
    roles = [r.role for r in raw]
    known = ("preact", GRU_SUMS, "hidden", "head_out")
    target_roles = [role for role in known if role in roles]
    targets = tuple(
        Target(role, 0, model.acc)  # a GRU's gate rows: the exact accumulator (identity)
        if role == GRU_SUMS
        else Target(role, model.requant_shift(role), model.formats[role])
        for role in target_roles
    )
    return target_roles, targets


def _place(raw: list[_Raw], P: int, S: int, product_shifts, target_roles):
    """``(matrices, weight_words, bias_words)``: the matrices padded to ``P`` rows and ``S``
    columns and stored one after the other."""
    matrices, weight_blocks, bias_blocks = [], [], []
    base = bias_base = 0
    for name, l, d, kind, codes, bias, segs, role, in_cols in raw:
        rows, cols = codes.shape
        groups = -(-rows // P)
        padded = groups * P
        pcodes = np.zeros((padded, cols), np.int64)
        pcodes[:rows] = codes
        pbias = np.zeros(padded, np.int64)
        pbias[:rows] = bias
        pcodes.setflags(write=False)
        pbias.setflags(write=False)
        segments, start = [], 0
        for length, shift in segs:
            segments.append(Segment(start, length, shift, product_shifts.index(shift)))
            start += length
        mat = Matrix(name, l, d, kind, rows, padded, groups, cols, base, bias_base,
                     tuple(segments), target_roles.index(role), pcodes, pbias, S,
                     in_cols)  # fmt: skip
        matrices.append(mat)
        # word g*chunks + c, element p*S + s  <-  row g*P + p, column c*S + s
        chunks = mat.chunks
        wide = np.zeros((padded, chunks * S), np.int64)
        wide[:, :cols] = pcodes
        blocks = wide.reshape(groups, P, chunks, S).transpose(0, 2, 1, 3)
        weight_blocks.append(blocks.reshape(groups * chunks, P * S))
        bias_blocks.append(pbias.reshape(groups, P))
        base += groups * chunks
        bias_base += groups
    weight_words = np.concatenate(weight_blocks).astype(np.int64)
    bias_words = np.concatenate(bias_blocks).astype(np.int64)
    weight_words.setflags(write=False)
    bias_words.setflags(write=False)
    return tuple(matrices), weight_words, bias_words
