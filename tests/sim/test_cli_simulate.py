# amaranth: UnusedElaboratable=no
"""``lstmfpga simulate``, ``report`` and ``compare`` end to end on a small saved model."""

import argparse
import json

import numpy as np
import pytest
from sim_flow_cases import CASES, MAX_SEQ_LEN, cache_root, seed_of

from lstmfpga.commands import compare, predict, report, simulate
from lstmfpga.errors import CLIError, SimulationError
from lstmfpga.quant import golden
from lstmfpga.sim.budget import SimulationStuck
from lstmfpga.testing import random_inputs, random_qmodel, random_spec

# The model, lanes and max_seq_len of test_cocotb_flow's "P1-odd" case: the same Verilog,
# so the simulator builds are shared through the session's cache.
NAME = "P1-odd"
KWARGS, LANES, T, _, _ = CASES[NAME]


def _parser():
    parser = argparse.ArgumentParser(prog="lstmfpga")
    subparsers = parser.add_subparsers()
    for module in (simulate, predict, report, compare):
        module.register(subparsers)
    return parser


def _main(*argv):
    args = _parser().parse_args([str(a) for a in argv])
    result = args.func(args)
    return 0 if result is None else int(result)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    spec, q = random_qmodel(seed_of(NAME), **KWARGS)
    q.save(root / "qmodel")
    spec.save(root / "spec")
    x = random_inputs(11, 4, T, q.input_size)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", np.array([0, 1, 2, 1]))
    return {"root": root, "q": q, "x": x, "cache": cache_root(tmp_path_factory)}


def _simulate(files, simulator, *extra, report_name=None):
    root = files["root"]
    out = root / (report_name or f"{simulator}.json")
    code = _main(
        "simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", simulator,
        "--lanes", LANES, "--max-seq-len", MAX_SEQ_LEN, "--build-dir", files["cache"],
        "--report", out, *extra,
    )  # fmt: skip
    return code, out


@pytest.mark.parametrize("simulator", ["amaranth", "icarus", "verilator"])
def test_simulate_writes_a_bit_exact_report_and_dump(simulator, files, capsys):
    root = files["root"]
    dump = root / f"{simulator}.npz"
    code, out = _simulate(
        files, simulator, "--spec", root / "spec", "--labels", root / "y.npy",
        "--stall", "0.2", "--seed", "3", "--dump", dump,
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.startswith("bit-exact: yes (12 outputs of 4 sequences x 3 steps")
    data = json.loads(out.read_text())
    assert data["bit_exact"] and data["simulator"]["name"] == simulator
    assert data["accuracy"]["available"] and data["fixed_vs_float"]["available"]
    assert data["settings"] == {
        "stall": 0.2,
        "seed": 3,
        "initial_state": False,
        "with_states": False,
    }
    with np.load(dump, allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["float", "golden", "rtl", "scale"]
        q = files["q"]
        want = golden.run(q, golden.quantize_inputs(q, files["x"])).prediction
        assert np.array_equal(arrays["rtl"], want) and np.array_equal(arrays["golden"], want)
        assert arrays["float"].shape == want.shape
        assert float(arrays["scale"]) == q.output_format.lsb
        # The dump compares as it is with what predict --raw writes.
        raw = root / f"{simulator}-raw.npy"
        code = _main("predict", root / "qmodel", "--inputs", root / "x.npy", "--raw", "-o", raw)
        assert code == 0
        assert np.array_equal(arrays["rtl"], np.load(raw))
        assert np.array_equal(arrays["golden"], np.load(raw))


def test_report_and_compare_commands(files, capsys):
    root = files["root"]
    for simulator in ("icarus", "verilator"):
        if not (root / f"{simulator}.json").exists():
            _simulate(files, simulator)
    capsys.readouterr()
    html = root / "r.html"
    assert _main("report", root / "verilator.json", "--html", html) == 0
    assert capsys.readouterr().out.startswith("bit-exact: yes")
    page = html.read_text()
    assert page.count("<svg") == 4 and "<script" not in page
    assert _main("compare", root / "icarus.json", root / "verilator.json") == 0
    table = capsys.readouterr().out
    assert "#1 icarus" in table and "#2 verilator" in table and "verilator (*)" in table
    with pytest.raises(CLIError, match="at least two reports"):
        _main("compare", root / "icarus.json")


def test_a_corrupted_golden_output_is_reported_and_exits_1(files, monkeypatch, capsys):
    """Flip one bit of one golden output: the checker names exactly that element."""
    real_run = golden.run

    def corrupted_run(*args, **kwargs):
        result = real_run(*args, **kwargs)
        result.head = result.head.copy()
        result.head[2, 1] ^= 1 << 4  # sequence 2, head output 1
        return result

    monkeypatch.setattr(golden, "run", corrupted_run)
    code, out = _simulate(files, "icarus", report_name="bad.json")
    assert code == 1
    data = json.loads(out.read_text())
    assert data["bit_exact"] is False and data["outputs"]["mismatched"] == 1
    (mismatch,) = data["outputs"]["first_mismatches"]
    assert (mismatch["sequence"], mismatch["tensor"], mismatch["timestep"], mismatch["index"]) == (
        2, "prediction", None, 1,
    )  # fmt: skip
    assert mismatch["rtl"] ^ mismatch["golden"] == 16
    assert "mismatch: sequence 2 prediction timestep - index 1" in capsys.readouterr().out


def test_missing_simulator_is_one_line_error(files, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulationError) as error:
        _simulate(files, "icarus", report_name="none.json")
    assert "\n" not in str(error.value) and "apt-get install -y iverilog" in str(error.value)
    assert not (files["root"] / "none.json").exists()


def test_bad_arguments(files, tmp_path):
    root = files["root"]
    with pytest.raises(CLIError, match="shorter than the inputs' 3 steps"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--lanes", LANES, "--max-seq-len", 2, "--report", tmp_path / "r.json")  # fmt: skip
    np.save(tmp_path / "bad_labels.npy", np.zeros(3))
    with pytest.raises(CLIError, match="--labels must be 4 integer class indices"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--labels", tmp_path / "bad_labels.npy", "--report", tmp_path / "r.json")  # fmt: skip
    with pytest.raises(CLIError, match=r"--stall must be a probability in \[0, 1\), not '1\.5'"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--lanes", LANES, "--stall", "1.5", "--report", tmp_path / "r.json")  # fmt: skip
    with pytest.raises(CLIError, match=r"must be a \.vcd file"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--waves", tmp_path / "w.fst", "--report", tmp_path / "r.json")  # fmt: skip
    with pytest.raises(CLIError, match="not an lstmfpga report"):
        (tmp_path / "x.json").write_text("{}")
        _main("report", tmp_path / "x.json")


# -- initial and final states ---------------------------------------------------------------------
# The model, lanes and max_seq_len of test_cocotb_flow's states case (shared builds).
STATES = "3layer-bidir-proj-states"


@pytest.fixture(scope="module")
def state_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("states")
    kwargs, _, T_, batch, _ = CASES[STATES]
    _, q = random_qmodel(seed_of(STATES), **kwargs)
    q.save(root / "qmodel")
    x = random_inputs(21, batch, T_, q.input_size)
    np.save(root / "x.npy", x)
    rng = np.random.default_rng(21)
    LD = q.num_layers * q.num_directions
    h0 = rng.normal(0, 0.4, (LD, batch, q.output_size))
    c0 = rng.normal(0, 0.4, (LD, batch, q.hidden_size))
    np.savez(root / "init.npz", h0=h0, c0=c0)
    # predict --raw with the same initial states: what the hardware must reproduce.
    assert _main("predict", root / "qmodel", "--inputs", root / "x.npy", "--h0c0",
                 root / "init.npz", "--raw", "--states", root / "want_states.npz",
                 "-o", root / "want.npy") == 0  # fmt: skip
    return {"root": root, "q": q, "T": T_, "batch": batch, "cache": cache_root(tmp_path_factory)}


@pytest.mark.parametrize("simulator", ["amaranth", "icarus", "verilator"])
def test_initial_and_final_states_are_bit_exact(simulator, state_files, capsys):
    root, q = state_files["root"], state_files["q"]
    dump, states = root / f"{simulator}.npz", root / f"{simulator}-states.npz"
    code = _main(
        "simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", simulator,
        "--lanes", 8, "--max-seq-len", MAX_SEQ_LEN, "--build-dir", state_files["cache"],
        "--h0c0", root / "init.npz", "--states", states, "--dump", dump,
        "--report", root / f"{simulator}.json",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().out
    want = np.load(root / "want.npy")
    with np.load(root / "want_states.npz") as w:
        want_h, want_c = w["h_n"], w["c_n"]
    assert want.shape == (state_files["batch"], state_files["T"], q.head.out_features)
    with np.load(dump) as arrays:
        assert np.array_equal(arrays["rtl"], want) and np.array_equal(arrays["golden"], want)
        assert np.array_equal(arrays["rtl_h_n"], want_h)
        assert np.array_equal(arrays["rtl_c_n"], want_c)
        assert np.array_equal(arrays["golden_h_n"], want_h)
        assert np.array_equal(arrays["golden_c_n"], want_c)
        assert float(arrays["cell_scale"]) == q.formats["cell"].lsb
    with np.load(states) as got:
        assert sorted(got.files) == ["c_n", "h_n"]
        assert np.array_equal(got["h_n"], want_h) and np.array_equal(got["c_n"], want_c)
    data = json.loads((root / f"{simulator}.json").read_text())
    LD = q.num_layers * q.num_directions
    per_sequence = state_files["T"] * q.head.out_features + LD * (q.output_size + q.hidden_size)
    assert data["outputs"]["total"] == state_files["batch"] * per_sequence
    assert data["settings"]["initial_state"] is True and data["settings"]["with_states"] is True
    # The initial states matter: without them the final states differ.
    assert not np.array_equal(
        golden.run(q, golden.quantize_inputs(q, np.load(root / "x.npy"))).h_n, want_h
    )


def test_a_wrong_final_state_is_located(state_files, monkeypatch):
    """Flip one bit of the golden c_n: the report names exactly that element."""
    real_run = golden.run

    def corrupted_run(*args, **kwargs):
        result = real_run(*args, **kwargs)
        result.c_n = result.c_n.copy()
        result.c_n[4, 1, 2] ^= 1  # state 4, sequence 1, cell 2
        return result

    monkeypatch.setattr(golden, "run", corrupted_run)
    root = state_files["root"]
    out = root / "bad.json"
    code = _main(
        "simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "icarus",
        "--lanes", 8, "--max-seq-len", MAX_SEQ_LEN, "--build-dir", state_files["cache"],
        "--h0c0", root / "init.npz", "--states", root / "bad.npz", "--report", out,
    )  # fmt: skip
    assert code == 1
    (mismatch,) = json.loads(out.read_text())["outputs"]["first_mismatches"]
    H = state_files["q"].hidden_size
    assert (mismatch["sequence"], mismatch["tensor"], mismatch["index"]) == (1, "c_n", 4 * H + 2)


def test_h0c0_of_the_wrong_shape_is_refused(state_files, tmp_path):
    root = state_files["root"]
    np.savez(tmp_path / "init.npz", h0=np.zeros((1, 2, 3)), c0=np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(6, 2, 3\), not \(1, 2, 3\)"):
        _main("simulate", root / "qmodel", "--inputs", root / "x.npy", "--sim", "amaranth",
              "--h0c0", tmp_path / "init.npz", "--report", tmp_path / "r.json")  # fmt: skip
    assert not (tmp_path / "r.json").exists()


# -- the spec, the labels, a stuck run ------------------------------------------------------------
def test_a_spec_that_is_not_the_models_is_refused(files, tmp_path):
    other = random_spec(seed_of(NAME) + 1, **KWARGS)  # same geometry, other weights
    other.save(tmp_path / "other")
    with pytest.raises(CLIError, match="is not the spec the quantized model was quantized from"):
        _simulate(files, "amaranth", "--spec", tmp_path / "other")


def test_a_model_without_spec_hash_is_accepted_but_reported_unchecked(files, tmp_path, capsys):
    import dataclasses

    root = files["root"]
    dataclasses.replace(files["q"], spec_hash=None).save(tmp_path / "old")
    out = tmp_path / "r.json"
    code = _main("simulate", tmp_path / "old", "--inputs", root / "x.npy", "--sim", "amaranth",
                 "--lanes", LANES, "--spec", root / "spec", "--report", out)  # fmt: skip
    assert code == 0
    assert json.loads(out.read_text())["spec"]["checked"] is False
    assert "spec: NOT checked (the quantized model records no spec_hash" in capsys.readouterr().out
    _simulate(files, "amaranth", "--spec", root / "spec", report_name="checked.json")
    assert json.loads((root / "checked.json").read_text())["spec"]["checked"] is True


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 1, 3, 1]), r"--labels must be class indices in 0..2, not 3 \(sequence 2"),
        (np.array([0, -1, 1, 1]), r"in 0..2, not -1 \(sequence 1"),
        (np.array([0, 1, 2]), r"--labels must be 4 integer class indices \(shape \(4,\)\)"),
        (np.array([[0, 1, 2, 1]]), r"not int64 \(1, 4\)"),
        (np.array([0.0, 1.0, 2.0, 1.0]), r"not float64 \(4,\)"),
    ],
    ids=["too-large", "negative", "too-few", "2-d", "float"],
)
def test_bad_labels_are_refused(files, tmp_path, labels, message):
    np.save(tmp_path / "y.npy", labels)
    with pytest.raises(CLIError, match=message):
        _simulate(files, "amaranth", "--labels", tmp_path / "y.npy")


def test_scalar_inputs_with_labels_are_refused(files, tmp_path):
    np.save(tmp_path / "x.npy", np.float64(1.0))
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, seq, 2\), not \(\)"):
        _main("simulate", files["root"] / "qmodel", "--inputs", tmp_path / "x.npy",
              "--labels", files["root"] / "y.npy", "--sim", "amaranth",
              "--report", tmp_path / "r.json")  # fmt: skip


@pytest.mark.parametrize("simulator", ["amaranth", "icarus", "verilator"])
def test_a_run_over_its_cycle_budget_is_one_line(files, simulator):
    with pytest.raises(SimulationStuck) as error:
        _simulate(files, simulator, "--cycle-budget", 25, report_name="stuck.json")
    message = str(error.value)
    stuck = error.value
    assert "\n" not in message
    assert message.startswith(f"{simulator} simulation stuck: sequence 0 (of 4) produced 0 of ")
    assert "after waiting 25 cycles" in message and stuck.waited == 25
    expected = stuck.budget.expected
    assert f"the cycle model expects {expected} cycles per sequence" in message
    assert expected > 25


def test_the_dump_of_a_model_without_head_has_predicts_shape(tmp_path):
    """No head: the output sequence ``(batch, seq, D*H_out)``, as predict --raw writes it."""
    _, q = random_qmodel(5, input_size=2, hidden_size=2, bidirectional=True)
    q.save(tmp_path / "q")
    np.save(tmp_path / "x.npy", random_inputs(5, 2, 3, 2))
    assert _main("predict", tmp_path / "q", "--inputs", tmp_path / "x.npy", "--raw",
                 "-o", tmp_path / "want.npy") == 0  # fmt: skip
    code = _main("simulate", tmp_path / "q", "--inputs", tmp_path / "x.npy", "--sim", "amaranth",
                 "--dump", tmp_path / "d.npz", "--report", tmp_path / "r.json")  # fmt: skip
    assert code == 0
    want = np.load(tmp_path / "want.npy")
    with np.load(tmp_path / "d.npz") as dump:
        assert want.shape == dump["rtl"].shape == (2, 3, 4)
        assert np.array_equal(dump["rtl"], want) and np.array_equal(dump["golden"], want)


#: Report fields that measure time (the only ones allowed to differ with ``--jobs``).
TIMING_FIELDS = ("wall_seconds", "cycles_per_second", "timing")


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_jobs_shard_the_sequences_with_identical_reports(files, simulator, tmp_path):
    reports, dumps = {}, {}
    for jobs in ("1", "2", "4"):
        dump = tmp_path / f"{jobs}.npz"
        code, out = _simulate(
            files, simulator, "--stall", "0.3", "--seed", "8", "--jobs", jobs, "--dump", dump,
            report_name=f"{simulator}-jobs{jobs}.json",
        )  # fmt: skip
        assert code == 0
        reports[jobs] = json.loads(out.read_text())
        dumps[jobs] = np.load(dump)
    assert [reports[j]["timing"]["jobs"] for j in ("1", "2", "4")] == [1, 2, 4]
    assert [reports[j]["timing"]["chunks"] for j in ("1", "2", "4")] == [1, 2, 4]
    base = {k: v for k, v in reports["1"].items() if k not in TIMING_FIELDS}
    for jobs in ("2", "4"):
        assert {k: v for k, v in reports[jobs].items() if k not in TIMING_FIELDS} == base
        assert np.array_equal(dumps[jobs]["rtl"], dumps["1"]["rtl"])
    t = reports["1"]["timing"]
    assert t["simulation_seconds"] == reports["1"]["wall_seconds"] > 0
    assert t["end_to_end_seconds"] > t["simulation_seconds"]


def test_a_bad_jobs_value_is_one_line(files):
    with pytest.raises(CLIError, match=r"^--jobs must be a positive integer, not '0'$"):
        _simulate(files, "icarus", "--jobs", "0")


def test_simd_runs_bit_exact_in_fewer_cycles(files):
    code, out = _simulate(files, "icarus", "--simd", "2", report_name="simd2.json")
    assert code == 0
    simd2 = json.loads(out.read_text())
    _, plain = _simulate(files, "icarus", report_name="simd1.json")
    simd1 = json.loads(plain.read_text())
    assert simd2["bit_exact"] and simd2["settings"]["simd"] == 2 and "simd" not in simd1["settings"]
    assert simd2["cycles"]["model_exact"] is True
    assert simd2["cycles"]["compute"] < simd1["cycles"]["compute"]
    with pytest.raises(CLIError, match=r"^--simd must be a positive integer, not '0'$"):
        _simulate(files, "icarus", "--simd", "0")
