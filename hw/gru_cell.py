"""The GRU cell in hardware: one hidden unit per cycle, exactly
:meth:`lstmfpga.quant.gru_golden.GRUCellArithmetic.update_sums`.

It takes what the matrix-vector unit delivers for a unit in the arrangement of
:mod:`.gru_layout` (the unit's four exact sums ``r``, ``z``, ``n_x``, ``n_h``) plus
``h_prev``, and returns the unit's new hidden state: the sigmoid and tanh lookups are
:func:`~.activation.lookup_stages`, the requantizers :mod:`.requant`'s.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data

from ..quant.activation import ActivationTable
from ..quant.gru_golden import GRUCellArithmetic
from .activation import RomBank, lookup_latency, lookup_stages
from .cell import UnitPipeline, check_arith
from .pipeline import delay, register
from .requant import requantize, rounding_up

__all__ = ["GRUCellDatapath", "gru_cell_latency", "gru_cell_multipliers"]

#: Stages before the r/z lookups: the requantized r, z (``preact``) and n_h (``hn``).
_PRE_STAGES = 1
#: Stages between the r/z lookups and the tanh lookup: multiplier inputs (``r``, ``hn``), the
#: ``r·hn`` product, the aligned ``n`` sum (with its rounding bit), requantized ``pre_n``.
_MID_STAGES = 4
#: Stages after the tanh lookup: multiplier inputs (``ONE - z``, ``n``, ``z``, ``h_prev``),
#: the two products, the aligned sum (with its rounding bit), requantized ``h`` (the output).
_POST_STAGES = 4


def gru_cell_latency(sigmoid: ActivationTable, tanh_gate: ActivationTable) -> int:
    """Latency of a :class:`GRUCellDatapath` with these tables: 1, the sigmoid lookup, 4, the
    tanh lookup, 4 (21 with interpolating tables, 17 with direct ones)."""
    lookups = lookup_latency((sigmoid,)) + lookup_latency((tanh_gate,))
    return _PRE_STAGES + lookups + _MID_STAGES + _POST_STAGES


def gru_cell_multipliers(arith: GRUCellArithmetic, cells: int = 1) -> list[dict]:
    """The hardware multipliers of ``cells`` :class:`GRUCellDatapath` s, as
    :func:`~.plans.multiplier_plan` lists them (``where``, ``count``, operand widths
    ``a_bits``, ``b_bits``): the interpolations of the tables that interpolate (r and z
    through the sigmoid, n through the tanh) and the three products ``r·hn``,
    ``(ONE - z)·n``, ``z·h_prev``."""
    g, V = arith.gate.bits, cells
    muls = []
    for where, table, count in (("GRU r, z sigmoid interpolation", arith.sigmoid, 2 * V),
                                ("GRU n tanh interpolation", arith.tanh_gate, V)):  # fmt: skip
        if table.interpolates:
            muls.append({"where": where, "count": count, "a_bits": table.slope_bits,
                         "b_bits": table.shift + 1})  # fmt: skip
    muls += [
        {"where": "GRU r*hn", "count": V, "a_bits": g, "b_bits": arith.hn.bits},
        {"where": "GRU (1-z)*n", "count": V, "a_bits": g + 1, "b_bits": g},
        {"where": "GRU z*h_prev", "count": V, "a_bits": g, "b_bits": arith.hidden.bits},
    ]
    return muls


def _check_arith(arith) -> None:
    check_arith(arith, GRUCellArithmetic, ("gate", "preact", "hn", "hidden", "acc"),
                (("sigmoid", "sigmoid"), ("tanh_gate", "tanh")))  # fmt: skip
    for name in ("rn_shift", "zn_shift", "zh_shift"):  # (n_shift, hn_shift, h_shift: any)
        shift = getattr(arith, name)
        if not isinstance(shift, int) or shift < 0:
            raise ValueError(f"arith.{name} must be a non-negative integer, not {shift!r}")


class GRUCellDatapath(UnitPipeline):
    """One GRU hidden unit's update per cycle, bit-exact to ``arith.update_sums``.

    ``pre_r, pre_z = requant(r, n_shift), requant(z, n_shift) → preact``; ``hn =
    requant(n_h, hn_shift) → hn``; ``r, z = sigmoid(pre_r), sigmoid(pre_z)``; ``pre_n =
    requant(n_x + (r·hn << rn_shift), n_shift) → preact``; ``n = tanh_gate(pre_n)``; ``h =
    requant(((ONE - z)·n << zn_shift) + (z·h_prev << zh_shift), h_shift) → hidden``, where
    ``requant`` is ``shift_round`` with ``arith.rounding`` followed by ``arith.overflow`` and
    the tables are ``arith``'s. Products and sums are exact (full width, whatever the input
    codes).

    Parameters
    ----------
    arith : GRUCellArithmetic
        Formats ``acc`` (a bits), ``preact``, ``hn``, ``hidden`` (h bits), ``gate``, all
        signed; the shifts; the rounding and overflow modes; the ``sigmoid`` and
        ``tanh_gate`` tables (:meth:`GRUCellArithmetic.of` a GRU qmodel).

    Members
    -------
    i : ``In(stream.Signature(StructLayout(...)))``
        Fields ``r``, ``z``, ``n_x``, ``n_h``: ``signed(a)``, the unit's four exact
        accumulator sums (the MVU's rows of :mod:`.gru_layout`); ``h_prev``: ``signed(h)``,
        the unit's previous hidden state.
    o : ``Out(stream.Signature(StructLayout(...)))``
        Fields ``h``: ``signed(h)``, the new hidden state; ``sat_preact``: 0..3, how many of
        ``pre_r``, ``pre_z``, ``pre_n`` did not fit ``preact`` after rounding (saturated or
        wrapped); ``sat_hn``, ``sat_h``: 1 bit each, the same for ``hn`` and ``h``: exactly
        what ``update_sums`` adds to its ``"preact"``, ``"hn"`` and ``"hidden"`` saturation
        counters for this unit.

    Timing: ``latency`` (:func:`gru_cell_latency`) = the requantized r, z and n_h (one stage
    each, side by side), the sigmoid lookups of ``r`` and ``z`` side by side (6 stages
    interpolating, 4 direct; one ROM with two read ports), the ``r`` and ``hn`` multiplier
    input registers, the ``r·hn`` product register, the aligned sum with ``n_x`` (its
    rounding bit beside it, :func:`~.requant.rounding_up`), the requantized ``pre_n``, the
    tanh lookup (6 or 4), the multiplier input registers of ``(ONE - z)·n`` and
    ``z·h_prev``, their product registers, the aligned sum (rounding bit beside it), the
    requantized ``h`` (the output register): 21 stages with interpolating tables, 17 with
    direct ones. Every multiplier sits between plain input and product registers (no reset)
    that :mod:`lstmfpga.synth.absorb` can move into the DSP. With ``o.ready`` held high it
    accepts one beat per cycle, and a beat transferred on ``i`` in cycle ``t`` is valid on
    ``o`` in cycle ``t + latency``. A pipeline with a skid register at its output
    (:class:`~.pipeline.SkidOutput`): ``i.ready`` is a flip-flop output, never
    combinational from ``o.ready``; back-pressure loses nothing.
    """

    def __init__(self, arith: GRUCellArithmetic):
        _check_arith(arith)
        acc, h = signed(arith.acc.bits), signed(arith.hidden.bits)
        in_layout = data.StructLayout({"r": acc, "z": acc, "n_x": acc, "n_h": acc, "h_prev": h})
        out_layout = data.StructLayout({"h": h, "sat_preact": range(4), "sat_hn": 1, "sat_h": 1})
        latency = gru_cell_latency(arith.sigmoid, arith.tanh_gate)
        super().__init__(arith, latency, in_layout, out_layout)

    def elaborate(self, platform):
        a = self._arith
        m = Module()
        skid_out, advance, valid = self._pipeline(m, "gru")
        p = self.i.payload
        roms = RomBank(m, "rom")

        def reg(value, name):
            return register(m, advance, value, name=name)

        def carry(values: dict, stages: int) -> dict:
            """``values`` delayed by ``stages`` registers (the values travelling alongside)."""
            return {k: delay(m, advance, v, stages, name=k) for k, v in values.items()}

        # Stage 1: r and z requantized to preact, n_h to hn (side by side); the saturation
        # flags as counts (``sat_pre`` 0..2 here, 0..3 once pre_n adds its own).
        pre_r, over_r = requantize(p.r, a.n_shift, a.preact, a.rounding, a.overflow)
        pre_z, over_z = requantize(p.z, a.n_shift, a.preact, a.rounding, a.overflow)
        hn, over_hn = requantize(p.n_h, a.hn_shift, a.hn, a.rounding, a.overflow)
        pre_r1, pre_z1 = reg(pre_r, "pre_r"), reg(pre_z, "pre_z")
        side = {"n_x": p.n_x, "hn": hn, "h_prev": p.h_prev, "sat_pre": over_r + over_z,
                "sat_hn": over_hn}  # fmt: skip
        side = {k: reg(v, f"{k}_1") for k, v in side.items()}
        # Stages 2 .. L + 1: r and z through the sigmoid table (one ROM, two read ports).
        lut = lookup_latency((a.sigmoid,))
        r_l, z_l = (
            lookup_stages(m, a.sigmoid, v, advance, latency=lut, roms=roms, name=f"sig_{k}")
            for k, v in (("r", pre_r1), ("z", pre_z1))
        )
        side = carry(side, lut)
        # Stage L + 2: multiplier input registers of r·hn.
        r_in, hn_in = reg(r_l, "r_in"), reg(side.pop("hn"), "hn_in")
        side = carry({**side, "z": z_l}, 1)
        # Stage L + 3: the product register.
        rhn = reg(r_in * hn_in, "rhn")
        side = carry(side, 1)
        # Stage L + 4: the aligned n sum, its rounding increment beside it (it reads only the
        # sum's low bits).
        acc_n = side.pop("n_x") + (rhn << a.rn_shift)
        acc_n4, up4 = (
            reg(acc_n, "acc_n"),
            reg(rounding_up(acc_n, a.n_shift, a.rounding), "acc_n_up"),
        )
        side = carry(side, 1)
        # Stage L + 5: the requantized n pre-activation.
        pre_n, over_n = requantize(acc_n4, a.n_shift, a.preact, a.rounding, a.overflow, up=up4)
        pre_n5 = reg(pre_n, "pre_n")
        side["sat_pre"] = reg(side["sat_pre"] + over_n, "sat_pre_5")
        side = {k: v if k == "sat_pre" else reg(v, f"{k}_5") for k, v in side.items()}
        # Stages L + 6 .. L + 5 + T: n through the tanh table.
        tlut = lookup_latency((a.tanh_gate,))
        n_t = lookup_stages(m, a.tanh_gate, pre_n5, advance, latency=tlut, roms=roms, name="tanh")
        side = carry(side, tlut)
        # Stage L + T + 6: multiplier input registers of (ONE - z)·n and z·h_prev.
        z = side.pop("z")
        omz, n_in = reg(a.one - z, "one_minus_z"), reg(n_t, "n_in")
        z_in, hp_in = reg(z, "z_in"), reg(side.pop("h_prev"), "h_prev_in")
        side = carry(side, 1)
        # Stage L + T + 7: the product registers.
        zn, zh = reg(omz * n_in, "zn"), reg(z_in * hp_in, "zh")
        side = carry(side, 1)
        # Stage L + T + 8: the aligned sum and its rounding increment.
        total = (zn << a.zn_shift) + (zh << a.zh_shift)
        total8, up8 = (
            reg(total, "total"),
            reg(rounding_up(total, a.h_shift, a.rounding), "total_up"),
        )
        side = carry(side, 1)
        # Stage L + T + 9: the requantized h (the output register).
        h_code, over_h = requantize(total8, a.h_shift, a.hidden, a.rounding, a.overflow, up=up8)
        result = Signal(self.o.payload.shape())
        m.d.comb += [
            result.h.eq(reg(h_code, "h_out")),
            result.sat_h.eq(reg(over_h, "sat_h_out")),
            result.sat_preact.eq(reg(side["sat_pre"], "sat_pre_out")),
            result.sat_hn.eq(reg(side["sat_hn"], "sat_hn_out")),
        ]
        skid_out.drive(valid, result)
        return m
