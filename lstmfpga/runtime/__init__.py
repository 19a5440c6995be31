"""The host-side runtime of a generated design (NumPy only: no Amaranth, no torch).

Given a design's ``manifest.json`` (:class:`HardwareDesign`), the runtime turns float
inputs into the input beat stream (:func:`encode_inputs`, or codes with
:func:`encode_codes`), output beats into arrays (:func:`decode_outputs`: codes in the shapes
of ``lstmfpga predict --raw``, and floats), a quantized model into the weight-port beat
stream (:func:`pack_weights`, after :func:`check_model`), and reads and writes the control
and status registers through a transport with ``read32``/``write32`` (:class:`Registers`,
:class:`AsyncRegisters`, :class:`MemoryTransport`; ``Registers.saturation()`` reads the
saturation counters per tensor, the golden model's counts). A design with ``K`` elements per beat
(``HardwareDesign.beat_elements``) moves the same DMA bytes; :meth:`BeatStream.beats` and
:func:`decode_beats` work at the bus level (``tdata``, ``tkeep``, ``tlast``). A stream-mode
design (``HardwareDesign.mode``) takes sequences of any length, ``resets=`` (``tuser``) and
``Registers.keep_state``::

    from lstmfpga.runtime import HardwareDesign, Registers, decode_outputs, encode_inputs
    design = HardwareDesign.load("rtl")
    beats = encode_inputs(design, x)            # beats.to_bytes() -> the DMA's input buffer
    ...                                         # DMA out, DMA back
    results = decode_outputs(design, words, T=x.shape[1])   # or decode_bytes(design, buf, T)
    y = results.floats()["prediction"]          # as `lstmfpga predict`

Errors are one line naming the problem: :class:`ManifestError`, :class:`StreamError`,
:class:`DeviceError` (all :class:`lstmfpga.errors.LstmfpgaError`).
"""

from .design import DeviceError, HardwareDesign, ManifestError, StreamError
from .registers import AsyncRegisters, AsyncTransport, MemoryTransport, Registers, Status, Transport
from .streams import (
    BeatStream,
    Results,
    decode_beats,
    decode_bytes,
    decode_outputs,
    encode_codes,
    encode_inputs,
)
from .weights import WeightStream, check_model, pack_weights

__all__ = [
    "AsyncRegisters",
    "AsyncTransport",
    "BeatStream",
    "DeviceError",
    "HardwareDesign",
    "ManifestError",
    "MemoryTransport",
    "Registers",
    "Results",
    "Status",
    "StreamError",
    "Transport",
    "WeightStream",
    "check_model",
    "decode_beats",
    "decode_bytes",
    "decode_outputs",
    "encode_codes",
    "encode_inputs",
    "pack_weights",
]
