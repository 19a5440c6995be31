"""Yosys's Verilog netlist rewritten in the forms Icarus's ``vvp`` runs fastest.

:func:`restructured` takes ``write_verilog -noattr`` output (after ``proc; flatten; opt;
splitnets -driver``: :data:`lstmfpga.sim.icarus_opt.SCRIPT`) and returns the same design,
statement for statement, in fewer ``vvp`` threads and cheaper functors. What costs ``vvp``
time on the accelerator (profiled with ``perf`` on the issue-12 design, ``LSTM(16, 64)``,
8 lanes):

* every ``always @(posedge clk)`` block is a thread woken on every edge; every variable it
  reads is a ``%load/vec4``, whose ``dynamic_cast`` (with a ``strcmp`` of type names) was
  a third of the CPU. :func:`merged_clocked` puts all blocks of one event control into one
  block (they hold nonblocking assignments only, so their order does not matter) and
  groups the flip-flops that share a control structure (``if (rst) ... else if (en)
  ...``) under one copy of it, so each enable and reset is read once per edge, not once
  per flip-flop;
* a continuous assignment becomes a net of ``vvp`` functors, and the sign extensions of
  ``$signed`` operands and wide concatenations copy their vectors bit by bit
  (``vvp_vector4_t::set_bit``, a fifth of the CPU). :func:`procedural_assigns` turns those
  assignments into ``always @*`` blocks, whose thread code extends and concatenates word
  by word (and computes once per change instead of once per changed operand).

Both keep the design's behaviour: the flip-flops still take their values at the same edge
from the same expressions, the combinational values settle in the same time step. Each
rewrite leaves alone what it does not recognize (a clocked block with a blocking
assignment, a statement whose form it cannot parse, an assignment to a port, a part of a
net or a memory read), so an unfamiliar netlist comes out as it went in.
"""

from __future__ import annotations

import re

__all__ = ["VERSION", "merged_clocked", "procedural_assigns", "restructured"]

#: Part of the optimized build's cache key (bump on any change of the output).
VERSION = 1
#: Concatenations at least this wide become ``always @*`` blocks (narrower ones, often of
#: single bits, are cheaper as functors: measured 16 best of 8, 16, 48 and all).
MIN_CONCAT_BITS = 16

_CLOCKED = re.compile(r"^  always @\(((?:posedge|negedge) [^()]*)\)( begin)?\s*$")
_ASSIGN_TAIL = re.compile(r"^(\\\S+\s+|[A-Za-z_][\w$]*\s*)(\[[^\]]*\]\s*)?<=(.*);\s*$")
_BLOCKING = re.compile(r"(?<![<>=!])=(?!=)")
_CONTINUOUS = re.compile(r"^  assign (\\\S+ |[A-Za-z_][\w$]*) = (.*);$")
_WIRE = re.compile(r"^  wire (?:\[(\d+):(\d+)\] )?(\\\S+ |[A-Za-z_][\w$]*)\s*;$")
_PORT = re.compile(r"^  (?:input|output|inout)\b.*?(\\\S+ |[A-Za-z_][\w$]*)\s*;$")
_MEMORY = re.compile(r"^  reg (?:\[\d+:\d+\] )?(\\\S+ |[A-Za-z_][\w$]*)\s*\[\d+:\d+\]\s*;$")
_NAME = re.compile(r"\\\S+|[A-Za-z_][\w$]*")
_CONSTANT = re.compile(r"\d+'[sS]?[bodhBODH][0-9a-fA-FxXzZ_?]+")


def restructured(netlist: str) -> str:
    """``netlist`` (Yosys ``write_verilog -noattr`` text) after :func:`merged_clocked` and
    :func:`procedural_assigns`, module by module."""
    return procedural_assigns(merged_clocked(netlist))


def _modules(text: str, rewrite) -> str:
    """``text`` with the lines of each ``module ... endmodule`` passed through
    ``rewrite(lines) -> lines``."""
    lines, out, body = text.split("\n"), [], None
    for line in lines:
        if body is None:
            out.append(line)
            if line.startswith("module "):
                body = []
        elif line.startswith("endmodule"):
            out += [*rewrite(body), line]
            body = None
        else:
            body.append(line)
    if body is not None:  # no endmodule: not Yosys's netlist
        return text
    return "\n".join(out)


# -- clocked blocks -----------------------------------------------------------------------------
def merged_clocked(netlist: str) -> str:
    """One ``always`` block per event control (e.g. ``@(posedge clk)``) at the end of each
    module instead of one per flip-flop or memory write port, the flip-flops of one control
    structure under one copy of it (see the module docstring)."""
    return _modules(netlist, _merged_module)


def _merged_module(lines: list[str]) -> list[str]:
    out: list[str] = []
    blocks: dict[str, list[list[str]]] = {}  # event control -> statements (lists of lines)
    i = 0
    while i < len(lines):
        match = _CLOCKED.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        j, body = i + 1, []
        if match[2]:  # "begin": up to the block's own "  end"
            while j < len(lines) and lines[j] != "  end":
                body.append(lines[j])
                j += 1
            j += 1
        else:  # one statement: its lines are indented deeper than the module's items
            while j < len(lines) and lines[j].startswith("    "):
                body.append(lines[j])
                j += 1
        if j > len(lines) or not body or any(_blocking(line) for line in body):
            out += lines[i:j]  # not a block of nonblocking assignments: as it is
        else:
            blocks.setdefault(match[1], []).append(body if not match[2] else [*body, None])
        i = j
    for control, statements in blocks.items():
        out += [f"  always @({control}) begin", *_grouped(statements), "  end"]
    return out


def _blocking(line: str) -> bool:
    """Whether a statement line holds a blocking assignment (an ``=`` that is not part of
    ``<=``, ``==``, ``!=``, ``>=``), escaped names aside."""
    return bool(_BLOCKING.search(re.sub(r"\\\S+", "", line)))


def _grouped(statements: list[list]) -> list[str]:
    """The statements' lines, those of one control structure merged: ``if (en) a <= x;``
    and ``if (en) b <= y;`` become ``if (en) begin a <= x; b <= y; end``. A statement
    ending in ``None`` (a ``begin ... end`` block's body) or with a line of another form
    is kept as it is."""
    groups: dict[tuple, list[list[str]]] = {}
    kept: list[str] = []
    for statement in statements:
        if statement[-1] is None:
            kept += statement[:-1]
            continue
        parts = [_split(line) for line in statement]
        if any(part is None for part in parts):
            kept += statement
            continue
        shape = tuple(control for control, _ in parts)
        groups.setdefault(shape, []).append([assignment for _, assignment in parts])
    out: list[str] = []
    for shape, members in groups.items():
        for k, control in enumerate(shape):
            items = [member[k] for member in members]
            if items[0] is None:
                out.append(control)
            elif len(items) == 1:
                out.append(f"{control} {items[0]}" if control.strip() else control + items[0])
            else:
                joined = "begin " + " ".join(items) + " end"
                out.append(f"{control} {joined}" if control.strip() else control + joined)
    return out + kept


def _split(line: str) -> tuple[str, str | None] | None:
    """``(control, assignment)`` of a flip-flop statement line: the leading ``if (...)``,
    ``else`` or ``else if (...)`` (with the indentation) and the ``lhs <= rhs;`` after it
    (None: a line of control only); None for any other form."""
    indent = len(line) - len(line.lstrip(" "))
    rest = line[indent:].rstrip()
    control = ""
    if rest.startswith("else"):
        control, rest = "else", rest[4:].lstrip()
    if rest.startswith("if ("):
        end = _closing(rest, 3)
        if end is None:
            return None
        control = f"{control} {rest[: end + 1]}".strip()
        rest = rest[end + 1 :].strip()
    if not rest:
        return (" " * indent + control, None) if control else None
    match = _ASSIGN_TAIL.match(rest)
    if match is None or (control and not control.startswith(("if", "else"))):
        return None
    return " " * indent + control, rest


def _closing(text: str, start: int) -> int | None:
    """Index of the ``)`` closing the ``(`` at ``start`` (escaped names skipped)."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            while i < len(text) and not text[i].isspace():
                i += 1
            continue
        depth += (char == "(") - (char == ")")
        if depth == 0:
            return i
        i += 1
    return None


# -- continuous assignments ---------------------------------------------------------------------
def procedural_assigns(netlist: str) -> str:
    """Continuous assignments of ``$signed`` arithmetic and of concatenations of at least
    :data:`MIN_CONCAT_BITS` bits as ``always @*`` blocks, their nets as ``reg``."""
    return _modules(netlist, _procedural_module)


def _procedural_module(lines: list[str]) -> list[str]:
    widths, ports, memories, drivers = {}, set(), set(), {}
    for line in lines:
        if match := _WIRE.match(line):
            name = match[3].strip()
            widths[name] = abs(int(match[1]) - int(match[2])) + 1 if match[1] else 1
        elif match := _PORT.match(line):
            ports.add(match[1].strip())
        elif match := _MEMORY.match(line):
            memories.add(match[1].strip())
        elif match := _CONTINUOUS.match(line):
            drivers[match[1].strip()] = drivers.get(match[1].strip(), 0) + 1
    chosen: set[str] = set()
    out = list(lines)
    for k, line in enumerate(lines):
        match = _CONTINUOUS.match(line)
        if match is None:
            continue
        name, expression = match[1].strip(), match[2]
        if name in ports or drivers[name] != 1 or name not in widths:
            continue
        names = set(_NAME.findall(_CONSTANT.sub(" ", expression))) - {"signed"}
        names.discard("$signed")
        if not names or names & memories:
            continue
        if "$signed" in expression or ("{" in expression and widths[name] >= MIN_CONCAT_BITS):
            chosen.add(name)
            out[k] = f"  always @* {match[1]} = {expression};"
    for k, line in enumerate(out):
        match = _WIRE.match(line)
        if match is not None and match[3].strip() in chosen:
            out[k] = "  reg " + line[len("  wire ") :]
    return out
