"""Sigmoid/tanh lookup tables in hardware: exactly
:meth:`lstmfpga.quant.activation.ActivationTable.lookup`.

:class:`ActivationLUT` is the stream component; :func:`lookup_stages` builds the same datapath
inside another stall-able pipeline (the cell datapath uses it for ``tanh_cell``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..quant.activation import FUNCTIONS, LUT_ROUNDING, ActivationTable
from .pipeline import SkidOutput, delay, register, valid_chain

__all__ = ["ActivationLUT", "RomBank", "clamp_outside", "lookup_latency", "lookup_stages"]

#: Cycles of an interpolating lookup: address register, ROM read, ROM data register (the
#: block RAM's output register), multiplier input register, product register, output register.
INTERPOLATE_LATENCY = 6
#: Cycles of a direct lookup: address register, ROM read, ROM data register, output register.
DIRECT_LATENCY = 4
#: Read ports per ROM instance (a true dual-port block RAM); more users get another copy.
PORTS_PER_ROM = 2


def _interpolates(table: ActivationTable) -> bool:
    # With shift == 0 the fraction r is always 0: the formula reduces to the direct one.
    return bool(table.interpolate) and table.shift > 0


def lookup_latency(tables) -> int:
    """Latency of :func:`lookup_stages` for ``tables``: the deepest of their pipelines."""
    if any(_interpolates(t) for t in tables):
        return INTERPOLATE_LATENCY
    return DIRECT_LATENCY


class RomBank:
    """The ROMs of a set of lookups: tables with equal contents share a memory, up to
    :data:`PORTS_PER_ROM` read ports each."""

    def __init__(self, m: Module, prefix: str):
        self._m = m
        self._prefix = prefix
        self._roms: dict[tuple, list] = {}
        self._count = 0

    def _memory(self, values, bits: int, tag: str) -> Memory:
        # Block RAM, also for small tables: synthesis would otherwise build them from LUTs,
        # whose address decoding lands in series with the fold on the lookup's first stage.
        mem = Memory(
            shape=signed(bits),
            depth=len(values),
            init=[int(v) for v in values],
            attrs={"rom_style": "block", "ram_style": "block"},
        )
        self._m.submodules[f"{self._prefix}_{tag}{self._count}"] = mem
        return mem

    def read_ports(self, table: ActivationTable):
        """Synchronous read ports ``(entries, slopes)`` of ``table`` (``slopes`` is None for
        direct tables). With :func:`clamp_outside` the memories hold only the first
        ``table.size`` words: the clamp entry ``entries[size]`` is a constant the lookup
        selects after the data register (a ``2**z + 1``-word table would need twice the block
        RAM depth and a multiplexer between the block RAMs and their output register)."""
        interpolate = _interpolates(table)
        key = (table.entries.tobytes(), table.slopes.tobytes() if interpolate else None)
        group = self._roms.setdefault(key, [])
        if not group or group[-1][2] == PORTS_PER_ROM:
            words = table.size if clamp_outside(table) else len(table.entries)
            entries = self._memory(table.entries[:words], table.entry_bits, "entries")
            slopes = (self._memory(table.slopes[:words], table.slope_bits, "slopes")
                      if interpolate else None)  # fmt: skip
            self._count += 1
            group.append([entries, slopes, 0])
        rom = group[-1]
        rom[2] += 1
        entries, slopes = rom[0].read_port(), rom[1].read_port() if rom[1] is not None else None
        return entries, slopes


def clamp_outside(table: ActivationTable) -> bool:
    """Whether the lookup of ``table`` keeps its clamp entry ``entries[size]`` out of the
    ROM: a power-of-two ``size`` (the address is ``Cat(index, beyond)``, so the ROM's index
    bits alone address ``entries[:size]``) and one entry past it."""
    size = table.size
    return size & (size - 1) == 0 and len(table.entries) == size + 1


def _extend(value: Value, width: int) -> Value:
    """Signed ``value`` sign-extended to at least ``width`` bits."""
    return Cat(value, *([value[-1]] * (width - len(value)))).as_signed()


def _wrap(value: Value, width: int) -> Value:
    """``value`` (signed) modulo ``2**width``: sign-extended or truncated to ``width`` bits."""
    value = Value.cast(value).as_signed()
    return _extend(value, width)[:width]


def _folded_term(
    table: ActivationTable, term: Value, negative: Value, k: int, width: int, terms: int
) -> Value:
    """The rounding and the unfold of a lookup folded into its sum, modulo ``2**width``.

    The lookup returns ``y = floor((z + h) / 2**k)`` (``half_up``: ``h = 2**(k-1)``, 0 when
    ``k == 0``) for a sum ``z`` of ``terms`` (1 or 2) values, then ``y`` for a positive code and
    ``base - y`` for a negative one (``base`` = ``one`` for a sigmoid, 0 for tanh). Since
    ``base - floor(x / 2**k) = floor((base * 2**k + 2**k - 1 - x) / 2**k)`` and ``-v = ~v + 1``,
    both are ``floor(N / 2**k)`` with ``N = sum of (v ^ sign)`` over the terms plus a constant
    chosen by the sign. This returns ``term ^ sign`` plus that constant; the caller adds the
    other term (complemented by the sign too) and takes bits ``k ..``. Exact modulo
    ``2**width``, which is all the ``width - k`` output bits need.
    """
    if LUT_ROUNDING != "half_up":  # the constant below is half_up's
        raise ValueError(f"LUT_ROUNDING must be 'half_up', not {LUT_ROUNDING!r}")
    h = 1 << (k - 1) if k > 0 else 0
    base = table.one if table.function == "sigmoid" else 0
    mask = (1 << width) - 1
    positive_const = h & mask
    negative_const = ((base << k) + (1 << k) - 1 - h + terms) & mask
    constant = Mux(negative, Const(negative_const, width), Const(positive_const, width))
    return ((_wrap(term, width) ^ negative.replicate(width)) + constant)[:width]


def _beyond(code: Value, shift: int, size: int) -> Value:
    """``(|code| >> shift) >= size`` for a power-of-two ``size``, from ``code``'s bits."""
    k, width = shift + size.bit_length() - 1, len(code)  # |code| >= 2**k
    if k >= width:
        return Const(0, 1)
    upper = code[k:]  # includes the sign bit
    positive_beyond = code[k : width - 1].any() if k < width - 1 else Const(0, 1)
    lower_nonzero = code[:k].any() if k > 0 else Const(0, 1)
    # negative: |code| >= 2**k unless every bit from k up is set and the rest is not zero
    negative_beyond = ~(upper.all() & lower_nonzero)
    return Mux(code[-1], negative_beyond, positive_beyond)


def _folded_address(m, code, shift, size, name):
    """Stage 0 of a lookup (combinational): the ROM ``address`` of ``code``, its interpolation
    ``fraction`` (None when ``shift`` is 0), ``beyond`` (past the table) and ``negative``."""
    # Stage 0 (combinational): fold, bit-slice index, clamp beyond the range, arranged for a
    # short path into the address register (no comparator, no adder behind another). The fold
    # ``|code| = (code ^ sign) + sign`` is split at the slice: the fraction
    # ``|code| mod 2**shift`` is its own short adder, and the index ``|code| >> shift`` of a
    # negative code is ``~high`` or, when the fraction bits are all zero, ``~high + 1``.
    # For a power-of-two ``size = 2**z`` the range check reads the code's bits directly,
    # both index candidates are only ``z`` bits wide (an index in range fits them), and
    # ``address = Cat(0 if beyond else index, beyond)``.
    negative = code[-1]
    fraction = None
    if shift == 0:
        high, carry = code.as_unsigned(), negative
    else:
        low, high = code[:shift], code[shift:]
        carry = negative & ~low.any()
        fraction = Signal(unsigned(shift), name=f"{name}_fraction")
        m.d.comb += fraction.eq((low ^ negative.replicate(shift)) + negative)
    beyond = Signal(name=f"{name}_beyond")
    if size & (size - 1) == 0:
        z = size.bit_length() - 1
        hz = _extend(high.as_signed(), z)[:z] if len(high) else Const(0, z)
        ones, plus_one = Signal(z, name=f"{name}_ones"), Signal(z, name=f"{name}_plus1")
        m.d.comb += [ones.eq(~hz), plus_one.eq(~hz + 1)]
        if not len(high):  # shift >= width: every |code| >> shift is 0
            negative_index = Const(0, z)
        elif shift == 0:
            negative_index = plus_one
        else:
            negative_index = Mux(low.any(), ones, plus_one)
        index = Signal(unsigned(z), name=f"{name}_index")
        m.d.comb += [
            beyond.eq(_beyond(code, shift, size)),
            index.eq(Mux(negative, negative_index, hz)),
        ]
        address = Cat(index & ~beyond.replicate(z), beyond)
    else:
        folded = high ^ negative.replicate(len(high))
        index = Signal(unsigned(len(high) + 1), name=f"{name}_index")
        m.d.comb += [index.eq(folded + carry), beyond.eq(index >= size)]
        address = Mux(beyond, size, index)
    return address, fraction, beyond, negative


def _interpolated(m, table, advance, entry, slopes_port, fraction, negative, name):
    """Stages 2 to 5 of an interpolating lookup and its final adder: ``entry + slope *
    fraction``, unfolded by the sign (``lookup_stages``' interpolating branch)."""
    shift, out_bits = table.shift, table.out_fmt.bits
    # Stage 2: the ROM read (the block RAM's address register); the fraction and sign
    # wait beside it.
    r1 = register(m, advance, fraction, name=f"{name}_r1")
    n1 = register(m, advance, negative, name=f"{name}_neg1")
    # Stage 3: ROM data registers (the block RAMs' output registers).
    e2 = entry(2)
    s2 = register(m, advance, slopes_port.data, name=f"{name}_slope2")
    r2 = register(m, advance, r1, name=f"{name}_r2")
    n2 = register(m, advance, n1, name=f"{name}_neg2")
    # Stage 4: multiplier input registers; beside them the entry term of the folded sum.
    k = shift + table.guard
    width = k + out_bits
    s3 = register(m, advance, s2, name=f"{name}_slope3")
    r3 = register(m, advance, r2, name=f"{name}_r3")
    a3 = register(m, advance, _folded_term(table, e2 << shift, n2, k, width, 2),
                  name=f"{name}_term3")  # fmt: skip
    n3 = register(m, advance, n2, name=f"{name}_neg3")
    # Stage 5: product register (the multiplier's output register).
    p4 = register(m, advance, s3 * r3, name=f"{name}_prod4")
    a4 = register(m, advance, a3, name=f"{name}_term4")
    n4 = register(m, advance, n3, name=f"{name}_neg4")
    # Last stage: one adder, ``(a4 + (p4 ^ sign)) >> k``.
    total = (a4 + (_wrap(p4, width) ^ n4.replicate(width)))[:width]
    unfolded = total[k:].as_signed()
    return unfolded


def lookup_stages(
    m: Module,
    table: ActivationTable,
    code: Value,
    advance: Value,
    *,
    latency: int,
    roms: RomBank,
    name: str,
) -> Signal:
    """Build ``table.lookup(code)`` as a ``latency``-stage pipeline enabled by ``advance``.

    ``code`` is a signed value (any width; normally ``table.in_fmt.bits``) present in the
    cycle its beat enters; the result, shape ``signed(table.out_fmt.bits)``, is a register that
    holds the output ``latency`` stages later. ``latency`` must be at least
    ``lookup_latency((table,))``; shorter pipelines are padded with output registers.
    """
    if latency < lookup_latency((table,)):
        raise ValueError(
            f"latency must be at least {lookup_latency((table,))} for this table, not {latency!r}"
        )
    code = Value.cast(code).as_signed()
    shift, size = table.shift, table.size

    address, fraction, beyond, negative = _folded_address(m, code, shift, size, name)
    # Stage 1: the address register (the fold and clamp get a cycle of their own; the ROM's
    # address input then comes straight from a flip-flop), the fraction and sign beside it.
    address = register(m, advance, address, name=f"{name}_address")
    if fraction is not None:
        fraction = register(m, advance, Mux(beyond, 0, fraction), name=f"{name}_r0")
    negative = register(m, advance, negative, name=f"{name}_neg0")
    entries_port, slopes_port = roms.read_ports(table)
    rom_address = address
    if clamp_outside(table):  # the ROM holds entries[:size]; entries[size] is a constant
        z = size.bit_length() - 1
        rom_address = address[:z]
        beyond2 = delay(m, advance, address[z], 2, name=f"{name}_beyond")

    def entry(stage):  # the ROM data register (stage 3), the clamp entry selected after it
        data = register(m, advance, entries_port.data, name=f"{name}_entry{stage}")
        if not clamp_outside(table):
            return data
        last = Const(int(table.entries[size]), data.shape())
        return Mux(beyond2, last, data)

    m.d.comb += [entries_port.addr.eq(rom_address), entries_port.en.eq(advance)]

    if table.function not in FUNCTIONS:
        raise ValueError(f"table function must be one of {FUNCTIONS}, not {table.function!r}")
    out_bits = table.out_fmt.bits
    if _interpolates(table):
        m.d.comb += [slopes_port.addr.eq(rom_address), slopes_port.en.eq(advance)]
        unfolded = _interpolated(m, table, advance, entry, slopes_port, fraction, negative, name)
        stages = INTERPOLATE_LATENCY
    else:
        n1 = register(m, advance, negative, name=f"{name}_neg1")
        # Stage 3: the ROM data register (the block RAM's output register).
        e2 = entry(2)
        n2 = register(m, advance, n1, name=f"{name}_neg2")
        k = table.guard
        width = k + out_bits
        unfolded = _folded_term(table, e2, n2, k, width, 1)[k:].as_signed()
        stages = DIRECT_LATENCY

    # Output register: the rounded, unfolded result; a fabric flip-flop (behind the product
    # register and the final adder it must not become a next multiplier's input register).
    out = register(m, advance, unfolded, name=f"{name}_y", fabric=True)
    return delay(m, advance, out, latency - stages, name=f"{name}_y")


class ActivationLUT(wiring.Component):
    """A vector of sigmoid/tanh table lookups, one table per element, one vector per cycle.

    Element ``e`` of each beat goes through ``tables[e]`` and the output equals
    ``tables[e].lookup(code)`` bit for bit (fold, bit-slice index, linear interpolation or
    direct entry with ``half_up`` rounding, unfold; see
    :mod:`lstmfpga.quant.activation`). Every result fits ``out_fmt``.

    Parameters
    ----------
    tables : tuple of ActivationTable
        One table per vector element; all share ``in_fmt`` and ``out_fmt`` (function, size,
        shift and interpolation may differ). Tables with equal contents share ROMs (two read
        ports per ROM).

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(signed(in_fmt.bits), n)))``
        Input codes in ``in_fmt``, ``n = len(tables)``.
    o : ``Out(stream.Signature(ArrayLayout(signed(out_fmt.bits), n)))``
        Output codes in ``out_fmt``, in input order.

    Timing: ``latency`` 6 stages with an interpolating table (address register, ROM read, ROM
    data register, multiplier input register beside the folded entry term, product register,
    output register), 4 with direct tables (address register, ROM read, ROM data register,
    output register). The
    rounding and the unfold are folded into the final sum, so every stage has at most one
    carry chain. The ROM data registers, the multiplier's input and product registers have
    no reset and nothing between them and the primitive, so :mod:`lstmfpga.synth.absorb`
    makes them the block RAM's output register and the DSP's input and output registers.
    With ``o.ready`` held high it accepts one beat per cycle, and a beat transferred on ``i``
    in cycle ``t`` is valid on ``o`` in cycle ``t + latency``. A pipeline with a skid
    register at its output (:class:`~.pipeline.SkidOutput`): ``i.ready``
    is a flip-flop output, never combinational from ``o.ready``; back-pressure loses nothing.
    """

    def __init__(self, tables):
        if not isinstance(tables, tuple | list) or not all(
            isinstance(t, ActivationTable) for t in tables
        ):
            raise TypeError(f"tables must be a tuple of ActivationTable, not {tables!r}")
        tables = tuple(tables)
        if not tables:
            raise ValueError(f"tables must be a non-empty tuple of ActivationTable, not {tables!r}")
        formats = [(str(t.in_fmt), str(t.out_fmt)) for t in tables]
        if any(t.in_fmt != tables[0].in_fmt or t.out_fmt != tables[0].out_fmt for t in tables):
            raise ValueError(f"tables must share one in_fmt and one out_fmt, not {formats!r}")
        for t in tables:
            if t.function not in FUNCTIONS:
                raise ValueError(f"table function must be one of {FUNCTIONS}, not {t.function!r}")
            if not t.in_fmt.signed or not t.out_fmt.signed:
                raise ValueError(f"table formats must be signed, not {formats!r}")
        self._tables = tables
        self._latency = lookup_latency(tables)
        n, in_bits, out_bits = len(tables), tables[0].in_fmt.bits, tables[0].out_fmt.bits
        super().__init__(
            {
                "i": In(stream.Signature(data.ArrayLayout(signed(in_bits), n))),
                "o": Out(stream.Signature(data.ArrayLayout(signed(out_bits), n))),
            }
        )

    @property
    def tables(self) -> tuple:
        """The tables, one per vector element."""
        return self._tables

    @property
    def latency(self) -> int:
        """Cycles from a beat's transfer on ``i`` to its output being valid on ``o`` (with
        ``o.ready`` high): 6 when any table interpolates, else 4."""
        return self._latency

    def elaborate(self, platform):
        m = Module()
        skid_out = SkidOutput(m, self.o, name="out")
        advance = skid_out.advance
        m.d.comb += self.i.ready.eq(advance)
        valid = valid_chain(m, advance, self.i.valid, self._latency, name="lut")
        roms = RomBank(m, "rom")
        ys = []
        for e, table in enumerate(self._tables):
            ys.append(lookup_stages(m, table, self.i.payload[e], advance,
                                    latency=self._latency, roms=roms, name=f"e{e}"))  # fmt: skip
        skid_out.drive(valid, Cat(*ys))
        return m
