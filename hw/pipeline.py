"""Building blocks of stall-able pipelines (a global-enable pipeline).

Every stage register of such a pipeline loads only when the pipeline's ``advance`` signal is
high; the memories' read ports use the same signal as their ``en``. A pipeline with a single
output stream therefore stalls as a whole: ``advance = ~o.valid | o.ready`` and
``i.ready = advance``. Nothing is lost or duplicated, and with ``o.ready`` held high it accepts
one beat per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value

__all__ = ["adder_tree", "delay", "register", "valid_chain"]


def register(m: Module, advance: Value, value: Value, *, name: str) -> Signal:
    """A datapath register of ``value``'s shape that loads ``value`` when ``advance`` is high.

    Datapath registers have no reset (the valid bits carry the state); this keeps them free to
    map into DSP and memory output registers.
    """
    value = Value.cast(value)
    reg = Signal(value.shape(), name=name, reset_less=True)
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
