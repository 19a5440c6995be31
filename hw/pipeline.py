"""Building blocks of stall-able pipelines (a global-enable pipeline).

Every stage register of such a pipeline loads only when the pipeline's ``advance`` signal is
high; the memories' read ports use the same signal as their ``en``. A pipeline with a single
output stream therefore stalls as a whole: ``advance = ~o.valid | o.ready`` and
``i.ready = advance``. Nothing is lost or duplicated, and with ``o.ready`` held high it accepts
one beat per cycle.

:class:`SkidOutput` gives such a pipeline a registered ``i.ready`` instead: a skid register
beside its output register parks a result while ``o`` stalls, so ``advance`` (and so
``i.ready``) is a flip-flop output and never combinational from ``o.ready``. This breaks the
ready chain between stream components.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value

__all__ = [
    "FABRIC_ATTR",
    "NO_RW_CHECK",
    "SkidOutput",
    "adder_tree",
    "delay",
    "register",
    "valid_chain",
]


#: Verilog attribute of a register that stays a fabric flip-flop (``lstmfpga.synth.absorb``
#: moves no flip-flop whose output net carries it into a DSP or block RAM).
FABRIC_ATTR = "lstmfpga_fabric"

#: ``attrs`` of a :class:`~amaranth.lib.memory.Memory` whose reads never meet a write to the
#: same address in the same cycle (or whose such reads are never used): Yosys' ``no_rw_check``,
#: so synthesis adds no collision logic (address comparators and a write-data bypass in front
#: of the block RAM's read register). Simulation is unaffected.
NO_RW_CHECK = {"no_rw_check": 1}


def register(m: Module, advance: Value, value: Value, *, name: str, fabric: bool = False) -> Signal:
    """A datapath register of ``value``'s shape that loads ``value`` when ``advance`` is high.

    Datapath registers have no reset (the valid bits carry the state); this keeps them free to
    map into DSP and memory output registers. ``fabric=True`` marks it to stay a fabric
    flip-flop (:data:`FABRIC_ATTR`): e.g. a register behind a DSP's output register and a
    carry chain, which as the next DSP's input register would put both primitives' slow
    ends on one path.
    """
    value = Value.cast(value)
    attrs = {FABRIC_ATTR: 1} if fabric else {}
    reg = Signal(value.shape(), name=name, reset_less=True, attrs=attrs)
    with m.If(advance):
        m.d.sync += reg.eq(value)
    return reg


def delay(m: Module, advance: Value, value: Value, cycles: int, *, name: str) -> Value:
    """``value`` through ``cycles`` stage registers (``value`` itself when ``cycles == 0``)."""
    if cycles < 0:
        raise ValueError(f"cycles must be a non-negative integer, not {cycles!r}")
    for stage in range(cycles):
        value = register(m, advance, value, name=f"{name}_d{stage + 1}")
    return value


def valid_chain(m: Module, advance: Value, valid: Value, stages: int, *, name: str) -> Value:
    """The valid bits of a ``stages``-deep pipeline fed by ``valid``; returns the last one.

    Unlike datapath registers these reset to 0, so the pipeline starts empty.
    """
    if stages < 1:
        raise ValueError(f"stages must be a positive integer, not {stages!r}")
    for stage in range(stages):
        bit = Signal(name=f"{name}_valid{stage + 1}")
        with m.If(advance):
            m.d.sync += bit.eq(valid)
        valid = bit
    return valid


def adder_tree(values, shape) -> Value:
    """The sum of ``values`` as a balanced binary tree of two-input adders (combinational).

    ``shape`` is the result's shape; every partial sum is computed at that width, so the sum
    is exact whenever the total fits ``shape`` (two's complement wrap-around of partial sums
    cannot change an exact total that fits). Depth ``ceil(log2(len(values)))`` adders.
    """
    level = [Value.cast(v) for v in values]
    if not level:
        raise ValueError("values must not be empty")
    while len(level) > 1:
        pairs = [(level[i] + level[i + 1])[: shape.width] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            pairs.append(level[-1])
        level = [p.as_signed() if shape.signed else p for p in pairs]
    return level[0]


class SkidOutput:
    """The output of a global-enable pipeline with a skid register: ``advance`` is registered.

    Create it first and build the stages with :attr:`advance` as their enable (and drive the
    input's ``ready`` with it), then call :meth:`drive` with the last stage's valid bit and
    payload (registers loaded when ``advance`` is high). When ``o`` stalls with a result on it,
    the result moves into the skid register (and is presented from there until taken) while
    the pipeline advances once more; then every stage holds until the skid register empties.
    With ``o.ready`` held high it behaves exactly like the plain pipeline (same beats in the
    same cycles, one per cycle); nothing is lost or duplicated under back-pressure. Costs one
    payload-wide register and a 2:1 multiplexer on ``o.payload``.
    """

    def __init__(self, m: Module, o, *, name: str):
        self._m, self._o, self._name = m, o, name
        self._skid_valid = Signal(name=f"{name}_skid_valid")
        self.advance = Signal(name=f"{name}_advance")
        m.d.comb += self.advance.eq(~self._skid_valid)

    def drive(self, valid: Value, payload: Value) -> None:
        """Present ``valid``/``payload`` (the output register) on ``o`` through the skid
        register."""
        m, o, skid_valid = self._m, self._o, self._skid_valid
        payload = Value.cast(payload)
        skid = Signal(payload.shape(), name=f"{self._name}_skid", reset_less=True)
        # The skid register copies the output register whenever it is empty: only
        # ``skid_valid`` depends on ``o.ready``, not the enable of the data bits.
        with m.If(~skid_valid):
            m.d.sync += skid.eq(payload)
            with m.If(valid & ~o.ready):
                m.d.sync += skid_valid.eq(1)
        with m.Elif(o.ready):
            m.d.sync += skid_valid.eq(0)
        m.d.comb += o.valid.eq(skid_valid | valid)
        with m.If(skid_valid):  # (If/Else: no huge Mux expression in the simulator)
            m.d.comb += o.payload.eq(skid)
        with m.Else():
            m.d.comb += o.payload.eq(payload)
