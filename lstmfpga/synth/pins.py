"""On-chip ports: a pin wrapper that feeds wide inputs from 1-bit shift registers.

A generated accelerator has ports that a system drives on chip (the weight port ``w``:
``P * S * weight_bits`` bits and more), not from pins: an ECP5-25k has 197 user I/Os. To place
and time such a top alone, :func:`pin_wrapper` writes ``<top>_pins.v``, a module
``<top>_pins`` with the same ports except that every input wider than :data:`SERIAL_ABOVE`
bits (``<name>``) is a 1-bit input ``<name>_serial`` shifted into a ``<name>``-wide register
on ``clk``; the wrapper instantiates ``<top>`` unchanged. The flow synthesizes the wrapper, so
the I/Os counted are the real pins, and every path of the accelerator stays
register-to-register (the shift register is a register).
"""

from __future__ import annotations

from pathlib import Path

from lstmfpga.errors import SynthesisError
from lstmfpga.export import files

from .tools import check_identifier

__all__ = ["SERIAL_ABOVE", "pin_wrapper", "serial_inputs", "serial_notes"]

#: Inputs wider than this many bits are fed through a shift register (not pins).
SERIAL_ABOVE = 64
_MAX_WIDTH = 1 << 20


def _ports(manifest: dict, where: str) -> list[tuple[str, str, int]]:
    ports = manifest.get("ports")
    if ports is None:
        return []
    if not isinstance(ports, list) or len(ports) > 10_000:
        raise SynthesisError(f"{where}: ports must be a list of ports, not {ports!r:.60}")
    checked = []
    for port in ports:
        if not isinstance(port, dict):
            raise SynthesisError(f"{where}: a port must be an object, not {port!r:.60}")
        name = check_identifier(port.get("name"), f"{where}: port name")
        direction, width = port.get("direction"), port.get("width")
        if direction not in ("input", "output"):
            raise SynthesisError(
                f"{where}: port {name} direction must be input or output, not {direction!r:.40}"
            )
        if isinstance(width, bool) or not isinstance(width, int) or not 0 < width <= _MAX_WIDTH:
            raise SynthesisError(
                f"{where}: port {name} width must be an integer in 1..{_MAX_WIDTH}, "
                f"not {width!r:.40}"
            )
        checked.append((name, direction, width))
    return checked


def serial_inputs(manifest: dict, where: str = "manifest") -> list[str]:
    """Names of the manifest's input ports wider than :data:`SERIAL_ABOVE` bits."""
    return [n for n, d, w in _ports(manifest, where) if d == "input" and w > SERIAL_ABOVE]


def pin_wrapper(outdir: Path, top: str, manifest: dict, where: str = "manifest") -> str | None:
    """Write ``outdir/<top>_pins.v`` (see the module docstring) when the manifest lists an
    input wider than :data:`SERIAL_ABOVE` bits; returns the wrapper's module name, or None
    (nothing written) when every port can be a pin."""
    ports = _ports(manifest, where)
    if not any(d == "input" and w > SERIAL_ABOVE for _, d, w in ports):
        return None
    if ("clk", "input", 1) not in ports:
        raise SynthesisError(f"{where}: a top with on-chip inputs needs a 1-bit input clk")
    wrapper = check_identifier(f"{top}_pins", "wrapper")
    declarations, registers, connections = [], [], []
    for name, direction, width in ports:
        vector = f"[{width - 1}:0] " if width > 1 else ""
        if direction == "input" and width > SERIAL_ABOVE:
            declarations.append(f"  input {name}_serial")
            shift = f"{{{name}_shift[{width - 2}:0], {name}_serial}}"
            registers += [
                f"  reg {vector}{name}_shift;",
                f"  always @(posedge clk) {name}_shift <= {shift};",
            ]
            connections.append(f"    .{name}({name}_shift)")
        else:
            declarations.append(f"  {direction} {vector}{name}")
            connections.append(f"    .{name}({name})")
    text = "\n".join(
        [
            f"// {wrapper}: {top} with its inputs wider than {SERIAL_ABOVE} bits fed on chip",
            f"module {wrapper}(",
            ",\n".join(declarations),
            ");",
            *registers,
            f"  {top} core(",
            ",\n".join(connections),
            "  );",
            "endmodule",
            "",
        ]
    )
    path = Path(outdir) / f"{wrapper}.v"
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise SynthesisError(f"{path}: an output file of synth must not be a link or a folder")
    files.write_text(path, text)
    return wrapper


def serial_notes(result: dict) -> list[str]:
    """One line per input of a :func:`~lstmfpga.synth.synthesize` result that was fed on chip,
    for text and HTML reports (empty when none was)."""
    names = result.get("serial_inputs") or []
    return [f"{name} fed through a 1-bit shift register (on-chip port, not pins)" for name in names]
