"""The Verilog test top of the cocotb flow: everything that runs per cycle and per beat.

:func:`wrapper` writes the simulation top :data:`TB_TOP`: the design, its clock (Icarus; a
Verilator model's main loop drives it, :mod:`lstmfpga.sim.verilator_main`), the stimulus
and stall decisions read with ``$readmemh``, the capture of every result and cycle stamp,
the protocol checks and the cycle budget; for a design with a weight port, the weight beats
of :func:`lstmfpga.sim.bench_files.weight_files` streamed in before the first sequence. The
files it reads and writes are :mod:`lstmfpga.sim.bench_files`'s; what a build compiles and
with which flags is :mod:`lstmfpga.sim.bench_build`'s. The runner is
:mod:`lstmfpga.sim.cocotb_flow`. A ``design`` here is anything with ``verilog`` (text) and
``top`` (module name), e.g. a :class:`lstmfpga.sim.cocotb_build.Design`.
"""

from __future__ import annotations

import re

from .bench_files import (  # noqa: F401  (weight_files: imported from here by lstmfpga.simulation)
    STATUS,
    WEIGHT_CAPACITY,
    WEIGHT_FILES,
    weight_files,
)

__all__ = [
    "AXI_ERROR",
    "CAPACITIES",
    "COCOTB_READS",
    "PERIOD_NS",
    "RESET_CYCLES",
    "STATUS",
    "TAIL_CYCLES",
    "TB_TOP",
    "TIMESCALE",
    "WEIGHT_PORTS",
    "inner_nets",
    "port_width",
    "port_widths",
    "top_ports",
    "weight_port",
    "wrapper",
]

PERIOD_NS = 10
#: The simulation top (see :func:`wrapper`).
TB_TOP = "lstmfpga_tb"
TIMESCALE = ("1ns", "1ps")
RESET_CYCLES = 2
#: Capacities of the Verilog bench's memories per simulator: input lines, result lines (of
#: all sequences of one run) and sequences; longer batches are split into runs that fit
#: (see :func:`lstmfpga.sim.cocotb_flow.run_cocotb`). Icarus allocates and initializes its
#: arrays when it starts (Verilator's are zeroed memory): its smaller ones start a process
#: 0.6 s of CPU sooner, and at Icarus's speed a run never needs more.
CAPACITIES = {"verilator": (1 << 20, 1 << 20, 1 << 16), "icarus": (1 << 16, 1 << 16, 1 << 12)}
#: Cycles the bench keeps ``m_axis_tready`` high after the last expected result, watching
#: for a result beat that should not be there.
TAIL_CYCLES = 8

_PORT = re.compile(r"^\s*(input|output)\s+(?:(\[\d+:\d+\])\s*)?(\w+)\s*;", re.MULTILINE)


def top_ports(verilog: str, top: str) -> list[tuple[str, str, str]]:
    """``(direction, range, name)`` of every port of module ``top``, from its declarations
    (of the names in its header: a function's ``input`` declarations are not ports)."""
    match = re.search(
        rf"^module\s+{re.escape(top)}\s*\((.*?)\);.*?^endmodule",
        verilog,
        re.MULTILINE | re.DOTALL,
    )
    if match is None:
        raise ValueError(f"no module {top!r} in the Verilog")
    header = set(re.findall(r"\w+", match.group(1)))
    ports = {}
    for m in _PORT.finditer(match.group(0)):
        if m[3] in header and m[3] not in ports:
            ports[m[3]] = (m[1], m[2] or "", m[3])
    return list(ports.values())


def port_width(width: str) -> int:
    """Bits of a port declared with range ``width`` (``""`` for one bit, ``"[7:0]"``)."""
    match = re.fullmatch(r"\[(\d+):(\d+)\]", width)
    return 1 if not width else abs(int(match[1]) - int(match[2])) + 1


def port_widths(design) -> dict[str, int]:
    """Bits of every port of ``design``'s top, by name."""
    return {name: port_width(width) for _, width, name in top_ports(design.verilog, design.top)}


#: The weight ports the bench can drive, ``(data, valid, ready, last)``: the accelerator's
#: ``w`` stream and the AXI top's ``s_axis_w`` (see
#: :class:`lstmfpga.hw.weight_port.WeightPort`).
WEIGHT_PORTS = (
    ("w__payload", "w__valid", "w__ready", None),
    ("s_axis_w_tdata", "s_axis_w_tvalid", "s_axis_w_tready", "s_axis_w_tlast"),
)
#: The accelerator's sticky ``error`` inside the AXI top (:class:`lstmfpga.hw.axi_top.AXITop`
#: has it in ``STATUS`` only): the bench's ``error`` net, which the cocotb test module reads.
AXI_ERROR = "dut.accelerator.error"
#: The test top's nets the cocotb test module reads (:mod:`lstmfpga.sim.cocotb_tb`): the
#: only public ones in a Verilator build (every public net is kept as it is, in memory,
#: and cuts Verilator's optimizations there). ``error`` is the design's port or, for an
#: AXI top, the bench's net (:data:`AXI_ERROR`).
COCOTB_READS = ("done", "status", "error")
_STREAM_PORTS = ("clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast",
                 "m_axis_tdata", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast")  # fmt: skip
#: Inputs of a top the bench drives when present: ``tkeep`` of wide beats and stream mode's
#: ``tuser`` (from the input lines), ``keep_state`` (from ``config.hex``).
_OPTIONAL_INPUTS = ("s_axis_tkeep", "s_axis_tuser", "keep_state")


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

    The bench works in lines (:class:`~lstmfpga.sim.bench_files.StreamLines`: one per beat,
    ``{tuser, tkeep, tdata}``, with the ports the top has). It reads the run from ``$readmemh``
    files in its working directory: ``config.hex`` (64-bit words: sequences, input and
    output lines per sequence, the cycle budget per sequence, whether any beat stalls, the
    design's ``keep_state`` input), ``inputs.hex`` (every ``s_axis`` line),
    ``in_gaps.hex`` and ``out_gaps.hex`` (the :class:`~lstmfpga.sim.stalls.StallPattern`,
    one gap per beat; only with stalls), and for a design with a weight port
    (:data:`WEIGHT_PORTS`) the :data:`WEIGHT_FILES` when present: it then streams those
    weight beats (``tlast`` on the last, if the port has one) before the first input beat,
    and the first sequence starts after the last weight beat was taken (its budget counts
    from there). It drives ``s_axis`` and ``m_axis_tready`` as the stall pattern says,
    records every result line and the cycle stamps of each sequence (first/last input
    beat: handshake edge minus one; first/last result: handshake edge, edges counted from 1
    after reset), checks the protocol (``tlast`` exactly on each sequence's last result
    beat, no X on ``m_axis_tdata``/``tkeep`` under Icarus, no result beat in the
    :data:`TAIL_CYCLES` after the last one) and the cycle budget of each sequence (counted
    from the previous sequence's last result). Then it writes, in decimal, ``outputs.txt``
    (the result lines so far, unsigned), ``stamps.txt`` (four per sequence) and
    ``status.txt`` (status, sequence, line, cycles waited, total cycles, results) and
    raises ``done``; ``status`` holds a code of :data:`STATUS`.

    The clock: rising edge ``n`` at ``n * PERIOD_NS``. Verilator: the top's input ``clk``,
    driven by the model's main loop (:mod:`lstmfpga.sim.verilator_main`; a square wave).
    Icarus: generated here; without ``waves`` it falls in the same time step as it rises
    (``clk = 1; clk <= 0``: the falling edge is a non-blocking update, applied with the
    registers' after every ``posedge`` block has run), so each cycle is one simulator time
    step instead of two (nothing in the design or the bench is sensitive to the falling
    edge or to the clock's level); with ``waves`` a square wave with the same rising edges.
    """
    ports = top_ports(design.verilog, design.top)
    widths = {name: port_width(width) for _, width, name in ports}
    for name in _STREAM_PORTS:
        if name not in widths:
            raise ValueError(f"module {design.top!r} has no port {name!r}")
    weights = weight_port(widths)
    out_word = "{m_axis_tkeep, m_axis_tdata}" if "m_axis_tkeep" in widths else "m_axis_tdata"
    x_check = "1'b0"
    if simulator == "icarus":
        x_check = f"(^{out_word} === 1'bx) || (m_axis_tlast === 1'bx)"
    connections = ", ".join(f".{name}({name})" for _, _, name in ports)
    return "\n".join(
        [
            *_declarations(ports, weights, simulator),
            _memories(widths, CAPACITIES[simulator]),
            _clock(waves) if simulator == "icarus" else "",
            _weight_bench(weights, widths),
            _stream_inputs(widths),
            _stream_bench(x_check, out_word, weights is not None),
            _finish(),
            f"  {design.top} dut ({connections});",
            "endmodule",
            "",
        ]
    )


def _declarations(ports, weights, simulator: str) -> list[str]:
    """The module header and a net for every port (bench-driven ones as wires)."""
    driven = {"clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tlast", "m_axis_tready",
              *_OPTIONAL_INPUTS}  # fmt: skip
    if weights is not None:
        driven |= {name for i, name in enumerate(weights) if name and i != 2}
    lines = [
        "/* verilator lint_off WIDTH */",
        "/* verilator lint_off INITIALDLY */",
        "/* verilator lint_off BLKSEQ */",
        "/* verilator lint_off BLKANDNBLK */",  # clk = 1; clk <= 0 (see _clock)
        *(  # Verilator: the clock is the top's input, driven by the model's main loop
            [f"module {TB_TOP} (input wire clk);"]
            if simulator == "verilator"
            else [f"module {TB_TOP};", "  reg clk = 1'b0;"]
        ),
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


def _line_bits(widths: dict[str, int]) -> tuple[int, int]:
    """Bits of an input line and of a result line (``{tuser, tkeep, tdata}``)."""
    inputs = sum(widths.get(name, 0) for name in ("s_axis_tdata", "s_axis_tkeep", "s_axis_tuser"))
    return inputs, widths["m_axis_tdata"] + widths.get("m_axis_tkeep", 0)


def _memories(widths: dict[str, int], capacities: tuple[int, int, int]) -> str:
    """The stimulus, gap, result and stamp memories (of ``capacities``), the run's state,
    and reading the run."""
    il, ol = _line_bits(widths)
    in_cap, out_cap, seq_cap = capacities
    return f"""
  localparam IN_CAP = {in_cap}, OUT_CAP = {out_cap}, SEQ_CAP = {seq_cap};
  reg [63:0] cfg [0:5];
  reg [{il - 1}:0] in_mem [0:IN_CAP-1];
  reg [15:0] in_gap [0:IN_CAP];
  reg [15:0] out_gap [0:OUT_CAP];
  reg [{ol - 1}:0] out_mem [0:OUT_CAP-1];
  reg [63:0] st_fi [0:SEQ_CAP-1];
  reg [63:0] st_li [0:SEQ_CAP-1];
  reg [63:0] st_fo [0:SEQ_CAP-1];
  reg [63:0] st_lo [0:SEQ_CAP-1];
  reg [31:0] n_seq, n_in, n_out;
  reg [63:0] budget;
  reg stalls;  // 0: no gap anywhere, the gap files are neither written nor read
  reg keep = 1'b0;  // the design's keep_state input (stream mode)
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
    keep = cfg[5] != 0;
    $readmemh("inputs.hex", in_mem, 0, n_seq * n_in - 1);
    if (stalls) begin
      $readmemh("in_gaps.hex", in_gap, 0, n_seq * n_in);
      $readmemh("out_gaps.hex", out_gap, 0, n_seq * n_out);
    end
    in_wait = stalls ? in_gap[0] : 0;
    out_wait = stalls ? out_gap[0] : 0;
  end
  reg [7:0] resets = 0;  // rst falls on the {RESET_CYCLES}th rising edge
  always @(posedge clk) if (rst) begin
    resets <= resets + 1;
    if (resets == {RESET_CYCLES - 1}) rst <= 1'b0;
  end
"""


def _weight_bench(weights, widths: dict[str, int]) -> str:
    """The weight load before the first sequence (``weights_done`` is high when there is
    nothing, or nothing more, to load)."""
    if weights is None:
        return "  wire weights_done = 1'b1;"
    data, valid, ready, last = weights
    width = widths[data]
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


def _stream_inputs(widths: dict[str, int]) -> str:
    """``s_axis``'s data, ``tkeep`` and ``tuser`` from the current input line, and the
    ``keep_state`` input from the run's configuration (each when the top has it)."""
    il, _ = _line_bits(widths)
    lines = [
        "  wire running = (status == 0) && !rst;",
        "  wire in_open = running && weights_done && (b_in < n_seq) && (b_in == b_out);",
        f"  wire [{il - 1}:0] in_line = in_open ? in_mem[p_in] : 0;",
    ]
    low = 0
    for name in ("s_axis_tdata", "s_axis_tkeep", "s_axis_tuser"):
        if name in widths:
            lines.append(f"  assign {name} = in_line[{low + widths[name] - 1}:{low}];")
            low += widths[name]
    if "keep_state" in widths:
        lines.append("  assign keep_state = keep;")
    return "\n".join(lines)


def _stream_bench(x_check: str, out_word: str, weights: bool) -> str:
    """Driving ``s_axis`` and ``m_axis_tready``, capturing result lines (``out_word``),
    stamps, the checks (and counting weight beats, with ``weights``)."""
    weight_step = (
        "\n      if (w_beat) begin"
        "\n        k_w <= k_w + 1;"
        "\n        window <= now + 1;  // the first sequence's budget counts from here"
        "\n      end"
        if weights
        else ""
    )
    return f"""
  assign s_axis_tvalid = in_open && (in_wait == 0);
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
        out_mem[p_out] <= {out_word};
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


def inner_nets(design) -> tuple[str, ...]:
    """The nets the bench reads inside ``design`` rather than at its ports (by their names
    in the bench: ``error`` of an AXI top, :data:`AXI_ERROR`)."""
    return _bench_nets(top_ports(design.verilog, design.top))


def _bench_nets(ports) -> tuple[str, ...]:
    """Nets of the bench that the cocotb test reads and that are not ``ports`` of the
    design: ``error`` of an AXI top (:data:`AXI_ERROR`)."""
    names = {name for _, _, name in ports}
    return ("error",) if "error" not in names and "s_axil_awvalid" in names else ()
