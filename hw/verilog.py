"""Verilog for an accelerator, plus the files a user drops into an FPGA project.

:func:`generate` writes into ``outdir``:

* ``<name>.v``: the whole design, one module per Amaranth component, top module ``<name>``
  with AXI4-Stream ports (``s_axis_t*``, ``m_axis_t*``), ``clk`` and synchronous ``rst``;
* with ``memories="readmemh"``: one ``<name>_<memory>.hex`` per initialized memory, loaded by
  ``$readmemh`` (the Verilog refers to them by file name: keep them beside it, or in the
  simulator's/synthesis tool's working directory); with ``"inline"`` the contents are
  ``initial`` assignments inside the Verilog;
* ``manifest.json`` and ``manifest.md``: ports, formats, latency and cycle model, memories,
  multipliers and RAM bits (:class:`~lstmfpga.hw.manifest.Manifest`, :func:`build_manifest`).

Every file is written to a temporary name and renamed, the manifest last; an earlier
design's files in the same folder are removed (:func:`write_design`).
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib.wiring import Flow

from ..export import files
from ..quant.model import QuantizedModel
from .accelerator import LSTMAccelerator
from .manifest import HARDWARE_FORMAT, MEMORY_MODES, ComputeCycles, Manifest, Port
from .manifest_fields import FILE_NAME, IDENTIFIER
from .stream_geometry import StreamGeometry
from .weight_port import WeightPort

__all__ = [
    "HARDWARE_FORMAT",
    "MEMORY_MODES",
    "build_manifest",
    "check_output",
    "externalize_memories",
    "generate",
    "manifest",
    "to_verilog",
    "weight_port",
    "write_design",
]

_IDENTIFIER, _FILE_NAME = IDENTIFIER, FILE_NAME

_MEMORY = re.compile(
    r"^(?P<indent>[ \t]*)reg \[(?P<msb>\d+):0\] (?P<name>[\w$\\.\[\]]+) \[(?P<hi>\d+):0\];\n"
    r"(?P=indent)initial begin\n(?P<body>(?:.*\n)*?)(?P=indent)end\n",
    re.MULTILINE,
)
_ASSIGN = re.compile(
    r"^\s*(?P<name>\S+)\[(?P<index>\d+)\] = (?P<width>\d+)'h(?P<value>[0-9a-fA-F]+);"
)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
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
    contents = {}
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
        contents[file_name] = "".join(f"{w:0{digits}x}\n" for w in words)
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
    return "".join(out), contents


_DESCRIBE = {
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
    "w__payload": "weight beat: bit 0 bias, then the word address, then the word (weight_port)",
    "w__valid": "weight beat valid",
    "w__ready": "weight beat ready (only between sequences)",
    "s_axis_tuser": "stream mode: on the first element of a step's x, reset the state first",
    "keep_state": "stream mode: 1 carries the state over tlast, 0 resets it per sequence",
    "saturation": "per cycle, values that did not fit their format, per tensor "
    "(preact, cell, hidden, hn, head_out; lstmfpga.hw.saturation)",
}


def _ports(acc: LSTMAccelerator) -> tuple[Port, ...]:
    """The top's ports, named as Amaranth's Verilog names them (``<member>__<field>`` for a
    stream member such as ``w``)."""
    ports = [Port("clk", "input", 1, "clock"), Port("rst", "input", 1, "synchronous reset")]
    for path, member, _ in acc.signature.flatten(acc):
        name = "__".join(str(part) for part in path)
        shape = Shape.cast(member.shape)
        direction = "input" if member.flow == Flow.In else "output"
        ports.append(Port(name, direction, shape.width, _DESCRIBE[name], shape.signed))
    return tuple(ports)


def weight_port(acc: LSTMAccelerator) -> WeightPort | None:
    """The accelerator's weight port (``w``), ``None`` if it has none; its payload must be
    :class:`~.weight_port.WeightPort`'s beat (checked)."""
    if "w" not in acc.signature.members:
        return None
    port = WeightPort.of(acc.layout)
    width = Shape.cast(acc.signature.members["w"].signature.members["payload"].shape).width
    if width != port.bits:
        raise ValueError(f"the w port's payload must be {port.bits} bits wide, not {width}")
    return port


def _compute_cycles(cycles) -> ComputeCycles:
    """``compute(T)`` as ``first + (T - 1) * per_step`` (every step after the first costs
    the same); checked against the cycle model at ``max_seq_len``."""
    Tmax = cycles.accelerator.max_seq_len
    first = cycles.compute(1)
    per_step = cycles.compute(2) - first if Tmax >= 2 else 0
    affine = ComputeCycles(first, per_step)
    if affine(Tmax) != cycles.compute(Tmax):
        raise ValueError(
            f"the cycle model must be affine in T, not {cycles.compute(Tmax)} cycles at "
            f"T={Tmax} against {affine(Tmax)}"
        )
    return affine


def build_manifest(acc: LSTMAccelerator, name: str = "lstm_accel") -> Manifest:
    """Everything a hardware user needs to integrate and budget the design (without
    ``files`` and ``memory_files``, which :func:`write_design` adds)."""
    from ..quant.given_formats import tensor_formats
    from .cycles import CycleModel
    from .register_map import weights_digest

    _check_name(name)
    q = acc.model
    cycles = CycleModel.of(acc)
    memories = acc.memory_plan()
    mode = {}
    compute = None
    if acc.mode == "stream":
        from .stream_cycles import StreamCycleModel

        stream_cycles = StreamCycleModel.of(acc)
        compute = ComputeCycles(stream_cycles.latency, stream_cycles.interval)
        mode = {"mode": "stream", "stream_cycles": stream_cycles.to_dict()}
    geometry = StreamGeometry.of(q, with_states=acc.with_states, initial_state=acc.initial_state)
    return Manifest(
        top=name,
        lanes=acc.lanes,
        simd=acc.simd,
        cells=acc.cells,
        max_seq_len=acc.max_seq_len,
        geometry=geometry,
        compute=_compute_cycles(cycles) if compute is None else compute,
        ports=_ports(acc),
        model=q.geometry_dict() | {"preset": q.config.name},
        formats={role: str(fmt) for role, fmt in q.formats.items()} | {"acc": str(q.acc)},
        stream={
            "input_elements": f"{geometry.input_length(0)} + T * {q.input_size}",
            "output_elements": {str(T): geometry.output_length(T) for T in (1, acc.max_seq_len)},
            "input_format": str(q.formats["x"]),
            "output_format": str(q.output_format),
        },
        cycles=cycles.to_dict(),
        memories=tuple(memories),
        ram_bits=sum(mem["width"] * mem["depth"] for mem in memories),
        multipliers=tuple(acc.multiplier_plan()),
        weight_port=weight_port(acc),
        weights_sha256=weights_digest(acc.layout),
        buffers=acc.buffers,
        extra={
            # what a host runtime needs to quantize inputs as `predict` does, and what
            # reloaded weights must fit (`pack-weights`, `quantize --formats-from`)
            "quantization": {"rounding": q.rounding, "overflow": q.overflow},
            "weight_formats": {n: str(f) for n, f in tensor_formats(q).items()},
        }
        | mode,
    )


def manifest(acc: LSTMAccelerator, name: str = "lstm_accel") -> dict:
    """:func:`build_manifest` as the ``manifest.json`` object."""
    return build_manifest(acc, name).to_dict()


def _markdown(info: dict) -> str:
    lines = [
        f"# {info['top']}: LSTM accelerator",
        "",
        (
            f"- lanes (MAC rows) x simd (columns): {info['lanes']} x {info['simd']} = "
            f"{info['lanes'] * info['simd']} MVU multipliers, + {info['cells']} cell units, "
            f"max_seq_len: {info['max_seq_len']}"
        ),
        *(
            [f"- buffers: {info['buffers']} (sequence n+1 loads while n computes, n-1 drains)"]
            if info.get("buffers", 1) == 2
            else []
        ),
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


def generate(model: QuantizedModel, outdir: str | Path, *, memories: str = "inline",
             name: str = "lstm_accel", lanes: int = 8, **options) -> dict:  # fmt: skip
    """Write Verilog, memory files and the manifest for ``model`` into ``outdir``.

    ``lanes`` (8 unless given) and ``options`` (``simd``, ``cells``: ``None`` for the fewest
    that keep the MVU busy, ``max_seq_len``, ``with_states``, ``initial_state``, ``mode``)
    are :class:`~.accelerator.LSTMAccelerator`'s, with its defaults. Returns the manifest,
    with ``files`` listing what was written (relative to ``outdir``). See
    :func:`write_design` for how an existing folder is treated.
    """
    if memories not in MEMORY_MODES:
        raise ValueError(f"memories must be one of {MEMORY_MODES}, not {memories!r}")
    _check_name(name)
    check_output(outdir)  # before the accelerator exists (a refused one would be "unused")
    acc = LSTMAccelerator(model, lanes=lanes, **options)
    return write_design(acc, outdir, memories=memories, name=name)


def check_output(outdir: str | Path) -> list[str]:
    """Check that ``outdir`` may receive a design; returns the files of the design already
    there (from its ``manifest.json``; empty for a new or empty folder).

    Refused (``ValueError``, one line): ``outdir`` is an existing file; its ``manifest.json``
    is not a hardware manifest (another artifact, unreadable, or a link); the manifest lists
    a name that is not a plain file name in the folder.
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"output {outdir} must be a directory, not an existing file")
    manifest = outdir / "manifest.json"
    if not (manifest.exists() or manifest.is_symlink()):
        return []
    if manifest.is_symlink() or not manifest.is_file():
        raise ValueError(f"{manifest} must be a regular file")
    old = files.read_json(manifest, "existing manifest")
    if old.get("format") != HARDWARE_FORMAT:
        raise ValueError(
            f"output {outdir} holds a {old.get('format')!r} artifact, not a design: choose "
            "another folder"
        )
    listed = old.get("files", [])
    if not isinstance(listed, list) or not all(
        isinstance(n, str) and _FILE_NAME.fullmatch(n) for n in listed
    ):
        raise ValueError(f"{manifest}: files must be a list of plain file names")
    top = old.get("top")
    if isinstance(top, str) and _IDENTIFIER.fullmatch(top):
        listed = [*listed, f"{top}.v"]
    return listed


def write_design(
    acc: LSTMAccelerator, outdir: str | Path, *, memories: str = "inline", name: str = "lstm_accel"
) -> dict:
    """Write the design of ``acc`` into ``outdir`` (created); returns the manifest.

    Every file is written to a temporary name and renamed; the earlier ``manifest.json`` is
    removed first and the new one written last, so a folder with a manifest holds that
    manifest's whole design. A folder holding an earlier
    design is reused: after the new files are written, the earlier design's files that the
    new one did not write (those its manifest listed, and ``<top>.v`` / ``<top>_*.hex`` of
    the earlier and the new top name) are removed, so no stale Verilog or ``.hex`` file is
    left beside the new design. A folder holding anything else is refused before anything
    is written (:func:`check_output`).
    """
    if memories not in MEMORY_MODES:
        raise ValueError(f"memories must be one of {MEMORY_MODES}, not {memories!r}")
    _check_name(name)
    outdir = Path(outdir)
    previous = check_output(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    text = to_verilog(acc, name)
    hex_files = {}
    if memories == "readmemh":
        text, hex_files = externalize_memories(text, name)
    built = build_manifest(acc, name).replace(
        memory_files=memories,
        files=(f"{name}.v", *sorted(hex_files), "manifest.json", "manifest.md"),
    )
    info = built.to_dict()
    # No manifest while the files change: an interrupted write leaves no folder that looks
    # like a (mismatched) design.
    (outdir / "manifest.json").unlink(missing_ok=True)
    files.write_text(outdir / f"{name}.v", text)
    for file_name, contents in hex_files.items():
        files.write_text(outdir / file_name, contents)
    files.write_text(outdir / "manifest.md", _markdown(info))
    built.save(outdir / "manifest.json")
    _remove_stale(outdir, previous, name, set(info["files"]))
    return info


def _remove_stale(outdir: Path, previous: list[str], name: str, keep: set[str]) -> None:
    stale = set(previous)
    for top in {name, *(n[:-2] for n in previous if n.endswith(".v"))}:
        stale |= {p.name for p in outdir.glob(f"{glob.escape(top)}_*.hex")}
        stale.add(f"{top}.v")
    for file_name in sorted(stale - keep):
        path = outdir / file_name
        if _FILE_NAME.fullmatch(file_name) and (path.is_symlink() or path.is_file()):
            path.unlink()  # a link is removed, never followed
