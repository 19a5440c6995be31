"""The control and status register map of the AXI top, as one table (pure Python).

:data:`REGISTERS` is the single description of the registers: :class:`~.registers.RegisterBlock`
builds its address decoder and access rules from it, :func:`render_markdown` writes
``docs/registers.md`` from it, and :mod:`lstmfpga.runtime` reads and writes registers by
its names. Nothing here imports Amaranth, so the host runtime can use it.

Every register is 32 bits wide at a word-aligned byte offset. Accesses:

* ``ro``: read only; a write answers ``SLVERR`` and changes nothing;
* ``rw``: read and write (the fields; other bits read 0);
* ``w1c``: read the flags; writing 1 to a flag clears it (0 leaves it alone);
* ``w1p``: write 1 to a bit to pulse its action for one cycle; reads 0.

An address holding no register answers ``SLVERR`` (reads return 0). The low two address
bits are ignored (AXI4-Lite accesses are word aligned). Byte strobes are honoured: a bit is
written only when the strobe of its byte is set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

__all__ = [
    "ACCESSES",
    "ADDR_WIDTH",
    "MAP_VERSION",
    "REGISTERS",
    "SATURATION_ROLES",
    "Field",
    "Register",
    "design_id",
    "field_mask",
    "register",
    "render_markdown",
    "tables_digest",
    "weights_digest",
]

#: The access kinds (see the module docstring).
ACCESSES = ("ro", "rw", "w1c", "w1p")
#: Byte-address width of the AXI4-Lite port (a 256-byte window).
ADDR_WIDTH = 8
#: Bumped when a register is added, changes meaning or moves; readable in ``VERSION``
#: (2: ``WEIGHT_LOADS``; 3: ``MODE``, ``STATE_CONTROL``; 4: ``SATURATION_*``,
#: ``CONTROL.clear_saturation``).
MAP_VERSION = 4
#: The tensors of the ``SATURATION_<ROLE>`` registers, named as the golden model names its
#: saturation counts (``GoldenResult.saturation``); :mod:`.saturation` counts them.
SATURATION_ROLES = ("preact", "cell", "hidden", "hn", "head_out")
_SATURATED = {
    "preact": "Gate pre-activations (an LSTM's gate rows out of the matrix-vector unit; a "
              "GRU's r, z and n in its cells)",
    "cell": "LSTM cell states `c` (a GRU: 0)",
    "hidden": "Hidden values: the cell outputs `m` (a GRU's `h`) and, with a projection, its "
              "rows",
    "hn": "GRU recurrent `n`-gate terms `hn` (an LSTM: 0)",
    "head_out": "Head outputs",
}  # fmt: skip


@dataclass(frozen=True)
class Field:
    """Bits ``bit .. bit + width - 1`` of a register."""

    name: str
    bit: int
    width: int
    description: str


@dataclass(frozen=True)
class Register:
    """One 32-bit register. ``reset`` is its value after reset (``None``: given when the
    block is built, ``built`` says what: the design ID, the mode); ``fields`` name its bits
    (none: the whole word)."""

    name: str
    offset: int
    access: str
    reset: int | None
    description: str
    fields: tuple[Field, ...] = ()
    built: str = ""

    def __post_init__(self):
        if self.access not in ACCESSES:
            raise ValueError(f"access must be one of {ACCESSES}, not {self.access!r}")
        if self.offset % 4 or not 0 <= self.offset < 1 << ADDR_WIDTH:
            raise ValueError(
                f"offset must be word aligned below {1 << ADDR_WIDTH}, not {self.offset:#x}"
            )


REGISTERS: tuple[Register, ...] = (
    Register("ID", 0x00, "ro", None,
             "Design ID: the low 32 bits of the SHA-256 of the design's manifest "
             "(`design_id`); the host runtime compares it with the manifest it was given. It "
             "names the hardware as generated, with its built-in weights: a weight reload "
             "does not change it (`WEIGHT_LOADS` tells whether the weights were reloaded).",
             built="design ID"),
    Register("VERSION", 0x04, "ro", MAP_VERSION, "Version of this register map."),
    Register("STATUS", 0x08, "ro", 0, "Live status of the accelerator.", (
        Field("busy", 0, 1, "a sequence is being computed or drained (stream mode: from its "
                            "first input element taken to its last result sent)"),
        Field("error", 1, 1, "the accelerator's `error` port: high from a malformed sequence "
                             "until a soft reset"),
    )),
    Register("ERRORS", 0x0C, "w1c", 0, "Sticky error flags; write 1 to clear a flag.", (
        Field("stream", 0, 1, "set when the accelerator's `error` rises (a sequence that was "
                              "not whole vectors, longer than `max_seq_len`, or ended inside "
                              "the initial state)"),
    )),
    Register("CONTROL", 0x10, "w1p", 0, "Actions; write 1 to start one, reads 0.", (
        Field("soft_reset", 0, 1, "reset the accelerator (its buffers, state machine, "
                                  "carried state and `error`; the weights are kept), the "
                                  "counters but `WEIGHT_LOADS`, the error flags and "
                                  "`STATE_CONTROL` for one cycle; stream beats in flight are "
                                  "lost, so stop the streams first"),
        Field("clear_saturation", 1, 1, "set every `SATURATION_*` counter to 0 (nothing "
                                        "else changes)"),
    )),
    Register("CYCLES", 0x14, "ro", 0, "Clock cycles since reset (wraps at 2**32)."),
    Register("BUSY_CYCLES", 0x18, "ro", 0,
             "Cycles with `STATUS.busy` high since reset (compute and drain; wraps)."),
    Register("SEQUENCES", 0x1C, "ro", 0,
             "Result sequences completed since reset: `m_axis` beats taken with `tlast` "
             "(wraps)."),
    Register("WEIGHT_LOADS", 0x20, "ro", 0,
             "Weight loads completed since `rst`: `s_axis_w` beats taken with `tlast` (wraps). "
             "Not cleared by `CONTROL.soft_reset`, which keeps the loaded weights; 0: the "
             "built-in weights, the ones `ID` names."),
    Register("MODE", 0x24, "ro", None, "The accelerator's operating mode, fixed when the "
             "design is generated.", (
        Field("stream", 0, 1, "1: stream mode (each step's output leaves as soon as it is "
                              "computed; `STATE_CONTROL` and `s_axis_tuser` control the "
                              "state); 0: sequence mode (whole sequences buffered)"),
    ), built="the mode"),
    Register("STATE_CONTROL", 0x28, "rw", 0,
             "Stream mode: the state (h, c) across sequences. In sequence mode it reads 0 and "
             "a write answers `SLVERR` (every sequence starts from zeros, or its `h0`, `c0`). "
             "Back to 0 on `CONTROL.soft_reset`.", (
        Field("keep_state", 0, 1, "1: carry the state over `tlast` into the next sequence "
                                  "(a continuous signal sent as consecutive sequences); 0: "
                                  "reset it before each sequence's first step. Either way "
                                  "`s_axis_tuser` on the first element of a step's x resets "
                                  "it before that step"),
    )),
    *(Register(f"SATURATION_{role.upper()}", 0x2C + 4 * k, "ro", 0,
               f"{_SATURATED[role]} that did not fit their format since reset, "
               "`CONTROL.clear_saturation` or `CONTROL.soft_reset` (wraps at 2**32): the "
               f"golden model's `saturation[\"{role}\"]` (see Saturation counters).")
      for k, role in enumerate(SATURATION_ROLES)),
)  # fmt: skip


def register(name: str) -> Register:
    """The register called ``name``."""
    for reg in REGISTERS:
        if reg.name == name:
            return reg
    raise KeyError(f"register must be one of {', '.join(r.name for r in REGISTERS)}, not {name!r}")


def field_mask(register_name: str, field_name: str) -> int:
    """The bit mask of field ``field_name`` of register ``register_name``."""
    for fld in register(register_name).fields:
        if fld.name == field_name:
            return ((1 << fld.width) - 1) << fld.bit
    raise KeyError(f"register {register_name} has no field {field_name!r}")


def design_id(manifest: dict) -> int:
    """The 32-bit ID of a design: the low 32 bits of the SHA-256 of its manifest as
    canonical JSON, without the entries that do not describe the hardware (``files``,
    ``memory_files``) and without ``design_id`` itself."""
    core = {k: v for k, v in manifest.items() if k not in ("files", "memory_files", "design_id")}
    text = json.dumps(core, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[-4:], "big")


def weights_digest(layout) -> str:
    """SHA-256 of a :class:`~.layout.WeightLayout`'s weight and bias memory images (recorded
    in the AXI manifest, so the design ID changes with the weights)."""
    digest = hashlib.sha256()
    for words in (layout.weight_words, layout.bias_words):
        digest.update(str(words.shape).encode() + words.astype("<i8").tobytes())
    return digest.hexdigest()


def tables_digest(tables: dict) -> str:
    """SHA-256 of a model's activation tables (:attr:`QuantizedModel.tables`): their
    parameters, entries and slopes, i.e. the activation ROMs of the hardware."""
    digest = hashlib.sha256()
    for name in sorted(tables):
        t = tables[name]
        head = [name, t.function, str(t.in_fmt), str(t.out_fmt), t.shift, t.size,
                t.interpolate, t.guard]  # fmt: skip
        digest.update(json.dumps(head).encode())
        for array in (t.entries, t.slopes):
            digest.update(str(array.shape).encode() + array.astype("<i8").tobytes())
    return digest.hexdigest()


def render_markdown() -> str:
    """``docs/registers.md``, generated from :data:`REGISTERS` (a test keeps them equal)."""
    lines = [*_md_intro(), *_md_tables(), *_md_saturation(), *_md_top(), *_md_reload()]
    return "\n".join(lines) + "\n"


def _md_intro() -> list[str]:
    return [
        "# Control and status registers",
        "",
        "<!-- Generated by lstmfpga.hw.register_map.render_markdown(); do not edit. -->",
        "",
        (
            "The AXI top (`lstmfpga.hw.axi_top.AXITop`) has an AXI4-Lite port `s_axil_*` "
            f"({ADDR_WIDTH}-bit byte addresses, 32-bit data) to the registers below "
            f"(register map version {MAP_VERSION}). The hardware and this page come from the "
            "same table, `lstmfpga.hw.register_map.REGISTERS`; the host runtime "
            "(`lstmfpga.runtime`) reads and writes them by name."
        ),
        "",
        (
            "Accesses: `ro` read only (a write answers `SLVERR` and changes nothing); `rw` "
            "read and write; `w1c` write 1 to clear a flag; `w1p` write 1 to pulse an action "
            "(reads 0). An address "
            "holding no register answers `SLVERR` (a read returns 0). The low two address bits "
            "are ignored; byte strobes are honoured (a bit is written only when its byte's "
            "strobe is set). One read and one write are handled at a time; a read takes effect "
            "when its address is accepted plus one cycle, and has no side effects."
        ),
        "",
    ]


def _md_tables() -> list[str]:
    lines = ["| offset | name | access | reset | description |", "|---|---|---|---|---|"]
    for reg in REGISTERS:
        reset = reg.built if reg.reset is None else f"`{reg.reset:#x}`"
        lines.append(
            f"| `{reg.offset:#04x}` | `{reg.name}` | {reg.access} | {reset} | {reg.description} |"
        )
    lines += ["", "## Fields", "", "| register | bits | field | meaning |", "|---|---|---|---|"]
    for reg in REGISTERS:
        for fld in reg.fields:
            bits = str(fld.bit) if fld.width == 1 else f"{fld.bit + fld.width - 1}:{fld.bit}"
            lines.append(f"| `{reg.name}` | {bits} | `{fld.name}` | {fld.description} |")
    return lines


def _md_saturation() -> list[str]:
    return [
        "",
        "## Saturation counters",
        "",
        (
            "`SATURATION_<ROLE>` counts, per tensor, the values that were rounded out of their "
            'format and saturated (or, with `overflow = "wrap"`, wrapped): what the golden '
            "model counts in `GoldenResult.saturation`. `preact`: an LSTM's gate "
            "pre-activations as the matrix-vector unit requantizes them, a GRU's r, z and n "
            "in its cells; `cell`: c; `hidden`: the cell outputs m (a GRU's h) and the "
            "projection's rows; `hn`: a GRU's recurrent n-gate term; `head_out`: the head. "
            "Each value counts once, when its result leaves the unit that computed it "
            "(`lstmfpga.hw.saturation`; the accelerator's `saturation` port). The inputs "
            "arrive as codes, so the golden model's `x` count (and `predict`'s counts of "
            "float `h0`, `c0` under `hidden`, `cell`) is the host's quantization: the "
            "registers equal `golden.run(model, x_codes, h0_codes, c0_codes).saturation` "
            "for the sequences run. The runtime reads them as a dict, "
            "`Registers.saturation()`, and `clear_saturation()` zeroes them."
        ),
    ]


def _md_top() -> list[str]:
    return [
        "",
        "## The AXI top and the host runtime",
        "",
        (
            "`lstmfpga.hw.axi_top.write_axi_design(accelerator, outdir)` writes `lstm_axi.v` "
            "and `manifest.json`: the accelerator's manifest with the top's ports, "
            "`weight_port` (the weight beats' format and the port's names), an `axi` "
            "section (register offsets, element and beat widths, digests of the weights and "
            "activation tables), `quantization` (rounding, overflow), `weight_formats` and "
            "`design_id` (the `ID` register's value: `design_id` of the rest of the manifest)."
        ),
        "",
        "| port | meaning |",
        "|---|---|",
        "| `clk`, `rst` | clock, synchronous active-high reset |",
        (
            "| `s_axis_tdata/tvalid/tready/tlast` | input elements, one per beat: the code in the "
            "low bits of a whole-byte word (padding ignored) |"
        ),
        (
            "| `m_axis_tdata/tvalid/tready/tlast` | results, one per beat, the code "
            "sign-extended to a whole-byte word |"
        ),
        (
            "| `s_axis_tkeep`, `m_axis_tkeep` | only with `beat_elements` K > 1: then `tdata` "
            "carries K elements in byte-aligned lanes (element j in lane j, "
            "`lstmfpga.hw.beat_format.BeatFormat`) and `tkeep` (one bit per byte) marks the "
            "lanes of a sequence's partial last beat |"
        ),
        (
            "| `s_axis_tuser` | only in stream mode (`MODE.stream`): one bit per lane, set on "
            "the first element of a step's x to reset the state before that step "
            "(`lstmfpga.runtime.encode_inputs(..., resets=)`) |"
        ),
        (
            "| `s_axis_w_tdata/tvalid/tready/tlast` | weight beats (`weight_port`), one memory "
            "word per beat in whole bytes; `tready` only between sequences; `tlast` on a "
            "load's last beat counts in `WEIGHT_LOADS` |"
        ),
        (
            "| `s_axil_*` | AXI4-Lite: `awaddr awvalid awready wdata wstrb wvalid wready bresp "
            "bvalid bready araddr arvalid arready rdata rresp rvalid rready` |"
        ),
        "",
        (
            "The stream contract is the accelerator's (`docs/accelerator.md`). The host side, "
            "`lstmfpga.runtime` (NumPy only), reads the manifest and does what a driver does "
            "over a DMA engine and a register window:"
        ),
        "",
        "```python",
        (
            "from lstmfpga.runtime import HardwareDesign, MemoryTransport, Registers, "
            "decode_bytes, encode_inputs"
        ),
        'design = HardwareDesign.load("rtl")',
        "regs = Registers(MemoryTransport(mmap_of_the_register_window), design)",
        "regs.check_id()                                  # the hardware is this design",
        "tx = encode_inputs(design, x, h0, c0).to_bytes()  # DMA to s_axis",
        "rx = ...                   # DMA from m_axis: the bytes received",
        'y = decode_bytes(design, rx, T=x.shape[1]).floats()["prediction"]',
        'regs.read("SEQUENCES"), regs.status(), regs.clear_errors(), regs.soft_reset()',
        'regs.saturation()          # {"preact": 0, "cell": 0, ...}: golden\'s saturation counts',
        "regs.clear_saturation()",
        "```",
        "",
        (
            "Wide beats: `write_axi_design(accelerator, outdir, beat_elements=K)` (K in 1..64; "
            "`lstmfpga generate --top axi --beat-elements K`) builds the top with K elements per "
            "`s_axis`/`m_axis` beat; the manifest records "
            "`axi.beat_elements` (absent for K = 1, whose Verilog and manifest are those of a "
            "top without wide beats) and the runtime reads it: the DMA bytes are the same for "
            "every K (each element's lane, little-endian, back to back; the DMA engine's "
            "`tkeep` marks a transfer's partial last beat), `encode_inputs(...).beats()` gives "
            "the bus beats (`tdata`, `tkeep`, `tlast`) and `decode_beats` reads result beats. "
            "`hw.beats.BeatUnpacker` and `BeatPacker` convert between beats and the "
            "accelerator's one-element stream, which still moves one element per cycle; "
            "`tkeep` must mark whole lanes from lane 0 (a lane counts when its first byte is "
            "kept; lanes after the first null one are ignored)."
        ),
    ]


def _md_reload() -> list[str]:
    return [
        "",
        "## Reloading the weights",
        "",
        (
            "`lstmfpga.runtime.pack_weights(design, qmodel)` checks the model against the "
            "manifest (geometry, every data and weight format, tables, memory shapes; one line "
            "naming the first mismatch) and gives the weight port's beats "
            "(`lstmfpga.hw.weight_port.WeightPort`, the one definition of the format: bit 0 "
            "`bias`, then the word address, then the word, lane-major; every weight word, "
            "then every bias word; each beat `beat_bytes` little-endian bytes). "
            "`lstmfpga pack-weights QMODEL --rtl RTLDIR -o weights.bin` writes the same bytes. "
            "Send them as one frame on `s_axis_w` (`tlast` on the last beat) between "
            "sequences, before the next sequence's first input beat; results are then the new "
            "model's, bit for bit. `ID` still names the generated design (its built-in "
            "weights); `WEIGHT_LOADS` counts the loads (a soft reset keeps the weights and "
            "the count). `lstmfpga simulate QMODEL --rtl RTLDIR` does the same in Icarus or "
            "Verilator; `tests/sim/test_runtime_axi.py` runs all of this against the Verilog "
            "in Icarus with cocotbext-axi (models A, B, A, random pauses on every stream)."
        ),
    ]
