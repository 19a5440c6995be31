"""The FPGA parts synthesis knows, their capacity, and how a netlist's cells count against it.

Resources (``luts``, ``ffs``, ``dsps``, ``brams``, ``ios``) count the technology cells Yosys
mapped to, in the units of the device tables in :data:`DEVICES`:

* ECP5: LUT4s as nextpnr counts them (``LUT4 + 2 * CCU2C + 6 * TRELLIS_DPR16X4``),
  ``TRELLIS_FF``, ``MULT18X18D``, ``DP16KD`` (+ ``PDPW16KD``);
* iCE40: ``SB_LUT4``, ``SB_DFF*``, ``SB_MAC16``, ``SB_RAM40_4K``;
* Xilinx 7-series: ``LUT1..LUT6`` plus LUTs used as memory (``RAM32M``/``RAM64M``: 4,
  ``RAM32X1D``/``RAM64X1D``: 2, ``RAM128X1D``: 4, ``SRL16E``/``SRLC32E``: 1), ``FD*``,
  ``DSP48E1``, block RAM in RAMB18 units (``RAMB18E1`` + 2 * ``RAMB36E1``).

``ios`` is the top module's port bits: every port becomes a pin in this flow.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstmfpga.errors import SynthesisError

__all__ = [
    "AUTO_ORDER",
    "BRAM_BITS",
    "DEVICES",
    "RESOURCES",
    "TARGETS",
    "Device",
    "check_ram_fits",
    "count_resources",
    "find_device",
    "largest_ram",
    "misfit",
]

TARGETS = ("ecp5", "ice40", "xilinx")
RESOURCES = ("luts", "ffs", "dsps", "brams", "ios")
#: Data bits of one block RAM, in the units of :attr:`Device.brams`: ECP5 DP16KD and Xilinx
#: RAMB18E1 hold 18 Kbit, iCE40 SB_RAM40_4K 4 Kbit.
BRAM_BITS = {"ecp5": 18432, "ice40": 4096, "xilinx": 18432}


@dataclass(frozen=True)
class Device:
    """One part: its name (as ``device=`` takes it), package and capacity."""

    target: str
    name: str
    package: str
    luts: int
    ffs: int
    dsps: int
    brams: int
    ios: int

    def capacity(self) -> dict[str, int]:
        return {r: getattr(self, r) for r in RESOURCES}

    @property
    def ram_bits(self) -> int:
        """Block RAM data bits (``brams`` times :data:`BRAM_BITS` of the family)."""
        return self.brams * BRAM_BITS[self.target]


def _devices(*devices: Device) -> dict[str, Device]:
    return {d.name: d for d in devices}


#: Known parts per target. ECP5 (LFE5U, CABGA381) and iCE40 figures are what nextpnr reports
#: as available; Xilinx Artix-7 figures are the data sheet's (block RAM in RAMB18 units).
DEVICES: dict[str, dict[str, Device]] = {
    "ecp5": _devices(
        Device("ecp5", "25k", "CABGA381", 24288, 24288, 28, 56, 197),
        Device("ecp5", "45k", "CABGA381", 43848, 43848, 72, 108, 203),
        Device("ecp5", "85k", "CABGA381", 83640, 83640, 156, 208, 205),
    ),
    "ice40": _devices(
        Device("ice40", "hx1k", "tq144", 1280, 1280, 0, 16, 95),
        Device("ice40", "up5k", "sg48", 5280, 5280, 8, 30, 39),
        Device("ice40", "hx8k", "ct256", 7680, 7680, 0, 32, 206),
    ),
    "xilinx": _devices(
        Device("xilinx", "xc7a35t", "csg324", 20800, 41600, 90, 100, 210),
        Device("xilinx", "xc7a50t", "csg324", 32600, 65200, 120, 150, 210),
        Device("xilinx", "xc7a100t", "csg324", 63400, 126800, 240, 270, 210),
        Device("xilinx", "xc7a200t", "fbg676", 133800, 267600, 740, 730, 400),
    ),
}

#: Devices tried, in order, when none is named.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "ecp5": ("25k", "45k", "85k"),
    "ice40": ("up5k", "hx8k"),
    "xilinx": ("xc7a35t", "xc7a50t", "xc7a100t", "xc7a200t"),
}


# -- resources -----------------------------------------------------------------------------------
def count_resources(target: str, cells: dict[str, int], port_bits: int = 0) -> dict[str, int]:
    """``{luts, ffs, dsps, brams, ios}`` from Yosys' cells-by-type of a ``target`` netlist (see
    the module docstring for what counts)."""

    def total(*names: str, prefix: str | None = None) -> int:
        n = sum(cells.get(name, 0) for name in names)
        if prefix is not None:
            n += sum(v for k, v in cells.items() if k.startswith(prefix))
        return n

    if target == "ecp5":
        res = {
            "luts": total("LUT4") + 2 * total("CCU2C") + 6 * total("TRELLIS_DPR16X4"),
            "ffs": total("TRELLIS_FF"),
            "dsps": total("MULT18X18D"),
            "brams": total("DP16KD", "PDPW16KD"),
        }
    elif target == "ice40":
        res = {
            "luts": total("SB_LUT4"),
            "ffs": total(prefix="SB_DFF"),
            "dsps": total("SB_MAC16"),
            "brams": total("SB_RAM40_4K"),
        }
    elif target == "xilinx":
        lutram = (
            4 * total("RAM32M", "RAM64M", "RAM128X1D")
            + 2 * total("RAM32X1D", "RAM64X1D")
            + total("RAM32X1S", "RAM64X1S", "SRL16E", "SRLC32E")
        )
        res = {
            "luts": total(*(f"LUT{n}" for n in range(1, 7))) + lutram,
            "ffs": total("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"),
            "dsps": total("DSP48E1"),
            "brams": total("RAMB18E1") + 2 * total("RAMB36E1"),
        }
    else:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    res["ios"] = port_bits
    return res


def misfit(resources: dict[str, int], device: Device) -> list[str]:
    """What exceeds ``device``'s capacity, e.g. ``["DSPs 10 > 8"]`` (empty when it fits)."""
    labels = {"luts": "LUTs", "ffs": "FFs", "dsps": "DSPs", "brams": "BRAMs", "ios": "IOs"}
    return [
        f"{labels[r]} {resources[r]} > {getattr(device, r)}"
        for r in RESOURCES
        if resources[r] > getattr(device, r)
    ]


def largest_ram() -> Device:
    """The supported device with the most block RAM."""
    return max((d for table in DEVICES.values() for d in table.values()), key=lambda d: d.ram_bits)


def check_ram_fits(ram_bits: int, what: str = "the design") -> None:
    """Refuse ``ram_bits`` of memory that no supported device's block RAM holds."""
    device = largest_ram()
    if ram_bits > device.ram_bits:
        raise SynthesisError(
            f"{what} needs {ram_bits} RAM bits, more than the {device.ram_bits} of the largest "
            f"supported device ({device.target} {device.name}): lower max_seq_len or use a "
            "smaller model"
        )


def find_device(target: str, name: str) -> Device:
    """The part ``name`` of ``target`` (``"85k"``, ``"LFE5U-85k"``, ``"ice40up5k"`` ...)."""
    known = DEVICES[target]
    if not isinstance(name, str):
        raise SynthesisError(f"device must be one of {sorted(known)} for {target}, not {name!r}")
    key = name.lower().removeprefix("lfe5u-").removeprefix("ice40")
    if key not in known:
        raise SynthesisError(f"device must be one of {sorted(known)} for {target}, not {name!r}")
    return known[key]
