"""One module of Yosys' JSON netlist after ``synth_ecp5``, as a graph the register pass of
:mod:`lstmfpga.synth.absorb` edits: the drivers and loads of every net bit, which cells are
*plain* flip-flops (:func:`plain_ff`, :func:`sync_reset_ff`), and the small edits a pass
needs (connect, drive, remove a cell, add a ``LUT4``), with the nets the RTL marks
:data:`lstmfpga.hw.pipeline.FABRIC_ATTR` kept in the fabric."""

from __future__ import annotations

from collections import defaultdict

from lstmfpga.hw.pipeline import FABRIC_ATTR

__all__ = ["CONST", "FF", "Netlist", "bit_of", "param", "plain_ff", "sync_reset_ff"]

FF = "TRELLIS_FF"
CONST = ("0", "1", "x", "z")  # constant net bits in Yosys JSON


def param(cell: dict, name: str, default: str = "") -> str:
    value = cell.get("parameters", {}).get(name, default)
    return value.strip() if isinstance(value, str) else str(value)


def bit_of(cell: dict, port: str):
    bits = cell["connections"].get(port)
    return bits[0] if bits else None


def plain_ff(cell: dict) -> tuple | None:
    """``(clock, enable)`` of a plain flip-flop (see the module docstring), else None.
    ``enable`` is the string ``"1"`` when it has none, ``("INV", bit)`` for an enable that is
    active low."""
    if cell.get("type") != FF or param(cell, "CLKMUX", "CLK") != "CLK":
        return None
    if bit_of(cell, "LSR") not in (None, "0") and param(cell, "LSRMUX", "LSR") != "0":
        return None
    cemux = param(cell, "CEMUX", "1")
    if cemux == "1":
        enable = "1"
    elif cemux in ("CE", "INV"):
        enable = bit_of(cell, "CE")
        if not isinstance(enable, int):
            return None
        if cemux == "INV":
            enable = ("INV", enable)
    else:
        return None
    clock, d, q = bit_of(cell, "CLK"), bit_of(cell, "DI"), bit_of(cell, "Q")
    if not isinstance(clock, int) or d is None or not isinstance(q, int):
        return None
    return clock, enable


def _not_a(a, b):
    return 1 - a


def _a_or_b(a, b):
    return a | b


def _not_a_or_b(a, b):
    return (1 - a) | b


def _a_and_not_b(a, b):
    return a & (1 - b)


def sync_reset_ff(cell: dict) -> tuple | None:
    """``(clock, enable, reset, set)`` of a flip-flop that is plain but for a synchronous
    reset (``SRMODE = LSR_OVER_CE``: it acts whatever the enable; ``set`` when it sets to 1),
    else None. As a multiplier's input register it becomes ``D' = D & ~reset`` (``| reset``
    to set) with the enable ``enable | reset``: the same register."""
    if cell.get("type") != FF or param(cell, "CLKMUX", "CLK") != "CLK":
        return None
    if param(cell, "SRMODE", "LSR_OVER_CE") != "LSR_OVER_CE":
        return None
    if param(cell, "LSRMUX", "LSR") != "LSR" or not isinstance(bit_of(cell, "LSR"), int):
        return None
    plain = plain_ff({**cell, "connections": {**cell["connections"], "LSR": ["0"]}})
    if plain is None:
        return None
    return (*plain, bit_of(cell, "LSR"), param(cell, "REGSET", "RESET") == "SET")


class Netlist:
    """Drivers and loads of one module's nets (bit numbers)."""

    def __init__(self, module: dict):
        self.cells = module["cells"]
        self.fabric = {
            bit
            for net in module.get("netnames", {}).values()
            if FABRIC_ATTR in net.get("attributes", {})
            for bit in net["bits"]
            if isinstance(bit, int)
        }
        self.driver: dict[int, tuple[str, str]] = {}
        self.loads: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for name, cell in self.cells.items():
            directions = cell.get("port_directions", {})
            for port, bits in cell["connections"].items():
                for bit in bits:
                    if isinstance(bit, int):
                        if directions.get(port) == "output":
                            self.driver[bit] = (name, port)
                        else:
                            self.loads[bit].append((name, port))
        for pname, port in module.get("ports", {}).items():
            for bit in port["bits"]:
                if isinstance(bit, int):
                    if port["direction"] == "input":
                        self.driver[bit] = ("", pname)
                    else:
                        self.loads[bit].append(("", pname))

        self._next_bit = 1 + max(
            (b for c in self.cells.values() for bits in c["connections"].values()
             for b in bits if isinstance(b, int)),
            default=1,
        )  # fmt: skip
        self._luts: dict[tuple, int] = {}

    def lut(self, function, inputs: tuple) -> int:
        """The output net of a ``LUT4`` computing ``function(a, b)`` of up to two input nets
        (one per distinct function and inputs)."""
        key = (function.__name__, inputs)
        if key not in self._luts:
            out = self._next_bit
            self._next_bit += 1
            name = f"$absorb$lut{out}"
            pins = dict(zip("AB", inputs, strict=False))
            init = "".join(str(int(function(i & 1, (i >> 1) & 1)) & 1) for i in reversed(range(16)))
            self.cells[name] = {
                "hide_name": 1,
                "type": "LUT4",
                "parameters": {"INIT": init},
                "attributes": {},
                "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input",
                                    "Z": "output"},
                "connections": {p: [pins.get(p, "0")] for p in "ABCD"} | {"Z": [out]},
            }  # fmt: skip
            for port, bit in pins.items():
                self.loads[bit].append((name, port))
            self.driver[out] = (name, "Z")
            self._luts[key] = out
        return self._luts[key]

    @property
    def luts_added(self) -> int:
        return len(self._luts)

    def enablebit_of(self, enable):
        """The net of an enable key: ``"1"`` or a net itself; ``("INV", bit)`` through a
        ``LUT4`` inverter; ``("SR", enable, reset)`` (a synchronous reset that acts whatever
        the enable) the OR of the enable and the reset."""
        if not isinstance(enable, tuple):
            return enable
        if enable[0] == "INV":
            return self.lut(_not_a, (enable[1],))
        _, inner, reset = enable
        if inner == "1":
            return "1"
        if isinstance(inner, tuple):  # active-low enable
            return self.lut(_not_a_or_b, (inner[1], reset))
        return self.lut(_a_or_b, (inner, reset))

    def connect(self, cell_name: str, port: str, bit) -> None:
        cell = self.cells[cell_name]
        old = cell["connections"][port][0]
        if isinstance(old, int):
            self.loads[old].remove((cell_name, port))
        cell["connections"][port] = [bit]
        if isinstance(bit, int):
            self.loads[bit].append((cell_name, port))

    def drive(self, cell_name: str, port: str, bit: int) -> None:
        """Make output ``port`` of ``cell_name`` drive ``bit`` (its old net is left undriven)."""
        cell = self.cells[cell_name]
        old = cell["connections"][port][0]
        if isinstance(old, int) and self.driver.get(old) == (cell_name, port):
            del self.driver[old]
        cell["connections"][port] = [bit]
        self.driver[bit] = (cell_name, port)

    def remove(self, cell_name: str) -> None:
        cell = self.cells.pop(cell_name)
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if directions.get(port) == "output":
                    if self.driver.get(bit) == (cell_name, port):
                        del self.driver[bit]
                elif (cell_name, port) in self.loads[bit]:
                    self.loads[bit].remove((cell_name, port))

    def ff_driving(self, bit, sync_reset: bool = False) -> tuple | None:
        """``(name, clock, enable)`` of the plain flip-flop whose ``Q`` is ``bit``; with
        ``sync_reset`` also a flip-flop with a synchronous reset (:func:`sync_reset_ff`),
        then ``enable`` is ``("SR", enable, reset)``."""
        if not isinstance(bit, int) or bit not in self.driver:
            return None
        name, port = self.driver[bit]
        if not name or port != "Q" or bit in self.fabric:
            return None
        info = plain_ff(self.cells[name])
        if info is not None:
            return (name, *info)
        info = sync_reset_ff(self.cells[name]) if sync_reset else None
        if info is None or info[3]:  # (a set-to-1 register: not seen, not handled)
            return None
        clock, enable, reset, _ = info
        return name, clock, ("SR", enable, reset)

    def operand_data(self, ff: str, enable) -> int | str:
        """The net a multiplier's input register reads for flip-flop ``ff``: its ``D``, or
        for a flip-flop with a synchronous reset ``D & ~reset``."""
        d = self.cells[ff]["connections"]["DI"][0]
        if isinstance(enable, tuple) and enable[0] == "SR":
            return self.lut(_a_and_not_b, (d, enable[2]))
        return d

    def sole_ff_load(self, bit) -> tuple | None:
        """``(name, clock, enable)`` of the plain flip-flop whose ``D`` is ``bit``'s only load."""
        loads = self.loads.get(bit, []) if isinstance(bit, int) else []
        if len(loads) != 1 or loads[0][1] != "DI" or not loads[0][0]:
            return None
        if self.cells[loads[0][0]]["connections"]["Q"][0] in self.fabric:
            return None
        info = plain_ff(self.cells[loads[0][0]])
        return None if info is None else (loads[0][0], *info)
