# amaranth: UnusedElaboratable=no
"""Design-space exploration on Dask (lstmfpga.explore, ``lstmfpga explore``).

The sweeps are tiny (a 2-input, 2-hidden model, a few lanes, one ECP5 device) but real: a
``distributed.LocalCluster`` with two worker processes, and a ``dask scheduler`` plus a
``dask worker`` started as separate processes on 127.0.0.1; every point is generated,
simulated bit-exact and synthesized with Yosys and nextpnr.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from html.parser import HTMLParser

import numpy as np
import pytest

from lstmfpga import cli
from lstmfpga.explore import (
    FRONTS,
    POINT_FIELDS,
    ExploreError,
    Sweep,
    Target,
    explore,
    pareto_mask,
)
from lstmfpga.export import files
from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.testing import random_inputs, random_qmodel

TINY = dict(input_size=2, hidden_size=2, head="last", head_out=3)
T = 3


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """A saved qmodel, 4 input sequences and labels."""
    root = tmp_path_factory.mktemp("explore")
    _, qmodel = random_qmodel(3, **TINY)
    qmodel.save(root / "qmodel")
    x = random_inputs(3, 4, T, TINY["input_size"])
    files.save_npy(root / "x.npy", x)
    files.save_npy(root / "y.npy", np.array([0, 1, 2, 1]))
    return root, qmodel


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.body_rows = 0
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._in_body:
            self.body_rows += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False


def _check_point(point, qmodel, inputs_T):
    assert set(point) == set(POINT_FIELDS)
    assert point["error"] is None, point
    assert point["bit_exact"] is True
    assert point["luts"] > 0 and point["ffs"] > 0 and point["fmax_mhz"] > 0
    assert point["dsps"] >= point["lanes"] * point["simd"]  # the MVU's P x S multipliers
    assert point["latency_us"] == pytest.approx(point["cycles"] / point["fmax_mhz"], abs=1e-4)
    assert point["throughput"] == pytest.approx(1e6 / point["latency_us"], rel=1e-4)
    acc = LSTMAccelerator(
        qmodel,
        lanes=point["lanes"],
        simd=point["simd"],
        cells=point["cells"],
        max_seq_len=inputs_T,
    )
    model = CycleModel.of(acc)
    # cycles per sequence = load + compute + drain, without back-pressure
    expected = (
        acc.input_length(inputs_T) + model.compute(inputs_T) + acc.result_length(inputs_T) - 1
    )
    assert point["cycles"] == expected


def test_pareto_mask_keeps_exactly_the_undominated_points():
    x = [1, 2, 3, 2, 4, np.nan]
    y = [5, 3, 1, 4, 1, 0]
    assert pareto_mask(x, y).tolist() == [True, True, True, False, False, False]
    # larger is better on the second axis
    assert pareto_mask([8, 8, 16], [0.9, 0.95, 0.95], ("min", "max")).tolist() == [
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(lanes=(), targets=("ecp5",)), "lanes must list at least one value"),
        (dict(lanes=(0,), targets=("ecp5",)), "lanes must be positive integers, not 0"),
        (dict(lanes=(1,), targets=("ecp5",), simd=(0,)), "simd must be positive integers, not 0"),
        (dict(lanes=(1,), targets=("ecp5",), cells=(0,)), "cells must be positive integers, not 0"),
        (dict(lanes=(1,), targets=("vhdl",)), "target must be one of ecp5, ice40"),
        (dict(lanes=(1,), targets=("ecp5:99k",)), "device must be one of"),
        (dict(lanes=(1,), targets=()), "targets must list at least one target"),
        (dict(lanes=(1,), targets=("ecp5",), seeds=(True,)), "seeds must be positive integers"),
    ],
)
def test_bad_sweeps_are_refused(kwargs, message):
    with pytest.raises(ExploreError, match=message):
        Sweep(**kwargs)


def test_targets_parse_family_and_device():
    assert Target.parse("ecp5") == Target("ecp5")
    assert Target.parse("ecp5:LFE5U-85k") == Target("ecp5", "85k")
    assert str(Target.parse("ice40:up5k")) == "ice40:up5k"
    assert Sweep(lanes=(1, 2, 1), targets=("ecp5", "ecp5:85k"), seeds=(1, 2)).size == 8


def _explore_local(root, sweep: Sweep, out, **options):
    """``explore`` of the problem in ``root`` (with its labels) on a local 2-worker cluster,
    simulated in Icarus."""
    return explore(
        root / "qmodel",
        root / "x.npy",
        sweep,
        out,
        labels=root / "y.npy",
        simulator="icarus",
        workers=2,
        **options,
    )


def _explore_cli(root, *options) -> int:
    """``lstmfpga explore QMODEL --inputs X OPTIONS...`` on the problem in ``root``."""
    return cli.main(
        ["explore", str(root / "qmodel"), "--inputs", str(root / "x.npy"), *map(str, options)]
    )


def test_local_cluster_sweep_caches_and_extends(problem, tmp_path):
    root, qmodel = problem
    out = tmp_path / "sweep"
    lines: list[str] = []
    sweep = Sweep(lanes=(1, 9, 8), targets=("ecp5:25k",))
    result = _explore_local(root, sweep, out, progress=lines.append)
    by_lanes = {p["lanes"]: p for p in result.points}
    assert sorted(by_lanes) == [1, 8, 9]
    # lanes 9 is more than 4 * hidden_size = 8: that point fails, the others go on
    assert "lanes must be in 1..8 (4*hidden_size), not 9" in by_lanes[9]["error"]
    for lanes in (1, 8):
        _check_point(by_lanes[lanes], qmodel, T)
        rtl = by_lanes[lanes]["accuracy"]
        assert 0 <= rtl <= 1
    assert result.computed == 4 and result.cached == 0  # 2 designs + 2 syntheses
    assert len(lines) == 6 and all(line.startswith("[") for line in lines)
    assert any("FAILED: " in line and "lanes 9" in line for line in lines)

    doc = files.read_json(out / "explore.json", "explore")
    assert doc["format"] == "lstmfpga.explore" and doc["points"] == result.points
    # Pareto flags agree with the definition on the finished points
    done = [p for p in doc["points"] if p["error"] is None]
    for name, (xf, yf, xs, ys) in FRONTS.items():
        mask = pareto_mask([p[xf] for p in done], [p[yf] for p in done], (xs, ys))
        assert [p["pareto"][name] for p in done] == mask.tolist()
    assert not any(by_lanes[9]["pareto"].values())
    page = _Page()
    page.feed((out / "explore.html").read_text())
    assert page.body_rows == 3 and page.tags.count("svg") == len(FRONTS)
    assert "script" in page.tags

    # a rerun computes nothing; an extended sweep computes only its new points
    again = _explore_local(root, sweep, out)
    assert again.computed == 0 and again.cached == 4
    assert [p for p in again.points if p["error"] is None] == done
    wider = Sweep(lanes=(1, 8, 2), targets=("ecp5:25k",))
    extended = _explore_local(root, wider, out)
    assert extended.computed == 2 and extended.cached == 4
    _check_point({p["lanes"]: p for p in extended.points}[2], qmodel, T)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_on_a_separately_started_dask_cluster(problem, tmp_path):
    root, qmodel = problem
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]  # the `dask` command of this environment
    log = open(tmp_path / "cluster.log", "w")

    def start(*argv):  # a `dask` process of this environment, logging to cluster.log
        return subprocess.Popen([*dask, *map(str, argv)], stdout=log, stderr=subprocess.STDOUT)

    procs = [start("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")]
    try:
        time.sleep(1)
        procs.append(
            start("worker", address, "--nworkers", 1, "--nthreads", 1, "--no-dashboard",
                  "--local-directory", tmp_path / "worker")
        )  # fmt: skip
        out = tmp_path / "remote"
        code = _explore_cli(
            root,
            *("--lanes", 2, "--simd", 3, "--cells", 2, "--target", "ecp5:25k", "--seeds", 2),
            *("--sim", "amaranth", "--scheduler", address, "-o", out, "-q"),
        )
        assert code == 0, (tmp_path / "cluster.log").read_text()[-2000:]
        (point,) = files.read_json(out / "explore.json", "explore")["points"]
        assert point["seed"] == 2 and point["simd"] == 3 and point["accuracy"] is None
        assert point["cells"] == 2
        _check_point(point, qmodel, T)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        log.close()


def test_unreachable_scheduler_is_one_line_error(problem, tmp_path, capsys):
    root, _ = problem
    code = _explore_cli(
        root,
        *("--lanes", 2, "--target", "ecp5", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"),
        *("-o", tmp_path / "o"),
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("lstmfpga: error: cannot reach the Dask scheduler at tcp://")
