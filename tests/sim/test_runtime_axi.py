# amaranth: UnusedElaboratable=no
"""End to end in Icarus Verilog: lstmfpga.runtime drives the generated Verilog of the AXI top
through cocotbext-axi (AxiStreamSource/Sink with random pauses, AxiLiteMaster), exactly as a
host would over a DMA engine and a register window.

One build and one simulation per K, the elements per stream beat, 1 and 4 (the cocotb module
tests/sim/runtime_axi_bench.py: with K = 4 it moves the runtime's bytes as a DMA engine would,
tkeep on partial last beats); the checks are here: results
bit-exact with the golden model, registers counting sequences, the sticky error flag
cleared on write, the soft reset, weights reloaded through ``s_axis_w`` (model A, then
B, then A again, random pauses on every stream) giving the loaded model's results, and the
SATURATION_* counters reading the golden model's saturation counts of the sequences run.
"""

import json
import shutil

import numpy as np
import pytest

from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.axi_top import write_axi_design
from lstmfpga.hw.register_map import SATURATION_ROLES, design_id
from lstmfpga.quant import golden
from lstmfpga.quant.given_formats import quantize_like
from lstmfpga.testing import random_inputs, random_qmodel, random_spec

SEED = 611
#: Icarus in Verilog-2005 mode (Amaranth's Yosys Verilog relies on declaration initializers
#: being events at time 0; the project's cocotb flow builds with the same flag).
ICARUS_FLAGS = ("-g2005",)
TIMESCALE = ("1ns", "1ps")
MODEL = dict(input_size=2, hidden_size=3, num_layers=2, head="all", head_out=2)


def states(q, batch, seed):
    rng = np.random.default_rng(seed)
    LD = q.num_layers * q.num_directions
    return rng.normal(0, 0.4, (LD, batch, q.output_size)), rng.normal(
        0, 0.4, (LD, batch, q.hidden_size)
    )


def extremes(q, batch, T, seed):
    """Inputs and initial states near the ends of their formats (x beyond them), so that
    gate pre-activations, cell states and head outputs saturate."""
    rng = np.random.default_rng(seed)
    LD = q.num_layers * q.num_directions
    x = rng.choice([-8.0, 8.0], (batch, T, q.input_size)) * rng.uniform(0.5, 1, (batch, T, 1))
    h0 = rng.choice([-0.99, 0.99], (LD, batch, q.output_size))
    c0 = rng.choice([-1.99, 1.99], (LD, batch, q.hidden_size))
    return x, h0, c0


def hardware_counts(q, x, h0, c0) -> dict:
    """What the SATURATION_* registers count for these floats: the golden model's saturation
    counts on the codes the hardware is given (the host's quantization of x, h0 and c0,
    which ``predict`` counts too, is not the hardware's)."""
    codes = [q.formats[role].quantize(v, q.rounding) for v, role in ((h0, "hidden"), (c0, "cell"))]
    counts = golden.run(q, golden.quantize_inputs(q, x), *codes).saturation
    return {role: counts.get(role, 0) for role in SATURATION_ROLES}


@pytest.fixture(scope="module", params=[1, 4], ids=["K1", "K4"])
def axi_run(tmp_path_factory, request):
    """One Icarus run per K (elements per s_axis/m_axis beat; K = 4: 64-bit tdata, tkeep on
    the partial last beats of the T = 5 sequences and of the malformed one)."""
    K = request.param
    run = tmp_path_factory.mktemp(f"runtime_axi_k{K}")
    _, q = random_qmodel(SEED, **MODEL)
    qb = quantize_like(random_spec(SEED, scale=0.45, **MODEL), q)  # retrained, A's formats
    q.save(run / "qa")
    qb.save(run / "qb")
    acc = LSTMAccelerator(q, lanes=4, max_seq_len=6, with_states=True, initial_state=True)
    info = write_axi_design(acc, run / "rtl", beat_elements=K)
    assert K == 1 or (acc.input_length(5) % K and acc.result_length(3) % K), "partial beats"
    x = random_inputs(SEED, 3, 4, q.input_size)
    x[0, 1] = [1e3, -1e3]  # saturate in the x format
    x2 = random_inputs(SEED + 1, 2, 5, q.input_size)
    h0, c0 = states(q, 3, SEED)
    h0b, c0b = states(q, 2, SEED + 1)
    x3 = random_inputs(SEED + 2, 2, 3, q.input_size)
    h0c, c0c = states(q, 2, SEED + 2)
    x4, h0d, c0d = extremes(q, 2, 4, seed=4)
    np.savez(run / "case.npz", x=x, x2=x2, x3=x3, x4=x4, h0=h0, c0=c0, h0b=h0b, c0b=c0b,
             h0c=h0c, c0c=c0c, h0d=h0d, c0d=c0d)  # fmt: skip
    return {"K": K, "q": q, "qb": qb, "info": info} | simulate(run, info)


def simulate(run, info) -> dict:
    """Build ``run/rtl`` in Icarus, run the cocotb module on it; what it wrote."""
    from cocotb_tools.runner import get_runner

    assert shutil.which("iverilog") and shutil.which("vvp"), "Icarus Verilog is needed"
    runner = get_runner("icarus")
    runner.build(
        sources=[run / "rtl" / f"{info['top']}.v"],
        hdl_toplevel=info["top"],
        build_dir=run / "build",
        build_args=list(ICARUS_FLAGS),
        timescale=TIMESCALE,
        log_file=run / "build.log",
    )
    runner.test(
        test_module="runtime_axi_bench",
        hdl_toplevel=info["top"],
        build_dir=run / "build",
        test_dir=run,
        extra_env={"H6_AXI_RUN": str(run)},
        log_file=run / "sim.log",
    )
    assert (run / "registers.json").is_file(), (run / "sim.log").read_text()[-3000:]
    return {
        "case": dict(np.load(run / "case.npz")),
        "results": dict(np.load(run / "results.npz", allow_pickle=False)),
        "registers": json.loads((run / "registers.json").read_text()),
    }


def assert_phase(got, phase, want):
    """The results decoded in ``phase`` equal the golden model's (prediction, h_n, c_n)."""
    for name in ("prediction", "h_n", "c_n"):
        np.testing.assert_array_equal(got[f"{phase}_{name}"], getattr(want, name))


def test_results_are_bit_exact_with_the_golden_model_under_random_stalls(axi_run):
    q, case, got = axi_run["q"], axi_run["case"], axi_run["results"]
    floats, want = golden.predict(q, case["x"], case["h0"], case["c0"])
    assert want.saturation.get("x", 0) > 0, "the inputs were meant to saturate some codes"
    assert_phase(got, "a", want)
    np.testing.assert_array_equal(got["a_float"], floats)  # the same dequantization
    assert got["a_prediction"].shape == (3, 4, 2)  # predict --raw's shape for head "all"


def test_after_a_soft_reset_results_are_bit_exact_again(axi_run):
    q, case, got = axi_run["q"], axi_run["case"], axi_run["results"]
    _, want = golden.predict(q, case["x2"], case["h0b"], case["c0b"])
    assert_phase(got, "b", want)


def test_id_register_holds_the_manifest_hash(axi_run):
    assert axi_run["registers"]["id"] == axi_run["info"]["design_id"] == design_id(axi_run["info"])


def test_an_unmapped_register_read_is_a_device_error(axi_run):
    assert axi_run["registers"]["unmapped"].startswith("read of 0x80 answered")


def test_registers_count_sequences_and_cycles(axi_run):
    regs = axi_run["registers"]
    a = regs["after_a"]
    assert a["SEQUENCES"] == 3 and not a["busy"] and not a["error"] and a["ERRORS"] == 0
    assert 0 < a["BUSY_CYCLES"] < a["CYCLES"]
    assert regs["after_b"]["SEQUENCES"] == 2, "counted from 0 after the soft reset"
    assert regs["idle"] == {"source": True, "sink": True, "weights": True}, "nothing in flight"


def test_error_flag_is_sticky_clears_on_write_and_soft_reset_clears_the_accelerator(axi_run):
    regs = axi_run["registers"]
    bad, cleared, reset = regs["after_bad"], regs["after_clear"], regs["after_reset"]
    assert bad["ERRORS"] == 1 and bad["stream_error"] and bad["error"]
    assert cleared["ERRORS"] == 0 and cleared["error"], "the flag clears; the port stays high"
    assert not reset["error"] and reset["ERRORS"] == 0 and reset["SEQUENCES"] == 0
    assert reset["CYCLES"] < bad["CYCLES"]


@pytest.mark.parametrize(
    ("phase", "model", "loads"),
    [("c", "qb", 1), ("d", "qb", 1), ("e", "q", 2)],
    ids=["B-loaded", "B-after-soft-reset", "A-reloaded"],
)
def test_reloaded_weights_give_the_loaded_models_results(axi_run, phase, model, loads):
    case, got, regs = axi_run["case"], axi_run["results"], axi_run["registers"]
    _, want = golden.predict(axi_run[model], case["x3"], case["h0c"], case["c0c"])
    _, other = golden.predict(axi_run["qb" if model == "q" else "q"], case["x3"], case["h0c"],
                              case["c0c"])  # fmt: skip
    assert not np.array_equal(want.prediction, other.prediction), "A and B were meant to differ"
    assert_phase(got, phase, want)
    after = regs[f"after_{phase}"]
    assert after["WEIGHT_LOADS"] == loads, "loads counted, and kept over the soft reset"
    assert after["ID"] == axi_run["info"]["design_id"], "ID names the design as generated"
    assert not after["error"] and after["ERRORS"] == 0


# -- stream mode ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    """A stream-mode AXI top with K = 2 (input size 2: one step per beat, 4 results per
    step in 2 beats; tuser one bit per lane)."""
    run = tmp_path_factory.mktemp("runtime_axi_stream")
    _, q = random_qmodel(SEED + 5, input_size=2, hidden_size=3, head="all", head_out=4)
    acc = LSTMAccelerator(q, lanes=4, max_seq_len=4, mode="stream")
    info = write_axi_design(acc, run / "rtl", beat_elements=2)
    x = random_inputs(SEED + 5, 3, 5, q.input_size)  # 5 steps > max_seq_len: no limit
    resets = np.zeros((3, 5), bool)
    resets[1, 2] = True
    x2 = random_inputs(SEED + 6, 2, 3, q.input_size)
    np.savez(run / "case.npz", x=x, resets=resets, x2=x2)
    return {"q": q, "info": info} | simulate(run, info)


def test_stream_mode_carries_the_state_over_tlast_and_tuser_resets_it_in_icarus(stream_run):
    q, case, got = stream_run["q"], stream_run["case"], stream_run["results"]
    x, B, T = case["x"], *case["x"].shape[:2]
    signal = golden.quantize_inputs(q, x).reshape(1, B * T, q.input_size)
    cut = T + 2  # segment 1, step 2 carries tuser
    want = np.concatenate([golden.run(q, signal[:, :cut]).prediction,
                           golden.run(q, signal[:, cut:]).prediction], axis=1)  # fmt: skip
    np.testing.assert_array_equal(got["kept"], want.reshape(B, T, -1))
    uncut = golden.run(q, signal).prediction.reshape(B, T, -1)
    assert not np.array_equal(got["kept"], uncut), "the tuser reset was meant to matter"
    regs = stream_run["registers"]
    assert regs["mode"] == 1 and regs["state_control"] == 1


def test_stream_mode_without_keep_state_starts_every_sequence_afresh_in_icarus(stream_run):
    q, case, got = stream_run["q"], stream_run["case"], stream_run["results"]
    _, want = golden.predict(q, case["x2"])
    np.testing.assert_array_equal(got["reset"], want.prediction)
    after = stream_run["registers"]["after"]
    assert after["SEQUENCES"] == 5 and not after["error"] and after["ERRORS"] == 0


def test_saturation_registers_read_the_golden_models_counts(axi_run):
    q, qb, case, regs = axi_run["q"], axi_run["qb"], axi_run["case"], axi_run["registers"]

    def counts(model, name, states):
        return hardware_counts(model, case[name], case[f"h0{states}"], case[f"c0{states}"])

    def total(*parts):
        return {role: sum(p[role] for p in parts) for role in SATURATION_ROLES}

    a, b = counts(q, "x", ""), counts(q, "x2", "b")
    c_b, c_a, f = counts(qb, "x3", "c"), counts(q, "x3", "c"), counts(q, "x4", "d")
    assert a["preact"] > 0 and all(f[role] > 0 for role in ("preact", "cell", "head_out"))
    want = {
        "after_a": a,
        "after_reset": total(),  # the soft reset zeroes them
        "after_b": b,
        "after_c": total(b, c_b),  # a weight load does not
        "after_d": c_b,  # soft reset, then B on x3
        "after_e": total(c_b, c_a),
        "after_f": total(c_b, c_a, f),
        "after_clear_saturation": total(),
    }
    assert {phase: regs[phase]["saturation"] for phase in want} == want
    assert regs["after_clear_saturation"]["SEQUENCES"] == regs["after_f"]["SEQUENCES"]


def test_saturating_inputs_still_give_the_golden_models_results(axi_run):
    q, case, got = axi_run["q"], axi_run["case"], axi_run["results"]
    _, want = golden.predict(q, case["x4"], case["h0d"], case["c0d"])
    assert_phase(got, "f", want)
