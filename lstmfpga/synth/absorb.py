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
from pathlib import Path

from lstmfpga.errors import SynthesisError
from lstmfpga.export import files

from .netlist import CONST, FF, Netlist, bit_of, param, plain_ff

__all__ = ["MAX_NETLIST_BYTES", "absorb_file", "absorb_registers", "plain_ff"]

#: Largest Yosys JSON netlist the pass reads (bytes).
MAX_NETLIST_BYTES = 1 << 30
_MULT, _BRAM = "MULT18X18D", "DP16KD"


def _set_port(cell: dict, port: str, direction: str, bit) -> None:
    cell["connections"][port] = [bit]
    cell.setdefault("port_directions", {})[port] = direction


def _output_ffs(net: Netlist, cell: dict, pins: list[str]) -> dict | None:
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


def _move_outputs(net: Netlist, cell_name: str, found: dict) -> None:
    for pin, (ff, _, _) in found.items():
        q = net.cells[ff]["connections"]["Q"][0]
        net.remove(ff)
        net.drive(cell_name, pin, q)


def _absorb_bram(net: Netlist, name: str, cell: dict) -> int:
    moved = 0
    for side in ("A", "B"):
        if param(cell, f"REGMODE_{side}", "NOREG") != "NOREG":
            continue
        if bit_of(cell, f"RST{side}") not in (None, "0"):
            continue
        if param(cell, f"CLK{side}MUX", f"CLK{side}") != f"CLK{side}":
            continue
        if param(cell, f"OCE{side}MUX", f"OCE{side}") != f"OCE{side}":
            continue
        clock = bit_of(cell, f"CLK{side}")
        found = _output_ffs(net, cell, [f"DO{side}{i}" for i in range(18)])
        if found is None or next(iter(found.values()))[1] != clock:
            continue
        enable = next(iter(found.values()))[2]
        _move_outputs(net, name, found)
        cell["parameters"][f"REGMODE_{side}"] = "OUTREG"
        net.connect(name, f"OCE{side}", net.enablebit_of(enable))
        moved += len(found)
    return moved


class _Controls:
    """The clock and the up to four enables of one MULT18X18D's registers."""

    def __init__(self, net: Netlist, name: str):
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
            self.net.connect(self.name, port, self.net.enablebit_of(bit))


def _operand_ffs(net: Netlist, cell: dict, operand: str) -> dict | None:
    """``{pin: (ff, clock, enable)}`` of an operand whose non-constant pins are all plain
    flip-flops (or flip-flops with one synchronous reset, :func:`sync_reset_ff`) on one
    clock and one enable, else None."""
    ffs = {}
    for pin in (f"{operand}{i}" for i in range(18)):
        bit = cell["connections"].get(pin, ["0"])[0]
        if bit in CONST:
            continue
        ff = net.ff_driving(bit, sync_reset=True)
        if ff is None:
            return None
        ffs[pin] = ff
    return ffs if len({(c, e) for _, c, e in ffs.values()}) <= 1 else None


def _absorb_mult(net: Netlist, name: str, cell: dict) -> int:
    # nextpnr times a MULT18X18D with one registered operand as if neither were: both or none
    controls, moved = _Controls(net, name), 0
    params = cell.setdefault("parameters", {})
    unregistered = all(param(cell, f"REG_INPUT{x}_CLK", "NONE") == "NONE" for x in "AB")
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
    if param(cell, "REG_OUTPUT_CLK", "NONE") == "NONE":
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
    net = Netlist(module)
    counts = {"bram_outputs": 0, "mult_inputs": 0, "mult_outputs": 0}
    flip_flops = sum(c["type"] == FF for c in net.cells.values())
    for name in [n for n, c in net.cells.items() if c["type"] == _BRAM]:
        before = sum(param(net.cells[name], f"REGMODE_{s}") == "OUTREG" for s in "AB")
        _absorb_bram(net, name, net.cells[name])
        after = sum(param(net.cells[name], f"REGMODE_{s}") == "OUTREG" for s in "AB")
        counts["bram_outputs"] += after - before
    for name in [n for n, c in net.cells.items() if c["type"] == _MULT]:
        cell = net.cells[name]
        before = [param(cell, p, "NONE") != "NONE"
                  for p in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK")]  # fmt: skip
        _absorb_mult(net, name, cell)
        after = [param(cell, p, "NONE") != "NONE"
                 for p in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK")]  # fmt: skip
        counts["mult_inputs"] += sum(after[:2]) - sum(before[:2])
        counts["mult_outputs"] += after[2] - before[2]
    counts["flip_flops"] = flip_flops - sum(c["type"] == FF for c in net.cells.values())
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
