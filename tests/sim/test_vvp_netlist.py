"""The Icarus netlist rewrite (``lstmfpga.sim.vvp_netlist``): one clocked block with the
flip-flops of one control structure grouped, ``$signed`` arithmetic and wide concatenations
as ``always @*`` blocks, and the same simulated values as the netlist Yosys wrote."""

import subprocess

from lstmfpga.sim.vvp_netlist import merged_clocked, procedural_assigns, restructured

#: A netlist in the form of Yosys's ``write_verilog -noattr`` (after ``splitnets -driver``).
NETLIST = r"""module dut(clk, rst, en, a, b, q, p, s);
  input clk;
  wire clk;
  input rst;
  wire rst;
  input en;
  wire en;
  input [7:0] a;
  wire [7:0] a;
  input [7:0] b;
  wire [7:0] b;
  output [15:0] q;
  wire [15:0] q;
  output [23:0] p;
  wire [23:0] p;
  output [3:0] s;
  wire [3:0] s;
  reg [7:0] \r.x  = 8'h00;
  reg [7:0] y = 8'h00;
  reg [23:0] \acc  = 24'h000000;
  reg [3:0] cnt = 4'h0;
  wire [15:0] prod;
  wire [23:0] wide;
  wire [1:0] narrow;
  reg [7:0] mem [3:0];
  initial begin
    mem[0] = 8'h05;
    mem[1] = 8'hf0;
    mem[2] = 8'h7f;
    mem[3] = 8'h81;
  end
  always @(posedge clk) begin
    if (en)
      mem[cnt[1:0]] <= a;
  end
  wire [7:0] rd;
  assign rd = mem[cnt[1:0]];
  always @(posedge clk)
    if (rst) \r.x  <= 8'h00;
    else if (en) \r.x  <= a;
  always @(posedge clk)
    if (rst) y <= 8'h00;
    else if (en) y <= rd;
  always @(posedge clk)
    if (en) \acc  <= wide;
  always @(posedge clk)
    if (rst) cnt <= 4'h0;
    else cnt <= cnt + 4'h1;
  assign prod = $signed(\r.x ) * $signed(y);
  assign wide = { prod[11:0], y, a[3:0] };
  assign narrow = { en, rst };
  assign q = prod;
  assign p = \acc ;
  assign s = cnt ^ { narrow, narrow };
endmodule
"""

BENCH = r"""module tb;
  reg clk = 0, rst = 1, en = 0;
  reg [7:0] a = 0, b = 0;
  wire [15:0] q; wire [23:0] p; wire [3:0] s;
  integer n;
  dut d (.clk(clk), .rst(rst), .en(en), .a(a), .b(b), .q(q), .p(p), .s(s));
  always #5 clk = ~clk;
  initial begin
    for (n = 0; n < 40; n = n + 1) begin
      @(negedge clk);
      rst = (n < 2) || (n == 20); en = (n % 3) != 1; a = 8'd37 * n + 8'd200; b = n;
      $display("%0d %h %h %h", n, q, p, s);
    end
    $finish;
  end
endmodule
"""


def _simulate(tmp_path, name: str, netlist: str) -> str:
    source = tmp_path / f"{name}.v"
    source.write_text(netlist + BENCH)
    binary = tmp_path / f"{name}.vvp"
    subprocess.run(["iverilog", "-g2005", "-s", "tb", "-o", binary, source], check=True)
    return subprocess.run(["vvp", "-n", binary], capture_output=True, text=True, check=True).stdout


def test_the_rewritten_netlist_simulates_to_the_same_values(tmp_path):
    before = _simulate(tmp_path, "before", NETLIST)
    after = _simulate(tmp_path, "after", restructured(NETLIST))
    assert len(before.splitlines()) == 40
    assert "x" not in before.split("\n", 3)[3]  # defined values after reset
    assert after == before


def test_flip_flops_of_one_control_structure_share_it_in_one_clocked_block():
    text = merged_clocked(NETLIST)
    assert text.count("always @(posedge clk)") == 1
    assert "    if (rst) begin \\r.x  <= 8'h00; y <= 8'h00; end" in text
    assert "    else if (en) begin \\r.x  <= a; y <= rd; end" in text
    assert "    if (en) \\acc  <= wide;" in text
    assert "      mem[cnt[1:0]] <= a;" in text  # the memory write port, as it was
    assert text.index("always @(posedge clk)") > text.index("assign s =")  # after every item


def test_a_clocked_block_with_a_blocking_assignment_is_left_alone():
    blocking = NETLIST.replace("    if (en) \\acc  <= wide;", "    if (en) \\acc  = wide;")
    text = merged_clocked(blocking)
    assert text.count("always @(posedge clk)") == 2
    assert "  always @(posedge clk)\n    if (en) \\acc  = wide;" in text


def test_signed_arithmetic_and_wide_concatenations_become_always_star_blocks():
    text = procedural_assigns(NETLIST)
    assert "  always @* prod = $signed(\\r.x ) * $signed(y);" in text
    assert "  reg [15:0] prod;" in text
    assert "  always @* wide = { prod[11:0], y, a[3:0] };" in text
    assert "  assign narrow = { en, rst };" in text  # 2 bits: cheaper as functors
    assert "  assign rd = mem[cnt[1:0]];" in text  # a memory read
    assert "  assign q = prod;" in text  # a port
    assert "  wire [15:0] q;" in text


def test_text_that_is_not_a_netlist_comes_back_unchanged():
    assert restructured("module m;\n  always @(posedge clk)\n") == (
        "module m;\n  always @(posedge clk)\n"
    )
