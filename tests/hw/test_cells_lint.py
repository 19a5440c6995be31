# amaranth: UnusedElaboratable=no
"""With V > 1 parallel cells (several write ports on the cell-written buffers, V
combinational c_prev reads) the Verilog stays lint-clean in Verilator -Wall (the documented
waivers) and Icarus accepts it."""

import shutil
import subprocess

import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.verilog import to_verilog
from lstmfpga.sim.cocotb_build import check_simulator, tool_environment
from lstmfpga.testing import random_qmodel

WAIVERS = __import__("lstmfpga.hw", fromlist=["x"]).__path__[0] + "/verilator_waivers.vlt"


@pytest.mark.parametrize(
    ("kwargs", "lanes", "simd", "cells", "options"),
    [
        (dict(input_size=2, hidden_size=4, bidirectional=True, proj_size=3, head="last"),
         16, 4, 3, dict(with_states=True, initial_state=True)),
        (dict(input_size=2, hidden_size=5, num_layers=2, head="all"), 12, 2, 2, {}),
    ],
    ids=["V3-bidir-proj-states", "V2-2layer-head-all"],
)  # fmt: skip
def test_parallel_cells_verilog_is_lint_clean(kwargs, lanes, simd, cells, options, tmp_path):
    _, q = random_qmodel(3, **kwargs)
    acc = LSTMAccelerator(q, lanes=lanes, simd=simd, cells=cells, max_seq_len=3, **options)
    (tmp_path / "lstm_accel.v").write_text(to_verilog(acc))
    check_simulator("verilator")
    with tool_environment("verilator"):
        lint = subprocess.run(
            [shutil.which("verilator"), "--lint-only", "-Wall", WAIVERS, "lstm_accel.v",
             "--top-module", "lstm_accel"],
            cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
    assert lint.returncode == 0 and "%Warning" not in lint.stderr, lint.stderr[:3000]
    check_simulator("icarus")
    icarus = subprocess.run(["iverilog", "-g2005", "-o", "a.out", "lstm_accel.v"],
                            cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert icarus.returncode == 0, icarus.stderr[:3000]
