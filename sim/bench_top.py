"""The Verilog test top of the cocotb flow and the simulators' build flags.

Everything that runs per cycle and per beat in an Icarus or Verilator simulation is here, in
Verilog: :func:`wrapper` writes the simulation top :data:`TB_TOP` (the design, its clock, the
stimulus and stall decisions read with ``$readmemh``, the capture of every result and cycle
stamp, the protocol checks and the cycle budget; for a design with a weight port, the weight
beats of :func:`weight_files` streamed in before the first sequence). :func:`bench_sources`
lists what a build compiles (the design, the top, Verilator's control files) and with which flags
(:data:`VERILATOR_FLAGS`, :data:`VERILATOR_MAKE_OVERRIDES`, :data:`ICARUS_FLAGS`).
:func:`write_run` writes the files one run reads and :func:`read_run` reads what it wrote:
the file formats between the Python flow and the bench live in this module only.

The build cache (:mod:`lstmfpga.sim.cocotb_build`) keys on every text and flag produced here,
so a change to the bench rebuilds the models. The runner is :mod:`lstmfpga.sim.cocotb_flow`.
A ``design`` here is anything with ``verilog`` (text) and ``top`` (module name), e.g. a
:class:`lstmfpga.sim.cocotb_build.Design`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..export.files import atomic_write

__all__ = [
    "BENCH_FILES",
    "ICARUS_FLAGS",
    "IN_CAPACITY",
    "OUT_CAPACITY",
    "PERIOD_NS",
    "RESET_CYCLES",
    "SEQ_CAPACITY",
    "STATUS",
    "TAIL_CYCLES",
    "TB_TOP",
    "TIMESCALE",
    "VERILATOR_FLAGS",
    "VERILATOR_MAKE_OVERRIDES",
    "WAIVERS",
    "WEIGHT_CAPACITY",
    "WEIGHT_FILES",
    "WEIGHT_PORTS",
    "RunOutcome",
    "bench_sources",
    "port_width",
    "read_run",
    "top_ports",
    "weight_files",
    "weight_port",
    "wrapper",
    "write_run",
]

PERIOD_NS = 10
#: The simulation top (see :func:`wrapper`).
TB_TOP = "lstmfpga_tb"
TIMESCALE = ("1ns", "1ps")
RESET_CYCLES = 2
WAIVERS = Path(__file__).resolve().parent.parent / "hw" / "verilator_waivers.vlt"
#: Every Verilator option, in one place:
#:
#: * the lint waivers (``hw/verilator_waivers.vlt``) as a control file: they cover every
#:   warning Amaranth's Verilog raises, so ``-Wno-fatal`` is not needed (a new warning
#:   fails the build, as it should);
#: * ``--no-public-flat-rw`` (after the runner's ``--public-flat-rw``) with a generated control
#:   file that makes only the top-level ports public: with every signal public Verilator
#:   cannot optimize across them and the model runs ~7x slower (460k vs 3.2M cycles/s on the
#:   benchmark design); the bench touches nothing but the ports;
#: * ``--timing``: the wrapper's clock is a Verilog delay loop (``always #5``);
#: * ``-O3 --x-assign fast --x-initial fast --noassert``: Verilator's fast code paths (the
#:   design initializes every register itself).
#:
#: See also :data:`VERILATOR_MAKE_OVERRIDES` (the C++ compile).
VERILATOR_FLAGS = (
    "--timing",
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
#: ``CFG_CXXFLAGS_STD``/``CFG_CXXFLAGS_COROUTINES`` leave g++ 12 in C++17 without coroutines,
#: which ``--timing`` needs. ``OPT_FAST``/``OPT_GLOBAL=-O2`` compile the model and Verilator's
#: runtime with -O2 instead of -Os (faster simulation).
VERILATOR_MAKE_OVERRIDES = (
    "CFG_CXXFLAGS_PCH_I=-include",
    "CFG_CXXFLAGS_STD=-std=gnu++20",
    "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
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

#: Capacities of the Verilog bench's memories (elements of all sequences of one run, and
#: sequences): longer batches are split into runs that fit (see
#: :func:`lstmfpga.sim.cocotb_flow.run_cocotb`).
IN_CAPACITY = 1 << 20
OUT_CAPACITY = 1 << 20
SEQ_CAPACITY = 1 << 16
#: Cycles the bench keeps ``m_axis_tready`` high after the last expected result, watching
#: for a result beat that should not be there.
TAIL_CYCLES = 8
#: Status codes the bench raises in ``status`` (``0`` while running).
STATUS = {1: "ok", 2: "timeout", 3: "tlast", 4: "x", 5: "extra"}
#: The files :func:`write_run` writes into a run directory (besides the design's ``.hex``;
#: the two gap files only when some beat stalls).
BENCH_FILES = ("config.hex", "inputs.hex", "in_gaps.hex", "out_gaps.hex")

_PORT = re.compile(r"^\s*(input|output)\s+(?:(\[\d+:\d+\])\s*)?(\w+)\s*;", re.MULTILINE)


def top_ports(verilog: str, top: str) -> list[tuple[str, str, str]]:
    """``(direction, range, name)`` of every port of module ``top``, from its declarations."""
    match = re.search(
        rf"^module\s+{re.escape(top)}\s*\(.*?^endmodule", verilog, re.MULTILINE | re.DOTALL
    )
    if match is None:
        raise ValueError(f"no module {top!r} in the Verilog")
    return [(m[1], m[2] or "", m[3]) for m in _PORT.finditer(match.group(0))]


def port_width(width: str) -> int:
    """Bits of a port declared with range ``width`` (``""`` for one bit, ``"[7:0]"``)."""
    match = re.fullmatch(r"\[(\d+):(\d+)\]", width)
    return 1 if not width else abs(int(match[1]) - int(match[2])) + 1


#: The weight ports the bench can drive, ``(data, valid, ready, last)``: the accelerator's
#: ``w`` stream and the AXI top's ``s_axis_w`` (see :class:`lstmfpga.hw.manifest.WeightPort`).
WEIGHT_PORTS = (
    ("w__payload", "w__valid", "w__ready", None),
    ("s_axis_w_tdata", "s_axis_w_tvalid", "s_axis_w_tready", "s_axis_w_tlast"),
)
#: Weight beats the bench holds (a design whose load is longer is refused by
#: :func:`weight_files`).
WEIGHT_CAPACITY = 1 << 16
#: The ``$readmemh`` files of a weight load (:func:`weight_files`): the beat count and the
#: beats. Without them the bench loads nothing (the design keeps its built-in weights).
WEIGHT_FILES = ("lstmfpga_weight_count.hex", "lstmfpga_weights.hex")
#: The accelerator's sticky ``error`` inside the AXI top (:class:`lstmfpga.hw.axi_top.AXITop`
#: has it in ``STATUS`` only): the bench's ``error`` net, which the cocotb test module reads.
AXI_ERROR = "dut.accelerator.error"
_STREAM_PORTS = ("clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast",
                 "m_axis_tdata", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast")  # fmt: skip


def weight_port(ports) -> tuple[str, str, str, str | None] | None:
    """The :data:`WEIGHT_PORTS` entry among ``ports`` (names), ``None`` without one."""
    names = set(ports)
    for entry in WEIGHT_PORTS:
        if entry[0] in names and entry[1] in names:
            return entry
    return None


def wrapper(design, simulator: str = "verilator", waves: str | None = None) -> str:
    """The simulation top :data:`TB_TOP`: the design, its clock, and the whole test bench in
    Verilog, so that no Python runs while the design does.

    The bench reads the run from ``$readmemh`` files in its working directory:
    ``config.hex`` (64-bit words: sequences, input and output elements per sequence, the
    cycle budget per sequence, whether any beat stalls), ``inputs.hex`` (every ``s_axis``
    element), ``in_gaps.hex`` and ``out_gaps.hex`` (the
    :class:`~lstmfpga.sim.stalls.StallPattern`, one gap per beat; only with stalls), and
    for a design with a weight port (:data:`WEIGHT_PORTS`) the :data:`WEIGHT_FILES` when
    present: it then streams those weight beats (``tlast`` on the last, if the port has one)
    before the first input beat, and the first sequence starts after the last weight beat
    was taken (its budget counts from there). It
    drives ``s_axis`` and ``m_axis_tready`` as the stall pattern says, records every result
    and the cycle stamps of each sequence (first/last input beat: handshake edge minus one;
    first/last result: handshake edge, edges counted from 1 after reset), checks the
    protocol (``tlast`` exactly on each sequence's last result, no X on ``m_axis_tdata``
    under Icarus, no result beat in the :data:`TAIL_CYCLES` after the last one) and the
    cycle budget of each sequence (counted from the previous sequence's last result). Then
    it writes, in decimal, ``outputs.txt`` (the results so far, unsigned), ``stamps.txt``
    (four per sequence) and ``status.txt`` (status, sequence, element, cycles waited, total
    cycles, results) and
    raises ``done``; ``status`` holds a code of :data:`STATUS`.

    The clock is generated in the HDL (a clock driven from cocotb costs a callback every
    half period). Edge ``n`` is at ``n * PERIOD_NS``. Without ``waves`` the clock falls in
    the same time step as it rises (``clk = 1; clk <= 0``: the falling edge is a
    non-blocking update, applied with the registers' after every ``posedge`` block has run),
    so each cycle is one simulator time step instead of two (nothing in the design or the
    bench is sensitive to the falling edge or to the clock's level); with ``waves`` it is a
    square wave of period :data:`PERIOD_NS`, readable in a waveform viewer, with the same
    rising edges.
    """
    ports = top_ports(design.verilog, design.top)
    names = {name: width for _, width, name in ports}
    for name in _STREAM_PORTS:
        if name not in names:
            raise ValueError(f"module {design.top!r} has no port {name!r}")
    weights = weight_port(names)
    x_check = (
        "(^m_axis_tdata === 1'bx) || (m_axis_tlast === 1'bx)" if simulator == "icarus" else "1'b0"
    )
    connections = ", ".join(f".{name}({name})" for _, _, name in ports)
    return "\n".join(
        [
            *_declarations(ports, weights),
            _memories(port_width(names["s_axis_tdata"]), port_width(names["m_axis_tdata"])),
            _clock(waves),
            _weight_bench(weights, names),
            _stream_bench(x_check, weights is not None),
            _finish(),
            f"  {design.top} dut ({connections});",
            "endmodule",
            "",
        ]
    )


def _declarations(ports, weights) -> list[str]:
    """The module header and a net for every port (bench-driven ones as wires)."""
    driven = {"clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tlast", "m_axis_tready"}
    if weights is not None:
        driven |= {name for i, name in enumerate(weights) if name and i != 2}
    lines = [
        "/* verilator lint_off WIDTH */",
        "/* verilator lint_off INITIALDLY */",
        "/* verilator lint_off BLKSEQ */",
        "/* verilator lint_off BLKANDNBLK */",  # clk = 1; clk <= 0 (see _clock)
        f"module {TB_TOP};",
        "  reg clk = 1'b0;",
        "  reg rst = 1'b1;",
    ]
    if "error" in _bench_nets(ports):
        lines.append(f"  wire error = {AXI_ERROR};  // the AXI top's accelerator (STATUS.error)")
    for direction, width, name in ports:
        kind = "reg" if direction == "input" and name not in driven else "wire"
        if name not in ("clk", "rst"):
            lines.append(
                f"  {kind} {width + ' ' if width else ''}{name}{' = 0' * (kind == 'reg')};"
            )
    return lines


def _memories(iw: int, ow: int) -> str:
    """The stimulus, gap, result and stamp memories, the run's state, and reading the run."""
    return f"""
  localparam IN_CAP = {IN_CAPACITY}, OUT_CAP = {OUT_CAPACITY}, SEQ_CAP = {SEQ_CAPACITY};
  reg [63:0] cfg [0:4];
  reg [{iw - 1}:0] in_mem [0:IN_CAP-1];
  reg [15:0] in_gap [0:IN_CAP];
  reg [15:0] out_gap [0:OUT_CAP];
  reg [{ow - 1}:0] out_mem [0:OUT_CAP-1];
  reg [63:0] st_fi [0:SEQ_CAP-1];
  reg [63:0] st_li [0:SEQ_CAP-1];
  reg [63:0] st_fo [0:SEQ_CAP-1];
  reg [63:0] st_lo [0:SEQ_CAP-1];
  reg [31:0] n_seq, n_in, n_out;
  reg [63:0] budget;
  reg stalls;  // 0: no gap anywhere, the gap files are neither written nor read
  reg [31:0] b_in = 0, k_in = 0, p_in = 0, b_out = 0, k_out = 0, p_out = 0;
  reg [15:0] in_wait, out_wait;  // set from the gap files (no initializer to race with)
  reg [63:0] now = 0, window = 0, waited = 0;
  reg [3:0] status = 0;
  reg [3:0] tail = 0;
  reg [31:0] bad_seq = 0, bad_elem = 0;
  reg finishing = 1'b0;
  reg done = 1'b0;
  integer i, f;
  initial begin
    $readmemh("config.hex", cfg);
    n_seq = cfg[0]; n_in = cfg[1]; n_out = cfg[2]; budget = cfg[3]; stalls = cfg[4] != 0;
    $readmemh("inputs.hex", in_mem, 0, n_seq * n_in - 1);
    if (stalls) begin
      $readmemh("in_gaps.hex", in_gap, 0, n_seq * n_in);
      $readmemh("out_gaps.hex", out_gap, 0, n_seq * n_out);
    end
    in_wait = stalls ? in_gap[0] : 0;
    out_wait = stalls ? out_gap[0] : 0;
    repeat ({RESET_CYCLES}) @(posedge clk);
    rst <= 1'b0;
  end
"""


def _weight_bench(weights, names: dict[str, str]) -> str:
    """The weight load before the first sequence (``weights_done`` is high when there is
    nothing, or nothing more, to load)."""
    if weights is None:
        return "  wire weights_done = 1'b1;"
    data, valid, ready, last = weights
    width = port_width(names[data])
    count, beats = WEIGHT_FILES
    tlast = f"\n  assign {last} = w_open && (k_w == n_w - 1);" if last else ""
    return f"""
  reg [{width - 1}:0] w_mem [0:{WEIGHT_CAPACITY - 1}];
  reg [63:0] w_cfg [0:0];
  reg [31:0] n_w = 0, k_w = 0;
  initial begin
    f = $fopen("{count}", "r");
    if (f != 0) begin
      $fclose(f);
      $readmemh("{count}", w_cfg);
      n_w = w_cfg[0];
      if (n_w != 0) $readmemh("{beats}", w_mem, 0, n_w - 1);
    end
  end
  wire w_open = (status == 0) && !rst && (k_w < n_w);
  wire weights_done = (k_w == n_w);
  assign {valid} = w_open;
  assign {data} = w_open ? w_mem[k_w] : 0;{tlast}
  wire w_beat = w_open && {ready};
"""


def _stream_bench(x_check: str, weights: bool) -> str:
    """Driving ``s_axis`` and ``m_axis_tready``, capturing results, stamps, the checks (and
    counting weight beats, with ``weights``)."""
    weight_step = (
        "\n      if (w_beat) begin"
        "\n        k_w <= k_w + 1;"
        "\n        window <= now + 1;  // the first sequence's budget counts from here"
        "\n      end"
        if weights
        else ""
    )
    return f"""
  wire running = (status == 0) && !rst;
  wire in_open = running && weights_done && (b_in < n_seq) && (b_in == b_out);
  assign s_axis_tvalid = in_open && (in_wait == 0);
  assign s_axis_tdata = in_open ? in_mem[p_in] : 0;
  assign s_axis_tlast = s_axis_tvalid && (k_in == n_in - 1);
  assign m_axis_tready = (running && (out_wait == 0)) || (status == 1 && !finishing);
  wire out_beat = running && (out_wait == 0) && m_axis_tvalid;
  wire out_last = out_beat && (k_out == n_out - 1);
  wire out_bad = out_beat && (({x_check}) || (m_axis_tlast != (k_out == n_out - 1)));

  always @(posedge clk) begin
    if (running) begin
      now <= now + 1;{weight_step}
      if (in_open) begin
        if (in_wait != 0) in_wait <= in_wait - 1;
        else if (s_axis_tready) begin
          if (k_in == 0) st_fi[b_in] <= now;
          if (k_in == n_in - 1) begin
            st_li[b_in] <= now;
            b_in <= b_in + 1;
            k_in <= 0;
          end else k_in <= k_in + 1;
          p_in <= p_in + 1;
          in_wait <= stalls ? in_gap[p_in + 1] : 0;
        end
      end
      if (out_wait != 0) out_wait <= out_wait - 1;
      else if (m_axis_tvalid) begin
        out_mem[p_out] <= m_axis_tdata;
        p_out <= p_out + 1;
        out_wait <= stalls ? out_gap[p_out + 1] : 0;
        if (k_out == 0) st_fo[b_out] <= now + 1;
        if ({x_check}) begin
          status <= 4; bad_seq <= b_out; bad_elem <= k_out + 1;
        end else if (m_axis_tlast != (k_out == n_out - 1)) begin
          status <= 3; bad_seq <= b_out; bad_elem <= k_out + 1;
        end else if (out_last) begin
          st_lo[b_out] <= now + 1;
          window <= now + 1;
          b_out <= b_out + 1;
          k_out <= 0;
          if (b_out + 1 == n_seq) status <= 1;
        end else k_out <= k_out + 1;
      end
      if (!out_last && !out_bad && now + 1 - window >= budget) begin
        status <= 2; bad_seq <= b_out; bad_elem <= k_out + (out_beat ? 1 : 0);
        waited <= now + 1 - window;
      end
    end else if (!rst && !finishing) begin
      if (status == 1 && tail < {TAIL_CYCLES}) begin
        tail <= tail + 1;
        if (m_axis_tvalid) begin
          status <= 5; bad_seq <= n_seq; bad_elem <= 0;
        end
      end else finishing <= 1'b1;
    end
  end
"""


def _finish() -> str:
    """Writing the results, stamps and status files, then raising ``done``."""
    return """
  always @(posedge clk) if (finishing && !done) begin
    f = $fopen("outputs.txt", "w");
    for (i = 0; i < p_out; i = i + 1) $fdisplay(f, "%0d", out_mem[i]);
    $fclose(f);
    f = $fopen("stamps.txt", "w");
    for (i = 0; i < b_out; i = i + 1)
      $fdisplay(f, "%0d %0d %0d %0d", st_fi[i], st_li[i], st_fo[i], st_lo[i]);
    $fclose(f);
    f = $fopen("status.txt", "w");
    $fdisplay(f, "%0d %0d %0d %0d %0d %0d", status, bad_seq, bad_elem, waited, window, p_out);
    $fclose(f);
    done <= 1'b1;
  end
"""


def _clock(waves: str | None) -> str:
    """The clock process of :func:`wrapper`: rising edges at multiples of PERIOD_NS."""
    if waves is None:
        return f"  always begin\n    #{PERIOD_NS} clk = 1'b1;\n    clk <= 1'b0;\n  end"
    half = PERIOD_NS // 2
    return f"  always begin\n    #{half} clk = 1'b0;\n    #{half} clk = 1'b1;\n  end"


def _bench_nets(ports) -> tuple[str, ...]:
    """Nets of the bench that the cocotb test reads and that are not ``ports`` of the
    design: ``error`` of an AXI top (:data:`AXI_ERROR`)."""
    names = {name for _, _, name in ports}
    return ("error",) if "error" not in names and "s_axil_awvalid" in names else ()


def bench_sources(simulator: str, design, waves: str | None):
    """What a build compiles: ``(files, sources, build_args)``; ``files`` maps names in the
    build directory to their text, ``sources`` lists the compiled files in order (the
    waivers file by absolute path). All of it goes into the cache key."""
    files = {f"{design.top}.v": design.verilog, f"{TB_TOP}.v": wrapper(design, simulator, waves)}
    if simulator == "verilator":
        ports = top_ports(design.verilog, design.top)
        files["public_ports.vlt"] = (
            "`verilator_config\n"
            + "".join(f'public_flat_rd -module "{TB_TOP}" -var "{name}"\n' for _, _, name in ports)
            + "".join(
                f'public_flat_rd -module "{TB_TOP}" -var "{name}"\n'
                for name in ("done", "status", *_bench_nets(ports))
            )
        )
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


def _hex_file(path: Path, values: np.ndarray, bits: int) -> None:
    """``values`` (int64) as ``$readmemh`` lines, two's complement in ``bits`` bits."""
    with atomic_write(path, "w") as file:
        values = np.asarray(values, np.int64)
        if bits < 64:
            values = values & ((1 << bits) - 1)
        np.savetxt(file, values, fmt="%x")


def _ints(path: Path) -> np.ndarray:
    text = path.read_text()
    return np.array(text.split(), dtype=np.int64) if text.strip() else np.zeros(0, np.int64)


def write_run(
    run_dir: Path,
    inputs: list[np.ndarray],
    n_out: int,
    *,
    in_gaps: np.ndarray,
    out_gaps: np.ndarray,
    budget: int,
    input_bits: int,
) -> None:
    """The :data:`BENCH_FILES` of one run over the sequences ``inputs`` (their ``s_axis``
    elements, all of one length), each producing ``n_out`` results, with the stall gaps
    ``(B, n_in)`` / ``(B, n_out)`` and ``budget`` cycles per sequence. Without any gap the
    gap files are not written (``config.hex`` says so; the bench then reads none: reading
    two files of zeros cost a few percent of a stall-free run)."""
    B, n_in = len(inputs), inputs[0].size
    in_gaps, out_gaps = np.asarray(in_gaps).reshape(-1), np.asarray(out_gaps).reshape(-1)
    stalls = bool(in_gaps.any() or out_gaps.any())
    _hex_file(run_dir / "config.hex", np.array([B, n_in, n_out, budget, int(stalls)]), 64)
    _hex_file(run_dir / "inputs.hex", np.concatenate(inputs), input_bits)
    if stalls:
        _hex_file(run_dir / "in_gaps.hex", np.append(in_gaps, 0), 16)
        _hex_file(run_dir / "out_gaps.hex", np.append(out_gaps, 0), 16)


def weight_files(beats: np.ndarray, port_bits: int) -> dict[str, str]:
    """The :data:`WEIGHT_FILES` of a weight load: ``beats`` ``(n, beat_bytes)`` ``uint8``
    (little-endian, as :meth:`lstmfpga.hw.manifest.WeightPort.pack` makes them) for a
    ``port_bits``-wide data port. ``{name: text}``, to be put beside the run's other files
    (e.g. as a :class:`~lstmfpga.sim.cocotb_build.Design`'s ``hex_files``)."""
    beats = np.asarray(beats, np.uint8)
    if beats.ndim != 2 or not 1 <= beats.shape[0] <= WEIGHT_CAPACITY:
        raise ValueError(
            f"weight beats must be 1..{WEIGHT_CAPACITY} rows of bytes, not shape {beats.shape}"
        )
    if beats.shape[1] * 8 - 8 >= port_bits:
        raise ValueError(f"weight beats of {beats.shape[1]} bytes do not fit {port_bits} bits")
    digits = -(-port_bits // 4)
    text = beats[:, ::-1].tobytes().hex()
    step = 2 * beats.shape[1]
    lines = [text[i + step - digits : i + step] if digits <= step else text[i : i + step]
             for i in range(0, len(text), step)]  # fmt: skip
    count, data = WEIGHT_FILES
    return {count: f"{beats.shape[0]:x}\n", data: "\n".join(lines) + "\n"}


@dataclass(frozen=True)
class RunOutcome:
    """What the bench wrote when it finished: ``status`` (a :data:`STATUS` name or
    ``"unknown"``), where it stopped (``sequence``, ``element``, ``waited`` cycles), the
    run's ``total_cycles``, the results ``outputs`` (signed, flat, in order) and ``stamps``
    ``(sequences finished, 4)`` (first/last input, first/last result); both empty unless
    ``status`` is ``"ok"``."""

    status: str
    sequence: int
    element: int
    waited: int
    total_cycles: int
    outputs: np.ndarray
    stamps: np.ndarray


def read_run(run_dir: Path, output_bits: int) -> RunOutcome | None:
    """The :class:`RunOutcome` of the run in ``run_dir``; ``None`` if the bench did not
    finish (no ``status.txt``)."""
    if not (run_dir / "status.txt").is_file():
        return None
    code, sequence, element, waited, total, _ = (int(v) for v in _ints(run_dir / "status.txt"))
    status = STATUS.get(code, "unknown")
    if status != "ok":  # the results may hold X (the bench stopped on a protocol error)
        empty = np.zeros(0, np.int64)
        return RunOutcome(status, sequence, element, waited, total, empty, empty.reshape(0, 4))
    flat = _ints(run_dir / "outputs.txt")
    flat = np.where(flat >= 1 << (output_bits - 1), flat - (1 << output_bits), flat)
    return RunOutcome(
        status=status,
        sequence=sequence,
        element=element,
        waited=waited,
        total_cycles=total,
        outputs=flat,
        stamps=_ints(run_dir / "stamps.txt").reshape(-1, 4),
    )
