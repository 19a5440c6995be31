"""``lstmfpga pack-weights QMODEL --rtl RTLDIR -o weights.bin``: the weight beat stream of a
quantized model for already generated hardware.

Checks QMODEL against RTLDIR's manifest.json first: the geometry (sizes, layers, directions,
projection, bias, head), every data and weight format, the accumulator, the rounding rules,
the activation tables and the weight memories' shape must be the hardware's (a model
quantized with ``lstmfpga quantize ... --formats-from`` the design's qmodel is); the first
mismatch is one line naming it. The design must record its weight formats (the AXI top's
manifest does).

weights.bin holds the load beats of the weight memory (``lstmfpga.runtime.pack_weights``, in
the format of ``lstmfpga.hw.weight_port.WeightPort``): every weight word, then every bias word,
one beat each, each beat ``ceil(bits / 8)`` bytes little-endian; a beat is bit 0 ``bias``
(1: bias memory), then the word address, then the word (printed with the beat count). Send
it as one frame to the design's weight port (``s_axis_w`` of the AXI top, ``tlast`` on the
last beat; ``w`` of the plain top) between sequences; ``lstmfpga simulate QMODEL --rtl
RTLDIR`` does that in a simulator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lstmfpga.commands._common import add_command, add_qmodel_argument
from lstmfpga.errors import CLIError
from lstmfpga.export import files


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "pack-weights",
        "write the weight beat stream of a quantized model for generated hardware",
        __doc__,
        run,
    )
    add_qmodel_argument(parser)
    parser.add_argument(
        "--rtl", required=True, metavar="RTLDIR", help="design folder (with manifest.json)"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="weights.bin", help="beat stream file"
    )


def run(args: argparse.Namespace) -> int:
    from lstmfpga.quant.model import QuantizedModel
    from lstmfpga.runtime import HardwareDesign, pack_weights

    output = Path(args.output)
    if output.is_dir():
        raise CLIError(f"-o {output} must be a file name, not a directory")
    if not output.parent.is_dir():
        raise CLIError(f"-o {output}: folder {output.parent} does not exist")
    rtl = Path(args.rtl)
    if not (rtl / "manifest.json").is_file():
        raise CLIError(f"--rtl {rtl} must be a design folder with manifest.json")
    design = HardwareDesign.load(rtl)
    model = QuantizedModel.load(args.qmodel)
    stream = pack_weights(design, model)
    with files.atomic_write(output, "wb") as file:
        file.write(stream.to_bytes())
    f = stream.fields
    print(
        f"{len(stream)} beats of {stream.bits} bits ({stream.beat_bytes} bytes each, "
        f"little-endian): bias bit {f['bias'][0]}, addr bits {f['addr'][0]}.."
        f"{sum(f['addr']) - 1}, data bits {f['data'][0]}..{sum(f['data']) - 1}"
    )
    print(f"wrote {output}")
    return 0
