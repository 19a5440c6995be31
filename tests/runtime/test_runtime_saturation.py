"""The host reads the SATURATION_* counters by the golden model's role names and clears them
with CONTROL.clear_saturation (over a memory window and over an async transport)."""

import asyncio

from lstmfpga.hw.register_map import REGISTERS, SATURATION_ROLES, field_mask
from lstmfpga.runtime import AsyncRegisters, MemoryTransport, Registers

OFF = {reg.name: reg.offset for reg in REGISTERS}
COUNTS = {"preact": 137, "cell": 1, "hidden": 16, "hn": 0, "head_out": 0xFFFFFFFF}


def window() -> bytearray:
    mem = bytearray(256)
    for role, count in COUNTS.items():
        offset = OFF[f"SATURATION_{role.upper()}"]
        mem[offset : offset + 4] = count.to_bytes(4, "little")
    return mem


def control(mem) -> int:
    return int.from_bytes(mem[OFF["CONTROL"] : OFF["CONTROL"] + 4], "little")


def test_saturation_reads_every_counter_by_role_and_clear_writes_its_control_bit():
    mem = window()
    regs = Registers(MemoryTransport(mem))
    assert tuple(regs.saturation()) == SATURATION_ROLES
    assert regs.saturation() == COUNTS
    regs.clear_saturation()
    assert control(mem) == field_mask("CONTROL", "clear_saturation") == 0b10


class AsyncWindow:
    """An async transport over a memory window (as cocotbext-axi's AxiLiteMaster is used)."""

    def __init__(self, mem):
        self.sync = MemoryTransport(mem)

    async def read32(self, offset):
        await asyncio.sleep(0)
        return self.sync.read32(offset)

    async def write32(self, offset, value):
        await asyncio.sleep(0)
        self.sync.write32(offset, value)


def test_async_registers_read_and_clear_the_same_counters():
    mem = window()
    regs = AsyncRegisters(AsyncWindow(mem))

    async def body():
        counts = await regs.saturation()
        await regs.clear_saturation()
        return counts

    assert asyncio.run(body()) == COUNTS
    assert control(mem) == field_mask("CONTROL", "clear_saturation")
