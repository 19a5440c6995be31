"""The files between the Python flow and the Verilog test bench (:mod:`lstmfpga.sim.bench_top`).

The bench works in *lines*: one line of its input memory per ``s_axis`` beat, one line of its
result memory per ``m_axis`` beat. :class:`StreamLines` says how stream elements become
lines and back: a line is ``{tuser, tkeep, tdata}`` (LSB first: ``tdata`` in the low bits,
then ``tkeep`` and ``tuser`` when the top has them) and a beat carries one element, or ``K``
for an AXI top with wide beats (:class:`lstmfpga.hw.beat_format.BeatFormat`: the one
definition of their lanes and ``tkeep``). :func:`write_run` writes the :data:`BENCH_FILES` of
one run, :func:`read_run` reads what the bench wrote, :func:`weight_files` makes a weight
load's ``$readmemh`` files. The file formats live here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..export.files import atomic_write

__all__ = [
    "BENCH_FILES",
    "STATUS",
    "WEIGHT_CAPACITY",
    "WEIGHT_FILES",
    "RunOutcome",
    "StreamLines",
    "read_run",
    "weight_files",
    "write_run",
]

#: The files :func:`write_run` writes into a run directory (besides the design's ``.hex``;
#: the two gap files only when some beat stalls).
BENCH_FILES = ("config.hex", "inputs.hex", "in_gaps.hex", "out_gaps.hex")
#: Status codes the bench raises in ``status`` (``0`` while running).
STATUS = {1: "ok", 2: "timeout", 3: "tlast", 4: "x", 5: "extra"}
#: Weight beats the bench holds (a design whose load is longer is refused by
#: :func:`weight_files`).
WEIGHT_CAPACITY = 1 << 16
#: The ``$readmemh`` files of a weight load (:func:`weight_files`): the beat count and the
#: beats. Without them the bench loads nothing (the design keeps its built-in weights).
WEIGHT_FILES = ("lstmfpga_weight_count.hex", "lstmfpga_weights.hex")
#: Lines at most this wide are NumPy ``int64``; wider ones are Python integers.
_NARROW = 62


@dataclass(frozen=True)
class StreamLines:
    """The bench's lines of a top's streams: the widths of ``s_axis_tdata``, ``s_axis_tkeep``,
    ``s_axis_tuser``, ``m_axis_tdata``, ``m_axis_tkeep`` (0: no such port), and ``elements``
    (``K``) per beat with their ``element_bits`` ``(input, output)`` (only for ``K > 1``)."""

    in_data: int
    out_data: int
    in_keep: int = 0
    in_user: int = 0
    out_keep: int = 0
    elements: int = 1
    element_bits: tuple[int, int] | None = None

    def __post_init__(self):
        if self.elements > 1 and self.element_bits is None:
            raise ValueError("element_bits must be given for beats of more than one element")
        if self.elements == 1 and (self.in_keep or self.out_keep):
            raise ValueError("tkeep ports need beat_elements > 1 (a K-element AXI top)")

    @classmethod
    def of(cls, widths: dict[str, int], elements: int = 1, element_bits=None) -> StreamLines:
        """From a top's port widths (name → bits)."""
        return cls(
            in_data=widths["s_axis_tdata"],
            out_data=widths["m_axis_tdata"],
            in_keep=widths.get("s_axis_tkeep", 0),
            in_user=widths.get("s_axis_tuser", 0),
            out_keep=widths.get("m_axis_tkeep", 0),
            elements=elements,
            element_bits=None if element_bits is None else tuple(element_bits),
        )

    @property
    def in_bits(self) -> int:
        return self.in_data + self.in_keep + self.in_user

    @property
    def out_bits(self) -> int:
        return self.out_data + self.out_keep

    def beats(self, elements: int) -> int:
        """Beats of a sequence of ``elements`` elements."""
        return -(-elements // self.elements)

    def _formats(self):
        from ..hw.beat_format import BeatFormat

        return tuple(BeatFormat(self.elements, bits) for bits in self.element_bits)

    def encode(self, inputs: list[np.ndarray], users=None) -> list:
        """The input lines of each sequence of ``inputs`` (signed element codes, all of one
        length; ``users``: ``(B, n)`` ``tuser`` flags per element, for a top with
        ``s_axis_tuser``)."""
        if users is not None and not self.in_user:
            raise ValueError("tuser flags need a top with an s_axis_tuser port")
        B = len(inputs)
        if self.elements == 1:
            data = np.stack(inputs).astype(np.int64) & ((1 << self.in_data) - 1)
            if users is not None:
                data |= np.asarray(users, np.int64) << (self.in_data + self.in_keep)
            return list(data)
        fmt, _ = self._formats()
        codes = np.stack(inputs)
        last = np.zeros(codes.shape, bool)
        last[:, -1] = True
        beats = fmt.pack(codes, last, None if users is None else np.asarray(users, bool))
        shift = self.in_data + self.in_keep
        parts = zip(beats.words(), beats.keeps(), beats.users(), strict=True)
        lines = [word | keep << self.in_data | user << shift for word, keep, user in parts]
        n = len(lines) // B
        return [lines[b * n : (b + 1) * n] for b in range(B)]

    def decode(self, flat, B: int, n_out: int) -> list[np.ndarray]:
        """The signed result codes of each of ``B`` sequences (``n_out`` elements each) from
        the bench's result lines ``flat`` (in order); a ``ValueError`` if the beats do not
        hold ``n_out`` elements per sequence."""
        if self.elements == 1:
            bits = self.out_data
            flat = np.asarray(flat, np.int64)
            flat = np.where(flat >= 1 << (bits - 1), flat - (1 << bits), flat)
            return [flat[b * n_out : (b + 1) * n_out].copy() for b in range(B)]
        from ..hw.beat_format import Beats

        _, fmt = self._formats()
        flat = [int(v) for v in flat]
        data_bytes, keep_bytes = self.out_data // 8, -(-self.out_keep // 8)
        mask = (1 << self.out_data) - 1
        tdata = np.frombuffer(b"".join((v & mask).to_bytes(data_bytes, "little") for v in flat),
                              np.uint8).reshape(-1, data_bytes)  # fmt: skip
        keeps = np.frombuffer(
            b"".join((v >> self.out_data).to_bytes(keep_bytes, "little") for v in flat), np.uint8
        ).reshape(-1, keep_bytes)
        tkeep = np.unpackbits(keeps, axis=1, bitorder="little")[:, : self.out_keep].astype(bool)
        beats_per = len(flat) // B
        tlast = np.zeros(len(flat), bool)
        tlast[beats_per - 1 :: beats_per] = True
        codes, last = fmt.unpack(Beats(tdata, tkeep, tlast))
        if codes.size != B * n_out or not np.array_equal(np.flatnonzero(last) + 1,
                                                         np.arange(1, B + 1) * n_out):  # fmt: skip
            raise ValueError(
                f"m_axis beats hold {codes.size} elements (tkeep), not {n_out} for each of "
                f"{B} sequences"
            )
        return [codes[b * n_out : (b + 1) * n_out].copy() for b in range(B)]


def _hex_file(path: Path, values, bits: int) -> None:
    """``values`` as ``$readmemh`` lines, two's complement in ``bits`` bits (int64, or
    Python integers for lines wider than 62 bits)."""
    with atomic_write(path, "w") as file:
        if bits > _NARROW:
            mask = (1 << bits) - 1
            file.write("".join(f"{int(v) & mask:x}\n" for v in values))
            return
        values = np.asarray(values, np.int64)
        if bits < 64:
            values = values & ((1 << bits) - 1)
        np.savetxt(file, values, fmt="%x")


def _ints(path: Path, wide: bool = False):
    text = path.read_text()
    if wide:
        return [int(v) for v in text.split()]
    return np.array(text.split(), dtype=np.int64) if text.strip() else np.zeros(0, np.int64)


def write_run(
    run_dir: Path,
    lines: list,
    n_out: int,
    *,
    in_gaps: np.ndarray,
    out_gaps: np.ndarray,
    budget: int,
    line_bits: int,
    keep_state: bool = False,
) -> None:
    """The :data:`BENCH_FILES` of one run over the sequences whose input ``lines``
    (:meth:`StreamLines.encode`, all of one length) are given, each producing ``n_out``
    result lines, with the stall gaps ``(B, n_in)`` / ``(B, n_out)`` (one per line),
    ``budget`` cycles per sequence and the design's ``keep_state`` input. Without any gap
    the gap files are not written (``config.hex`` says so; the bench then reads none:
    reading two files of zeros cost a few percent of a stall-free run)."""
    B, n_in = len(lines), len(lines[0])
    in_gaps, out_gaps = np.asarray(in_gaps).reshape(-1), np.asarray(out_gaps).reshape(-1)
    stalls = bool(in_gaps.any() or out_gaps.any())
    config = np.array([B, n_in, n_out, budget, int(stalls), int(keep_state)])
    _hex_file(run_dir / "config.hex", config, 64)
    flat = np.concatenate(lines) if line_bits <= _NARROW else [v for seq in lines for v in seq]
    _hex_file(run_dir / "inputs.hex", flat, line_bits)
    if stalls:
        _hex_file(run_dir / "in_gaps.hex", np.append(in_gaps, 0), 16)
        _hex_file(run_dir / "out_gaps.hex", np.append(out_gaps, 0), 16)


def weight_files(beats: np.ndarray, port_bits: int) -> dict[str, str]:
    """The :data:`WEIGHT_FILES` of a weight load: ``beats`` ``(n, beat_bytes)`` ``uint8``
    (little-endian, as :meth:`lstmfpga.hw.weight_port.WeightPort.pack` makes them) for a
    ``port_bits``-wide data port. ``{name: text}``, to be put beside the run's other files
    (e.g. as a :class:`~lstmfpga.sim.cocotb_build.Design`'s ``hex_files``)."""
    beats = np.asarray(beats, np.uint8)
    if beats.ndim != 2 or not 1 <= beats.shape[0] <= WEIGHT_CAPACITY:
        raise ValueError(
            f"weight beats must be 1..{WEIGHT_CAPACITY} rows of bytes, not shape {beats.shape}"
        )
    if beats.shape[1] * 8 - 8 >= port_bits:
        raise ValueError(f"weight beats of {beats.shape[1]} bytes do not fit {port_bits} bits")
    digits = -(-port_bits // 4)
    text = beats[:, ::-1].tobytes().hex()
    step = 2 * beats.shape[1]
    lines = [text[i + step - digits : i + step] if digits <= step else text[i : i + step]
             for i in range(0, len(text), step)]  # fmt: skip
    count, data = WEIGHT_FILES
    return {count: f"{beats.shape[0]:x}\n", data: "\n".join(lines) + "\n"}


@dataclass(frozen=True)
class RunOutcome:
    """What the bench wrote when it finished: ``status`` (a :data:`STATUS` name or
    ``"unknown"``), where it stopped (``sequence``, ``line`` of its results, ``waited``
    cycles), the run's ``total_cycles``, the result ``lines`` (unsigned, flat, in order:
    :meth:`StreamLines.decode` makes elements of them) and ``stamps`` ``(sequences
    finished, 4)`` (first/last input, first/last result); both empty unless ``status`` is
    ``"ok"``."""

    status: str
    sequence: int
    element: int
    waited: int
    total_cycles: int
    lines: object
    stamps: np.ndarray


def read_run(run_dir: Path, line_bits: int) -> RunOutcome | None:
    """The :class:`RunOutcome` of the run in ``run_dir`` (result lines of ``line_bits``);
    ``None`` if the bench did not finish (no ``status.txt``)."""
    if not (run_dir / "status.txt").is_file():
        return None
    code, sequence, element, waited, total, _ = (int(v) for v in _ints(run_dir / "status.txt"))
    status = STATUS.get(code, "unknown")
    if status != "ok":  # the results may hold X (the bench stopped on a protocol error)
        empty = np.zeros(0, np.int64)
        return RunOutcome(status, sequence, element, waited, total, empty, empty.reshape(0, 4))
    return RunOutcome(
        status=status,
        sequence=sequence,
        element=element,
        waited=waited,
        total_cycles=total,
        lines=_ints(run_dir / "outputs.txt", wide=line_bits > _NARROW),
        stamps=_ints(run_dir / "stamps.txt").reshape(-1, 4),
    )
