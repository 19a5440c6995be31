# amaranth: UnusedElaboratable=no
"""``lstmfpga simulate QMODEL --rtl RTLDIR``: a model run on hardware generated before, its
weights streamed in through the weight port when they are not the built-in ones; a model or
option that does not fit the design is refused in one line naming the mismatch.

The design is ``generate``'s output for test_cocotb_flow's "P1-odd" model and options, so its
Verilog is the shared builds' (tests/sim/sim_flow_cases.py): no new simulator build.
"""

import argparse
import json
import shutil

import numpy as np
import pytest
from helpers.sweep import LARGE
from sim_flow_cases import CASES, MAX_SEQ_LEN, cache_root, seed_of

from lstmfpga.commands import simulate
from lstmfpga.errors import CLIError, ManifestError, SimulationError
from lstmfpga.hw.verilog import generate
from lstmfpga.quant import golden
from lstmfpga.quant.given_formats import quantize_like
from lstmfpga.runtime import HardwareDesign, pack_weights
from lstmfpga.testing import random_inputs, random_qmodel, random_spec

NAME = "P1-odd"
KWARGS, LANES, T, _, _ = CASES[NAME]
SEED = seed_of(NAME)


def _main(*argv):
    parser = argparse.ArgumentParser(prog="lstmfpga")
    simulate.register(parser.add_subparsers())
    args = parser.parse_args([str(a) for a in argv])
    return int(args.func(args))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The design generated for model A; model B (retrained: every weight x 0.9, quantized
    with A's formats), model C (another hidden size) and model D (A's spec, w8a8), saved."""
    root = tmp_path_factory.mktemp("rtl")
    _, qa = random_qmodel(SEED, **KWARGS)
    qb = quantize_like(random_spec(SEED, scale=0.45, **KWARGS), qa)
    _, qc = random_qmodel(SEED, **(KWARGS | {"hidden_size": 5}))
    _, qd = random_qmodel(SEED, preset="w8a8", **KWARGS)
    for name, q in (("qa", qa), ("qb", qb), ("qc", qc), ("qd", qd)):
        q.save(root / name)
    generate(qa, root / "rtl", lanes=LANES, max_seq_len=MAX_SEQ_LEN)
    x = random_inputs(SEED, 4, T, qa.input_size)
    np.save(root / "x.npy", x)
    return {"root": root, "qa": qa, "qb": qb, "x": x, "cache": cache_root(tmp_path_factory)}


def _simulate(made, qmodel, simulator, *extra, rtl=None):
    root = made["root"]
    report, dump = root / f"{qmodel}-{simulator}.json", root / f"{qmodel}-{simulator}.npz"
    code = _main(
        "simulate", root / qmodel, "--inputs", root / "x.npy", "--sim", simulator,
        "--rtl", rtl or root / "rtl", "--build-dir", made["cache"], "--report", report,
        "--dump", dump, *extra,
    )  # fmt: skip
    with np.load(dump, allow_pickle=False) as arrays:
        return code, json.loads(report.read_text()), dict(arrays)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_new_weights_are_streamed_in_and_results_are_the_new_models(made, simulator):
    code, report, arrays = _simulate(made, "qb", simulator, "--stall", "0.2", "--seed", "5")
    want_b = golden.predict(made["qb"], made["x"])[1].prediction
    want_a = golden.predict(made["qa"], made["x"])[1].prediction
    assert not np.array_equal(want_a, want_b), "the two models were meant to differ"
    assert code == 0 and report["bit_exact"]
    np.testing.assert_array_equal(arrays["rtl"], want_b)
    beats = len(pack_weights(HardwareDesign.load(made["root"] / "rtl"), made["qb"]))
    assert report["settings"] == {
        "stall": 0.2, "seed": 5, "initial_state": False, "with_states": False,
        "rtl": str(made["root"] / "rtl"), "weights_reloaded": True, "weight_beats": beats,
    }  # fmt: skip


def test_the_built_in_weights_are_not_reloaded(made):
    code, report, arrays = _simulate(made, "qa", "icarus")
    assert code == 0 and report["bit_exact"] and not report["settings"]["weights_reloaded"]
    assert "weight_beats" not in report["settings"]
    np.testing.assert_array_equal(
        arrays["rtl"], golden.predict(made["qa"], made["x"])[1].prediction
    )


def _edited_design(made, tmp_path, edit):
    rtl = tmp_path / "rtl"
    shutil.copytree(made["root"] / "rtl", rtl)
    info = json.loads((rtl / "manifest.json").read_text())
    edit(info)
    (rtl / "manifest.json").write_text(json.dumps(info))
    return rtl


def _refused(made, tmp_path, qmodel, *extra, rtl=None, error=CLIError):
    root = made["root"]
    with pytest.raises(error) as raised:
        _main("simulate", root / qmodel, "--inputs", root / "x.npy", "--rtl", rtl or root / "rtl",
              "--build-dir", made["cache"], "--report", tmp_path / "r.json", *extra)  # fmt: skip
    assert "\n" not in str(raised.value) and not (tmp_path / "r.json").exists()
    return str(raised.value)


def test_a_model_of_another_geometry_is_refused_naming_it(made, tmp_path):
    message = _refused(made, tmp_path, "qc", "--sim", "icarus", error=ManifestError)
    assert message == "qmodel hidden_size must be the design's 3, not 5"


def test_a_model_of_other_formats_is_refused_naming_the_first(made, tmp_path):
    message = _refused(made, tmp_path, "qd", "--sim", "verilator", error=ManifestError)
    fmt = made["qa"].formats["x"]
    assert message.startswith(f"qmodel format of x must be the design's {fmt}, not s8."), message


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--sim", "icarus", "--lanes", "2"), "lanes must be the design's 1 (--rtl "),
        (("--sim", "icarus", "--simd", "2"), "simd must be the design's 1 (--rtl "),
        (("--sim", "icarus", "--max-seq-len", "4"), "max_seq_len must be the design's 8"),
        (("--sim", "icarus", "--states", "S.npz"), "final states need a design built with them"),
        (("--sim", "amaranth",), "--sim must be icarus or verilator, not 'amaranth'"),
    ],
)  # fmt: skip
def test_options_that_are_not_the_designs_are_refused(made, tmp_path, extra, message):
    extra = [tmp_path / e if e.endswith(".npz") else e for e in extra]
    error = CLIError if "amaranth" in extra else SimulationError
    assert message in _refused(made, tmp_path, "qb", *extra, error=error)


def test_inputs_longer_than_the_design_holds_are_refused(made, tmp_path):
    np.save(tmp_path / "long.npy", random_inputs(1, 1, MAX_SEQ_LEN + 1, made["qa"].input_size))
    with pytest.raises(SimulationError, match="the inputs' 9 steps must fit the design's max_seq"):
        _main("simulate", made["root"] / "qb", "--inputs", tmp_path / "long.npy", "--sim",
              "icarus", "--rtl", made["root"] / "rtl", "--report", tmp_path / "r.json")  # fmt: skip


def test_new_weights_need_a_weight_port(made, tmp_path):
    rtl = _edited_design(made, tmp_path, lambda info: info.pop("weight_port"))
    message = _refused(made, tmp_path, "qb", "--sim", "icarus", rtl=rtl, error=SimulationError)
    assert "weights must be the ones built into --rtl" in message and "no weight port" in message


def test_a_design_that_is_not_the_hardware_the_model_gives_is_refused(made, tmp_path):
    def edit(info):
        info["multipliers"][0]["count"] += 1

    rtl = _edited_design(made, tmp_path, edit)
    message = _refused(made, tmp_path, "qb", "--sim", "icarus", rtl=rtl, error=SimulationError)
    assert message.endswith("must be the design's, not differ in its multipliers")


def test_a_folder_without_a_design_is_refused(made, tmp_path):
    message = _refused(made, tmp_path, "qb", "--sim", "icarus", rtl=tmp_path)
    assert message == f"--rtl {tmp_path} must be a design folder with manifest.json"


#: Verilator with K = 4 runs in CI through tests/sim/test_bench_lines.py's AXI top (stalls, bit
#: exact); this reload case adds its build with LSTMFPGA_SWEEP=large only (CI's budget).
AXI_RELOAD_CASES = [("icarus", 1), ("icarus", 4)] + ([("verilator", 4)] if LARGE else [])


@pytest.mark.parametrize(
    ("simulator", "K"), AXI_RELOAD_CASES, ids=[f"{sim}-K{k}" for sim, k in AXI_RELOAD_CASES]
)
def test_the_axi_top_takes_new_weights_through_s_axis_w(made, tmp_path, simulator, K):
    """One build of the AXI top per simulator and K, elements per s_axis/m_axis beat
    (initial states streamed too; K = 4: 12 input elements in 3 full beats, the 2 results in
    a partial beat with tkeep): the bench drives ``s_axis_w`` with the same beats, whole
    bytes, ``tlast`` on the last."""
    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.axi_top import write_axi_design

    qa, qb = made["qa"], made["qb"]
    acc = LSTMAccelerator(qa, lanes=2, max_seq_len=4, initial_state=True)
    write_axi_design(acc, tmp_path / "axi", beat_elements=K)
    assert K == 1 or acc.result_length(T) % K, "a partial result beat"
    rng = np.random.default_rng(SEED)
    h0 = rng.normal(0, 0.4, (1, 4, qa.output_size))
    c0 = rng.normal(0, 0.4, (1, 4, qa.hidden_size))
    np.savez(tmp_path / "init.npz", h0=h0, c0=c0)
    code, report, arrays = _simulate(made, "qb", simulator, "--h0c0", tmp_path / "init.npz",
                                     "--stall", "0.3", "--beat-elements", K,
                                     rtl=tmp_path / "axi")  # fmt: skip
    assert code == 0 and report["bit_exact"] and report["settings"]["weights_reloaded"]
    assert report["settings"]["initial_state"] and report["lanes"] == 2
    want = golden.predict(qb, made["x"], h0, c0)[1].prediction
    np.testing.assert_array_equal(arrays["rtl"], want)


def test_beat_elements_other_than_the_designs_are_refused(made, tmp_path):
    message = _refused(made, tmp_path, "qb", "--sim", "icarus", "--beat-elements", 2,
                       error=SimulationError)  # fmt: skip
    assert message.startswith("beat_elements must be the design's 1 (--rtl ")


def test_cells_other_than_the_designs_are_refused(made, tmp_path):
    built = HardwareDesign.load(made["root"] / "rtl").cells
    other = 2 if built == 1 else 1
    message = _refused(made, tmp_path, "qb", "--sim", "icarus", "--cells", other,
                       error=SimulationError)  # fmt: skip
    assert message.startswith(f"cells must be the design's {built} (--rtl ")


# -- a stream-mode folder: --mode stream --stateful --rtl ------------------------------------
#: tests/sim/test_stream_sim.py's design (test_bench_lines' too): its Verilator build is shared.
STREAM_MODEL = dict(input_size=2, hidden_size=3, num_layers=2, head="all", head_out=2)


@pytest.fixture(scope="module")
def stream_made(made):
    root = made["root"] / "stream"
    _, q = random_qmodel(5, **STREAM_MODEL)
    q.save(root / "q")
    generate(q, root / "rtl", lanes=4, max_seq_len=8, with_states=True, mode="stream")
    x = random_inputs(9, 4, 5, q.input_size)  # 4 segments of 5 steps: one 20-step signal
    np.save(root / "x.npy", x)
    return {"root": root, "q": q, "x": x, "cache": made["cache"]}


def test_a_stream_folder_runs_stateful_segments_equal_to_golden_on_the_whole_signal(stream_made):
    root, q, x = stream_made["root"], stream_made["q"], stream_made["x"]
    code = _main("simulate", root / "q", "--inputs", root / "x.npy", "--sim", "verilator",
                 "--mode", "stream", "--stateful", "--rtl", root / "rtl", "--stall", "0.2",
                 "--build-dir", stream_made["cache"], "--report", root / "r.json",
                 "--states", root / "s.npz", "--dump", root / "d.npz")  # fmt: skip
    report = json.loads((root / "r.json").read_text())
    assert code == 0 and report["bit_exact"] and report["settings"]["stateful"] is True
    whole = golden.run(q, golden.quantize_inputs(q, x).reshape(1, 20, q.input_size))
    with np.load(root / "d.npz") as dump:
        np.testing.assert_array_equal(dump["rtl"].reshape(whole.prediction.shape), whole.prediction)
        np.testing.assert_array_equal(dump["rtl_h_n"][:, -1], whole.h_n[:, 0])  # the signal's end
        np.testing.assert_array_equal(dump["rtl_c_n"][:, -1], whole.c_n[:, 0])


def test_stateful_needs_a_stream_folder_with_a_keep_state_input(made, stream_made, tmp_path):
    from lstmfpga.hw.accelerator import LSTMAccelerator
    from lstmfpga.hw.axi_top import write_axi_design

    message = _refused(made, tmp_path, "qa", "--sim", "icarus", "--mode", "stream",
                       "--stateful", error=SimulationError)  # fmt: skip
    rtl = made["root"] / "rtl"
    assert message == f"mode 'stream' needs a stream-mode design, not --rtl {rtl} (mode 'sequence')"
    axi = tmp_path / "axi"
    write_axi_design(LSTMAccelerator(stream_made["q"], lanes=4, mode="stream"), axi)
    with pytest.raises(SimulationError) as raised:
        _main("simulate", stream_made["root"] / "q", "--inputs", stream_made["root"] / "x.npy",
              "--sim", "icarus", "--mode", "stream", "--stateful", "--rtl", axi,
              "--report", tmp_path / "r.json")  # fmt: skip
    assert str(raised.value).startswith(
        f"stateful needs the design's keep_state input, which --rtl {axi} does not have"
    )
    assert not (tmp_path / "r.json").exists()
