"""Checks of the design manifest's typed sections (pure Python, no Amaranth, no torch).

:meth:`lstmfpga.hw.manifest.Manifest.from_dict` reads each section through these: the stored
stream geometry (``stream.geometry``), the ``model`` section (and that the geometry is the
model's), the weight port (``weight_port``, ``weights_sha256``) and the mode
(``mode``, ``stream_cycles``). Each raises one line naming the field
(:class:`~lstmfpga.errors.ManifestError`).
"""

from __future__ import annotations

from ..errors import ManifestError
from .manifest_fields import (
    SHA256,
    bool_field,
    dict_field,
    int_field,
    require,
    str_field,
)
from .stream_geometry import HEAD_MODES, StreamGeometry
from .weight_port import WeightPort

__all__ = ["MODES", "check_model", "geometry", "mode", "weights"]

#: The accelerator's operating modes (``mode``; absent: ``"sequence"``).
MODES = ("sequence", "stream")
#: The integer entries of ``stream_cycles`` (:meth:`~.stream_cycles.StreamCycleModel.to_dict`).
_STREAM_CYCLES = ("latency", "interval", "per_step_outputs", "input_size")


def geometry(stream: dict, with_states: bool, initial_state: bool, where: str) -> StreamGeometry:
    where = f"{where}: stream geometry"
    info = dict_field(stream, "geometry", where.rsplit(" ", 1)[0])
    head_mode = require(info, "head_mode", where)
    if head_mode not in (None, *HEAD_MODES):
        raise ManifestError(f"{where}: head_mode must be null, 'last' or 'all', not {head_mode!r}")
    head_out = int_field(info, "head_out", where)
    if (head_mode is None) != (head_out == 0):
        raise ManifestError(f"{where}: head_out must be 0 exactly without a head, not {head_out}")
    return StreamGeometry(
        input_size=int_field(info, "input_size", where, 1),
        hidden_size=int_field(info, "hidden_size", where, 1),
        output_size=int_field(info, "output_size", where, 1),
        states=int_field(info, "states", where, 1),
        head_out=head_out,
        head_mode=head_mode,
        sequence_output_size=int_field(info, "sequence_output_size", where, 1),
        with_states=with_states,
        initial_state=initial_state,
        # stored only for a GRU (false: no c0/c_n in the streams); absent: an LSTM's
        cell_state=bool_field(info, "cell_state", where) if "cell_state" in info else True,
    )


def check_model(model: dict, geometry: StreamGeometry, where: str) -> None:
    """The ``model`` section's fields, and that the stored geometry is the model's."""
    where = f"{where}: model"
    layers = int_field(model, "num_layers", where, 1)
    bidirectional = bool_field(model, "bidirectional", where)
    hidden = int_field(model, "hidden_size", where, 1)
    proj = int_field(model, "proj_size", where)
    bool_field(model, "bias", where)
    str_field(model, "preset", where)
    head = require(model, "head", where)
    if head is not None:
        mode = str_field(head, "mode", f"{where} head")
        if mode not in HEAD_MODES:
            raise ManifestError(f"{where} head: mode must be 'last' or 'all', not {mode!r}")
        head = (mode, int_field(head, "out_features", f"{where} head", 1))
    cell = str_field(model, "cell", where) if "cell" in model else "lstm"  # GRUs only
    if cell not in ("lstm", "gru"):
        raise ManifestError(f"{where}: cell must be 'lstm' or 'gru', not {cell!r}")
    D, H_out = 2 if bidirectional else 1, proj or hidden
    derived = StreamGeometry(
        input_size=int_field(model, "input_size", where, 1),
        hidden_size=hidden,
        output_size=H_out,
        states=layers * D,
        head_out=0 if head is None else head[1],
        head_mode=None if head is None else head[0],
        sequence_output_size=D * H_out,
        with_states=geometry.with_states,
        initial_state=geometry.initial_state,
        cell_state=cell == "lstm",
    )
    if derived != geometry:
        raise ManifestError(f"{where}: the stream geometry must be the model's, not {geometry}")


def weights(info: dict, ports, where: str) -> dict:
    """The optional ``weights_sha256`` and ``weight_port`` sections (the port's names must be
    ports of the top, its data port as wide as a beat)."""
    out = {}
    if "weights_sha256" in info:
        out["weights_sha256"] = str_field(info, "weights_sha256", where, SHA256)
    if info.get("weight_port") is not None:
        port = WeightPort.from_dict(info["weight_port"], where)
        widths = {p.name: p.width for p in ports}
        names = [port.data, port.valid, port.ready] + ([port.last] if port.last else [])
        for name in names:
            if name not in widths:
                raise ManifestError(f"{where}: weight_port: port {name!r} is not a port of the top")
        if widths[port.data] not in (port.bits, 8 * port.beat_bytes):
            raise ManifestError(
                f"{where}: weight_port: port {port.data} must be {port.bits} or "
                f"{8 * port.beat_bytes} bits wide, not {widths[port.data]}"
            )
        out["weight_port"] = port
    return out


def mode(info: dict, where: str) -> tuple[str, dict | None]:
    """``mode`` (absent: ``"sequence"``) and ``stream_cycles`` (present exactly in stream
    mode: the stream cycle model's formula and its integers)."""
    mode = info.get("mode", "sequence")
    if mode not in MODES:
        raise ManifestError(f"{where}: mode must be 'sequence' or 'stream', not {mode!r:.40}")
    cycles = info.get("stream_cycles")
    if (cycles is not None) != (mode == "stream"):
        raise ManifestError(
            f"{where}: stream_cycles must be present exactly in stream mode, not "
            f"{'present' if cycles is not None else 'missing'} in mode {mode!r}"
        )
    if cycles is not None:
        cwhere = f"{where}: stream_cycles"
        str_field(cycles, "formula", cwhere)
        for key in _STREAM_CYCLES:
            int_field(cycles, key, cwhere)
    return mode, cycles
