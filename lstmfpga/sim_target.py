"""The hardware a simulation runs: a new accelerator from options, or an already generated
design folder (``simulate --rtl``) after checking that it fits the model, with the weights
reloaded through its weight port when they differ from the built-in ones."""

from __future__ import annotations

from dataclasses import dataclass

from lstmfpga.errors import SimulationError
from lstmfpga.hw.manifest import Manifest

__all__ = ["SimTarget", "folder_mode", "same_hardware"]


@dataclass
class SimTarget:
    """What :func:`simulate_model` runs: ``design`` (an accelerator, or a folder's
    :class:`~lstmfpga.sim.cocotb_build.Design`), the accelerator ``acc`` of its options (for
    the cycle model) and the report's ``settings`` entries."""

    design: object
    acc: object
    settings: dict

    @property
    def geometry(self):
        return self.acc.stream_geometry

    @classmethod
    def new(cls, model, T: int, *, lanes, simd, cells, max_seq_len, with_states,
            initial_state, mode="sequence", buffers=None):  # fmt: skip
        """A new accelerator for ``model`` with these options (``None``: the defaults; lanes
        8, ``max_seq_len`` the inputs' ``T``); ``settings`` records what is not default."""
        from lstmfpga.hw.accelerator import LSTMAccelerator

        max_seq_len = T if max_seq_len is None else max_seq_len
        if max_seq_len < T and mode == "sequence":
            raise SimulationError(
                f"max_seq_len {max_seq_len} is shorter than the inputs' {T} steps"
            )
        acc = LSTMAccelerator(
            model, lanes=8 if lanes is None else lanes, simd=1 if simd is None else simd,
            cells=cells, max_seq_len=max_seq_len, with_states=with_states,
            initial_state=initial_state, mode=mode, buffers=buffers,
        )  # fmt: skip
        settings = {"simd": acc.simd} if acc.simd != 1 else {}
        settings |= {} if buffers is None else {"buffers": acc.buffers}
        settings |= {"mode": mode} if mode != "sequence" else {}
        return cls(acc, acc, settings | ({} if cells is None else {"cells": acc.cells}))

    @classmethod
    def folder(cls, model, rtl, T: int, *, lanes, simd, cells, max_seq_len, with_states,
               initial_state, beat_elements=None, mode="sequence", stateful=False,
               buffers=None):  # fmt: skip
        """The design in folder ``rtl`` for ``model``, after checking that they fit
        (``mode`` ``"stream"`` and ``stateful`` need a stream-mode folder; ``stateful`` its
        ``keep_state`` input, i.e. the plain top: an AXI top's is ``STATE_CONTROL``; given
        options, ``buffers`` too, must be the folder's)."""
        import dataclasses
        from pathlib import Path

        from lstmfpga.hw.register_map import weights_digest
        from lstmfpga.runtime import HardwareDesign, check_model
        from lstmfpga.sim.bench_top import weight_files
        from lstmfpga.sim.cocotb_build import Design

        where = f"--rtl {rtl}"
        hw = HardwareDesign.load(rtl)
        layout = check_model(hw, model)
        given = {"lanes": lanes, "simd": simd, "cells": cells, "max_seq_len": max_seq_len,
                 "beat_elements": beat_elements}  # fmt: skip
        for what, value in given.items():
            if value is not None and value != getattr(hw, what):
                raise SimulationError(f"{what} must be the design's {getattr(hw, what)} "
                                      f"({where}), not {value}")  # fmt: skip
        manifest = Manifest.load(rtl)
        _check_folder_mode(manifest, where, mode, stateful, buffers)
        if T > hw.max_seq_len and folder_mode(manifest) == "sequence":
            raise SimulationError(
                f"the inputs' {T} steps must fit the design's max_seq_len {hw.max_seq_len} "
                f"({where})"
            )
        for what, wanted, built in (("initial states (h0, c0)", initial_state, hw.initial_state),
                                    ("final states", with_states, hw.with_states)):  # fmt: skip
            if wanted and not built:
                raise SimulationError(
                    f"{what} need a design built with them, not {where} (generate it with "
                    f"--{'initial-state' if 'initial' in what else 'with-states'})"
                )
        acc = same_hardware(model, rtl, hw)
        design = Design.of(Path(rtl))
        reload = hw.weights_sha256 != weights_digest(layout)
        settings = {"rtl": str(rtl), "weights_reloaded": reload}
        if reload:
            port = hw.weight_port
            if port is None:
                raise SimulationError(
                    f"the qmodel's weights must be the ones built into {where}, which has no "
                    "weight port to load others (generate the design again)"
                )
            width = next(p.width for p in manifest.ports if p.name == port.data)
            files = weight_files(port.pack(layout), width)
            design = dataclasses.replace(design, hex_files=design.hex_files | files)
            settings["weight_beats"] = port.beats
        if hw.simd != 1:
            settings["simd"] = hw.simd
        if cells is not None:
            settings["cells"] = hw.cells
        return cls(design, acc, settings)


def _check_folder_mode(manifest, where: str, mode: str, stateful: bool, buffers) -> None:
    """The folder can run ``mode`` (``"stream"`` needs a stream-mode design), ``stateful``
    (a stream-mode design with a ``keep_state`` input) and has the ``buffers`` asked for."""
    built_mode = folder_mode(manifest)
    for what, wanted in (("mode 'stream'", mode == "stream"), ("stateful", stateful)):
        if wanted and built_mode != "stream":
            raise SimulationError(
                f"{what} needs a stream-mode design, not {where} (mode {built_mode!r})"
            )
    if stateful and all(p.name != "keep_state" for p in manifest.ports):
        raise SimulationError(
            f"stateful needs the design's keep_state input, which {where} does not have "
            "(an AXI top keeps the state by its STATE_CONTROL register): run the plain "
            "top's folder"
        )
    if buffers is not None and buffers != manifest.buffers:
        raise SimulationError(
            f"buffers must be the design's {manifest.buffers} ({where}), not {buffers}"
        )


def same_hardware(model, rtl, hw):
    """The accelerator ``model`` gives with the options of folder ``rtl`` (never elaborated),
    after checking that its manifest is the folder's (but for the weights and the top)."""
    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.verilog import build_manifest

    folder = Manifest.load(rtl)
    acc = LSTMAccelerator(
        model, lanes=hw.lanes, simd=hw.simd, cells=hw.cells, max_seq_len=hw.max_seq_len,
        with_states=hw.with_states, initial_state=hw.initial_state, mode=folder_mode(folder),
        buffers=folder.buffers,
    )  # fmt: skip
    acc._MustUse__silence = True  # only its parameters and cycle model are used
    mine, theirs = build_manifest(acc).to_dict(), folder.to_dict()
    for key in ("stream", "cycles", "memories", "multipliers", "formats", "model"):
        if mine[key] != theirs.get(key):
            raise SimulationError(
                f"the hardware the qmodel gives with the options of --rtl {rtl} must be the "
                f"design's, not differ in its {key}"
            )
    return acc


def folder_mode(manifest) -> str:
    """A design folder's mode (``"sequence"`` when its manifest predates modes)."""
    mode = getattr(manifest, "mode", None)
    return mode if isinstance(mode, str) else manifest.extra.get("mode", "sequence")
