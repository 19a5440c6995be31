"""Hostile inputs for ``simulate``, ``predict``, ``report`` and ``compare``.

Every case runs the real CLI (:mod:`harness`) and must be refused with exactly one line
``lstmfpga: error: ...`` and exit code 2, no traceback and no warning, write nothing outside
its output folder (and, being refused, nothing inside it either: outputs are written
atomically and only after the work succeeded) and run no payload.

The models are built once per module from a real PyTorch module (``from_module`` +
``quantize``): a classifier (LSTM(2 -> 4) + Linear(4 -> 3) on the last step) and a
sequence model without a head; a valid report comes from one Amaranth simulation. The stuck
cases (``--cycle-budget`` below the cycle model's expectation) run all three simulators;
their builds go to a cache outside the cases' folders, shared by the three.
"""

from __future__ import annotations

import json
import shutil

import harness
import numpy as np
import pytest
import torch
from harness import Case, assert_refused, run_cli

from lstmfpga.cli import main
from lstmfpga.export.torch_loader import from_module
from lstmfpga.quant.calibrate import quantize

B, T, I, H, OUT = 3, 4, 2, 4, 3


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(I, H, batch_first=True)
        self.fc = torch.nn.Linear(H, OUT)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Files every case may read (never write): ``qmodel``, ``spec``, ``plain`` (a qmodel
    without a head), ``other_spec`` (same geometry, other weights), ``wide_spec`` (H=5),
    ``x``, ``y`` (good labels), ``report`` (a valid report), ``cache`` (simulator builds)."""
    root = tmp_path_factory.mktemp("built")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, (8, 6, I))
    spec = from_module(Classifier().eval(), head="last")
    other = from_module(Classifier().eval(), head="last")  # new random weights
    wide = from_module(torch.nn.LSTM(I, H + 1, batch_first=True))
    plain = from_module(torch.nn.LSTM(I, H, batch_first=True))
    paths = {
        "spec": spec.save(root / "spec"),
        "qmodel": quantize(spec, calib).save(root / "qmodel"),
        "plain": quantize(plain, calib).save(root / "plain"),
        "other_spec": other.save(root / "other_spec"),
        "wide_spec": wide.save(root / "wide_spec"),
        "x": root / "x.npy",
        "y": root / "y.npy",
        "report": root / "report.json",
        "cache": root / "cache",
    }
    np.save(paths["x"], rng.normal(0, 1, (B, T, I)))
    np.save(paths["y"], np.array([0, 2, 1]))
    code = main(["simulate", str(paths["qmodel"]), "--inputs", str(paths["x"]), "--sim",
                 "amaranth", "--lanes", "4", "--spec", str(paths["spec"]), "--labels",
                 str(paths["y"]), "--report", str(paths["report"])])  # fmt: skip
    assert code == 0
    return paths


class Payload:
    """Unpickling this creates the case's marker file: a pickle must never be loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled(case: Case, name: str) -> str:
    path = case.inputs / name
    array = np.empty(1, dtype=object)
    array[0] = Payload(case.marker)
    np.save(path, array, allow_pickle=True)
    return path


def _npy(case: Case, name: str, array) -> str:
    path = case.inputs / name
    np.save(path, array)
    return path


def _truncated_npy(case: Case, name: str) -> str:
    path = _npy(case, name, np.ones((B, T, I)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    return path


def _huge_npy(case: Case, name: str) -> str:
    """A valid header declaring a 10^12-element float64 array, then nothing."""
    path = case.inputs / name
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6, I)}
        )
    return path


def _npz(case: Case, name: str, **arrays) -> str:
    path = case.inputs / name
    np.savez(path, **arrays)
    return path


def _states(h_shape=(1, B, H), c_shape=(1, B, H), fill=0.1):
    return {"h0": np.full(h_shape, fill), "c0": np.full(c_shape, fill)}


def _report_file(case: Case, built, edit=None, text=None) -> str:
    path = case.inputs / "r.json"
    if text is not None:
        path.write_text(text)
        return path
    report = json.loads(built["report"].read_text())
    if edit is not None:
        report = edit(report)
    path.write_text(json.dumps(report))
    return path


def _deep_report(case: Case, built) -> str:
    report = json.loads(built["report"].read_text())
    report["settings"] = {"nested": json.loads("[" * 100 + "]" * 100)}
    return _report_file(case, built, text=json.dumps(report))


def _huge_report(case: Case, built) -> str:
    path = _report_file(case, built)
    with open(path, "r+b") as file:  # sparse: no real disk use
        file.truncate(65 << 20)
    return path


def _without(key):
    def edit(report):
        del report[key]
        return report

    return edit


def _set(path, value):
    def edit(report):
        node = report
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
        return report

    return edit


def _simulate(built, *extra, inputs=None, qmodel=None, sim="amaranth"):
    return [
        "simulate", qmodel or built["qmodel"], "--inputs", inputs or built["x"], "--sim", sim,
        "--lanes", "4", "--report", "r.json", *extra,
    ]  # fmt: skip


def _simulate_with(option: str, value: str, match: str):
    """A case: ``simulate`` of the good model with ``option value`` added, refused with
    ``match``."""
    return lambda c, b: (_simulate(b, option, value), match)


def _predict(built, *extra, inputs=None, artifact=None):
    return ["predict", artifact or built["qmodel"], "--inputs", inputs or built["x"],
            "-o", "y.npy", *extra]  # fmt: skip


def _text(case: Case, name: str, text: str) -> str:
    path = case.inputs / name
    path.write_text(text)
    return path


def _cut(path, keep: int):
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return path


# Each case: (id, build(case, built) -> (argv, expected words in the error)).
CASES = {
    # -- simulate: the inputs ---------------------------------------------------------------
    "inputs-pickled": lambda c, b: (
        _simulate(b, inputs=_pickled(c, "x.npy")), "object arrays (pickles) are refused"),
    "inputs-truncated": lambda c, b: (
        _simulate(b, inputs=_truncated_npy(c, "x.npy")), "truncated"),
    "inputs-huge-header": lambda c, b: (
        _simulate(b, inputs=_huge_npy(c, "x.npy")), "byte limit"),
    "inputs-not-numpy": lambda c, b: (
        _simulate(b, inputs=_text(c, "x.npy", "hello")), "not a NumPy file"),
    "inputs-npz": lambda c, b: (
        _simulate(b, inputs=_npz(c, "x.npy.npz", x=np.ones((B, T, I)))),
        "must be a .npy array file"),
    "inputs-scalar-with-labels": lambda c, b: (
        _simulate(b, "--labels", b["y"], inputs=_npy(c, "x.npy", np.float64(1))),
        "inputs must have shape (batch, seq, 2), not ()"),
    "inputs-wrong-features": lambda c, b: (
        _simulate(b, inputs=_npy(c, "x.npy", np.ones((B, T, 3)))),
        "inputs must have shape (batch, seq, 2), not (3, 4, 3)"),
    "inputs-nan": lambda c, b: (
        _simulate(b, inputs=_npy(c, "x.npy", np.full((B, T, I), np.nan))), "non-finite"),
    "inputs-bool": lambda c, b: (
        _simulate(b, inputs=_npy(c, "x.npy", np.ones((B, T, I), bool))), "float array"),
    "inputs-empty-batch": lambda c, b: (
        _simulate(b, inputs=_npy(c, "x.npy", np.ones((0, T, I)))), "not (0, 4, 2)"),
    "inputs-missing": lambda c, b: (_simulate(b, inputs=c.inputs / "nope.npy"), "no such file"),
    # -- simulate: labels -------------------------------------------------------------------
    "labels-out-of-range": lambda c, b: (
        _simulate(b, "--labels", _npy(c, "y.npy", np.array([0, 3, 1]))),
        "--labels must be class indices in 0..2, not 3 (sequence 1"),
    "labels-negative": lambda c, b: (
        _simulate(b, "--labels", _npy(c, "y.npy", np.array([0, 1, -2]))), "not -2"),
    "labels-too-few": lambda c, b: (
        _simulate(b, "--labels", _npy(c, "y.npy", np.array([0, 1]))),
        "--labels must be 3 integer class indices"),
    "labels-float": lambda c, b: (
        _simulate(b, "--labels", _npy(c, "y.npy", np.array([0.0, 1.0, 2.0]))), "not float64"),
    "labels-2d": lambda c, b: (
        _simulate(b, "--labels", _npy(c, "y.npy", np.zeros((3, 1), int))), "(3, 1)"),
    "labels-pickled": lambda c, b: (
        _simulate(b, "--labels", _pickled(c, "y.npy")), "pickles"),
    "labels-without-last-head": lambda c, b: (
        _simulate(b, "--labels", b["y"], qmodel=b["plain"]), "needs a model with a 'last' head"),
    # -- simulate: the spec -----------------------------------------------------------------
    "spec-other-weights": lambda c, b: (
        _simulate(b, "--spec", b["other_spec"]),
        "is not the spec the quantized model was quantized from"),
    "spec-other-geometry": lambda c, b: (
        _simulate(b, "--spec", b["wide_spec"]), "hidden_size is 5, the model's 4"),
    "spec-missing": lambda c, b: (_simulate(b, "--spec", c.inputs / "nospec"), "nospec"),
    "qmodel-is-a-spec": lambda c, b: (_simulate(b, qmodel=b["spec"]), "qmodel"),
    # -- simulate: initial states -----------------------------------------------------------
    "h0c0-wrong-shape": lambda c, b: (
        _simulate(b, "--h0c0", _npz(c, "s.npz", **_states(h_shape=(2, B, H)))),
        "h0 must have shape (1, 3, 4), not (2, 3, 4)"),
    "h0c0-wrong-batch": lambda c, b: (
        _simulate(b, "--h0c0", _npz(c, "s.npz", **_states(c_shape=(1, B + 1, H)))),
        "c0 must have shape (1, 3, 4), not (1, 4, 4)"),
    "h0c0-missing-key": lambda c, b: (
        _simulate(b, "--h0c0", _npz(c, "s.npz", h0=np.zeros((1, B, H)))),
        "must hold arrays ['h0', 'c0']"),
    "h0c0-extra-key": lambda c, b: (
        _simulate(b, "--h0c0", _npz(c, "s.npz", **_states(), x=np.zeros(1))),
        "must hold arrays ['h0', 'c0']"),
    "h0c0-nan": lambda c, b: (
        _simulate(b, "--h0c0", _npz(c, "s.npz", **_states(fill=np.nan))), "non-finite"),
    "h0c0-is-npy": lambda c, b: (
        _simulate(b, "--h0c0", _npy(c, "s.npy", np.zeros(3))), "must be an .npz archive"),
    "h0c0-truncated": lambda c, b: (
        _simulate(b, "--h0c0", _cut(_npz(c, "s.npz", **_states()), 100)), "s.npz"),
    # -- simulate: options ------------------------------------------------------------------
    **{name: _simulate_with(option, value, match) for name, (option, value, match) in {
        "stall-too-large": ("--stall", "1.5", "--stall must be a probability in [0, 1), not '1.5'"),
        "stall-nan": ("--stall", "nan", "not 'nan'"),
        "stall-not-a-number": ("--stall", "often", "not 'often'"),
        "lanes-zero": ("--lanes", "0", "--lanes must be a positive integer, not '0'"),
        "lanes-beyond-the-gate-rows": (
            "--lanes", "17", "lanes must be in 1..16 (4*hidden_size), not 17"),
        "lanes-not-a-number": ("--lanes", "eight", "not 'eight'"),
    }.items()},
    "sim-unknown": lambda c, b: (
        _simulate(b, sim="modelsim"), "--sim must be one of amaranth, icarus, verilator"),
    **{name: _simulate_with(option, value, match) for name, (option, value, match) in {
        "seed-negative": ("--seed", "-1", "--seed must be an integer"),
        "cycle-budget-zero": ("--cycle-budget", "0", "--cycle-budget must be a positive number"),
        "max-seq-len-short": ("--max-seq-len", "2", "shorter than the inputs' 4 steps"),
        "waves-not-vcd": ("--waves", "w.txt", "must be a .vcd file"),
    }.items()},
    "report-in-missing-folder": lambda c, b: (
        [*_simulate(b)[:-2], "--report", "no/such/r.json"], "no such directory"),
    "report-is-a-folder": lambda c, b: (
        [*_simulate(b)[:-2], "--report", "."], "is a directory"),
    # -- predict ----------------------------------------------------------------------------
    "predict-scalar": lambda c, b: (
        _predict(b, inputs=_npy(c, "x.npy", np.float64(2))), "not ()"),
    "predict-pickled": lambda c, b: (_predict(b, inputs=_pickled(c, "x.npy")), "pickles"),
    "predict-wrong-features": lambda c, b: (
        _predict(b, inputs=_npy(c, "x.npy", np.ones((B, T, 5)))), "not (3, 4, 5)"),
    "predict-h0c0-wrong-shape": lambda c, b: (
        _predict(b, "--h0c0", _npz(c, "s.npz", **_states(h_shape=(1, B, H + 1)))),
        "h0 must have shape"),
    "predict-h0c0-missing-key": lambda c, b: (
        _predict(b, "--h0c0", _npz(c, "s.npz", c0=np.zeros((1, B, H)))), "['h0', 'c0']"),
    "predict-output-in-missing-folder": lambda c, b: (
        [*_predict(b)[:-2], "-o", "no/y.npy"], "-o no/y.npy: no such directory"),
    "predict-states-is-a-folder": lambda c, b: (
        _predict(b, "--states", "."), "--states . is a directory"),
    "predict-spec-scalar": lambda c, b: (
        _predict(b, inputs=_npy(c, "x.npy", np.float64(2)), artifact=b["spec"]), "not ()"),
    # -- report -----------------------------------------------------------------------------
    "report-truncated": lambda c, b: (
        ["report", _cut(_report_file(c, b), 500)], "not valid JSON"),
    "report-deep": lambda c, b: (["report", _deep_report(c, b)], "levels deep"),
    "report-huge": lambda c, b: (["report", _huge_report(c, b)], "byte limit"),
    "report-missing-outputs": lambda c, b: (
        ["report", _report_file(c, b, _without("outputs"))], "has no field 'outputs'"),
    "report-wrong-type": lambda c, b: (
        ["report", _report_file(c, b, _set("outputs.total", "many"))],
        'outputs.total must be a non-negative integer, not "many"'),
    "report-nan": lambda c, b: (
        ["report", _report_file(c, b, _set("wall_seconds", float("nan")))],
        "wall_seconds must be a finite number, not NaN"),
    "report-list": lambda c, b: (["report", _report_file(c, b, text="[1, 2]")], "JSON object"),
    "report-version": lambda c, b: (
        ["report", _report_file(c, b, _set("version", 2))], "report version must be 1, not 2"),
    "report-html-missing-folder": lambda c, b: (
        ["report", b["report"], "--html", "no/r.html"], "no such directory"),
    # -- compare ----------------------------------------------------------------------------
    "compare-tampered": lambda c, b: (
        ["compare", b["report"], _report_file(c, b, _set("simulator", "x"))],
        "simulator must be an object"),
    "compare-one-report": lambda c, b: (["compare", b["report"]], "at least two reports"),
    "compare-deep": lambda c, b: (["compare", b["report"], _deep_report(c, b)], "levels deep"),
    "compare-missing": lambda c, b: (["compare", b["report"], "none.json"], "no such file"),
}  # fmt: skip


def _refused(case: Case, argv, match: str) -> str:
    message = assert_refused(run_cli(case, *argv), case, match=match)
    assert not any(case.out.iterdir()), f"a refused run left {list(case.out.iterdir())}"
    return message


@pytest.mark.parametrize("name", list(CASES))
def test_refused(name, built, tmp_path):
    case = Case.make(tmp_path)
    argv, match = CASES[name](case, built)
    _refused(case, argv, match)


def test_there_are_at_least_thirty_distinct_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("simulator", ["amaranth", "icarus", "verilator"])
def test_a_stuck_simulation_is_one_line(simulator, built, tmp_path, monkeypatch):
    """A budget below the cycle model's expectation: the run stops at sequence 0 with one
    line naming the cycles waited and the model's expectation, no traceback, no warning
    (the harness runs with ``PYTHONWARNINGS=default``).

    Without the address-space limit: Icarus and Verilator need the design's Verilog, and
    Amaranth's Yosys (WebAssembly, wasmtime) reserves more than 4 GB of address space."""
    monkeypatch.setattr(harness, "_limit", lambda: None)
    case = Case.make(tmp_path)
    argv = _simulate(built, "--cycle-budget", "30", "--build-dir", built["cache"], sim=simulator)
    message = _refused(case, argv, f"{simulator} simulation stuck: sequence 0 (of 3)")
    assert "after waiting 30 cycles" in message
    assert "the cycle model expects" in message and "the budget was set to 30 cycles" in message


def test_a_good_run_still_works(built, tmp_path):
    """The refusals above are not a CLI that refuses everything."""
    case = Case.make(tmp_path)
    result = run_cli(case, *_simulate(built, "--dump", "d.npz"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    with np.load(case.out / "d.npz") as arrays:
        assert arrays["rtl"].shape == (B, OUT)
    shutil.rmtree(case.out)


def test_payload_really_creates_the_marker(tmp_path):
    """The pickled payload is live: loading it unsafely would create the marker."""
    case = Case.make(tmp_path)
    path = _pickled(case, "x.npy")
    np.load(path, allow_pickle=True)
    assert case.marker.exists()
