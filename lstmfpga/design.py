"""One entry point for notebooks: ``lstmfpga.convert`` → a :class:`Design` to predict with,
simulate, write as Verilog and synthesize; the CLI's steps as methods.

>>> import numpy as np, torch, lstmfpga
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> lstm = torch.nn.LSTM(3, 4, batch_first=True)
>>> x = np.random.default_rng(0).normal(size=(5, 6, 3))
>>> design = lstmfpga.convert(lstm, calib=x, preset="q16", lanes=4)
>>> design.predict(x).shape                  # the golden model (dequantized), predict's shape
(5, 6, 4)
>>> report = design.simulate(x[:2], sim="amaranth")   # the hardware, checked bit for bit
>>> report["bit_exact"]
True
>>> design.write_verilog(tmp / "rtl", max_seq_len=16)["top"]   # tmp: a folder
'lstm_accel'
>>> wide = lstmfpga.convert(lstm, calib=x, lanes=4, simd=2, cells=2)  # the datapath's options
>>> manifest = wide.write_verilog(tmp / "rtl2", max_seq_len=8)
>>> manifest["lanes"], manifest["simd"], manifest["cells"]
(4, 2, 2)

``convert`` takes what ``lstmfpga export`` takes (a live ``nn.Module`` holding one
``nn.LSTM`` or ``nn.GRU`` and an optional ``nn.Linear`` head, or the path of a state_dict,
TorchScript or ``torch.export`` file) or an already exported
:class:`~lstmfpga.export.spec.ModelSpec`, and
quantizes it with ``preset`` (or a :class:`~lstmfpga.quant.config.QuantConfig`) calibrated on
``calib``. A GRU's Design does everything an LSTM's does (its states: ``h0`` only, no ``c0``).
Errors are the library's one-line ``ValueError`` subclasses (``SpecError``,
``FormatError``, ``CLIError``), as the CLI prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Design", "convert"]


@dataclass
class Design:
    """A quantized model (LSTM or GRU) and the hardware options it is built with.

    ``spec`` (float weights), ``qmodel`` (the fixed-point model, the arithmetic contract),
    ``lanes``, ``simd``, ``cells`` and ``max_seq_len`` (hardware options, as
    :class:`~lstmfpga.hw.accelerator.LSTMAccelerator`'s; ``cells`` None: the fewest that keep
    the MVU busy; ``max_seq_len`` None: the length of the inputs simulated; ``buffers`` None:
    the accelerator's default, 2 banks of the input and result buffers). ``last_report``
    is the most recent :meth:`simulate` report.
    """

    spec: object
    qmodel: object
    lanes: int = 8
    simd: int = 1
    cells: int | None = None
    max_seq_len: int | None = None
    buffers: int | None = None
    last_report: dict | None = field(default=None, repr=False)

    def predict(self, x, h0=None, c0=None, *, raw: bool = False) -> np.ndarray:
        """The golden model on float inputs ``(batch, seq, features)``: the head output (else
        the output sequence), dequantized, or integer codes with ``raw``."""
        from lstmfpga.quant.inference import predict_qmodel

        return predict_qmodel(self.qmodel, x, h0, c0, raw=raw).output

    def predict_float(self, x, h0=None, c0=None) -> np.ndarray:
        """The float64 reference (matches torch) on the same inputs."""
        from lstmfpga.export import reference

        return reference.forward(self.spec, x, h0, c0).prediction

    def simulate(self, x, *, sim: str = "verilator", labels=None, **options) -> dict:
        """Run the hardware in ``sim`` (``amaranth``, ``icarus``, ``verilator``) on ``x`` and
        return the bit-accuracy report (see ``docs/report.md``); ``options`` are those of
        :func:`lstmfpga.simulation.simulate_model` (``stall``, ``seed``, ``h0``, ``c0``,
        ``with_states``, ``build_dir``, ...)."""
        from lstmfpga.simulation import simulate_model

        report, _ = simulate_model(
            self.qmodel,
            x,
            simulator=sim,
            **self._datapath(),
            max_seq_len=self.max_seq_len,
            spec=self.spec,
            labels=labels,
            **options,
        )
        self.last_report = report
        return report

    def write_verilog(self, outdir: str | Path, *, max_seq_len: int = 64, **options) -> dict:
        """Write the Verilog, memory files and manifest into ``outdir`` (``lstmfpga generate``);
        returns the manifest. ``options``: ``with_states``, ``initial_state``, ``memories``,
        ``name``."""
        from lstmfpga.hw.verilog import generate

        length = self.max_seq_len if self.max_seq_len is not None else max_seq_len
        return generate(self.qmodel, outdir, **self._datapath(), max_seq_len=length, **options)

    def _datapath(self) -> dict:
        return {
            "lanes": self.lanes,
            "simd": self.simd,
            "cells": self.cells,
            "buffers": self.buffers,
        }

    def synthesize(self, outdir: str | Path, target: str = "ecp5", **options) -> dict:
        """Synthesize (and place and route) the design written to ``outdir`` — written first
        if ``outdir`` holds none (``lstmfpga synth``); ``options``: ``device``, ``freq_mhz``,
        ``seed``. The result is also merged into :attr:`last_report` under ``synthesis``."""
        from lstmfpga.synth import synthesize

        if not (Path(outdir) / "manifest.json").is_file():
            self.write_verilog(outdir, memories="readmemh")
        result = synthesize(outdir, target=target, **options)
        if self.last_report is not None:
            self.last_report["synthesis"] = result
        return result

    def report(self) -> str:
        """The text summary of the last :meth:`simulate` (and :meth:`synthesize`) run."""
        from lstmfpga.errors import CLIError
        from lstmfpga.sim.render import render_text

        if self.last_report is None:
            raise CLIError("no report yet: call simulate() first")
        return render_text(self.last_report)

    def save(self, folder: str | Path) -> Path:
        """Save ``spec/`` and ``qmodel/`` under ``folder`` (what the CLI commands read)."""
        folder = Path(folder)
        self.spec.save(folder / "spec")
        self.qmodel.save(folder / "qmodel")
        return folder


def convert(
    model,
    *,
    calib,
    preset="q16",
    lanes: int = 8,
    simd: int = 1,
    cells: int | None = None,
    max_seq_len: int | None = None,
    head: str | None = None,
    buffers: int | None = None,
) -> Design:
    """Export ``model`` and quantize it with ``preset`` calibrated on ``calib``; see the
    module docstring. ``head`` (``"last"``/``"all"``) as ``lstmfpga export --head``;
    ``lanes``, ``simd``, ``cells``, ``max_seq_len``, ``buffers``: the :class:`Design`'s
    hardware options (``lanes`` and ``simd`` are checked now, ``cells`` and ``buffers`` when
    the hardware is built)."""
    from lstmfpga.export.spec import ModelSpec
    from lstmfpga.quant.calibrate import quantize
    from lstmfpga.quant.config import QuantConfig

    if isinstance(model, ModelSpec):
        spec = model
    elif isinstance(model, str | Path):
        from lstmfpga.export.model_files import load_model

        spec = load_model(model, head=head)
    else:
        from lstmfpga.export.torch_loader import from_module

        spec = from_module(model, head=head)
    config = preset if isinstance(preset, QuantConfig) else QuantConfig.preset(preset)
    qmodel = quantize(spec, np.asarray(calib), config)
    from lstmfpga.hw.layout import WeightLayout

    WeightLayout.of(qmodel, lanes, simd)  # lanes and simd checked now rather than at simulate()
    return Design(spec, qmodel, lanes=lanes, simd=simd, cells=cells, max_seq_len=max_seq_len,
                  buffers=buffers)  # fmt: skip
