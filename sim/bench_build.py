"""What a simulator compiles for the Verilog test bench, and with which flags.

:func:`bench_sources` lists the files of a build (the design, the test top of
:func:`lstmfpga.sim.bench_top.wrapper`, Verilator's control files and its main loop
:mod:`lstmfpga.sim.verilator_main`) and the build arguments (:data:`VERILATOR_FLAGS`,
:data:`ICARUS_FLAGS`); :data:`VERILATOR_MAKE_OVERRIDES` are the C++ compile's make variables.
The build cache (:mod:`lstmfpga.sim.cocotb_build`) keys on every text and flag produced here,
so a change to any of them rebuilds the models.
"""

from __future__ import annotations

from pathlib import Path

from .bench_top import COCOTB_READS, PERIOD_NS, TB_TOP, wrapper
from .verilator_main import MAIN_FILE, main_cpp

__all__ = [
    "ICARUS_FLAGS",
    "ICARUS_TRACE",
    "PRECISION_PER_NS",
    "VERILATOR_FLAGS",
    "VERILATOR_MAKE_OVERRIDES",
    "WAIVERS",
    "bench_sources",
]

WAIVERS = Path(__file__).resolve().parent.parent / "hw" / "verilator_waivers.vlt"
#: Simulator time units per ns at the precision of the timescale (``1ns/1ps``).
PRECISION_PER_NS = 1000
#: Every Verilator option, in one place:
#:
#: * the lint waivers (``hw/verilator_waivers.vlt``) as a control file: they cover every
#:   warning Amaranth's Verilog raises, so ``-Wno-fatal`` is not needed (a new warning
#:   fails the build, as it should);
#: * ``--no-public-flat-rw`` (after the runner's ``--public-flat-rw``) with a generated
#:   control file that makes public only the nets the cocotb test reads
#:   (:data:`~lstmfpga.sim.bench_top.COCOTB_READS`): with every signal public Verilator
#:   cannot optimize across them and the model runs ~7x slower (460k vs 3.2M cycles/s on the
#:   benchmark design); making the design's ports public as well cost 2% more;
#: * no ``--timing``: the clock is the test top's input ``clk``, driven by the model's own
#:   main loop (:mod:`lstmfpga.sim.verilator_main`, compiled instead of cocotb's), which runs
#:   the clock edges between cocotb's wake-ups without the VPI (a third less CPU than a
#:   Verilog delay loop under cocotb's main on the benchmark design);
#: * ``-O3 --x-assign fast --x-initial fast --noassert``: Verilator's fast code paths (the
#:   design initializes every register itself).
#:
#: See also :data:`VERILATOR_MAKE_OVERRIDES` (the C++ compile).
VERILATOR_FLAGS = (
    "--no-public-flat-rw",
    "-O3",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
    "--noassert",
)
#: Make variables for the model's Makefile (passed through ``MAKEFLAGS``, which the cocotb
#: runner's fixed ``make`` command inherits). The wheel's ``verilated.mk`` was configured on
#: its build machine with an empty ``CFG_CXXFLAGS_PCH_I``: every object rule then passes the
#: precompiled header as an input file and g++ fails ("Vtop__pch.h.fast: linker input file
#: not found"); ``-include`` is what Verilator's configure sets for g++. Its empty
#: ``CFG_CXXFLAGS_STD`` leaves g++ 12 in C++17 (Verilator's headers use C++20 where they
#: can). ``OPT_FAST``/``OPT_GLOBAL=-O2`` compile the model and Verilator's runtime with -O2
#: instead of -Os (faster simulation; ``-O3`` and ``-march=native`` measured no faster).
VERILATOR_MAKE_OVERRIDES = (
    "CFG_CXXFLAGS_PCH_I=-include",
    "CFG_CXXFLAGS_STD=-std=gnu++20",
    "OPT_FAST=-O2",
    "OPT_GLOBAL=-O2",
)
#: Icarus options. ``-g2005`` (after the runner's ``-g2012``, so it wins): Yosys writes every
#: combinational block as ``always @*`` guarded by a register declared ``= 0``, so that its
#: initialization event at time 0 evaluates all of them; Icarus applies declaration
#: initializers before time 0 (without an event) in SystemVerilog mode, leaving such blocks
#: X until an input changes (the design then hangs). In Verilog-2005 mode the initializer
#: is an event, as Yosys intends. Amaranth's Verilog is plain Verilog-2005.
ICARUS_FLAGS = ("-g2005",)
#: Icarus dumps to ``waves.<format>`` in the run directory.
ICARUS_TRACE = "waves"


def bench_sources(simulator: str, design, waves: str | None):
    """What a build compiles: ``(files, sources, build_args)``; ``files`` maps names in the
    build directory to their text, ``sources`` lists the compiled files in order (the
    waivers file by absolute path). All of it goes into the cache key."""
    files = {f"{design.top}.v": design.verilog, f"{TB_TOP}.v": wrapper(design, simulator, waves)}
    if simulator == "verilator":
        files["public_ports.vlt"] = "`verilator_config\n" + "".join(
            f'public_flat_rd -module "{TB_TOP}" -var "{name}"\n' for name in COCOTB_READS
        )
        files[MAIN_FILE] = main_cpp(PERIOD_NS * PRECISION_PER_NS // 2)
        sources = [str(WAIVERS), "public_ports.vlt", f"{design.top}.v", f"{TB_TOP}.v"]
        build_args = list(VERILATOR_FLAGS)
        if waves == "fst":
            build_args.append("--trace-fst")
    else:
        sources = [f"{design.top}.v", f"{TB_TOP}.v"]
        build_args = list(ICARUS_FLAGS)
        if waves is not None:
            # cocotb's own dump module is SystemVerilog (a ``string``); ours is Verilog-2005.
            files["lstmfpga_dump.v"] = (
                "module lstmfpga_dump;\n"
                f'  initial begin $dumpfile("{ICARUS_TRACE}.{waves}"); '
                f"$dumpvars(0, {TB_TOP}); end\n"
                "endmodule\n"
            )
            sources.append("lstmfpga_dump.v")
            build_args += ["-s", "lstmfpga_dump"]
    return files, sources, build_args
