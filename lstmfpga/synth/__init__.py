"""Open-source synthesis and place-and-route of a generated accelerator.

* :mod:`lstmfpga.synth.devices`: the parts, their capacity, counting a netlist's cells;
* :mod:`lstmfpga.synth.tools`: running Yosys and nextpnr, reading their reports;
* :mod:`lstmfpga.synth.flow`: checking a design folder and :func:`synthesize`;
* :mod:`lstmfpga.synth.report`: ``synth --json``: :func:`merge_report`.

The names used elsewhere are importable from here.
"""

from .devices import (
    AUTO_ORDER,
    DEVICES,
    TARGETS,
    Device,
    check_ram_fits,
    count_resources,
    find_device,
    largest_ram,
    misfit,
)
from .flow import HARDWARE_FORMAT, check_arguments, check_design, synthesize, synthesize_seeds
from .pins import SERIAL_ABOVE, serial_notes
from .report import SYNTHESIS_FORMAT, check_report_target, merge_report
from .tools import check_identifier, parse_fmax, tool_command

__all__ = [
    "AUTO_ORDER",
    "DEVICES",
    "HARDWARE_FORMAT",
    "SERIAL_ABOVE",
    "SYNTHESIS_FORMAT",
    "TARGETS",
    "Device",
    "check_arguments",
    "check_design",
    "check_identifier",
    "check_ram_fits",
    "check_report_target",
    "count_resources",
    "find_device",
    "largest_ram",
    "merge_report",
    "misfit",
    "parse_fmax",
    "serial_notes",
    "synthesize",
    "synthesize_seeds",
    "tool_command",
]
