"""The matrix-vector unit: ``P`` multiply-accumulate lanes and a requantizer.

Each input beat carries one weight column slice (one weight per lane) and one vector element
(broadcast to every lane). Lane ``p`` computes, over the beats ``first .. last`` of a row
group, exactly :func:`lstmfpga.quant.golden.dot_accumulate` for its row, then
:func:`lstmfpga.quant.fixed.requantize` into the target format.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..quant.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from .layout import Target, WeightLayout, select_bits
from .requant import requantize

__all__ = ["MatrixVectorUnit"]


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    return value


def _check_format(name: str, fmt) -> FixedFormat:
    if not isinstance(fmt, FixedFormat):
        raise TypeError(f"{name} must be a FixedFormat, not {fmt!r}")
    if not fmt.signed:
        raise ValueError(f"{name} must be a signed format, not {fmt!r}")
    return fmt


class MatrixVectorUnit(wiring.Component):
    """``P`` parallel MAC lanes with a shared requantizer stage.

    Parameters
    ----------
    lanes : int
        ``P``, the number of lanes (rows computed in parallel), ``>= 1``.
    weight_bits : int
        Width of a weight code (signed), ``>= 2``.
    vector_bits : int
        Width of a vector element (signed), ``>= 2``.
    acc : FixedFormat
        Accumulator format (signed). Only ``acc.bits`` is used: the accumulator is
        ``acc.bits`` wide and never overflows when, as quantization guarantees, every
        complete dot product (bias included) fits ``acc``.
    product_shifts : sequence of int
        Left shifts (``>= 0``) of ``w * v`` products into the accumulator, selected per beat
        by ``shift_sel``.
    targets : sequence of Target or ``(role, shift, fmt)``
        Requantization targets, selected per row group by ``target_sel`` on the ``last`` beat:
        ``requantize(acc, shift, fmt, rounding, overflow)`` (``shift`` may be negative).
    rounding : str
        One of :data:`~lstmfpga.quant.fixed.ROUNDING_MODES`.
    overflow : str
        One of :data:`~lstmfpga.quant.fixed.OVERFLOW_MODES`.

    Members
    -------
    i : ``In(stream.Signature(in_layout))``
        One beat per column of a row group. Fields: ``weights``
        (``ArrayLayout(signed(weight_bits), P)``), ``vector`` (``signed(vector_bits)``),
        ``bias`` (``ArrayLayout(signed(acc.bits), P)``, accumulator codes; only read on
        ``first`` beats), ``shift_sel`` (index into ``product_shifts``), ``target_sel``
        (index into ``targets``; only read on ``last`` beats), ``first``, ``last``. A beat
        may be both ``first`` and ``last`` (one column).
    o : ``Out(stream.Signature(out_layout))``
        One beat per row group, in input order. Fields: ``data``
        (``ArrayLayout(signed(out_bits), P)``, codes of the target format sign-extended to
        ``out_bits = max(fmt.bits)``) and ``saturated`` (``unsigned(P)``: bit ``p`` set when
        lane ``p``'s rounded value did not fit the target, then saturated or wrapped).

    Numerics
    --------
    Lane ``p``: ``acc = bias[p] + sum over beats of (weights[p] * vector <<
    product_shifts[shift_sel])``, exact; on ``last``,
    ``requantize(acc, targets[target_sel].shift, targets[target_sel].fmt, rounding,
    overflow)``. Equal to :func:`lstmfpga.quant.golden.dot_accumulate` then
    :func:`lstmfpga.quant.fixed.requantize`.

    Timing
    ------
    Pipeline: input register (multiplier operands), product register, accumulator,
    output register, plus a skid register beside the output. ``latency`` = 4: the result of
    a row group whose ``last`` beat is accepted in cycle ``c`` is valid on ``o`` in cycle
    ``c + latency`` (when ``o`` has not stalled). Throughput: one beat per cycle, row groups
    back to back with no bubble (``i.ready`` stays high unless ``o`` stalls), so a matrix of
    ``groups`` row groups and ``cols`` columns streamed without gaps occupies
    ``groups * cols + latency`` cycles from its first beat to its last result.
    Stall-able, with a registered ``i.ready``: when ``o`` stalls, the result on ``o`` moves
    into the skid register (and is presented from there until taken) while the pipeline
    advances once more; then every stage, ``i.ready`` included, holds until the skid
    register empties. ``i.ready`` is a flip-flop output, never combinational from
    ``o.ready``, so the unit breaks the ready chain of the datapath around it (with a
    stalled output the pipeline accepts one beat earlier than a pure global-enable pipeline
    would; ``o`` sees the same beats at the same cycles). Back-pressure loses nothing.
    """

    #: Cycles from a row group's ``last`` beat accepted to its result valid.
    latency = 4

    def __init__(
        self,
        lanes: int,
        weight_bits: int,
        vector_bits: int,
        acc: FixedFormat,
        product_shifts: Sequence[int],
        targets: Sequence,
        rounding: str = "half_even",
        overflow: str = "saturate",
    ):
        self._lanes = _check_int("lanes", lanes, 1)
        self._weight_bits = _check_int("weight_bits", weight_bits, 2, 62)
        self._vector_bits = _check_int("vector_bits", vector_bits, 2, 62)
        self._acc = _check_format("acc", acc)
        if isinstance(product_shifts, str | bytes) or not isinstance(product_shifts, Sequence):
            raise TypeError(
                f"product_shifts must be a sequence of integers, not {product_shifts!r}"
            )
        if not product_shifts:
            raise ValueError(f"product_shifts must not be empty, not {product_shifts!r}")
        for shift in product_shifts:
            _check_int("product shift", shift, 0, 62)
        self._product_shifts = tuple(product_shifts)
        if isinstance(targets, str | bytes) or not isinstance(targets, Sequence):
            raise TypeError(f"targets must be a sequence of (role, shift, format), not {targets!r}")
        if not targets:
            raise ValueError(f"targets must not be empty, not {targets!r}")
        checked = []
        for target in targets:
            if not isinstance(target, tuple) or len(target) != 3:
                raise TypeError(f"target must be a (role, shift, format) tuple, not {target!r}")
            role, shift, fmt = target
            _check_int("target shift", shift, -62, 124)
            checked.append(Target(str(role), shift, _check_format("target format", fmt)))
        self._targets = tuple(checked)
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {ROUNDING_MODES}, not {rounding!r}")
        if overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow must be one of {OVERFLOW_MODES}, not {overflow!r}")
        self._rounding, self._overflow = rounding, overflow

        P = self._lanes
        self._in_layout = data.StructLayout(
            {
                "weights": data.ArrayLayout(signed(weight_bits), P),
                "vector": signed(vector_bits),
                "bias": data.ArrayLayout(signed(acc.bits), P),
                "shift_sel": unsigned(select_bits(len(self._product_shifts))),
                "target_sel": unsigned(select_bits(len(self._targets))),
                "first": 1,
                "last": 1,
            }
        )
        self._out_layout = data.StructLayout(
            {
                "data": data.ArrayLayout(signed(self.out_bits), P),
                "saturated": unsigned(P),
            }
        )
        super().__init__(
            {
                "i": In(stream.Signature(self._in_layout)),
                "o": Out(stream.Signature(self._out_layout)),
            }
        )

    @classmethod
    def of(
        cls,
        layout: WeightLayout,
        vector_bits: int | None = None,
        rounding: str | None = None,
        overflow: str | None = None,
    ) -> MatrixVectorUnit:
        """The unit matching ``layout`` (vector width, rounding and overflow default to the
        layout's, i.e. the model's)."""
        if not isinstance(layout, WeightLayout):
            raise TypeError(f"layout must be a WeightLayout, not {layout!r}")
        return cls(
            layout.lanes,
            layout.weight_bits,
            layout.vector_bits if vector_bits is None else vector_bits,
            layout.acc,
            layout.product_shifts,
            layout.targets,
            layout.rounding if rounding is None else rounding,
            layout.overflow if overflow is None else overflow,
        )

    # -- read-only parameters ---------------------------------------------------------------
    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def weight_bits(self) -> int:
        return self._weight_bits

    @property
    def vector_bits(self) -> int:
        return self._vector_bits

    @property
    def acc(self) -> FixedFormat:
        return self._acc

    @property
    def product_shifts(self) -> tuple[int, ...]:
        return self._product_shifts

    @property
    def targets(self) -> tuple[Target, ...]:
        return self._targets

    @property
    def rounding(self) -> str:
        return self._rounding

    @property
    def overflow(self) -> str:
        return self._overflow

    @property
    def out_bits(self) -> int:
        """Width of the output codes: the widest target format."""
        return max(t.fmt.bits for t in self._targets)

    @property
    def in_layout(self) -> data.StructLayout:
        return self._in_layout

    @property
    def out_layout(self) -> data.StructLayout:
        return self._out_layout

    def elaborate(self, platform):
        P = self._lanes
        acc_bits = self._acc.bits
        prod_shape = signed(self._weight_bits + self._vector_bits)
        m = Module()

        # The stages advance unless the skid register holds a result: ``adv`` (and so
        # ``i.ready``) is a register output, independent of ``o.ready`` in the same cycle.
        adv = Signal()
        skid_valid = Signal()
        m.d.comb += [adv.eq(~skid_valid), self.i.ready.eq(adv)]

        # -- stage 1: operand registers (the multiplier's input registers) ------------------
        valid1 = Signal()
        s1 = Signal(self._in_layout)
        with m.If(adv):
            m.d.sync += [valid1.eq(self.i.valid), s1.eq(self.i.payload)]

        # -- stage 2: product registers ------------------------------------------------------
        valid2 = Signal()
        prods = [Signal(prod_shape, name=f"prod{p}") for p in range(P)]
        ctrl = data.StructLayout(
            {name: self._in_layout[name].shape
             for name in ("bias", "shift_sel", "target_sel", "first", "last")}
        )  # fmt: skip
        s2 = Signal(ctrl)
        with m.If(adv):
            m.d.sync += valid2.eq(valid1)
            m.d.sync += [getattr(s2, name).eq(getattr(s1, name)) for name in ctrl.members]
            m.d.sync += [prods[p].eq(s1.weights[p] * s1.vector) for p in range(P)]

        # -- stage 3: accumulators -----------------------------------------------------------
        accs = [Signal(signed(acc_bits), name=f"acc{p}") for p in range(P)]
        done3 = Signal()
        target3 = Signal.like(s2.target_sel)
        shifts = self._product_shifts
        with m.If(adv):
            m.d.sync += [done3.eq(valid2 & s2.last), target3.eq(s2.target_sel)]
        for p in range(P):
            shifted = Signal(signed(acc_bits), name=f"shifted{p}")
            if len(shifts) == 1:
                m.d.comb += shifted.eq(prods[p] << shifts[0])
            else:
                with m.Switch(s2.shift_sel):
                    for index, shift in enumerate(shifts):
                        if index == len(shifts) - 1:
                            with m.Default():
                                m.d.comb += shifted.eq(prods[p] << shift)
                        else:
                            with m.Case(index):
                                m.d.comb += shifted.eq(prods[p] << shift)
            start = Signal(signed(acc_bits), name=f"start{p}")
            m.d.comb += start.eq(accs[p])
            with m.If(s2.first):
                m.d.comb += start.eq(s2.bias[p])
            with m.If(adv & valid2):
                m.d.sync += accs[p].eq(start + shifted)

        # -- stage 4: requantize into the output register ------------------------------------
        out = Signal(self._out_layout)
        out_valid = Signal()
        with m.If(adv):
            m.d.sync += out_valid.eq(done3)
            with m.Switch(target3):
                for index, target in enumerate(self._targets):
                    last = index == len(self._targets) - 1
                    with m.Default() if last else m.Case(index):
                        flags = []
                        for p in range(P):
                            code, over = requantize(
                                accs[p], target.shift, target.fmt, self._rounding, self._overflow
                            )
                            m.d.sync += out.data[p].eq(code)
                            flags.append(over)
                        m.d.sync += out.saturated.eq(Cat(*flags))

        # -- skid register: parks the output register's result while ``o`` stalls -------------
        # (it copies the output register whenever it is empty: only ``skid_valid`` depends on
        # ``o.ready``, not the enable of the data bits)
        skid = Signal(self._out_layout)
        with m.If(~skid_valid):
            m.d.sync += skid.eq(out)
            with m.If(out_valid & ~self.o.ready):
                m.d.sync += skid_valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += skid_valid.eq(0)
        m.d.comb += [
            self.o.valid.eq(skid_valid | out_valid),
            self.o.payload.eq(Mux(skid_valid, skid, out)),
        ]
        return m
