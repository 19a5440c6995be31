"""The random stall pattern of a simulation run, drawn once and used by every flow.

Amaranth, Icarus and Verilator see the same per-beat stall decisions for a given ``seed``:
the pattern is drawn here (vectorized NumPy), handed to the Amaranth testbench as arrays and
to the Verilog test top (:func:`lstmfpga.sim.bench_top.wrapper`) as ``$readmemh`` files.

Semantics (the bench of every flow implements exactly this, cycle by cycle):

* ``in_gaps[b, k]``: idle cycles (``tvalid`` low) before input beat ``k`` of sequence ``b``
  is offered; the count starts on the cycle after the previous input beat's handshake, and
  for beat 0 on the cycle after sequence ``b - 1``'s last result was accepted (after reset
  for the first sequence). Sequences therefore do not overlap, and each sequence's timing
  depends only on its own pattern: a run split into chunks or shards gives the same cycle
  stamps as one run, shifted by where the chunk starts.
* ``out_gaps[b, k]``: cycles ``tready`` is held low before it is raised for result ``k`` of
  sequence ``b``, counted from the cycle after the previous result's handshake (after reset
  for the very first); ``tready`` then stays high until the handshake.

A gap is geometric: each cycle stalls with probability ``in_stall`` / ``out_stall``
independently, so the gap before a beat is ``k`` with probability ``p**k (1 - p)``
(clipped at :data:`MAX_GAP`). Inputs are drawn from ``default_rng(seed)``, results from
``default_rng(seed + 1)``, in sequence order, for the whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_GAP", "StallPattern"]

#: Longest gap drawn (16-bit counters in the Verilog bench).
MAX_GAP = 0xFFFF


def _gaps(rng: np.random.Generator, p: float, shape: tuple[int, int]) -> np.ndarray:
    if not p:
        return np.zeros(shape, dtype=np.int64)
    return np.minimum(rng.geometric(1.0 - p, size=shape) - 1, MAX_GAP).astype(np.int64)


@dataclass(frozen=True)
class StallPattern:
    """Per-beat gaps of a batch: ``in_gaps`` ``(B, n_in)``, ``out_gaps`` ``(B, n_out)``."""

    in_gaps: np.ndarray
    out_gaps: np.ndarray

    @classmethod
    def draw(
        cls,
        batch: int,
        n_in: int,
        n_out: int,
        *,
        in_stall: float = 0.0,
        out_stall: float = 0.0,
        seed: int = 0,
    ) -> StallPattern:
        for name, value in (("in_stall", in_stall), ("out_stall", out_stall)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), not {value!r}")
        return cls(
            _gaps(np.random.default_rng(seed), float(in_stall), (batch, n_in)),
            _gaps(np.random.default_rng(seed + 1), float(out_stall), (batch, n_out)),
        )

    def part(self, start: int, stop: int) -> StallPattern:
        """The pattern of sequences ``start .. stop - 1``."""
        return StallPattern(self.in_gaps[start:stop], self.out_gaps[start:stop])

    @property
    def stalled_cycles(self) -> int:
        return int(self.in_gaps.sum() + self.out_gaps.sum())
