"""The LSTM cell update in hardware: exactly :meth:`lstmfpga.quant.golden.CellArithmetic.update`."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..quant.activation import ActivationTable
from ..quant.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from ..quant.golden import CellArithmetic
from .activation import RomBank, lookup_latency, lookup_stages
from .pipeline import SkidOutput, delay, register, valid_chain
from .requant import (
    requant_parts_layout,
    requantize,
    requantize_finish,
    requantize_parts,
    rounding_up,
)

__all__ = [
    "CellDatapath",
    "UnitPipeline",
    "cell_latency",
    "check_arith",
    "rounding_up_sticky",
    "sum_low_nonzero",
]

#: Stages before the tanh lookup: input registers, products, aligned sum, requantized ``c``.
_PRE_STAGES = 4
#: Stages after it: the ``o * tanh(c)`` product, the requantizer's two halves for ``m``.
_POST_STAGES = 3


def check_arith(arith, kind: type, roles: tuple[str, ...], tables: tuple[tuple[str, str], ...]):
    """Refuse a cell arithmetic that is not a ``kind``, has a format of ``roles`` that is not a
    signed :class:`FixedFormat`, an unknown rounding or overflow mode, or a table of
    ``tables`` (``(attribute, function)``) that is not an ``ActivationTable`` of that
    function (one line naming the attribute)."""
    if not isinstance(arith, kind):
        raise TypeError(f"arith must be a {kind.__name__}, not {arith!r}")
    for role in roles:
        fmt = getattr(arith, role)
        if not isinstance(fmt, FixedFormat):
            raise TypeError(f"arith.{role} must be a FixedFormat, not {fmt!r}")
        if not fmt.signed:
            raise ValueError(f"arith.{role} must be a signed format, not {fmt}")
    if arith.rounding not in ROUNDING_MODES:
        raise ValueError(f"arith.rounding must be one of {ROUNDING_MODES}, not {arith.rounding!r}")
    if arith.overflow not in OVERFLOW_MODES:
        raise ValueError(f"arith.overflow must be one of {OVERFLOW_MODES}, not {arith.overflow!r}")
    for name, function in tables:
        table = getattr(arith, name)
        if not isinstance(table, ActivationTable):
            raise TypeError(f"arith.{name} must be an ActivationTable, not {table!r}")
        if table.function != function:
            raise ValueError(f"arith.{name} must be a {function} table, not {table.function!r}")


class UnitPipeline(wiring.Component):
    """What the LSTM and GRU cell datapaths share: streams ``i`` (``in_layout``) and ``o``
    (``out_layout``), one unit per cycle through a pipeline of ``latency`` stages ending in
    a skid register (:class:`~.pipeline.SkidOutput`), the arithmetic ``arith``."""

    def __init__(self, arith, latency: int, in_layout, out_layout):
        self._arith = arith
        self._latency = latency
        super().__init__(
            {"i": In(stream.Signature(in_layout)), "o": Out(stream.Signature(out_layout))}
        )

    @property
    def arith(self):
        """The cell arithmetic this datapath implements."""
        return self._arith

    @property
    def latency(self) -> int:
        """Cycles from a beat's transfer on ``i`` to its output being valid on ``o`` (with
        ``o.ready`` high; the class's "Timing")."""
        return self._latency

    def _pipeline(self, m: Module, name: str):
        """``(skid_out, advance, valid)``: the output skid register, the pipeline's enable
        (also ``i.ready``) and the valid bit of the last stage."""
        skid_out = SkidOutput(m, self.o, name="out")
        advance = skid_out.advance
        m.d.comb += self.i.ready.eq(advance)
        return skid_out, advance, valid_chain(m, advance, self.i.valid, self._latency, name=name)


class CellDatapath(UnitPipeline):
    """One hidden unit's cell update per cycle, bit-exact to ``arith.update``.

    ``c = requant((f*c_prev << fc_shift) + (i*g << ig_shift), c_shift) → cell`` and
    ``m = requant(o * tanh_cell(c), m_shift) → hidden``, where ``requant`` is
    ``shift_round`` with ``arith.rounding`` followed by ``arith.overflow`` (saturate or wrap),
    and ``tanh_cell`` is ``arith.tanh_cell.lookup``. Products and sums are exact (full width).

    Parameters
    ----------
    arith : CellArithmetic
        Formats ``gate`` (g bits), ``cell`` (c bits), ``hidden`` (h bits), all signed; the
        rounding and overflow modes; the ``tanh_cell`` table.

    Members
    -------
    i : ``In(stream.Signature(StructLayout(...)))``
        Fields ``i``, ``f``, ``g``, ``o``: ``signed(g)`` gate activations in ``gate``;
        ``c_prev``: ``signed(c)``, the previous cell state in ``cell``.
    o : ``Out(stream.Signature(StructLayout(...)))``
        Fields ``c``: ``signed(c)`` in ``cell``; ``m``: ``signed(h)`` in ``hidden``;
        ``sat_c``, ``sat_m``: 1 bit each. The new cell state and the cell output; ``sat_c``
        (``sat_m``) is 1 when the rounded ``c`` (``m``) did not fit its format and was
        saturated or wrapped: exactly what the golden model adds to its ``"cell"``
        (``"hidden"``) saturation counter for this unit.

    Timing: ``latency`` = 13 stages with an interpolating ``tanh_cell`` (11 with a direct
    one): input registers (multiplier inputs), products, aligned sum, requantized ``c``, the
    ``tanh_cell`` lookup (6 or 4, :func:`~.activation.lookup_stages`), the ``o * tanh(c)``
    product, the requantizer's two halves for ``m`` (:func:`~.requant.requantize_parts`,
    :func:`~.requant.requantize_finish`). With ``o.ready`` held high it accepts one beat per
    cycle, and a beat transferred on ``i`` in cycle ``t`` is valid on ``o`` in cycle ``t +
    latency``. A pipeline with a skid register at its output
    (:class:`~.pipeline.SkidOutput`): ``i.ready`` is a flip-flop output, never combinational
    from ``o.ready``; back-pressure loses nothing.
    """

    def __init__(self, arith: CellArithmetic):
        check_arith(arith, CellArithmetic, ("gate", "cell", "hidden"), (("tanh_cell", "tanh"),))
        self._lut_latency = lookup_latency((arith.tanh_cell,))
        g, c, h = arith.gate.bits, arith.cell.bits, arith.hidden.bits
        in_layout = data.StructLayout(
            {"i": signed(g), "f": signed(g), "g": signed(g), "o": signed(g), "c_prev": signed(c)}
        )
        out_layout = data.StructLayout({"c": signed(c), "m": signed(h), "sat_c": 1, "sat_m": 1})
        super().__init__(arith, cell_latency(arith.tanh_cell), in_layout, out_layout)

    def elaborate(self, platform):
        a = self._arith
        m = Module()
        skid_out, advance, valid = self._pipeline(m, "cell")
        p = self.i.payload

        # Stage 1: multiplier input registers.
        i1, f1, g1, o1, cp1 = (
            register(m, advance, getattr(p, k), name=f"{k}1")
            for k in ("i", "f", "g", "o", "c_prev")
        )
        # Stage 2: product registers.
        fc2 = register(m, advance, f1 * cp1, name="fc2")
        ig2 = register(m, advance, i1 * g1, name="ig2")
        o2 = register(m, advance, o1, name="o2")
        # Stage 3: aligned sum, and beside it the sticky bit of its rounding (the dropped
        # bits below the half are not all zero) from the two terms' bits, without a carry
        # chain (:func:`sum_low_nonzero`): the products' DSP output registers then feed one
        # carry chain and nothing behind it.
        fc_al, ig_al = fc2 << a.fc_shift, ig2 << a.ig_shift
        total3 = register(m, advance, fc_al + ig_al, name="total3")
        rest3 = register(m, advance, sum_low_nonzero(fc_al, ig_al, a.c_shift - 1), name="rest3")
        o3 = register(m, advance, o2, name="o3")
        # Stage 4: requantized c (the rounding increment from the sum's two bits at the
        # half and the sticky bit: one LUT before the increment's carry chain).
        up4 = rounding_up_sticky(total3, a.c_shift, a.rounding, rest3)
        c_code, c_over = requantize(total3, a.c_shift, a.cell, a.rounding, a.overflow, up=up4)
        c4 = register(m, advance, c_code, name="c4")
        sat_c4 = register(m, advance, c_over, name="sat_c4")
        o4 = register(m, advance, o3, name="o4")
        # Stages 5 .. 4 + L: tanh_cell(c), with o, c and its flag alongside.
        lut = self._lut_latency
        tc = lookup_stages(
            m, a.tanh_cell, c4, advance, latency=lut, roms=RomBank(m, "rom"), name="tanh"
        )
        o_l = delay(m, advance, o4, lut, name="o")
        c_l = delay(m, advance, c4, lut, name="c")
        sat_c_l = delay(m, advance, sat_c4, lut, name="sat_c")
        # Stage L + 5: product register.
        om = register(m, advance, o_l * tc, name="om")
        c_5 = register(m, advance, c_l, name="c_om")
        sat_c_5 = register(m, advance, sat_c_l, name="sat_c_om")
        # Stage L + 6: the requantizer's first half on the product (floor bits, rounding
        # bit, range-check reductions; the DSP's output register feeds only bit logic).
        parts = Signal(requant_parts_layout(a.hidden.bits), name="m_parts", reset_less=True)
        with m.If(advance):
            m.d.sync += [
                getattr(parts, k).eq(v)
                for k, v in requantize_parts(om, a.m_shift, a.hidden, a.rounding).items()
            ]
        c_6 = register(m, advance, c_5, name="c_parts")
        sat_c_6 = register(m, advance, sat_c_5, name="sat_c_parts")
        # Stage L + 7: requantized m (the output register).
        m_code, m_over = requantize_finish(parts, a.hidden, a.overflow)
        m_out = register(m, advance, m_code, name="m_out")
        sat_m_out = register(m, advance, m_over, name="sat_m_out")
        c_out = register(m, advance, c_6, name="c_out")
        sat_c_out = register(m, advance, sat_c_6, name="sat_c_out")
        result = Signal(self.o.payload.shape())
        m.d.comb += [
            result.c.eq(c_out),
            result.m.eq(m_out),
            result.sat_c.eq(sat_c_out),
            result.sat_m.eq(sat_m_out),
        ]
        skid_out.drive(valid, result)
        return m


def sum_low_nonzero(a, b, k: int) -> Value:
    """``(a + b) mod 2**k != 0`` (1 bit) from the bits of ``a`` and ``b``, without a carry
    chain: the low ``k`` bits of a sum are all zero exactly when ``a_0 == b_0`` and, for
    every ``i >= 1``, ``a_i ^ b_i == a_{i-1} | b_{i-1}`` (each carry into bit ``i`` must then
    be ``a_i ^ b_i``, and it is ``a_{i-1} | b_{i-1}``): one LUT per bit and an OR tree."""
    if k <= 0:
        return Const(0, 1)
    a, b = (_bits(Value.cast(v).as_signed(), k) for v in (a, b))
    terms = [a[0] ^ b[0]] + [(a[i] ^ b[i]) ^ (a[i - 1] | b[i - 1]) for i in range(1, k)]
    return Cat(*terms).any()


def rounding_up_sticky(value, shift: int, rounding: str, rest) -> Value:
    """:func:`~.requant.rounding_up` of ``value`` with its sticky bit ``rest`` (the bits of
    ``value`` below ``shift - 1`` are not all zero) given: only ``half_even`` reads it."""
    if shift <= 0 or rounding == "truncate":
        return rounding_up(value, shift, rounding)
    bits = _bits(Value.cast(value).as_signed(), shift + 1)
    if rounding == "half_up":
        return bits[shift - 1]
    if rounding == "half_even":
        return bits[shift - 1] & (rest | bits[shift])
    return rounding_up(value, shift, rounding)  # refuses the mode


def _bits(value: Value, k: int) -> Value:
    """The low ``k`` bits of signed ``value``, sign-extended when it is narrower."""
    return Cat(value, *([value[-1]] * max(0, k - len(value))))[:k]


def cell_latency(tanh_cell) -> int:
    """Latency of a :class:`CellDatapath` whose ``tanh_cell`` table is ``tanh_cell``."""
    return _PRE_STAGES + lookup_latency((tanh_cell,)) + _POST_STAGES
