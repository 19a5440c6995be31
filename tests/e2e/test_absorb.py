"""The netlist pass that moves flip-flops into ECP5 DSP and block-RAM registers
(lstmfpga.synth.absorb), on small hand-built Yosys JSON netlists, and the pin wrapper that
feeds wide on-chip inputs from shift registers (lstmfpga.synth.pins)."""

import copy
import json

import pytest

from lstmfpga.errors import SynthesisError
from lstmfpga.hw.pipeline import FABRIC_ATTR
from lstmfpga.synth.absorb import absorb_file, absorb_registers, plain_ff
from lstmfpga.synth.pins import SERIAL_ABOVE, pin_wrapper, serial_inputs, serial_notes

CLK, EN, RST = 2, 3, 4


def _ff(d, q, *, ce=None, cemux="CE", lsr="0", clkmux="CLK"):
    connections = {"CLK": [CLK], "DI": [d], "Q": [q], "LSR": [lsr]}
    if ce is not None:
        connections["CE"] = [ce]
    return {
        "type": "TRELLIS_FF",
        "parameters": {"CEMUX": cemux if ce is not None else "1 ", "CLKMUX": clkmux,
                       "LSRMUX": "LSR", "REGSET": "RESET", "GSR": "DISABLED"},
        "port_directions": {"CLK": "input", "DI": "input", "Q": "output", "LSR": "input",
                            "CE": "input"},
        "connections": connections,
    }  # fmt: skip


def _mult(a_bits, b_bits, p_bits):
    """A MULT18X18D as Yosys maps ``$mul``: no registers, no clock; operands sign-extended."""
    connections, directions = {}, {}
    for operand, bits in (("A", a_bits), ("B", b_bits)):
        for i in range(18):
            connections[f"{operand}{i}"] = [bits[min(i, len(bits) - 1)]]
            directions[f"{operand}{i}"] = "input"
    for i in range(36):
        connections[f"P{i}"] = [p_bits[i] if i < len(p_bits) else 1000 + i]
        directions[f"P{i}"] = "output"
    for port, value in (("SIGNEDA", "1"), ("SIGNEDB", "1")):
        connections[port], directions[port] = [value], "input"
    return {"type": "MULT18X18D", "parameters": {}, "port_directions": directions,
            "connections": connections}  # fmt: skip


def _netlist(cells, outputs):
    ports = {
        "clk": {"direction": "input", "bits": [CLK]},
        "en": {"direction": "input", "bits": [EN]},
        "rst": {"direction": "input", "bits": [RST]},
        "d": {"direction": "input", "bits": list(range(10, 18))},
        "y": {"direction": "output", "bits": outputs},
    }
    return {"modules": {"top": {"ports": ports, "cells": cells, "netnames": {}}}}


def _registered_multiplier(*, b_lsr="0", p_loads=1):
    """d[0:4] -> FFs (a) ; d[4:8] -> FFs (b) ; a * b -> MULT -> 8 product FFs -> y."""
    cells = {}
    for i in range(4):
        cells[f"a{i}"] = _ff(10 + i, 20 + i, ce=EN)
        cells[f"b{i}"] = _ff(14 + i, 30 + i, ce=EN, lsr=b_lsr)
    cells["mul"] = _mult([20, 21, 22, 23], [30, 31, 32, 33], list(range(40, 48)))
    for i in range(8):
        cells[f"p{i}"] = _ff(40 + i, 50 + i, ce=EN)
    outputs = list(range(50, 58))
    if p_loads == 2:  # a product bit also read by logic, not only by its register
        outputs.append(40)
    return _netlist(cells, outputs)


def test_plain_flip_flops_become_the_dsps_input_and_output_registers():
    netlist = _registered_multiplier()
    counts = absorb_registers(netlist, "top")
    assert counts == {"bram_outputs": 0, "mult_inputs": 2, "mult_outputs": 1, "flip_flops": 16,
                      "luts": 0}  # fmt: skip
    cells = netlist["modules"]["top"]["cells"]
    assert sorted(cells) == ["mul"]  # every flip-flop moved into the DSP
    mul = cells["mul"]
    assert {k: mul["parameters"][k] for k in ("REG_INPUTA_CLK", "REG_INPUTB_CLK",
            "REG_OUTPUT_CLK", "REG_INPUTA_CE", "REG_OUTPUT_CE")} == {
        "REG_INPUTA_CLK": "CLK0", "REG_INPUTB_CLK": "CLK0", "REG_OUTPUT_CLK": "CLK0",
        "REG_INPUTA_CE": "CE0", "REG_OUTPUT_CE": "CE0"}  # fmt: skip
    c = mul["connections"]
    assert (c["CLK0"], c["CE0"], c["RST0"]) == ([CLK], [EN], ["0"])
    # the operands now read the flip-flops' D nets (the sign extension included) ...
    assert [c[f"A{i}"][0] for i in range(18)] == [10, 11, 12] + [13] * 15
    assert [c[f"B{i}"][0] for i in range(18)] == [14, 15, 16] + [17] * 15
    # ... and the product pins drive the registers' Q nets
    assert [c[f"P{i}"][0] for i in range(8)] == list(range(50, 58))


def test_an_asynchronous_reset_on_one_operand_keeps_both_operands_in_the_fabric():
    # nextpnr times a DSP with one registered operand as if neither were: both or none
    netlist = _registered_multiplier(b_lsr=RST)
    for i in range(4):
        netlist["modules"]["top"]["cells"][f"b{i}"]["parameters"]["SRMODE"] = "ASYNC"
    counts = absorb_registers(netlist, "top")
    assert (counts["mult_inputs"], counts["mult_outputs"], counts["flip_flops"]) == (0, 1, 8)
    cells = netlist["modules"]["top"]["cells"]
    assert all(f"{x}{i}" in cells for x in "ab" for i in range(4))
    assert "REG_INPUTA_CLK" not in cells["mul"]["parameters"]
    assert cells["mul"]["parameters"]["REG_OUTPUT_CLK"] == "CLK0"


def test_a_synchronous_reset_moves_with_its_register_as_data_and_enable_logic():
    # Q' = rst ? 0 : (en ? D : Q) is the DSP register Q' = (en | rst) ? (D & ~rst) : Q
    netlist = _registered_multiplier(b_lsr=RST)
    counts = absorb_registers(netlist, "top")
    assert (counts["mult_inputs"], counts["mult_outputs"], counts["flip_flops"]) == (2, 1, 16)
    assert counts["luts"] == 4 + 1  # D & ~rst for each of the four b bits, en | rst once
    cells = netlist["modules"]["top"]["cells"]
    mul = cells["mul"]
    luts = {c["connections"]["Z"][0]: c for c in cells.values() if c["type"] == "LUT4"}
    b_pins = [mul["connections"][f"B{i}"][0] for i in range(4)]
    for i, bit in enumerate(b_pins):
        gate = luts[bit]  # Z = A & ~B (INIT bit i at index B*2 + A)
        assert gate["parameters"]["INIT"] == "0010001000100010"
        assert (gate["connections"]["A"], gate["connections"]["B"]) == ([14 + i], [RST])
    assert mul["parameters"]["REG_INPUTA_CE"] == "CE0" and mul["connections"]["CE0"] == [EN]
    assert mul["parameters"]["REG_INPUTB_CE"] == "CE1"
    either = luts[mul["connections"]["CE1"][0]]  # Z = A | B
    assert either["parameters"]["INIT"] == "1110111011101110"
    assert (either["connections"]["A"], either["connections"]["B"]) == ([EN], [RST])


def test_a_product_bit_with_another_load_keeps_the_output_register_in_the_fabric():
    netlist = _registered_multiplier(p_loads=2)
    counts = absorb_registers(netlist, "top")
    assert (counts["mult_inputs"], counts["mult_outputs"]) == (2, 0)
    cells = netlist["modules"]["top"]["cells"]
    assert all(f"p{i}" in cells for i in range(8))


def test_block_ram_output_register_with_an_active_low_enable():
    directions = {f"DOA{i}": "output" for i in range(18)}
    directions |= {p: "input" for p in ("CLKA", "CEA", "OCEA", "RSTA", "ADA0")}
    connections = {f"DOA{i}": [60 + i] for i in range(18)}
    connections |= {"CLKA": [CLK], "CEA": ["1"], "OCEA": ["1"], "RSTA": ["0"], "ADA0": [10]}
    bram = {"type": "DP16KD", "port_directions": directions, "connections": connections,
            "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG"}}  # fmt: skip
    cells = {"ram": bram}
    for i in range(4):  # four data bits used, each into one register with CE active low
        cells[f"r{i}"] = _ff(60 + i, 80 + i, ce=EN, cemux="INV")
    netlist = _netlist(cells, [80, 81, 82, 83])
    counts = absorb_registers(netlist, "top")
    assert counts == {"bram_outputs": 1, "mult_inputs": 0, "mult_outputs": 0, "flip_flops": 4,
                      "luts": 1}  # fmt: skip
    cells = netlist["modules"]["top"]["cells"]
    ram = cells["ram"]
    assert ram["parameters"]["REGMODE_A"] == "OUTREG"
    assert [ram["connections"][f"DOA{i}"][0] for i in range(4)] == [80, 81, 82, 83]
    (inverter,) = [c for c in cells.values() if c["type"] == "LUT4"]
    assert inverter["parameters"]["INIT"] == "0101010101010101"  # Z = ~A
    assert inverter["connections"]["A"] == [EN]
    assert ram["connections"]["OCEA"] == inverter["connections"]["Z"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"CLKMUX": "INV"}, "falling edge"),
        ({"CEMUX": "0"}, "never enabled"),
    ],
)
def test_only_plain_flip_flops_move(change, why):
    ff = _ff(10, 20, ce=EN)
    assert plain_ff(ff) == (CLK, EN)
    odd = copy.deepcopy(ff)
    odd["parameters"].update(change)
    assert plain_ff(odd) is None, why
    assert plain_ff(_ff(10, 20, ce=EN, lsr=RST)) is None  # a set/reset
    assert plain_ff(_ff(10, 20)) == (CLK, "1")  # no enable


def test_the_file_form_rewrites_the_netlist_and_refuses_a_missing_module(tmp_path):
    path = tmp_path / "top.json"
    path.write_text(json.dumps(_registered_multiplier()))
    assert absorb_file(path, "top")["flip_flops"] == 16
    assert sorted(json.loads(path.read_text())["modules"]["top"]["cells"]) == ["mul"]
    with pytest.raises(SynthesisError, match=r"^netlist has no module 'other'$"):
        absorb_file(path, "other")
    with pytest.raises(SynthesisError, match=r"no netlist from yosys"):
        absorb_file(tmp_path / "missing.json", "top")


def test_a_register_marked_fabric_stays_a_flip_flop():
    # register(..., fabric=True) puts FABRIC_ATTR on its net: e.g. a lookup's output register,
    # which as the next multiplier's input register would put two DSP ends on one path
    netlist = _registered_multiplier()
    netlist["modules"]["top"]["netnames"]["b"] = {
        "bits": [30, 31, 32, 33], "attributes": {FABRIC_ATTR: "00000000000000000000000000000001"}
    }  # fmt: skip
    counts = absorb_registers(netlist, "top")
    assert (counts["mult_inputs"], counts["mult_outputs"], counts["flip_flops"]) == (0, 1, 8)


def test_the_fabric_attribute_reaches_the_verilog():
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal

    from lstmfpga.hw.pipeline import register

    m, advance, value = Module(), Signal(), Signal(8)
    kept = register(m, advance, value, name="kept", fabric=True)
    moved = register(m, advance, value, name="moved")
    text = verilog.convert(m, ports=[advance, value, kept, moved])
    assert f"(* {FABRIC_ATTR} = 32'd1 *)" in text
    assert text.count(FABRIC_ATTR) == 1


# -- the pin wrapper (lstmfpga.synth.pins) ---------------------------------------------------------
def _ports(*entries):
    return {"ports": [{"name": n, "direction": d, "width": w} for n, d, w in entries]}


def test_only_inputs_wider_than_the_limit_are_fed_on_chip(tmp_path):
    manifest = _ports(("clk", "input", 1), ("w", "input", SERIAL_ABOVE + 1),
                      ("x", "input", SERIAL_ABOVE), ("y", "output", 200))  # fmt: skip
    assert serial_inputs(manifest) == ["w"]
    assert pin_wrapper(tmp_path, "top", manifest) == "top_pins"
    text = (tmp_path / "top_pins.v").read_text()
    assert "input w_serial" in text and f"input [{SERIAL_ABOVE - 1}:0] x" in text
    assert f"w_shift <= {{w_shift[{SERIAL_ABOVE - 1}:0], w_serial}};" in text
    assert ".w(w_shift)" in text and ".y(y)" in text and "top core(" in text
    # nothing wide: no wrapper, nothing written
    assert pin_wrapper(tmp_path / "none", "top", _ports(("clk", "input", 1))) is None


@pytest.mark.parametrize(
    ("port", "message"),
    [
        (
            {"name": "w; assign", "direction": "input", "width": 99},
            "port name must be an identifier",
        ),
        ({"name": "w", "direction": "inout", "width": 99}, "direction must be input or output"),
        ({"name": "w", "direction": "input", "width": True}, "width must be an integer in 1.."),
        ({"name": "w", "direction": "input", "width": 1 << 30}, "width must be an integer in 1.."),
    ],
)
def test_manifest_ports_are_checked_before_they_reach_verilog(tmp_path, port, message):
    manifest = {"ports": [{"name": "clk", "direction": "input", "width": 1}, port]}
    with pytest.raises(SynthesisError, match=message):
        pin_wrapper(tmp_path, "top", manifest, "m.json")


def test_a_wide_input_without_a_clock_is_refused(tmp_path):
    with pytest.raises(SynthesisError, match=r"needs a 1-bit input clk$"):
        pin_wrapper(tmp_path, "top", _ports(("w", "input", 100)), "m.json")


def test_report_notes_name_each_input_fed_on_chip():
    assert serial_notes({"serial_inputs": ["w__payload"]}) == [
        "w__payload fed through a 1-bit shift register (on-chip port, not pins)"
    ]
    assert serial_notes({"serial_inputs": []}) == [] == serial_notes({})
