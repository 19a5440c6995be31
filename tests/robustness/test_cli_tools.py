"""Hostile inputs for ``quantize``, ``generate``, ``synth``, ``demo`` and ``info`` on qmodels.

Every case runs the real CLI (:mod:`harness`) and must be refused with one line and exit code
2, write nothing outside its output folder and run no payload. The models are built once per
module (a tiny qmodel, its spec and calibration data); each case copies what it tampers with
into its own inputs folder. Synthesis refusals happen before any tool runs, so no case here
runs Yosys (each is also checked to be fast); the same holds for ``demo``, refused before
training.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile

import numpy as np
import pytest
from harness import Case, assert_refused, run_cli

from lstmfpga.testing import random_inputs, random_qmodel

#: A refusal that is checked up front must not take longer than this (seconds).
FAST = 20


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``{"spec", "qmodel", "calib", "big"}``: a tiny spec and its q16 model (2 inputs, 4
    hidden, head on the last step), calibration data, and a model whose weights alone need
    more RAM than any supported device (hidden size 600)."""
    root = tmp_path_factory.mktemp("built")
    spec, qmodel = random_qmodel(0, input_size=2, hidden_size=4, head="last", head_out=3)
    calib = random_inputs(0, 8, 5, 2)
    np.save(root / "calib.npy", calib)
    _, big = random_qmodel(1, input_size=2, hidden_size=600, calib_batch=2)
    return {
        "spec": spec.save(root / "spec"),
        "qmodel": qmodel.save(root / "qmodel"),
        "calib": root / "calib.npy",
        "big": big.save(root / "big"),
    }


def _copy(src, case: Case, name: str):
    return shutil.copytree(src, case.inputs / name)


def _edit_manifest(path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _edit_tensors(path, edit) -> None:
    with np.load(path / "tensors.npz") as npz:
        tensors = dict(npz)
    edit(tensors)
    np.savez(path / "tensors.npz", **tensors)


class Payload:
    """Unpickling this creates the case's marker file (if anything ever unpickles it)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# -- info / any reader of a qmodel: malformed artifacts -------------------------------------------
def _npy_member(header_shape: str) -> bytes:
    header = f"{{'descr': '<i8', 'fortran_order': False, 'shape': {header_shape}, }}"
    header = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def _truncate(path):
    data = (path / "tensors.npz").read_bytes()
    (path / "tensors.npz").write_bytes(data[: len(data) // 3])


def _object_array(path, case):
    with np.load(path / "tensors.npz") as npz:
        tensors = dict(npz)
    tensors["w_ih_l0"] = np.array([Payload(case.marker)], dtype=object)
    np.savez(path / "tensors.npz", allow_pickle=True, **tensors)


def _lying_header(path):
    with zipfile.ZipFile(path / "tensors.npz", "a") as archive:
        archive.writestr("huge.npy", _npy_member("(1000000, 1000000)"))


def _bump_table(tensors):
    entries = tensors["table_sigmoid_entries"].copy()
    entries[5] += 1
    tensors["table_sigmoid_entries"] = entries


QMODEL_CASES = {
    "no formats": (
        lambda p, c: _edit_manifest(p, lambda m: m.pop("formats")),
        "lacks the field 'formats'",
    ),
    "a layer without formats": (
        lambda p, c: _edit_manifest(p, lambda m: m["tensor_formats"].pop("w_hh_l0")),
        "tensor_formats lacks tensor w_hh_l0",
    ),
    "hidden_size a string": (
        lambda p, c: _edit_manifest(p, lambda m: m.update(hidden_size="4")),
        "hidden_size must be an integer >= 1, not '4'",
    ),
    "frac above bits": (
        lambda p, c: _edit_manifest(p, lambda m: m["formats"]["cell"].update(frac=40)),
        "format of cell s16.40: frac must be at most bits (16), not 40",
    ),
    "num_layers 0": (
        lambda p, c: _edit_manifest(p, lambda m: m.update(num_layers=0)),
        "num_layers must be an integer >= 1, not 0",
    ),
    "unknown head mode": (
        lambda p, c: _edit_manifest(p, lambda m: m["head"].update(mode="middle")),
        "head mode must be 'last' or 'all', not 'middle'",
    ),
    "manifest a list": (
        lambda p, c: (p / "manifest.json").write_text("[1, 2, 3]"),
        "manifest.json",
    ),
    "deep JSON": (
        lambda p, c: (p / "manifest.json").write_text("[" * 200_000 + "]" * 200_000),
        "nests 200000 levels deep",
    ),
    "wrong artifact": (
        lambda p, c: _edit_manifest(p, lambda m: m.update(format="lstmfpga.hardware")),
        "'lstmfpga.hardware'",
    ),
    "truncated tensors.npz": (lambda p, c: _truncate(p), "tensors.npz"),
    "tensors.npz not a zip": (
        lambda p, c: (p / "tensors.npz").write_bytes(b"garbage" * 100),
        "is not an .npz archive",
    ),
    "object array": (lambda p, c: _object_array(p, c), "object arrays (pickles) are refused"),
    "lying array header": (lambda p, c: _lying_header(p), "more than the 268435456-byte limit"),
    "table does not match": (
        lambda p, c: _edit_tensors(p, _bump_table),
        "activation table sigmoid (entries) does not match its rule",
    ),
    "codes outside their format": (
        lambda p, c: _edit_tensors(p, lambda t: t.update(w_ih_l0=t["w_ih_l0"] * 1000)),
        "tensor w_ih_l0: tensor codes do not fit",
    ),
    "uint64 codes that would wrap": (
        lambda p, c: _edit_tensors(
            p, lambda t: t.update(head_w=t["head_w"].astype(np.uint64) + np.uint64(2**63))
        ),
        "tensor head_w: tensor codes do not fit",
    ),
    "float codes": (
        lambda p, c: _edit_tensors(p, lambda t: t.update(head_b=t["head_b"] + 0.5)),
        "tensor head_b must hold integer codes, not float64",
    ),
    "an extra tensor": (
        lambda p, c: _edit_tensors(p, lambda t: t.update(extra=np.zeros(3, np.int64))),
        "tensors.npz holds unexpected array(s) ['extra']",
    ),
    "forged spec_hash": (
        lambda p, c: _edit_manifest(p, lambda m: m.update(spec_hash="0" * 63 + "g")),
        "spec_hash must be a 64-digit hex SHA-256",
    ),
}


@pytest.mark.parametrize("name", list(QMODEL_CASES))
def test_info_refuses_a_malformed_qmodel(built, tmp_path, name):
    tamper, message = QMODEL_CASES[name]
    case = Case.make(tmp_path)
    qmodel = _copy(built["qmodel"], case, "qmodel")
    tamper(qmodel, case)
    assert_refused(run_cli(case, "info", qmodel), case, match=message)


def test_generate_refuses_a_malformed_qmodel_too(built, tmp_path):
    case = Case.make(tmp_path)
    qmodel = _copy(built["qmodel"], case, "qmodel")
    _edit_manifest(qmodel, lambda m: m["tensor_formats"].pop("w_ih_l0"))
    result = run_cli(case, "generate", qmodel, "-o", case.out / "rtl")
    assert_refused(result, case, match="tensor_formats lacks tensor w_ih_l0")
    assert not (case.out / "rtl").exists()


# -- quantize: bad configs, presets, calibration data, outputs ------------------------------------
def _write(case: Case, name: str, content: bytes | str):
    path = case.inputs / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _calib_npy(case: Case, array, **kwargs):
    path = case.inputs / "calib.npy"
    np.save(path, array, **kwargs)
    return path


def _huge_header(case: Case):
    return _write(case, "calib.npy", _npy_member("(100000, 100000, 100000)"))


def _npy_v2_header(length: int) -> bytes:
    """A version-2 ``.npy`` whose header claims ``length`` bytes (a valid dict, padded)."""
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 2), }"
    body = header.ljust(min(length, 200_000) - 1) + b"\n" if length < 200_000 else header
    return b"\x93NUMPY\x02\x00" + length.to_bytes(4, "little") + body + b"\0" * 96


def _truncated_calib(case: Case, built):
    data = built["calib"].read_bytes()
    return _write(case, "calib.npy", data[: len(data) - 40])


UNKNOWN_ROLE = "preset = 'q16'\n[roles]\nforget = {bits = 8}\n"
FRAC_ABOVE_BITS = "preset = 'q16'\n[roles]\nx = {bits = 8, frac = 9}\n"
QUANTIZE_CASES = {
    "TOML syntax error": (
        lambda c, b: ["--config", _write(c, "c.toml", "preset = ")],
        "is not valid TOML",
    ),
    "deep TOML": (
        lambda c, b: ["--config", _write(c, "c.toml", "x = " + "[" * 50_000 + "]" * 50_000)],
        "is not valid TOML: nested too deeply",
    ),
    "unknown role": (
        lambda c, b: ["--config", _write(c, "c.toml", UNKNOWN_ROLE)],
        "unknown role 'forget'",
    ),
    "unknown preset in the config": (
        lambda c, b: ["--config", _write(c, "c.toml", 'preset = "../../q16"\n')],
        "preset must be one of q16, w8a16",
    ),
    "config frac above bits": (
        lambda c, b: ["--config", _write(c, "c.toml", FRAC_ABOVE_BITS)],
        "role x: frac must be in -62..8 (at most bits), not 9",
    ),
    "config not UTF-8": (
        lambda c, b: ["--config", _write(c, "c.toml", b"name = '\xff\xfe'\n")],
        "is not UTF-8 text",
    ),
    "config is a folder": (
        lambda c, b: ["--config", c.inputs],
        "is a directory",
    ),
    "calib with a huge header": (lambda c, b: ["--calib", _huge_header(c)], "more than the"),
    "calib header length of 2 GB": (
        lambda c, b: ["--calib", _write(c, "calib.npy", _npy_v2_header(2**31))],
        "not a NumPy file",
    ),
    "calib header of 100 kB": (
        lambda c, b: ["--calib", _write(c, "calib.npy", _npy_v2_header(100_000))],
        "not a NumPy file",
    ),
    "truncated calib": (lambda c, b: ["--calib", _truncated_calib(c, b)], "truncated"),
    "pickled calib": (
        lambda c, b: ["--calib", _calib_npy(c, np.array([Payload(c.marker)]), allow_pickle=True)],
        "object arrays (pickles) are refused",
    ),
    "NaN calib": (
        lambda c, b: ["--calib", _calib_npy(c, np.full((2, 3, 2), np.nan))],
        "non-finite values",
    ),
    "2-D calib": (lambda c, b: ["--calib", _calib_npy(c, np.zeros((3, 2)))], "calibration data"),
    "calib as .npz": (
        lambda c, b: ["--calib", _savez(c)],
        "must be a .npy array file, not a zip/.npz archive",
    ),
    "output is a file": (
        lambda c, b: ["-o", _write(c, "taken", "x")],
        "must be a directory, not an existing file",
    ),
    "output is the spec": (
        lambda c, b: ["-o", b["spec"]],
        "holds a 'lstmfpga.spec' artifact, not 'lstmfpga.qmodel'",
    ),
}  # fmt: skip


def _savez(case: Case):
    path = case.inputs / "calib.npz"
    np.savez(path, x=np.zeros((2, 3, 2)))
    return path


@pytest.mark.parametrize("name", list(QUANTIZE_CASES))
def test_quantize_refuses(built, tmp_path, name):
    make, message = QUANTIZE_CASES[name]
    case = Case.make(tmp_path)
    extra = [str(a) for a in make(case, built)]
    args = {"--calib": built["calib"], "-o": case.out / "q"}
    for option in list(args):
        if option in extra:
            i = extra.index(option)
            args[option] = extra[i + 1]
            del extra[i : i + 2]
    argv = ["quantize", built["spec"], "--calib", args["--calib"], "-o", args["-o"], *extra]
    assert_refused(run_cli(case, *argv), case, match=message)
    assert not (case.out / "q").exists()


# -- generate: impossible designs and outputs -----------------------------------------------------
GENERATE_CASES = {
    "max_seq_len beyond every device": (
        "qmodel",
        ["--max-seq-len", "16000000"],
        "RAM bits, more than the 13455360 of the largest supported device (xilinx xc7a200t)",
    ),
    "max_seq_len beyond the bound": (
        "qmodel",
        ["--max-seq-len", str(2**40)],
        "--max-seq-len must be an integer in 1..16777216",
    ),
    "max_seq_len 0": ("qmodel", ["--max-seq-len", "0"], "--max-seq-len must be an integer in"),
    "a hidden size beyond every device": ("big", [], "RAM bits, more than the 13455360"),
    "lanes beyond 4*hidden_size": (
        "qmodel",
        ["--lanes", "17"],
        "--lanes: lanes must be in 1..16 (4*hidden_size), not 17",
    ),
    "lanes 0": ("qmodel", ["--lanes", "0"], "--lanes must be a positive integer, not 0"),
    "name with a command": ("qmodel", ["--name", "x; touch PWNED"], "--name must be an identifier"),
    "output is a file": ("qmodel", ["-o", "FILE"], "must be a directory, not an existing file"),
    "output is a qmodel": ("qmodel", ["-o", "QMODEL"], "holds a 'lstmfpga.qmodel' artifact"),
}


@pytest.mark.parametrize("name", list(GENERATE_CASES))
def test_generate_refuses_before_building_the_design(built, tmp_path, name):
    model, extra, message = GENERATE_CASES[name]
    case = Case.make(tmp_path)
    taken = case.inputs / "taken"
    taken.write_text("x")
    extra = [{"FILE": str(taken), "QMODEL": str(built["qmodel"])}.get(a, a) for a in extra]
    output = [] if "-o" in extra else ["-o", case.out / "rtl"]
    started = time.perf_counter()
    result = run_cli(case, "generate", built[model], *extra, *output)
    assert_refused(result, case, match=message)
    assert time.perf_counter() - started < FAST
    assert not (case.out / "rtl").exists()


# -- synth: crafted design folders, options, --json -----------------------------------------------
def _design(case: Case, top="lstm_accel", verilog=None, **fields):
    folder = case.inputs / "design"
    folder.mkdir()
    manifest = {"format": "lstmfpga.hardware", "version": 1, "top": top, **fields}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "lstm_accel.v").write_text(verilog or "module lstm_accel; endmodule\n")
    return folder


def _linked_verilog(case: Case):
    folder = _design(case)
    outside = case.root / "elsewhere.v"
    outside.write_text("module lstm_accel; endmodule\n")
    (folder / "lstm_accel.v").unlink()
    (folder / "lstm_accel.v").symlink_to(outside)
    return folder


READS_SHADOW = 'module lstm_accel;\n$readmemh("/etc/shadow", m);\nendmodule\n'
SYNTH_CASES = {
    "the injection repro": (
        lambda c: _design(c, top="a; tee -o ../../X help; echo"),
        [],
        "top must be an identifier ([A-Za-z_][A-Za-z0-9_]*), not 'a; tee -o ../../X help; echo'",
    ),
    "top with a newline": (
        lambda c: _design(c, top=f"lstm_accel\ntee -o {c.marker} help"),
        [],
        "top must be an identifier",
    ),
    "top with spaces": (lambda c: _design(c, top="lstm accel"), [], "top must be an identifier"),
    "top with a path": (lambda c: _design(c, top="../lstm_accel"), [], "top must be an identifier"),
    "files with ..": (
        lambda c: _design(c, files=["lstm_accel.v", "../../X.hex"]),
        [],
        "must be a plain file name inside the design folder, not '../../X.hex'",
    ),
    "files with an absolute path": (
        lambda c: _design(c, files=["lstm_accel.v", "/etc/passwd"]),
        [],
        "must be a plain file name inside the design folder, not '/etc/passwd'",
    ),
    "a symlinked .v pointing outside": (
        _linked_verilog,
        [],
        "top Verilog 'lstm_accel.v' is a link to",
    ),
    "$readmemh of an absolute path": (
        lambda c: _design(c, verilog=READS_SHADOW),
        [],
        "lstm_accel.v: $readmem file must be a plain file name inside the design folder",
    ),
    "format mismatch": (
        lambda c: _design(c, format="lstmfpga.qmodel"),
        [],
        "format must be 'lstmfpga.hardware', not 'lstmfpga.qmodel'",
    ),
    "no manifest": (lambda c: c.inputs, [], "no manifest.json"),
    "device with a command": (
        lambda c: _design(c),
        ["--device", "25k; touch PWNED"],
        "device must be one of ['25k', '45k', '85k'] for ecp5, not '25k; touch PWNED'",
    ),
    "device of another family": (
        lambda c: _design(c),
        ["--target", "ice40", "--device", "85k"],
        "device must be one of ['hx1k', 'hx8k', 'up5k'] for ice40, not '85k'",
    ),
    "NaN clock": (lambda c: _design(c), ["--freq", "nan"], "freq_mhz must be a number in"),
    "--json not JSON": (
        lambda c: _design(c),
        ["--json", "TAMPERED:{not json"],
        "is not valid JSON",
    ),
    "--json another format": (
        lambda c: _design(c),
        ["--json", 'TAMPERED:{"format": "lstmfpga.qmodel"}'],
        "must be an lstmfpga report ('lstmfpga.report') or a synthesis result",
    ),
    "--json a report of another version": (
        lambda c: _design(c),
        ["--json", 'TAMPERED:{"format": "lstmfpga.report", "version": 9}'],
        "report version must be 1, not 9",
    ),
    "--json in a missing folder": (
        lambda c: _design(c),
        ["--json", "MISSING"],
        "does not exist",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SYNTH_CASES))
def test_synth_refuses_before_any_tool_runs(tmp_path, name):
    make, extra, message = SYNTH_CASES[name]
    case = Case.make(tmp_path)
    folder = make(case)
    argv = []
    for arg in extra:
        if arg.startswith("TAMPERED:"):
            path = case.inputs / "report.json"
            path.write_text(arg.removeprefix("TAMPERED:"))
            arg = str(path)
        elif arg == "MISSING":
            arg = str(case.inputs / "no" / "report.json")
        argv.append(arg)
    started = time.perf_counter()
    assert_refused(run_cli(case, "synth", folder, *argv), case, match=message)
    assert time.perf_counter() - started < FAST  # no synthesis ran
    assert not (case.root / "X").exists()


# -- demo: refused before training ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--lanes", "129"],
            "--lanes for the digits model (hidden_size 32): lanes must be in 1..128",
        ),
        (["--lanes", "0"], "--lanes must be a positive integer, not 0"),
        (["--out", "FILE"], "must be a directory, not an existing file"),
        (["--out", "QMODEL"], "is an lstmfpga artifact folder, not a demo folder"),
    ],
)
def test_demo_refuses_bad_options_before_training(built, tmp_path, argv, message):
    case = Case.make(tmp_path)
    taken = case.inputs / "taken"
    taken.write_text("x")
    argv = [{"FILE": str(taken), "QMODEL": str(built["qmodel"])}.get(a, a) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(case.out / "demo")]
    started = time.perf_counter()
    assert_refused(run_cli(case, "demo", *argv, "--no-synth"), case, match=message)
    assert time.perf_counter() - started < FAST
    assert not (case.out / "demo").exists()


# -- the last line of defence ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "message"),
    [
        (MemoryError(), "lstmfpga: error: out of memory (MemoryError)"),
        (RecursionError("deep"), "lstmfpga: error: input nested too deeply (RecursionError)"),
    ],
)
def test_memory_and_recursion_errors_are_one_line(monkeypatch, capsys, error, message):
    from lstmfpga import cli
    from lstmfpga.commands import info

    def explode(args):
        raise error

    monkeypatch.delenv("LSTMFPGA_DEBUG", raising=False)
    monkeypatch.setattr(info, "run", explode)
    assert cli.main(["info", "anything"]) == 2
    assert capsys.readouterr().err == message + "\n"
