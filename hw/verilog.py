"""Verilog for an accelerator, plus the files a user drops into an FPGA project.

:func:`generate` writes into ``outdir``:

* ``<name>.v``: the whole design, one module per Amaranth component, top module ``<name>``
  with AXI4-Stream ports (``s_axis_t*``, ``m_axis_t*``), ``clk`` and synchronous ``rst``;
* with ``memories="readmemh"``: one ``<name>_<memory>.hex`` per initialized memory, loaded by
  ``$readmemh`` (the Verilog refers to them by file name: keep them beside it, or in the
  simulator's/synthesis tool's working directory); with ``"inline"`` the contents are
  ``initial`` assignments inside the Verilog;
* ``manifest.json`` and ``manifest.md``: ports, formats, latency and cycle model, memories,
  multipliers and RAM bits (:func:`manifest`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape

from ..quant.model import QuantizedModel
from .accelerator import LSTMAccelerator

__all__ = ["MEMORY_MODES", "externalize_memories", "generate", "manifest", "to_verilog"]

MEMORY_MODES = ("inline", "readmemh")

_MEMORY = re.compile(
    r"^(?P<indent>[ \t]*)reg \[(?P<msb>\d+):0\] (?P<name>[\w$\\.\[\]]+) \[(?P<hi>\d+):0\];\n"
    r"(?P=indent)initial begin\n(?P<body>(?:.*\n)*?)(?P=indent)end\n",
    re.MULTILINE,
)
_ASSIGN = re.compile(
    r"^\s*(?P<name>\S+)\[(?P<index>\d+)\] = (?P<width>\d+)'h(?P<value>[0-9a-fA-F]+);"
)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a Verilog identifier, not {name!r}")


def to_verilog(accelerator: LSTMAccelerator, name: str = "lstm_accel") -> str:
    """The accelerator as Verilog text (via Amaranth's Yosys backend)."""
    _check_name(name)
    return verilog.convert(accelerator, name=name, emit_src=False)


def externalize_memories(text: str, prefix: str) -> tuple[str, dict[str, str]]:
    """Replace each memory's ``initial`` block with ``$readmemh``; returns the new text and
    ``{file name: hex contents}`` (one word per line, every address, zeros filled in).

    Files are named ``<prefix>_<module>_<memory>.hex`` (memories of different modules may
    share a name)."""
    files = {}
    module = prefix

    def replace(match: re.Match) -> str:
        name, depth, width = match["name"], int(match["hi"]) + 1, int(match["msb"]) + 1
        words = [0] * depth
        for line in match["body"].splitlines():
            assign = _ASSIGN.match(line)
            if assign is None:
                return match.group(0)  # not a plain memory initializer: leave it alone
            words[int(assign["index"])] = int(assign["value"], 16)
        digits = (width + 3) // 4
        safe = re.sub(r"\W+", "_", f"{module}_{name}").strip("_")
        file_name = f"{safe}.hex" if safe.startswith(prefix) else f"{prefix}_{safe}.hex"
        files[file_name] = "".join(f"{w:0{digits}x}\n" for w in words)
        indent = match["indent"]
        return (
            f"{indent}reg [{width - 1}:0] {name} [{depth - 1}:0];\n"
            f'{indent}initial $readmemh("{file_name}", {name});\n'
        )

    pieces = re.split(r"(?m)^(?=module )", text)
    out = []
    for piece in pieces:
        header = re.match(r"module\s+([^\s(]+)", piece)
        module = header.group(1) if header else prefix
        out.append(_MEMORY.sub(replace, piece))
    return "".join(out), files


def _ports(acc: LSTMAccelerator) -> list[dict]:
    describe = {
        "s_axis_tdata": "input element (signed code)",
        "s_axis_tvalid": "input valid",
        "s_axis_tready": "input ready (high while a sequence is being loaded)",
        "s_axis_tlast": "last element of a sequence",
        "m_axis_tdata": "result element (signed code)",
        "m_axis_tvalid": "result valid",
        "m_axis_tready": "result ready (back-pressure pauses the drain)",
        "m_axis_tlast": "last result element of a sequence",
        "busy": "computing or draining a sequence",
        "error": "sticky: a malformed or too long sequence was received",
    }
    ports = [
        {"name": "clk", "direction": "input", "width": 1, "description": "clock"},
        {"name": "rst", "direction": "input", "width": 1, "description": "synchronous reset"},
    ]
    for member_name, member in acc.signature.members.items():
        shape = Shape.cast(member.shape)
        ports.append(
            {
                "name": member_name,
                "direction": "input" if member.flow.value == "in" else "output",
                "width": shape.width,
                "signed": shape.signed,
                "description": describe[member_name],
            }
        )
    return ports


def manifest(acc: LSTMAccelerator, name: str = "lstm_accel") -> dict:
    """Everything a hardware user needs to integrate and budget the design."""
    from .cycles import CycleModel

    q = acc.model
    cycles = CycleModel.of(acc)
    memories = acc.memory_plan()
    ram_bits = sum(mem["width"] * mem["depth"] for mem in memories)
    return {
        "format": "lstmfpga.hardware",
        "version": 1,
        "top": name,
        "lanes": acc.lanes,
        "max_seq_len": acc.max_seq_len,
        "with_states": acc.with_states,
        "initial_state": acc.initial_state,
        "ports": _ports(acc),
        "model": {
            "input_size": q.input_size,
            "hidden_size": q.hidden_size,
            "num_layers": q.num_layers,
            "bidirectional": q.bidirectional,
            "proj_size": q.proj_size,
            "bias": q.has_bias,
            "head": None
            if q.head is None
            else {"mode": q.head.mode, "out_features": q.head.out_features},
            "preset": q.config.name,
        },
        "formats": {role: str(fmt) for role, fmt in q.formats.items()} | {"acc": str(q.acc)},
        "stream": {
            "input_elements": f"{acc.input_length(0)} + T * {q.input_size}",
            "output_elements": {str(T): acc.result_length(T) for T in (1, acc.max_seq_len)},
            "input_format": str(q.formats["x"]),
            "output_format": str(q.output_format),
        },
        "cycles": cycles.to_dict(),
        "memories": memories,
        "ram_bits": ram_bits,
        "multipliers": acc.multiplier_plan(),
    }


def _markdown(info: dict) -> str:
    lines = [
        f"# {info['top']}: LSTM accelerator",
        "",
        f"- lanes (MAC units): {info['lanes']}, max_seq_len: {info['max_seq_len']}",
        f"- model: {json.dumps(info['model'])}",
        f"- formats: {', '.join(f'{k}={v}' for k, v in info['formats'].items())}",
        f"- RAM bits: {info['ram_bits']}",
        "",
        "## Ports",
        "",
        "| port | dir | width | description |",
        "|---|---|---|---|",
    ]
    for p in info["ports"]:
        lines.append(f"| `{p['name']}` | {p['direction']} | {p['width']} | {p['description']} |")
    lines += ["", "## Cycle model", "", info["cycles"]["formula"], ""]
    lines += ["| T | cycles per sequence |", "|---|---|"]
    for T, n in info["cycles"]["per_sequence"].items():
        lines.append(f"| {T} | {n} |")
    lines += ["", "## Memories", "", "| memory | width | depth | bits |", "|---|---|---|---|"]
    for mem in info["memories"]:
        lines.append(
            f"| {mem['name']} | {mem['width']} | {mem['depth']} | {mem['width'] * mem['depth']} |"
        )
    lines += ["", "## Multipliers", "", "| where | count | width |", "|---|---|---|"]
    for mul in info["multipliers"]:
        lines.append(f"| {mul['where']} | {mul['count']} | {mul['a_bits']}x{mul['b_bits']} |")
    return "\n".join(lines) + "\n"


def generate(
    model: QuantizedModel,
    outdir: str | Path,
    *,
    lanes: int = 8,
    max_seq_len: int = 64,
    with_states: bool = False,
    initial_state: bool = False,
    memories: str = "inline",
    name: str = "lstm_accel",
) -> dict:
    """Write Verilog, memory files and the manifest for ``model`` into ``outdir``.

    Returns the manifest, with ``files`` listing what was written (relative to ``outdir``).
    """
    if memories not in MEMORY_MODES:
        raise ValueError(f"memories must be one of {MEMORY_MODES}, not {memories!r}")
    _check_name(name)
    acc = LSTMAccelerator(
        model,
        lanes=lanes,
        max_seq_len=max_seq_len,
        with_states=with_states,
        initial_state=initial_state,
    )
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    text = to_verilog(acc, name)
    files = {}
    if memories == "readmemh":
        text, files = externalize_memories(text, name)
    (outdir / f"{name}.v").write_text(text)
    for file_name, contents in files.items():
        (outdir / file_name).write_text(contents)
    info = manifest(acc, name)
    info["memory_files"] = memories
    info["files"] = [f"{name}.v", *sorted(files), "manifest.json", "manifest.md"]
    (outdir / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    (outdir / "manifest.md").write_text(_markdown(info))
    return info
