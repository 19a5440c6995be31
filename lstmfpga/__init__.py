"""lstmfpga: turn a PyTorch-trained LSTM into verified, bit-exact FPGA hardware.

Notebook entry point: ``design = lstmfpga.convert(model, calib=x, preset="q16", lanes=8)``,
then ``design.predict(x)``, ``design.simulate(x, sim="verilator")``,
``design.write_verilog(dir)``, ``design.synthesize(dir, "ecp5")``, ``design.report()``
(:mod:`lstmfpga.design`). The CLI is ``lstmfpga COMMAND`` (:mod:`lstmfpga.cli`).
"""

from lstmfpga.design import Design, convert

__all__ = ["Design", "convert"]
