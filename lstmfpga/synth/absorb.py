"""Registers into ECP5 primitives: a pass over Yosys' JSON netlist after ``synth_ecp5``.

Yosys 0.70 maps a ``$mul`` to a ``MULT18X18D`` with none of its registers and every block-RAM
read to a ``DP16KD`` with ``REGMODE = NOREG``, so a multiplier (3.9 ns) or a block RAM's
clock-to-output (5.6 ns) sits between two fabric flip-flops. An instantiated registered
``MULT18X18D`` is no way out: it makes the WebAssembly ``abc9`` of ``synth_ecp5`` stop without
a message. :func:`absorb_registers` moves the flip-flops the RTL already has next to these
primitives into them, after synthesis, so the netlist keeps the RTL's exact cycle behaviour
(the same registers, each in another place) and the RTL, its simulation and its Verilog do
not change:

* a ``MULT18X18D`` operand (``A`` or ``B``) all of whose non-constant pins are the ``Q``
  outputs of plain flip-flops (:func:`plain_ff`) on one clock and one enable becomes a
  registered input (``REG_INPUTA_CLK``/``REG_INPUTB_CLK``): the pins read the flip-flops'
  ``D`` nets instead, and a flip-flop left without loads is removed;
* a ``MULT18X18D`` all of whose used ``P`` pins each drive exactly one load, the ``D`` of a
  plain flip-flop on the same clock, gets a registered output (``REG_OUTPUT_CLK``): the pins
  drive those flip-flops' ``Q`` nets and the flip-flops are removed;
* a ``DP16KD`` read port (``A`` or ``B``) all of whose used ``DO`` pins each drive exactly
  one load, the ``D`` of a plain flip-flop on the port's clock with one enable, gets its
  output register (``REGMODE_x = OUTREG``, ``OCEx`` = that enable) the same way. With
  ``NOREG`` the port's output is the array read of the address registered at the previous
  edge; ``OUTREG`` registers exactly that value at the next edge when ``OCEx`` is high: the
  flip-flop's behaviour.

Block RAMs go first, so a flip-flop between a block RAM and a multiplier becomes the RAM's
output register (the multiplier's input register then needs a flip-flop of its own in the
RTL). A *plain* flip-flop is a ``TRELLIS_FF`` on the rising clock edge with no set/reset
(``LSR`` tied to 0) and an enable, if any, active high (or active low: the primitive then
reads it through one shared ``LUT4`` inverter): the registers
:func:`lstmfpga.hw.pipeline.register` builds. A multiplier's operand register may also have
a synchronous reset (:func:`sync_reset_ff`; Yosys makes one of a zeroing multiplexer before
a flip-flop): it moves as ``D & ~reset`` with the enable ``enable | reset``. Registers with
an asynchronous reset (or a reset elsewhere) or an inverted clock,
logic between them and the primitive, or a ``Q`` net marked
:data:`lstmfpga.hw.pipeline.FABRIC_ATTR` (``register(..., fabric=True)``) stay in the fabric.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from lstmfpga.errors import SynthesisError
from lstmfpga.export import files
from lstmfpga.hw.pipeline import FABRIC_ATTR

__all__ = ["MAX_NETLIST_BYTES", "absorb_file", "absorb_registers", "plain_ff"]

#: Largest Yosys JSON netlist the pass reads (bytes).
MAX_NETLIST_BYTES = 1 << 30
_MULT, _BRAM, _FF = "MULT18X18D", "DP16KD", "TRELLIS_FF"
_CONST = ("0", "1", "x", "z")


def _param(cell: dict, name: str, default: str = "") -> str:
    value = cell.get("parameters", {}).get(name, default)
    return value.strip() if isinstance(value, str) else str(value)


def _bit(cell: dict, port: str):
    bits = cell["connections"].get(port)
    return bits[0] if bits else None


def plain_ff(cell: dict) -> tuple | None:
    """``(clock, enable)`` of a plain flip-flop (see the module docstring), else None.
    ``enable`` is the string ``"1"`` when it has none, ``("INV", bit)`` for an enable that is
    active low."""
    if cell.get("type") != _FF or _param(cell, "CLKMUX", "CLK") != "CLK":
        return None
    if _bit(cell, "LSR") not in (None, "0") and _param(cell, "LSRMUX", "LSR") != "0":
        return None
    cemux = _param(cell, "CEMUX", "1")
    if cemux == "1":
        enable = "1"
    elif cemux in ("CE", "INV"):
        enable = _bit(cell, "CE")
        if not isinstance(enable, int):
            return None
        if cemux == "INV":
            enable = ("INV", enable)
    else:
        return None
    clock, d, q = _bit(cell, "CLK"), _bit(cell, "DI"), _bit(cell, "Q")
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
    if cell.get("type") != _FF or _param(cell, "CLKMUX", "CLK") != "CLK":
        return None
    if _param(cell, "SRMODE", "LSR_OVER_CE") != "LSR_OVER_CE":
        return None
    if _param(cell, "LSRMUX", "LSR") != "LSR" or not isinstance(_bit(cell, "LSR"), int):
        return None
    plain = plain_ff({**cell, "connections": {**cell["connections"], "LSR": ["0"]}})
    if plain is None:
        return None
    return (*plain, _bit(cell, "LSR"), _param(cell, "REGSET", "RESET") == "SET")


class _Netlist:
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

    def enable_bit(self, enable):
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


def _set_port(cell: dict, port: str, direction: str, bit) -> None:
    cell["connections"][port] = [bit]
    cell.setdefault("port_directions", {})[port] = direction


def _output_ffs(net: _Netlist, cell: dict, pins: list[str]) -> dict | None:
    """``{pin: (ff, clock, enable)}`` when every used pin feeds exactly one plain flip-flop
    on one clock and one enable (and at least one pin is used), else None."""
    found = {}
    for pin in pins:
        bit = cell["connections"].get(pin, [None])[0]
        if not isinstance(bit, int) or not net.loads.get(bit):
            continue
        ff = net.sole_ff_load(bit)
        if ff is None:
            return None
        found[pin] = ff
    if not found or len({(c, e) for _, c, e in found.values()}) != 1:
        return None
    return found


def _move_outputs(net: _Netlist, cell_name: str, found: dict) -> None:
    for pin, (ff, _, _) in found.items():
        q = net.cells[ff]["connections"]["Q"][0]
        net.remove(ff)
        net.drive(cell_name, pin, q)


def _absorb_bram(net: _Netlist, name: str, cell: dict) -> int:
    moved = 0
    for side in ("A", "B"):
        if _param(cell, f"REGMODE_{side}", "NOREG") != "NOREG":
            continue
        if _bit(cell, f"RST{side}") not in (None, "0"):
            continue
        if _param(cell, f"CLK{side}MUX", f"CLK{side}") != f"CLK{side}":
            continue
        if _param(cell, f"OCE{side}MUX", f"OCE{side}") != f"OCE{side}":
            continue
        clock = _bit(cell, f"CLK{side}")
        found = _output_ffs(net, cell, [f"DO{side}{i}" for i in range(18)])
        if found is None or next(iter(found.values()))[1] != clock:
            continue
        enable = next(iter(found.values()))[2]
        _move_outputs(net, name, found)
        cell["parameters"][f"REGMODE_{side}"] = "OUTREG"
        net.connect(name, f"OCE{side}", net.enable_bit(enable))
        moved += len(found)
    return moved


class _Controls:
    """The clock and the up to four enables of one MULT18X18D's registers."""

    def __init__(self, net: _Netlist, name: str):
        self.net, self.name, self.clock, self.enables = net, name, None, []

    def slot(self, clock, enable) -> str | None:
        if self.clock is not None and clock != self.clock:
            return None
        if enable not in self.enables:
            if len(self.enables) == 4:
                return None
            self.enables.append(enable)
        self.clock = clock
        return f"CE{self.enables.index(enable)}"

    def finish(self) -> None:
        """Connect ``CLK0``, ``RST0`` (tied low) and the enables used."""
        if self.clock is None:
            return
        cell = self.net.cells[self.name]
        wiring = [("CLK0", self.clock), ("RST0", "0")]
        wiring += [(f"CE{i}", enable) for i, enable in enumerate(self.enables)]
        for port, bit in wiring:
            if port not in cell["connections"]:
                _set_port(cell, port, "input", "0")
            cell["port_directions"][port] = "input"
            self.net.connect(self.name, port, self.net.enable_bit(bit))


def _operand_ffs(net: _Netlist, cell: dict, operand: str) -> dict | None:
    """``{pin: (ff, clock, enable)}`` of an operand whose non-constant pins are all plain
    flip-flops (or flip-flops with one synchronous reset, :func:`sync_reset_ff`) on one
    clock and one enable, else None."""
    ffs = {}
    for pin in (f"{operand}{i}" for i in range(18)):
        bit = cell["connections"].get(pin, ["0"])[0]
        if bit in _CONST:
            continue
        ff = net.ff_driving(bit, sync_reset=True)
        if ff is None:
            return None
        ffs[pin] = ff
    return ffs if len({(c, e) for _, c, e in ffs.values()}) <= 1 else None


def _absorb_mult(net: _Netlist, name: str, cell: dict) -> int:
    # nextpnr times a MULT18X18D with one registered operand as if neither were: both or none
    controls, moved = _Controls(net, name), 0
    params = cell.setdefault("parameters", {})
    unregistered = all(_param(cell, f"REG_INPUT{x}_CLK", "NONE") == "NONE" for x in "AB")
    operands = {x: _operand_ffs(net, cell, x) for x in "AB"} if unregistered else {}
    if operands and all(ffs is not None for ffs in operands.values()):
        slots = {}
        for operand, ffs in operands.items():
            # (an all-constant operand takes the other operand's clock and enable)
            source = ffs or operands["B" if operand == "A" else "A"]
            if source:
                _, clock, enable = next(iter(source.values()))
                slots[operand] = controls.slot(clock, enable)
        if len(slots) == 2 and None not in slots.values():
            for operand, ffs in operands.items():
                for pin, (ff, _, enable) in ffs.items():
                    net.connect(name, pin, net.operand_data(ff, enable))
                for ff in {ff for ff, _, _ in ffs.values()}:
                    if not net.loads.get(net.cells[ff]["connections"]["Q"][0]):
                        net.remove(ff)
                params[f"REG_INPUT{operand}_CLK"] = "CLK0"
                params[f"REG_INPUT{operand}_CE"] = slots[operand]
                params[f"REG_INPUT{operand}_RST"] = "RST0"
                moved += len(ffs)
        else:
            controls = _Controls(net, name)  # nothing taken: forget the slots
    if _param(cell, "REG_OUTPUT_CLK", "NONE") == "NONE":
        found = _output_ffs(net, cell, [f"P{i}" for i in range(36)])
        if found is not None:
            _, clock, enable = next(iter(found.values()))
            slot = controls.slot(clock, enable)
            if slot is not None:
                _move_outputs(net, name, found)
                params["REG_OUTPUT_CLK"] = "CLK0"
                params["REG_OUTPUT_CE"] = slot
                params["REG_OUTPUT_RST"] = "RST0"
                moved += len(found)
    controls.finish()
    return moved


def absorb_registers(netlist: dict, top: str) -> dict:
    """Move plain flip-flops into the registers of ``top``'s ``DP16KD`` and ``MULT18X18D``
    cells (in place); returns counts ``{"bram_outputs", "mult_inputs", "mult_outputs",
    "flip_flops", "luts"}``: read ports and multiplier operands/outputs registered,
    flip-flops removed, and ``LUT4`` cells added (an inverter per active-low enable net a
    primitive's enable now reads; for operand registers with a synchronous reset, the
    data AND NOT reset and the enable OR reset)."""
    module = netlist.get("modules", {}).get(top)
    if not isinstance(module, dict) or "cells" not in module:
        raise SynthesisError(f"netlist has no module {top!r}")
    net = _Netlist(module)
    counts = {"bram_outputs": 0, "mult_inputs": 0, "mult_outputs": 0}
    flip_flops = sum(c["type"] == _FF for c in net.cells.values())
    for name in [n for n, c in net.cells.items() if c["type"] == _BRAM]:
        before = sum(_param(net.cells[name], f"REGMODE_{s}") == "OUTREG" for s in "AB")
        _absorb_bram(net, name, net.cells[name])
        after = sum(_param(net.cells[name], f"REGMODE_{s}") == "OUTREG" for s in "AB")
        counts["bram_outputs"] += after - before
    for name in [n for n, c in net.cells.items() if c["type"] == _MULT]:
        cell = net.cells[name]
        before = [_param(cell, p, "NONE") != "NONE"
                  for p in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK")]  # fmt: skip
        _absorb_mult(net, name, cell)
        after = [_param(cell, p, "NONE") != "NONE"
                 for p in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK")]  # fmt: skip
        counts["mult_inputs"] += sum(after[:2]) - sum(before[:2])
        counts["mult_outputs"] += after[2] - before[2]
    counts["flip_flops"] = flip_flops - sum(c["type"] == _FF for c in net.cells.values())
    counts["luts"] = net.luts_added
    return counts


def absorb_file(path: Path, top: str) -> dict:
    """:func:`absorb_registers` on the Yosys JSON netlist ``path``, rewritten in place."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else -1
    if size < 0:
        raise SynthesisError(f"{path}: no netlist from yosys")
    if size > MAX_NETLIST_BYTES:
        raise SynthesisError(
            f"{path} is {size} bytes, more than the {MAX_NETLIST_BYTES}-byte limit"
        )
    text = path.read_text(errors="replace")
    if files.json_depth(text) > files.MAX_JSON_DEPTH:
        raise SynthesisError(f"{path}: netlist nests deeper than {files.MAX_JSON_DEPTH} levels")
    try:
        netlist = json.loads(text)
    except json.JSONDecodeError as error:
        raise SynthesisError(f"{path}: unreadable netlist: {error}") from None
    counts = absorb_registers(netlist, top)
    with files.atomic_write(path, "w") as stream:
        json.dump(netlist, stream)
    return counts
