# amaranth: UnusedElaboratable=no
"""GRUCellDatapath equals the golden GRU unit by unit (Amaranth simulator, random valid/ready
stalls): on the units of real golden runs (their four exact sums) its ``h`` is the golden
model's hidden state, and on edge and random sums it equals ``GRUCellArithmetic.update_sums``
(``h`` and the per-unit saturation counts of ``preact``, ``hn`` and ``hidden``), for the
presets, every rounding and overflow mode, interpolating, direct and mixed tables; its
Verilog is lint-clean."""

import itertools
import os
import re
from dataclasses import replace

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import signed
from amaranth.lib import data
from helpers.gru_models import random_gru_qmodel, step_inputs
from helpers.streams import run_stream

from lstmfpga.hw.gru_cell import GRUCellDatapath, gru_cell_latency, gru_cell_multipliers
from lstmfpga.quant.activation import make_table
from lstmfpga.quant.fixed import OVERFLOW_MODES, ROUNDING_MODES
from lstmfpga.quant.gru_golden import GRUCellArithmetic, GRUStep
from lstmfpga.sim.lint import verilator_lint

FIELDS = ("r", "z", "n_x", "n_h", "h_prev")
NARROW = {"preact": {"bits": 10, "frac": 6}}
DIRECT = {"step_log2": -6, "interpolate": False}
# name: quantization config of the GRU (the cell sees its formats, tables and modes)
CASES = {
    "q16": dict(preset="q16"),
    "w8a16-half_up": dict(preset="w8a16", rounding="half_up"),
    "w8a8-truncate-wrap": dict(preset="w8a8", rounding="truncate", overflow="wrap"),
    "w4a8-wrap": dict(preset="w4a8", overflow="wrap"),
    # hidden s8.7 cannot hold 1.0 (h saturates); interpolating sigmoid, direct tanh
    "w8a8-narrow-hidden-mixed-tables": dict(
        preset="w8a8", rounding="half_up", roles={**NARROW, "hidden": {"bits": 8, "frac": 7}}
    ),
    "direct-tables-truncate": dict(preset="w8a8", rounding="truncate", roles=NARROW,
                                   activation={"sigmoid": DIRECT, "tanh": DIRECT}),
}  # fmt: skip


def _model(config: dict, seed: int):
    return random_gru_qmodel(seed, config, num_layers=2, bidirectional=True, hidden_size=3)


def _golden_units(model, x_codes):
    """Every unit of every step of the golden run: the cell's inputs (the golden step's sums,
    ``GRUStep.input_sums`` and ``recurrent_sums``) and the golden ``h``."""
    _, steps = step_inputs(model, x_codes)
    H = model.hidden_size
    rows, hs = [], []
    for (layer, d), s in steps.items():
        golden = GRUStep(model, layer, d)
        gi, gh = golden.input_sums(s["u"]), golden.recurrent_sums(s["h_prev"])
        acc = gi + np.concatenate([gh[..., : 2 * H], np.zeros_like(gh[..., 2 * H :])], axis=-1)
        parts = (acc[..., :H], acc[..., H : 2 * H], acc[..., 2 * H :],
                 gh[..., 2 * H :] + golden.b_hn, s["h_prev"])  # fmt: skip
        rows.append(np.stack([a.reshape(-1) for a in parts], axis=1))
        hs.append(s["h"].reshape(-1))
    return np.concatenate(rows), np.concatenate(hs)


def _ends(fmt) -> list[int]:
    return [fmt.min_code, fmt.min_code + 1, -1, 0, 1, fmt.max_code - 1, fmt.max_code]


def _sum_edges(fmt, shift: int, acc) -> list[int]:
    """Accumulator sums at the edges of ``fmt`` after a right ``shift``: its end codes scaled
    up, ties around zero, and the accumulator's own ends."""
    ties = [(k << shift) + (1 << (shift - 1)) for k in (-3, -2, -1, 0, 1, 2)] if shift > 0 else []
    return _ends(acc) + [c << max(shift, 0) for c in _ends(fmt)] + ties


def _sums(fmt, shift: int, rng, count: int) -> np.ndarray:
    """Sums that requantize into ``fmt`` (codes scaled up, random low bits), and some beyond."""
    low = rng.integers(0, 1 << max(shift, 0), count)
    return (rng.integers(fmt.min_code - 8, fmt.max_code + 9, count) << max(shift, 0)) + low


def _edge_units(arith, count: int, seed: int) -> np.ndarray:
    """Edge sums and codes of every field mixed at random, sums that mostly requantize into
    their formats (with random low bits), then uniform codes over the whole formats."""
    rng = np.random.default_rng(seed)
    p, a, n, h = arith.preact, arith.acc, arith.hn, arith.hidden
    end = arith.sigmoid.size << arith.sigmoid.shift  # the sigmoid table's range end (codes)
    scale = max(arith.n_shift, 0)
    table_ends = [(sign * (end + k)) << scale for k in (-1, 0, 1) for sign in (1, -1)]
    pre = [*_sum_edges(p, arith.n_shift, a), *table_ends]
    n_xs = _sum_edges(p, arith.n_shift, a)
    edges = [pre, pre, n_xs, _sum_edges(n, arith.hn_shift, a), _ends(h)]
    mixed = np.stack([rng.choice(np.array(e, np.int64), count) for e in edges], axis=1)
    inside = np.stack([_sums(p, arith.n_shift, rng, count), _sums(p, arith.n_shift, rng, count),
                       _sums(p, arith.n_shift, rng, count), _sums(n, arith.hn_shift, rng, count),
                       rng.integers(h.min_code, h.max_code + 1, count)], axis=1)  # fmt: skip
    uniform = np.stack([rng.integers(f.min_code, f.max_code + 1, count) for f in (a, a, a, a, h)],
                       axis=1)  # fmt: skip
    units = np.concatenate([mixed, inside, uniform])
    units[:, :4] = np.clip(units[:, :4], a.min_code, a.max_code)  # every sum an accumulator code
    return units


def _expect(arith, units: np.ndarray) -> list[dict]:
    """``arith.update_sums`` one unit at a time, so the saturation counts become per-beat."""
    out = []
    for row in units:
        sat = {}
        h, _ = arith.update_sums(*row, saturation=sat)
        out.append({"h": int(h), "sat_preact": sat["preact"], "sat_hn": sat["hn"],
                    "sat_h": sat["hidden"]})  # fmt: skip
    return out


def _run(arith, units, *, seed, idle=0.25, stall=0.25):
    payloads = [dict(zip(FIELDS, map(int, row), strict=True)) for row in units]
    result = run_stream(GRUCellDatapath(arith), payloads, seed=seed, idle=idle, stall=stall)
    assert len(result.outputs) == len(payloads), f"seed={seed}"
    return result


def _check_golden(config: dict, seed: int, edges: int) -> list[dict]:
    """The units of a golden run of a GRU quantized with ``config``, then ``3 * edges`` edge
    and uniform units, through the cell: every beat equals ``update``, and the golden run's
    beats give its hidden states. Returns the expected beats."""
    model, x_codes = _model(config, seed)
    arith = GRUCellArithmetic.of(model)
    golden_units, golden_h = _golden_units(model, x_codes)
    units = np.concatenate([golden_units, _edge_units(arith, edges, seed)])
    got = _run(arith, units, seed=seed).outputs
    expected = _expect(arith, units)
    for j, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"seed={seed} beat {j}: in {units[j].tolist()} got {g} want {e}"
    assert [g["h"] for g in got[: len(golden_h)]] == golden_h.tolist()
    return expected


@pytest.mark.parametrize("name", list(CASES))
def test_matches_golden(name):
    expected = _check_golden(CASES[name], list(CASES).index(name) + 40, 60)
    # The edge codes reach the saturations where the formats allow it.
    assert any(e["sat_preact"] == 3 for e in expected) and any(e["sat_hn"] for e in expected)
    if name == "w8a8-narrow-hidden-mixed-tables":
        assert any(e["sat_h"] for e in expected)


SWEEP = list(itertools.product(("q16", "w8a16", "w8a8", "w4a8"), ROUNDING_MODES, OVERFLOW_MODES))
#: ``LSTMFPGA_SWEEP=small`` (the default, CI): every fourth combination, 40 edge units each;
#: ``large``: all 24 combinations with 400.
LARGE = os.environ.get("LSTMFPGA_SWEEP", "small") == "large"


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "rounding", "overflow"), SWEEP if LARGE else SWEEP[::4])
def test_matches_golden_sweep(preset, rounding, overflow):
    config = dict(preset=preset, rounding=rounding, overflow=overflow)
    _check_golden(config, SWEEP.index((preset, rounding, overflow)) + 100, 400 if LARGE else 40)


@pytest.mark.parametrize(("idle", "stall", "seed"), [(0.0, 0.8, 401), (0.8, 0.0, 402)])
def test_heavy_stalls(idle, stall, seed):
    arith = GRUCellArithmetic.of(_model(CASES["q16"], seed)[0])
    units = _edge_units(arith, 30, seed)
    assert _run(arith, units, seed=seed, idle=idle, stall=stall).outputs == _expect(arith, units)


@pytest.mark.parametrize(("name", "latency"), [("q16", 21), ("w8a8-narrow-hidden-mixed-tables", 19),
                                               ("direct-tables-truncate", 17)])  # fmt: skip
def test_latency_and_throughput(name, latency):
    arith = GRUCellArithmetic.of(_model(CASES[name], 7)[0])
    dut = GRUCellDatapath(arith)
    assert dut.latency == latency == gru_cell_latency(arith.sigmoid, arith.tanh_gate)
    units = _edge_units(arith, 8, seed=7)
    payloads = [dict(zip(FIELDS, map(int, row), strict=True)) for row in units]
    result = run_stream(dut, payloads)  # no idle cycles, o.ready always high
    assert result.outputs == _expect(arith, units)
    first = result.in_cycles[0]
    assert result.in_cycles == list(range(first, first + len(payloads))), "one beat per cycle"
    assert [o - i for i, o in zip(result.in_cycles, result.out_cycles, strict=True)] == [
        latency
    ] * len(payloads)


def test_signature_and_properties():
    arith = GRUCellArithmetic.of(_model(CASES["w8a8-narrow-hidden-mixed-tables"], 3)[0])
    dut = GRUCellDatapath(arith)
    assert dut.arith is arith
    acc = signed(arith.acc.bits)
    assert arith.hidden.bits == 8
    assert dut.i.payload.shape() == data.StructLayout(
        {"r": acc, "z": acc, "n_x": acc, "n_h": acc, "h_prev": signed(8)}
    )
    assert dut.o.payload.shape() == data.StructLayout(
        {"h": signed(8), "sat_preact": range(4), "sat_hn": 1, "sat_h": 1}
    )


def test_argument_errors():
    arith = GRUCellArithmetic.of(_model(CASES["q16"], 3)[0])
    with pytest.raises(TypeError, match=r"^arith must be a GRUCellArithmetic, not "):
        GRUCellDatapath("cell")
    with pytest.raises(ValueError, match=r"^arith.rounding must be one of "):
        GRUCellDatapath(replace(arith, rounding="nearest"))
    with pytest.raises(ValueError, match=r"^arith.overflow must be one of "):
        GRUCellDatapath(replace(arith, overflow="clip"))
    unsigned_hn = replace(arith.hn, signed=False)
    with pytest.raises(ValueError, match=rf"^arith.hn must be a signed format, not {unsigned_hn}"):
        GRUCellDatapath(replace(arith, hn=unsigned_hn))
    with pytest.raises(TypeError, match=r"^arith.sigmoid must be an ActivationTable, not None"):
        GRUCellDatapath(replace(arith, sigmoid=None))
    tanh = make_table("tanh", arith.preact, arith.gate)
    with pytest.raises(ValueError, match=r"^arith.sigmoid must be a sigmoid table, not 'tanh'"):
        GRUCellDatapath(replace(arith, sigmoid=tanh))
    with pytest.raises(ValueError, match=r"^arith.rn_shift must be a non-negative integer, not -1"):
        GRUCellDatapath(replace(arith, rn_shift=-1))


def test_verilog_is_lint_clean(tmp_path):
    """Direct tables here; the cell bank's lint test covers interpolating ones."""
    dut = GRUCellDatapath(GRUCellArithmetic.of(_model(CASES["direct-tables-truncate"], 3)[0]))
    (tmp_path / "gru_cell.v").write_text(verilog.convert(dut, name="gru_cell"))
    assert verilator_lint(tmp_path, "gru_cell") == ""


@pytest.mark.parametrize(("name", "count"), [("q16", 6), ("w8a8-narrow-hidden-mixed-tables", 5),
                                             ("direct-tables-truncate", 3)])  # fmt: skip
def test_multiplier_count_and_widths_are_the_designs(name, count):
    """``gru_cell_multipliers`` lists exactly the design's ``$mul`` cells and their widths."""
    arith = GRUCellArithmetic.of(_model(CASES[name], 3)[0])
    text = rtlil.convert(GRUCellDatapath(arith), name="gru_cell")
    design = sorted(
        tuple(sorted((int(a), int(b))))
        for a, b in re.findall(
            r"cell \$mul .*\n(?:\s+parameter .*\n)*?\s+parameter \\A_WIDTH (\d+)"
            r"\n\s+parameter \\B_WIDTH (\d+)",
            text,
        )
    )
    listed = sorted(tuple(sorted((m["a_bits"], m["b_bits"])))
                    for m in gru_cell_multipliers(arith) for _ in range(m["count"]))  # fmt: skip
    assert len(design) == count and design == listed
    assert sum(m["count"] for m in gru_cell_multipliers(arith, cells=3)) == 3 * count
