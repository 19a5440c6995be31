"""The GRU cell in hardware: one hidden unit per cycle, exactly
:meth:`lstmfpga.quant.gru_golden.GRUCellArithmetic.update`.

It takes what the matrix-vector unit delivers for a unit in the arrangement of
:mod:`.gru_layout` (the r and z pre-activations, the exact ``n_x`` accumulator and the ``hn``
code) plus ``h_prev``, and returns the unit's new hidden state: the sigmoid and tanh lookups
are :func:`~.activation.lookup_stages`, the requantizers :mod:`.requant`'s.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..quant.activation import ActivationTable
from ..quant.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from ..quant.gru_golden import GRUCellArithmetic
from .activation import RomBank, lookup_latency, lookup_stages
from .pipeline import SkidOutput, delay, register, valid_chain
from .requant import requantize, rounding_up

__all__ = ["GRUCellDatapath", "gru_cell_latency"]

#: Stages between the r/z lookups and the tanh lookup: multiplier inputs (``r``, ``hn``), the
#: ``r·hn`` product, the aligned ``n`` sum (with its rounding bit), requantized ``pre_n``.
_MID_STAGES = 4
#: Stages after the tanh lookup: multiplier inputs (``ONE - z``, ``n``, ``z``, ``h_prev``),
#: the two products, the aligned sum (with its rounding bit), requantized ``h`` (the output).
_POST_STAGES = 4


def gru_cell_latency(sigmoid: ActivationTable, tanh_gate: ActivationTable) -> int:
    """Latency of a :class:`GRUCellDatapath` with these tables: the sigmoid lookup, 4, the
    tanh lookup, 4 (20 with interpolating tables, 16 with direct ones)."""
    return lookup_latency((sigmoid,)) + _MID_STAGES + lookup_latency((tanh_gate,)) + _POST_STAGES


def _check_arith(arith) -> None:
    if not isinstance(arith, GRUCellArithmetic):
        raise TypeError(f"arith must be a GRUCellArithmetic, not {arith!r}")
    for role in ("gate", "preact", "hn", "hidden", "acc"):
        fmt = getattr(arith, role)
        if not isinstance(fmt, FixedFormat):
            raise TypeError(f"arith.{role} must be a FixedFormat, not {fmt!r}")
        if not fmt.signed:
            raise ValueError(f"arith.{role} must be a signed format, not {fmt}")
    if arith.rounding not in ROUNDING_MODES:
        raise ValueError(f"arith.rounding must be one of {ROUNDING_MODES}, not {arith.rounding!r}")
    if arith.overflow not in OVERFLOW_MODES:
        raise ValueError(f"arith.overflow must be one of {OVERFLOW_MODES}, not {arith.overflow!r}")
    for name, function in (("sigmoid", "sigmoid"), ("tanh_gate", "tanh")):
        table = getattr(arith, name)
        if not isinstance(table, ActivationTable):
            raise TypeError(f"arith.{name} must be an ActivationTable, not {table!r}")
        if table.function != function:
            raise ValueError(f"arith.{name} must be a {function} table, not {table.function!r}")
    for name in ("rn_shift", "zn_shift", "zh_shift"):
        shift = getattr(arith, name)
        if not isinstance(shift, int) or shift < 0:
            raise ValueError(f"arith.{name} must be a non-negative integer, not {shift!r}")


class GRUCellDatapath(wiring.Component):
    """One GRU hidden unit's update per cycle, bit-exact to ``arith.update``.

    ``r, z = sigmoid(pre_r), sigmoid(pre_z)``; ``pre_n = requant(n_x + (r·hn << rn_shift),
    n_shift) → preact``; ``n = tanh_gate(pre_n)``; ``h = requant(((ONE - z)·n << zn_shift) +
    (z·h_prev << zh_shift), h_shift) → hidden``, where ``requant`` is ``shift_round`` with
    ``arith.rounding`` followed by ``arith.overflow`` and the tables are ``arith``'s. Products
    and sums are exact (full width, whatever the input codes).

    Parameters
    ----------
    arith : GRUCellArithmetic
        Formats ``preact`` (p bits), ``hn`` (n bits), ``hidden`` (h bits), ``gate``, ``acc``
        (a bits), all signed; the shifts; the rounding and overflow modes; the ``sigmoid``
        and ``tanh_gate`` tables (:meth:`GRUCellArithmetic.of` a GRU qmodel).

    Members
    -------
    i : ``In(stream.Signature(StructLayout(...)))``
        Fields ``r``, ``z``: ``signed(p)``, the unit's r and z pre-activations (``preact``
        codes, the MVU's ``r`` and ``z`` rows); ``n_x``: ``signed(a)``, the exact accumulator
        ``W_in·u << s_in + b_in << s_b`` (the ``n_x`` row); ``hn``: ``signed(n)`` (the
        ``n_h`` row); ``h_prev``: ``signed(h)``, the unit's previous hidden state.
    o : ``Out(stream.Signature(StructLayout(...)))``
        Fields ``h``: ``signed(h)``, the new hidden state; ``sat_n``, ``sat_h``: 1 bit each,
        1 when the rounded ``pre_n`` (``h``) did not fit ``preact`` (``hidden``) and was
        saturated or wrapped: exactly what ``update`` adds to its ``"preact"``
        (``"hidden"``) saturation counter for this unit.

    Timing: ``latency`` (:func:`gru_cell_latency`) = the sigmoid lookups of ``r`` and ``z``
    side by side (6 stages interpolating, 4 direct; one ROM with two read ports), the ``r``
    and ``hn`` multiplier input registers, the ``r·hn`` product register, the aligned sum
    with ``n_x`` (its rounding bit beside it, :func:`~.requant.rounding_up`), the requantized
    ``pre_n``, the tanh lookup (6 or 4), the multiplier input registers of ``(ONE - z)·n`` and
    ``z·h_prev``, their product registers, the aligned sum (rounding bit beside it), the
    requantized ``h`` (the output register): 20 stages with interpolating tables, 16 with
    direct ones. Every multiplier sits between plain input and product registers (no reset)
    that :mod:`lstmfpga.synth.absorb` can move into the DSP. With ``o.ready`` held high it
    accepts one beat per cycle, and a beat transferred on ``i`` in cycle ``t`` is valid on
    ``o`` in cycle ``t + latency``. A pipeline with a skid register at its output
    (:class:`~.pipeline.SkidOutput`): ``i.ready`` is a flip-flop output, never
    combinational from ``o.ready``; back-pressure loses nothing.
    """

    def __init__(self, arith: GRUCellArithmetic):
        _check_arith(arith)
        self._arith = arith
        self._latency = gru_cell_latency(arith.sigmoid, arith.tanh_gate)
        p, n, h, acc = arith.preact.bits, arith.hn.bits, arith.hidden.bits, arith.acc.bits
        in_layout = data.StructLayout({"r": signed(p), "z": signed(p), "n_x": signed(acc),
                                       "hn": signed(n), "h_prev": signed(h)})  # fmt: skip
        out_layout = data.StructLayout({"h": signed(h), "sat_n": 1, "sat_h": 1})
        super().__init__(
            {"i": In(stream.Signature(in_layout)), "o": Out(stream.Signature(out_layout))}
        )

    @property
    def arith(self) -> GRUCellArithmetic:
        """The GRU cell arithmetic this datapath implements."""
        return self._arith

    @property
    def latency(self) -> int:
        """Cycles from a beat's transfer on ``i`` to its output being valid on ``o`` (with
        ``o.ready`` high): 20 with interpolating tables, 16 with direct ones."""
        return self._latency

    def elaborate(self, platform):
        a = self._arith
        m = Module()
        skid_out = SkidOutput(m, self.o, name="out")
        advance = skid_out.advance
        m.d.comb += self.i.ready.eq(advance)
        valid = valid_chain(m, advance, self.i.valid, self._latency, name="gru")
        p = self.i.payload
        roms = RomBank(m, "rom")

        # Stages 1 .. L: r and z through the sigmoid table (one ROM, two read ports), the
        # other inputs alongside.
        lut = lookup_latency((a.sigmoid,))
        r_l, z_l = (lookup_stages(m, a.sigmoid, getattr(p, k), advance, latency=lut, roms=roms,
                                  name=f"sig_{k}") for k in ("r", "z"))  # fmt: skip
        n_x_l, hn_l, hp_l = (delay(m, advance, getattr(p, k), lut, name=k)
                             for k in ("n_x", "hn", "h_prev"))  # fmt: skip
        # Stage L + 1: multiplier input registers of r·hn.
        r1, hn1 = register(m, advance, r_l, name="r_in"), register(m, advance, hn_l, name="hn_in")
        n_x1, z1, hp1 = (register(m, advance, v, name=f"{k}_1")
                         for k, v in (("n_x", n_x_l), ("z", z_l), ("h_prev", hp_l)))  # fmt: skip
        # Stage L + 2: the product register.
        rhn2 = register(m, advance, r1 * hn1, name="rhn")
        n_x2, z2, hp2 = (register(m, advance, v, name=f"{k}_2")
                         for k, v in (("n_x", n_x1), ("z", z1), ("h_prev", hp1)))  # fmt: skip
        # Stage L + 3: the aligned n sum, its rounding increment beside it (it reads only the
        # sum's low bits).
        acc_n = n_x2 + (rhn2 << a.rn_shift)
        acc_n3 = register(m, advance, acc_n, name="acc_n")
        up3 = register(m, advance, rounding_up(acc_n, a.n_shift, a.rounding), name="acc_n_up")
        z3, hp3 = (register(m, advance, v, name=f"{k}_3") for k, v in (("z", z2), ("h_prev", hp2)))
        # Stage L + 4: the requantized n pre-activation.
        pre_n, over_n = requantize(acc_n3, a.n_shift, a.preact, a.rounding, a.overflow, up=up3)
        pre_n4 = register(m, advance, pre_n, name="pre_n")
        sat_n4 = register(m, advance, over_n, name="sat_n_4")
        z4, hp4 = (register(m, advance, v, name=f"{k}_4") for k, v in (("z", z3), ("h_prev", hp3)))
        # Stages L + 5 .. L + 4 + T: n through the tanh table.
        tlut = lookup_latency((a.tanh_gate,))
        n_t = lookup_stages(m, a.tanh_gate, pre_n4, advance, latency=tlut, roms=roms, name="tanh")
        z_t, hp_t, sat_n_t = (
            delay(m, advance, v, tlut, name=k)
            for k, v in (("z", z4), ("h_prev", hp4), ("sat_n", sat_n4))
        )
        # Stage L + T + 5: multiplier input registers of (ONE - z)·n and z·h_prev.
        omz5 = register(m, advance, a.one - z_t, name="one_minus_z")
        n5 = register(m, advance, n_t, name="n_in")
        z5 = register(m, advance, z_t, name="z_in")
        hp5 = register(m, advance, hp_t, name="h_prev_in")
        sat_n5 = register(m, advance, sat_n_t, name="sat_n_5")
        # Stage L + T + 6: the product registers.
        zn6 = register(m, advance, omz5 * n5, name="zn")
        zh6 = register(m, advance, z5 * hp5, name="zh")
        sat_n6 = register(m, advance, sat_n5, name="sat_n_6")
        # Stage L + T + 7: the aligned sum and its rounding increment.
        total = (zn6 << a.zn_shift) + (zh6 << a.zh_shift)
        total7 = register(m, advance, total, name="total")
        up7 = register(m, advance, rounding_up(total, a.h_shift, a.rounding), name="total_up")
        sat_n7 = register(m, advance, sat_n6, name="sat_n_7")
        # Stage L + T + 8: the requantized h (the output register).
        h_code, over_h = requantize(total7, a.h_shift, a.hidden, a.rounding, a.overflow, up=up7)
        result = Signal(self.o.payload.shape())
        h_out = register(m, advance, h_code, name="h_out")
        sat_h_out = register(m, advance, over_h, name="sat_h_out")
        sat_n_out = register(m, advance, sat_n7, name="sat_n_out")
        m.d.comb += [result.h.eq(h_out), result.sat_n.eq(sat_n_out), result.sat_h.eq(sat_h_out)]
        skid_out.drive(valid, result)
        return m
