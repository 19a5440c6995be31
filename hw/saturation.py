"""Saturation pulses of the accelerator: per cycle, how many values of each tensor did not
fit their format, the counts the golden model adds to ``GoldenResult.saturation``.

:func:`drive_saturation` joins the two places where values are requantized: the
:class:`~.mvu.MatrixVectorUnit` (its ``computed`` output: each result's ``target`` and the
lanes that ``saturated``, once per result from flip-flops: gate pre-activations ``preact``,
projection rows ``hidden``, head rows ``head_out``; a GRU's gate sums are the exact
accumulator and never saturate) and the cell
bank (:class:`~.cellbank.CellBank`'s ``sat_c`` / ``sat_m``: ``cell`` and ``hidden``; a GRU's
:class:`~.gru_cellbank.GRUBankAsCellBank` adds ``sat_preact`` and ``sat_hn``: ``preact``
and ``hn``). The accelerator's ``saturation`` port carries the sums; the AXI top's
``SATURATION_*`` registers (:mod:`.register_map`) count them.

A count is taken once per result: the cycle after the MVU computed it (it leaves then or
later), the cycle a cell bank's result transfers into the write-back; so a beat held by
back-pressure counts once, and the totals over a run are the golden model's. The
padding rows of a matrix's last row group are zero (weights and bias), so they never
saturate. Inputs, ``h0`` and ``c0`` arrive as codes and are not counted: the golden model's
``x`` (and, from :func:`lstmfpga.quant.golden.predict`, ``h0``/``c0``) counts are the
host's quantization of floats.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Value, unsigned
from amaranth.lib import data

from .layout import GRU_SUMS, at_least
from .pipeline import adder_tree
from .register_map import SATURATION_ROLES  # an LSTM has no ``hn``, a GRU no ``cell``: 0

__all__ = ["SATURATION_ROLES", "drive_saturation", "popcount", "saturation_layout"]


def saturation_layout(lanes: int, cells: int) -> data.StructLayout:
    """The ``saturation`` port of an accelerator with ``lanes`` MAC lanes and ``cells``
    cell units: one unsigned count per role of :data:`SATURATION_ROLES`, wide enough for
    the most one cycle can bring (``lanes`` results and ``3 * cells`` GRU pre-activations)."""
    bits = (at_least("lanes", lanes, 1) + 3 * at_least("cells", cells, 1)).bit_length()
    return data.StructLayout({role: unsigned(bits) for role in SATURATION_ROLES})


def popcount(bits) -> Value:
    """The number of set bits of ``bits`` (an adder tree)."""
    bits = Value.cast(bits)
    width = max(1, len(bits).bit_length())
    return adder_tree([bits[k] for k in range(len(bits))], unsigned(width))


def drive_saturation(m: Module, out, mvu, bank) -> None:
    """Drive ``out`` (a :func:`saturation_layout` view, e.g. the accelerator's
    ``saturation`` port) with this cycle's counts from ``mvu`` (its ``computed`` result)
    and ``bank`` (its pulses)."""
    terms = {role: [] for role in SATURATION_ROLES}
    done = mvu.computed
    lanes = popcount(done.saturated)
    for index, target in enumerate(mvu.targets):
        if target.role in terms:
            here = done.valid if len(mvu.targets) == 1 else done.valid & (done.target == index)
            terms[target.role].append(Mux(here, lanes, 0))
        elif target.role != GRU_SUMS:  # the exact accumulator: nothing to saturate
            raise ValueError(f"target role must be one of {SATURATION_ROLES}, not {target.role!r}")
    terms["cell"].append(popcount(bank.sat_c))
    terms["hidden"].append(popcount(bank.sat_m))
    if hasattr(bank, "sat_preact"):  # a GRU's cell bank requantizes its pre-activations
        terms["preact"] += [bank.sat_preact[k] for k in range(len(bank.sat_preact))]
        terms["hn"].append(popcount(bank.sat_hn))
    for role, values in terms.items():
        field = getattr(out, role)
        total = adder_tree(values, field.shape()) if values else Const(0, field.shape())
        m.d.comb += field.eq(total)
