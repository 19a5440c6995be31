"""The matrix-vector unit: ``P`` multiply-accumulate lanes of ``S`` multipliers and a
requantizer.

Each input beat carries ``S`` columns of ``P`` rows (``P * S`` weights) and ``S`` vector
elements (broadcast to every lane); each lane sums its ``S`` products with an adder tree.
Lane ``p`` computes, over the beats ``first .. last`` of a row
group, exactly :func:`lstmfpga.quant.golden.dot_accumulate` for its row, then
:func:`lstmfpga.quant.fixed.requantize` into the target format.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..quant.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedFormat
from .layout import Target, WeightLayout, select_bits
from .pipeline import SkidOutput
from .requant import requant_parts_layout, requantize_finish, requantize_parts

__all__ = ["MULTIPLIER_BITS", "MatrixVectorUnit", "mvu_latency"]

#: Operand width of the FPGA's hardware multiplier (ECP5 ``MULT18X18D``: 18 x 18 signed).
MULTIPLIER_BITS = 18


def mvu_latency(simd: int) -> int:
    """:attr:`MatrixVectorUnit.latency` for ``simd`` columns per beat: 5, plus the adder-tree
    register when ``simd > 1``."""
    return 5 + (simd > 1)


def _tree(m: Module, values: list, max_bits: int, name: str):
    """The sum of the signed ``values`` as a balanced tree of two-input adders, each partial
    sum in a signal of its exact width (at most ``max_bits``: the total fits it, so wrapping
    there cannot change it) marked ``keep``: Yosys' ``alumacc`` would otherwise merge the
    tree into one ``$macc``, which it builds as a carry-save array in LUTs (about 5x the LUTs
    of the adders' carry chains on ECP5)."""
    level = list(values)
    depth = 0
    while len(level) > 1:
        pairs = []
        for i in range(0, len(level) - 1, 2):
            a, b = level[i], level[i + 1]
            width = min(max(len(a), len(b)) + 1, max_bits)
            total = Signal(signed(width), name=f"{name}_{depth}_{i // 2}", attrs={"keep": 1})
            m.d.comb += total.eq(a + b)
            pairs.append(total)
        if len(level) % 2:
            pairs.append(level[-1])
        level, depth = pairs, depth + 1
    return level[0]


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
    simd : int
        ``S``, columns per beat (multipliers per lane), ``>= 1``. With ``S > 1``,
        ``weights`` has ``P * S`` elements (lane ``p``, slot ``s`` at ``p*S + s``), and
        ``vector`` and ``shift_sel`` are arrays of ``S`` (one per slot); the ``S``
        shifted products of a lane are summed by an adder tree before the accumulator.
    min_group_beats : int
        The fewest beats any row group of the input has (``>= 1``; :meth:`of` takes the
        layout's shortest ``Matrix.chunks``). When it exceeds the stages from the operand
        register to the accumulator (:attr:`held_bias`), a group's bias waits in one register
        instead of travelling with the beat (``P * acc.bits`` flip-flops per stage saved); a
        shorter group on ``i`` then gives wrong sums, so pass what the stream guarantees.

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
        ``out_bits = max(fmt.bits)``), ``saturated`` (``unsigned(P)``: bit ``p`` set when
        lane ``p``'s rounded value did not fit the target, then saturated or wrapped) and
        ``target`` (the row group's ``target_sel``: which tensor ``saturated`` counts in,
        :mod:`.saturation`).
    computed : ``Out(StructLayout({"valid": 1, "saturated": unsigned(P), "target": ...}))``
        ``valid`` for one cycle after each row group's result is loaded into the output
        register, with that result's ``saturated`` and ``target``: every result exactly once,
        whether or not ``o`` stalls (it leaves on ``o`` then or later), from flip-flops only,
        so a counter of saturations (:mod:`.saturation`) needs no path from ``o.ready``.

    Numerics
    --------
    Lane ``p``: ``acc = bias[p] + sum over beats of (weights[p] * vector <<
    product_shifts[shift_sel])``, exact; on ``last``,
    ``requantize(acc, targets[target_sel].shift, targets[target_sel].fmt, rounding,
    overflow)``. Equal to :func:`lstmfpga.quant.golden.dot_accumulate` then
    :func:`lstmfpga.quant.fixed.requantize`.

    Timing
    ------
    Pipeline: input register (multiplier operands), product register, accumulator, the
    requantizer's two stages (:func:`~.requant.requantize_parts`: floor bits and range-check
    reductions; :func:`~.requant.requantize_finish`: rounding increment and saturation, the
    output register), plus a skid register beside the output; with ``S > 1`` an adder-tree
    register after the products. The datapath registers have no reset (the valid bits carry
    the state), so synthesis can move the operand and product registers into the DSP's
    input and output registers (:mod:`lstmfpga.synth.absorb`). ``latency`` = 5 (6 with
    ``S > 1``): the result of
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
        simd: int = 1,
        min_group_beats: int = 1,
    ):
        self._lanes = _check_int("lanes", lanes, 1)
        self._simd = _check_int("simd", simd, 1)
        self._min_group_beats = _check_int("min_group_beats", min_group_beats, 1)
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

        P, S = self._lanes, self._simd
        sel_shape = unsigned(select_bits(len(self._product_shifts)))
        vec_shape = signed(vector_bits)
        vec_shape = vec_shape if S == 1 else data.ArrayLayout(vec_shape, S)
        self._in_layout = data.StructLayout(
            {
                "weights": data.ArrayLayout(signed(weight_bits), P * S),
                "vector": vec_shape,
                "bias": data.ArrayLayout(signed(acc.bits), P),
                "shift_sel": sel_shape if S == 1 else data.ArrayLayout(sel_shape, S),
                "target_sel": unsigned(select_bits(len(self._targets))),
                "first": 1,
                "last": 1,
            }
        )
        self._out_layout = data.StructLayout(
            {
                "data": data.ArrayLayout(signed(self.out_bits), P),
                "saturated": unsigned(P),
                "target": unsigned(select_bits(len(self._targets))),
            }
        )
        self._computed_layout = data.StructLayout(
            {"valid": 1, "saturated": unsigned(P), "target": self._out_layout["target"].shape}
        )
        super().__init__(
            {
                "i": In(stream.Signature(self._in_layout)),
                "o": Out(stream.Signature(self._out_layout)),
                "computed": Out(self._computed_layout),
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
            layout.simd,
            min(matrix.chunks for matrix in layout.matrices),
        )

    # -- read-only parameters ---------------------------------------------------------------
    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def simd(self) -> int:
        return self._simd

    @property
    def min_group_beats(self) -> int:
        return self._min_group_beats

    @property
    def held_bias(self) -> bool:
        """True when every row group is longer (in beats) than the distance from the operand
        register to the accumulator (1 stage, 2 with ``simd > 1``): then a first beat's
        bias is kept in one register from the cycle it enters until the accumulator takes it
        (the next group's first beat cannot arrive before), instead of travelling through
        every stage beside the beat."""
        return self._min_group_beats > 1 + (self._simd > 1)

    @property
    def preshift(self) -> bool:
        """True when the product shifts are applied to the vector elements before the
        multipliers (once per slot, shared by the ``P`` lanes) rather than to the ``P * S``
        products: when there are several shifts and the shifted element still fits
        :data:`MULTIPLIER_BITS`."""
        shifts = self._product_shifts
        widest = self._vector_bits + max(shifts)
        return (
            len(shifts) > 1 and widest <= MULTIPLIER_BITS and self._weight_bits <= MULTIPLIER_BITS
        )

    @property
    def latency(self) -> int:
        """Cycles from a row group's ``last`` beat accepted to its result valid: 5, plus the
        adder-tree register when ``simd > 1``."""
        return mvu_latency(self._simd)

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

    def _shifted(self, m: Module, product, sel, name: str, shape=None) -> Signal:
        """``product << product_shifts[sel]`` at the accumulator's width (or ``shape``)."""
        shifts = self._product_shifts
        shifted = Signal(shape or signed(self._acc.bits), name=f"shifted{name}")
        if len(shifts) == 1:
            m.d.comb += shifted.eq(product << shifts[0])
            return shifted
        with m.Switch(sel):
            for index, shift in enumerate(shifts):
                with m.Default() if index == len(shifts) - 1 else m.Case(index):
                    m.d.comb += shifted.eq(product << shift)
        return shifted

    def elaborate(self, platform):
        P = self._lanes
        acc_bits = self._acc.bits
        m = Module()

        # The stages advance unless the skid register holds a result: ``adv`` (and so
        # ``i.ready``) is a register output, independent of ``o.ready`` in the same cycle.
        skid_out = SkidOutput(m, self.o, name="out")
        adv = skid_out.advance
        m.d.comb += self.i.ready.eq(adv)

        # -- stage 1: operand registers (the multiplier's input registers) ------------------
        # With ``preshift`` each slot's vector element is shifted by its product shift here,
        # once for all P lanes ((w * v) << k == w * (v << k)), instead of P * S product
        # multiplexers behind the multipliers.
        S = self._simd
        preshift = self.preshift
        valid1 = Signal()
        s1 = Signal(self._in_layout, reset_less=True)
        in_vector = (
            [self.i.payload.vector] if S == 1 else [self.i.payload.vector[k] for k in range(S)]
        )
        in_sels = (
            [self.i.payload.shift_sel]
            if S == 1
            else [self.i.payload.shift_sel[k] for k in range(S)]
        )
        if preshift:
            vec_shape = signed(self._vector_bits + max(self._product_shifts))
            vector = [Signal(vec_shape, name=f"vec{k}", reset_less=True) for k in range(S)]
        with m.If(adv):
            m.d.sync += [valid1.eq(self.i.valid), s1.eq(self.i.payload)]
            if preshift:
                m.d.sync += [
                    vec.eq(self._shifted(m, v, sel, f"v{k}", vec_shape))
                    for k, (vec, v, sel) in enumerate(zip(vector, in_vector, in_sels, strict=True))
                ]
        if not preshift:
            vector = [s1.vector] if S == 1 else [s1.vector[k] for k in range(S)]

        # -- stage 2: product registers (P * S multipliers) ----------------------------------
        valid2 = Signal()
        prod_shape = signed(len(vector[0]) + self._weight_bits)
        prods = [
            [Signal(prod_shape, name=f"prod{p}_{k}", reset_less=True) for k in range(S)]
            for p in range(P)
        ]
        carried = ("shift_sel", "target_sel", "first", "last")
        held = self.held_bias
        if held:  # loaded with a first beat's bias as the beat enters stage 1
            bias = Signal(self._in_layout["bias"].shape, name="bias", reset_less=True)
            with m.If(adv & self.i.valid & self.i.payload.first):
                m.d.sync += bias.eq(self.i.payload.bias)
        ctrl = data.StructLayout(
            {name: self._in_layout[name].shape for name in carried + (() if held else ("bias",))}
        )
        s2 = Signal(ctrl, reset_less=True)
        with m.If(adv):
            m.d.sync += valid2.eq(valid1)
            m.d.sync += [getattr(s2, name).eq(getattr(s1, name)) for name in ctrl.members]
            m.d.sync += [
                prods[p][k].eq(s1.weights[p * S + k] * vector[k])
                for p in range(P)
                for k in range(S)
            ]

        # -- (S > 1) stage 2b: shifted products summed by an adder tree, registered -----------
        acc_shape = signed(acc_bits)
        sels = [s2.shift_sel] if S == 1 else [s2.shift_sel[k] for k in range(S)]
        shifted = [
            [prods[p][k] if preshift else self._shifted(m, prods[p][k], sels[k], f"{p}_{k}")
             for k in range(S)]
            for p in range(P)
        ]  # fmt: skip
        terms = [_tree(m, shifted[p], acc_bits, f"tree{p}") for p in range(P)]
        valid3, s3 = valid2, s2
        if S > 1:
            valid3, s3 = Signal(), Signal(ctrl, reset_less=True)
            regs = [Signal(acc_shape, name=f"tree{p}", reset_less=True) for p in range(P)]
            with m.If(adv):
                m.d.sync += [valid3.eq(valid2), s3.eq(s2)]
                m.d.sync += [reg.eq(term) for reg, term in zip(regs, terms, strict=True)]
            terms = regs

        # -- stage 3: accumulators -----------------------------------------------------------
        accs = [Signal(acc_shape, name=f"acc{p}", reset_less=True) for p in range(P)]
        done3 = Signal()
        target3 = Signal.like(s3.target_sel, reset_less=True)
        with m.If(adv):
            m.d.sync += [done3.eq(valid3 & s3.last), target3.eq(s3.target_sel)]
        for p in range(P):
            start = Signal(acc_shape, name=f"start{p}")
            m.d.comb += start.eq(accs[p])
            with m.If(s3.first):
                m.d.comb += start.eq(bias[p] if held else s3.bias[p])
            with m.If(adv & valid3):
                m.d.sync += accs[p].eq(start + terms[p])

        out, out_valid, loaded = self._requantize(m, adv, accs, done3, target3)
        skid_out.drive(out_valid, out)
        m.d.comb += [
            self.computed.valid.eq(loaded),
            self.computed.saturated.eq(out.saturated),
            self.computed.target.eq(out.target),
        ]
        return m

    def _requantize(self, m, adv, accs, done3, target3):
        """Stages 4 and 5: the requantizer of each lane's accumulator into the output
        register (``out``, valid when ``out_valid``; ``loaded`` the cycle after it takes a
        result) by the shift and format of its target."""
        P = self._lanes
        # -- stage 4: the requantizer's first half (floor bits, rounding bit, range checks) ---
        parts_layout = requant_parts_layout(self.out_bits)
        parts = [Signal(parts_layout, name=f"parts{p}", reset_less=True) for p in range(P)]
        done4 = Signal()
        target4 = Signal.like(target3, reset_less=True)
        with m.If(adv):
            m.d.sync += [done4.eq(done3), target4.eq(target3)]
            with m.Switch(target3):
                for index, target in enumerate(self._targets):
                    last = index == len(self._targets) - 1
                    with m.Default() if last else m.Case(index):
                        for p in range(P):
                            split = requantize_parts(
                                accs[p], target.shift, target.fmt, self._rounding
                            )
                            m.d.sync += [getattr(parts[p], k).eq(v) for k, v in split.items()]

        # -- stage 5: rounding increment and saturation into the output register ------------
        out = Signal(self._out_layout, reset_less=True)
        out_valid = Signal()
        loaded = Signal()  # ``out`` took a row group's result at the last clock edge
        m.d.sync += loaded.eq(adv & done4)
        with m.If(adv):
            m.d.sync += [out_valid.eq(done4), out.target.eq(target4)]
            with m.Switch(target4):
                for index, target in enumerate(self._targets):
                    last = index == len(self._targets) - 1
                    with m.Default() if last else m.Case(index):
                        flags = []
                        for p in range(P):
                            code, over = requantize_finish(parts[p], target.fmt, self._overflow)
                            m.d.sync += out.data[p].eq(code)
                            flags.append(over)
                        m.d.sync += out.saturated.eq(Cat(*flags))
        return out, out_valid, loaded
