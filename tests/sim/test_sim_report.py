# amaranth: UnusedElaboratable=no
"""The bit-accuracy report: the checker locates mismatches exactly; the report's schema,
text, HTML and comparison (pure functions, no simulator needed)."""

import json
import math
import re

import numpy as np
import pytest

from lstmfpga.errors import CLIError
from lstmfpga.export import reference
from lstmfpga.hw.accelerator import LSTMAccelerator
from lstmfpga.hw.cycles import CycleModel
from lstmfpga.quant import golden
from lstmfpga.sim.amaranth_sim import SequenceCycles
from lstmfpga.sim.check import check_outputs
from lstmfpga.sim.html import render_compare_html, render_html
from lstmfpga.sim.render import compare, render_text
from lstmfpga.sim.report import (
    REPORT_FORMAT,
    REPORT_VERSION,
    build_report,
    load_report,
    mac_count,
    save_report,
)
from lstmfpga.sim.streams import StreamGeometry, pack_outputs
from lstmfpga.testing import random_inputs, random_qmodel


def _golden_streams(q, x_codes, with_states=False):
    result = golden.run(q, x_codes)
    geom = StreamGeometry.of(q, with_states=with_states)
    streams = [
        pack_outputs(geom, result.prediction, b, result.h_n, result.c_n)
        for b in range(len(x_codes))
    ]
    return geom, result, streams


def _flip(streams, b, k, bit=0):
    corrupted = [s.copy() for s in streams]
    corrupted[b][k] ^= 1 << bit
    return corrupted


def test_one_flipped_bit_is_reported_exactly_with_its_timestep():
    _, q = random_qmodel(4, input_size=3, hidden_size=4, head="all", head_out=3)
    x_codes = golden.quantize_inputs(q, random_inputs(4, 3, 5, 3))
    geom, _, streams = _golden_streams(q, x_codes)
    k = 2 * 3 + 1  # timestep 2, output index 1
    out = check_outputs(streams, _flip(streams, 1, k, bit=3), geom, 5)
    assert out["total"] == 3 * 5 * 3 and out["mismatched"] == 1
    assert out["max_lsb_error"] == 8
    assert out["first_mismatches"] == [
        {"sequence": 1, "tensor": "prediction", "timestep": 2, "index": 1,
         "rtl": int(streams[1][k]), "golden": int(streams[1][k] ^ 8)}
    ]  # fmt: skip
    assert out["mismatches_per_timestep"] == [0, 0, 1, 0, 0]
    assert check_outputs(streams, streams, geom, 5)["mismatched"] == 0


def test_mismatches_in_a_last_head_and_in_final_states():
    _, q = random_qmodel(5, input_size=2, hidden_size=3, num_layers=2, head="last", head_out=2)
    x_codes = golden.quantize_inputs(q, random_inputs(5, 2, 4, 2))
    geom, _, streams = _golden_streams(q, x_codes, with_states=True)
    n_h = geom.states * geom.output_size
    corrupted = _flip(_flip(streams, 0, 1), 1, 2 + n_h + 4)  # head index 1; c_n index 4
    out = check_outputs(streams, corrupted, geom, 4)
    found = [
        (m["sequence"], m["tensor"], m["timestep"], m["index"]) for m in out["first_mismatches"]
    ]
    assert found == [(0, "prediction", None, 1), (1, "c_n", None, 4)]


def test_missing_outputs_count_as_mismatches():
    _, q = random_qmodel(6, input_size=2, hidden_size=2, head="last")
    x_codes = golden.quantize_inputs(q, random_inputs(6, 2, 3, 2))
    geom, _, streams = _golden_streams(q, x_codes)
    short = [streams[0], streams[1][:-1]]
    out = check_outputs(short, streams, geom, 3)
    assert out["missing"] == 1 and out["mismatched"] == 1


@pytest.fixture(scope="module")
def made():
    """A report built from golden outputs standing in for the RTL, with exact cycle stamps."""
    spec, q = random_qmodel(7, input_size=3, hidden_size=4, head="last", head_out=3)
    acc = LSTMAccelerator(q, lanes=4, max_seq_len=8)
    x = random_inputs(7, 6, 5, 3)
    x_codes = golden.quantize_inputs(q, x)
    geom, result, streams = _golden_streams(q, x_codes)
    model = CycleModel.of(acc)
    compute, n_in, n_out = model.compute(5), acc.input_length(5), acc.result_length(5)
    cycles, t = [], 0
    for _ in range(6):
        last_in = t + n_in - 1
        first_out = last_in + compute
        cycles.append(SequenceCycles(t, last_in, first_out, first_out + n_out - 1))
        t = cycles[-1].last_out
    labels = np.array([0, 1, 2, 0, 1, 2])
    kwargs = dict(
        model=q, geometry=geom, T=5, rtl=streams, golden=result, simulator="verilator",
        simulator_version="5.48.0", lanes=4, max_seq_len=8, run_cycles=cycles,
        total_cycles=t, wall_seconds=0.5, cycle_model=model,
        float_prediction=reference.forward(spec, x).prediction, labels=labels,
    )  # fmt: skip
    return kwargs, build_report(**kwargs)


def test_report_schema_fields_are_present_and_sane(made):
    kwargs, report = made
    json.dumps(report, allow_nan=False)  # plain JSON, no NaN/inf
    assert report["format"] == REPORT_FORMAT and report["version"] == REPORT_VERSION
    assert report["bit_exact"] is True
    o = report["outputs"]
    assert (o["total"], o["mismatched"], o["max_lsb_error"], o["first_mismatches"]) == (
        18,
        0,
        0,
        [],
    )
    f = report["fixed_vs_float"]
    assert f["available"] and 0 < f["max_abs"] < 0.01 and 0 < f["rmse"] <= f["max_abs"]
    assert f["snr_db"] > 30 and math.isclose(f["max_lsb"], f["max_abs"] / f["output_lsb"])
    assert sum(f["histogram_lsb"]["counts"]) == 18
    a = report["accuracy"]
    assert a["available"] and a["count"] == 6 and a["rtl"] == a["fixed"]
    assert all(0 <= a[k] <= 1 for k in ("float", "fixed", "rtl"))
    c = report["cycles"]
    assert c["total"] == kwargs["total_cycles"] and c["model_exact"] is True
    assert c["per_timestep"] == c["model_per_timestep"] == kwargs["cycle_model"].compute(5) / 5
    q = kwargs["model"]
    assert c["macs_per_sequence"] == mac_count(q, 5) == 5 * 16 * (3 + 4) + 3 * 4
    assert 0 < c["mac_efficiency"] <= 1
    assert c["mac_efficiency"] == pytest.approx(mac_count(q, 5) / (4 * c["compute"]))
    assert set(report["saturation"]) >= {"x", "preact", "cell", "hidden", "head_out"}
    assert report["model"]["hidden_size"] == 4 and report["model"]["head"]["mode"] == "last"
    assert report["quantization"]["preset"] == "q16"
    assert set(report["quantization"]["tables"]) == {"sigmoid", "tanh_gate", "tanh_cell"}
    curves = report["activation_tables"]["sigmoid"]
    assert len(curves["x"]) == len(curves["error_lsb"]) > 100
    assert (
        max(map(abs, curves["error_lsb"]))
        <= report["quantization"]["tables"]["sigmoid"]["max_lsb"] + 1e-9
    )
    assert report["lanes"] == 4 and report["max_seq_len"] == 8
    assert report["simulator"] == {"name": "verilator", "version": "5.48.0"}
    assert report["cycles_per_second"] == kwargs["total_cycles"] / 0.5


def test_report_without_float_reference_or_labels_says_so(made):
    kwargs, _ = made
    report = build_report(**(kwargs | {"float_prediction": None, "labels": None}))
    assert report["fixed_vs_float"]["available"] is False
    assert "--spec" in report["fixed_vs_float"]["note"]
    assert report["accuracy"] == {"available": False}
    assert "fixed vs float: n/a" in render_text(report)
    assert render_html(report).count("<svg") == 4


def test_a_mismatch_makes_the_report_not_bit_exact(made):
    kwargs, _ = made
    rtl = _flip(kwargs["rtl"], 4, 2)
    report = build_report(**(kwargs | {"rtl": rtl}))
    assert report["bit_exact"] is False
    assert report["outputs"]["first_mismatches"][0] | {"rtl": 0, "golden": 0} == {
        "sequence": 4, "tensor": "prediction", "timestep": None, "index": 2, "rtl": 0,
        "golden": 0,
    }  # fmt: skip
    assert "mismatch: sequence 4 prediction timestep - index 2" in render_text(report)
    flagged = build_report(**(kwargs | {"rtl_error": True}))
    assert flagged["bit_exact"] is False and "error flag" in render_text(flagged)


def test_text_and_html(made):
    _, report = made
    text = render_text(report)
    assert text.startswith("bit-exact: yes (18 outputs of 6 sequences x 5 steps")
    assert "MAC efficiency" in text and "verilator 5.48.0" in text
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    lowered = page.lower()
    assert "<script" not in lowered and "src=" not in lowered and "href=" not in lowered
    for title in ("error (output LSBs)", "per timestep", "Activation table", "Fixed (golden)"):
        assert title in page or title == "per timestep"


def test_compare_shows_deltas_against_the_first_report(made):
    kwargs, report = made
    other = build_report(
        **(kwargs | {"simulator": "icarus", "simulator_version": "11.0", "lanes": 8,
                     "wall_seconds": 1.0})
    )  # fmt: skip
    table = compare([report, other])
    lines = table.splitlines()
    assert "#1 verilator P=4 q16" in lines[0] and "#2 icarus P=8 q16" in lines[0]
    lanes = next(line for line in lines if line.startswith("lanes"))
    assert "8 (+4, +100.0%)" in lanes
    sim = next(line for line in lines if line.startswith("simulator"))
    assert "icarus (*)" in sim
    wall = next(line for line in lines if line.startswith("wall s"))
    assert "(+0.5, +100.0%)" in wall
    assert compare([report]).count("\n") > 10


def test_save_and_load_check_format_and_version(made, tmp_path):
    _, report = made
    path = tmp_path / "r.json"
    save_report(report, path)
    assert load_report(path) == json.loads(json.dumps(report))
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
    path.write_text(json.dumps(report | {"version": 99}))
    with pytest.raises(CLIError, match="report version must be 1, not 99"):
        load_report(path)
    path.write_text(json.dumps({"format": "something.else"}))
    with pytest.raises(CLIError, match="not an lstmfpga report"):
        load_report(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_report(path)
    with pytest.raises(ValueError, match="no such file"):
        load_report(tmp_path / "missing.json")


def _tampered(report, path, value):
    """A deep copy of ``report`` with the field at dotted ``path`` set to ``value`` (or
    removed when ``value`` is ``DELETE``)."""
    report = json.loads(json.dumps(report))
    *parents, last = path.split(".")
    node = report
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return report


DELETE = object()
#: (field, bad value, what the one-line error says).
TAMPERED = [
    ("outputs", DELETE, "the report has no field 'outputs'"),
    ("outputs.total", "12", 'outputs.total must be a non-negative integer, not "12"'),
    ("outputs.total", -1, "outputs.total must be a non-negative integer, not -1"),
    ("bit_exact", 1, "bit_exact must be true or false, not 1"),
    ("outputs.first_mismatches", {}, "outputs.first_mismatches must be a list, not an object"),
    ("cycles.total", None, "cycles.total must be a non-negative integer, not null"),
    ("cycles.per_timestep", "fast", 'cycles.per_timestep must be a finite number, not "fast"'),
    ("fixed_vs_float.rmse", float("nan"), "fixed_vs_float.rmse must be a finite number, not NaN"),
    ("fixed_vs_float.histogram_lsb.counts", [1], "edges must have len(counts) + 1 = 2 entries"),
    ("accuracy.rtl", [0.5], "accuracy.rtl must be a finite number, not a list of 1"),
    ("model.head", "last", 'model.head must be an object or null, not "last"'),
    ("model.head.out_features", 2.5, "model.head.out_features must be a non-negative integer"),
    ("simulator.name", 7, "simulator.name must be a string, not 7"),
    ("activation_tables.sigmoid.x", [0.0], "error_lsb must have len(x) = 1 entries"),
    ("quantization.tables", [], "quantization.tables must be an object, not a list of 0"),
]


@pytest.mark.parametrize(("field", "value", "message"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_a_tampered_report_is_refused_naming_the_field(made, tmp_path, field, value, message):
    _, report = made
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_tampered(report, field, value)))
    with pytest.raises(CLIError) as error:
        load_report(path)
    text = str(error.value)
    assert text.startswith(f"report {path}: ") and "\n" not in text
    assert message in text


def test_unknown_fields_are_ignored_and_optional_ones_may_be_missing(made, tmp_path):
    _, report = made
    extended = _tampered(report, "future_field", {"anything": [1, 2]})
    for optional in ("cycles.model_exact", "cycles.per_sequence", "fixed_vs_float.snr_db"):
        extended = _tampered(extended, optional, DELETE if "snr" not in optional else None)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(extended))
    assert load_report(path) == extended
    render_html(extended)  # the renderers cope with what the schema allows
    render_text(extended)


SYNTHESIS = {
    "target": "ecp5", "device": "25k", "luts": 2500, "ffs": 1200, "dsps": 14, "brams": 8,
    "capacity": {"luts": 24288, "ffs": 24288, "dsps": 28, "brams": 56},
    "fmax_mhz": 71.25, "freq_mhz": 100, "timing_met": False,
    "critical_path": {"from": "mvu.acc", "to": "mvu.out", "delay_ns": 14.03},
}  # fmt: skip


def test_report_has_the_cycle_breakdown_ports_and_confusion_matrix(made):
    kwargs, report = made
    c = report["cycles"]
    n_in, n_out = kwargs["geometry"].output_length(5), 5 * 3
    assert c["load"] == 5 * 3 and c["drain"] == n_in == 3  # 5 steps x 3 inputs; 3 results
    assert c["load"] + c["compute"] + c["drain"] - 1 == c["per_sequence"]
    assert n_out == 15
    assert report["ports"] == [
        {"name": "s_axis", "direction": "in", "bits": 16, "elements_per_sequence": 15},
        {"name": "m_axis", "direction": "out", "bits": 16, "elements_per_sequence": 3},
    ]
    confusion = np.array(report["accuracy"]["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 6
    assert np.trace(confusion) / 6 == pytest.approx(report["accuracy"]["rtl"])
    text = render_text(report)
    model_compute = kwargs["cycle_model"].compute(5)
    assert f"per timestep on average, compute {model_compute:,} cycles per sequence" in text


def test_text_summary_shows_cross_checks_synthesis_and_latency(made):
    _, report = made
    cross = {"simulator": "amaranth", "sequences": 2, "bit_exact": True, "cycles_per_sequence": 9.0}
    text = render_text(report | {"synthesis": SYNTHESIS, "cross_checks": [cross]})
    per_sequence = report["cycles"]["per_sequence"]
    assert "cross-check in amaranth: 2 sequences, bit-exact: yes" in text
    assert "synthesis: target ecp5 25k; LUTs 2,500 of 24,288 (10.3%)" in text
    assert f"latency at 71.2 MHz: {per_sequence / 71.25:.2f} us per sequence" in text
    plain = render_text(report)
    assert "synthesis:" not in plain and "cross-check" not in plain


def test_inputs_fed_on_chip_get_a_note_in_text_and_html(made):
    _, report = made
    fed = report | {"synthesis": SYNTHESIS | {"serial_inputs": ["w__payload"]}}
    note = "w__payload fed through a 1-bit shift register (on-chip port, not pins)"
    assert f"note {note}" in render_text(fed)
    assert note in render_html(fed)
    assert "shift register" not in render_text(report | {"synthesis": SYNTHESIS})


def test_html_shows_synthesis_cycles_ports_and_confusion(made):
    _, report = made
    page = render_html(report | {"synthesis": SYNTHESIS})
    needles = (
        "<h2>Synthesis</h2>", "2,500 of 24,288 (10.3%)", "71.25 MHz (asked 100 MHz, not met)",
        "delay_ns 14.03", "<h2>Cycles per sequence</h2>", "load (input beats)",
        "<h2>Ports (AXI4-Stream)</h2>", "Confusion matrix", 'class="diag"',
    )  # fmt: skip
    for needle in needles:
        assert needle in page, needle
    assert "<h2>Synthesis</h2>" not in render_html(report)  # no synthesis key, no section
    lowered = page.lower()
    assert "<script" not in lowered and "src=" not in lowered and "href=" not in lowered


def test_compare_html_highlights_the_differences(made):
    kwargs, report = made
    other = build_report(**(kwargs | {"lanes": 8})) | {"synthesis": SYNTHESIS | {"luts": 3100}}
    page = render_compare_html([report | {"synthesis": SYNTHESIS}, other])
    assert page.startswith("<!DOCTYPE html>") and "#2 verilator P=8 q16" in page
    rows = {m[1]: m[0] for m in re.findall(r"<tr>(<td>([^<]*)</td>.*?)</tr>", page)}
    assert '<td class="diff">8</td>' in rows["lanes"]
    assert '<td class="diff">3,100 of 24,288 (12.8%)</td>' in rows["LUTs"]
    assert "diff" not in rows["bit-exact"] and "diff" not in rows["DSPs"]
