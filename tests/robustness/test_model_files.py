"""Bad model files given to ``lstmfpga export`` / ``info`` / ``quantize``: refused, nothing runs.

Every case builds one hostile or broken input in its own folder and runs the real CLI in a
subprocess (:mod:`harness`): exit code 2, one ``lstmfpga: error:`` line naming the problem, no
traceback, nothing written outside the output folder, and no payload ran (the marker file
every malicious pickle or code payload tries to create does not exist).

Containers covered: zip and legacy ``torch.save`` state_dicts, plain pickles, TorchScript
(``data.pkl``, ``constants.pkl``, ``*.debug_pkl``, ``traced_inputs.pkl``, ``code/``), ``.pt2``
(weights config, sample inputs, graph JSON and its symbolic shapes), and spec directories
(``manifest.json``, ``tensors.npz``).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable

import model_files as mf
import numpy as np
import pytest
import torch
from harness import Case, assert_refused, run_cli
from torch import nn

from lstmfpga.testing import with_changes

pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The tensor attributes .* were assigned during export"),
]

CASES: dict[str, Callable] = {}


def case(name: str):
    def register(build: Callable) -> Callable:
        assert name not in CASES, name
        CASES[name] = build
        return build

    return register


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> mf.Good:
    return mf.Good.build(tmp_path_factory.mktemp("good"))


def export(c: Case, model) -> list:
    return ["export", model, "-o", c.out / "spec"]


def info(c: Case, target) -> list:
    return ["info", target]


def quantize(c: Case, good: mf.Good, spec) -> list:
    return ["quantize", spec, "--calib", good.calib, "-o", c.out / "q"]


def copy_spec(c: Case, good: mf.Good, manifest=None, **tensors):
    """A copy of the good spec; ``manifest`` edits its manifest, ``tensors`` replace arrays
    (``None`` deletes; ``head__weight`` means ``head.weight``)."""
    target = c.inputs / "spec"
    target.mkdir()
    data = json.loads((good.spec / "manifest.json").read_text())
    if manifest is not None:
        data = manifest(data)
    text = data if isinstance(data, str) else json.dumps(data)
    (target / "manifest.json").write_text(text)
    arrays = with_changes(np.load(good.spec / "tensors.npz"), tensors)
    with open(target / "tensors.npz", "wb") as file:
        np.savez(file, **arrays)
    return target


# -- malicious pickles in state_dicts ----------------------------------------------------------
@case("zip .pt: os.system in data.pkl")
def _(c, good):
    torch.save({"weight_ih_l0": mf.Shell(c.marker)}, c.inputs / "evil.pt")
    return export(c, c.inputs / "evil.pt"), "refused: not a plain state_dict"


@case("zip .pt: builtins.eval in data.pkl")
def _(c, good):
    torch.save({"w": mf.Evaluator(c.marker)}, c.inputs / "evil.pt")
    return info(c, c.inputs / "evil.pt"), "refused: not a plain state_dict"


@case("legacy .pt: open() in the pickle")
def _(c, good):
    path = c.inputs / "evil.pt"
    torch.save({"w": mf.Opener(c.marker)}, path, _use_new_zipfile_serialization=False)
    return export(c, path), "refused: not a plain state_dict"


@case("legacy .pt: builtins.exec in the pickle")
def _(c, good):
    path = c.inputs / "evil.pt"
    torch.save({"w": mf.Executor(c.marker)}, path, _use_new_zipfile_serialization=False)
    return info(c, path), "refused: not a plain state_dict"


@case("plain pickle: subprocess.Popen")
def _(c, good):
    (c.inputs / "evil.pkl").write_bytes(mf.payload_pickle("subprocess.Popen", c.marker))
    return export(c, c.inputs / "evil.pkl"), "refused: not a plain state_dict"


@case("plain pickle, protocol 5: os.system")
def _(c, good):
    (c.inputs / "evil.pth").write_bytes(mf.payload_pickle("os.system", c.marker, protocol=5))
    return export(c, c.inputs / "evil.pth"), "refused: not a plain state_dict"


@case("zip .pt: a whole pickled nn.Module")
def _(c, good):
    torch.save(mf.Net(), c.inputs / "whole.pt")
    return export(c, c.inputs / "whole.pt"), "refused: a whole pickled nn.Module"


# -- malicious TorchScript archives ------------------------------------------------------------
#: name -> (good archive, member, payload, pickle protocol, command, refusal): an archive with
#: one member replaced by a pickle that would run code when unpickled.
PAYLOAD_MEMBERS = {
    "TorchScript data.pkl: os.system": (
        "script", "data.pkl", "os.system", 2, export,
        "the TorchScript archive references posix.system"),
    "TorchScript data.pkl: eval": (
        "trace", "data.pkl", "eval", 2, info, "the TorchScript archive references builtins.eval"),
    "TorchScript constants.pkl: builtins.exec": (
        "script", "constants.pkl", "exec", 2, export,
        "refused: constants.pkl references builtins.exec"),
    "TorchScript constants.pkl: protocol-4 os.system (STACK_GLOBAL)": (
        "trace", "constants.pkl", "os.system", 4, export,
        "refused: constants.pkl references posix.system"),
    "TorchScript traced_inputs.pkl: subprocess.Popen": (
        "trace", "traced_inputs.pkl", "subprocess.Popen", 2, export,
        "refused: traced_inputs.pkl references subprocess.Popen"),
    ".pt2 sample inputs: open()": (
        "pt2", "data/sample_inputs/model.pt", "open", 2, export,
        "refused: data/sample_inputs/model.pt references io.open"),
    ".pt2 extra pickle member: builtins.exec": (
        "pt2", "data/extra.pkl", "exec", 2, export,
        "refused: data/extra.pkl references builtins.exec"),
}  # fmt: skip


def _payload_member_case(archive: str, member: str, payload: str, protocol: int, command, match):
    def build(c, good):
        bad = c.inputs / ("evil.pt2" if archive == "pt2" else "evil.pt")
        pickled = mf.payload_pickle(payload, c.marker, protocol=protocol)
        return command(c, mf.rewrite(getattr(good, archive), bad, {member: pickled})), match

    return build


for _name, _case in PAYLOAD_MEMBERS.items():
    case(_name)(_payload_member_case(*_case))


@case("TorchScript debug_pkl: open()")
def _(c, good):
    name = next(m.split("/", 1)[1] for m in mf.members(good.script) if m.endswith(".debug_pkl"))
    evil = mf.rewrite(
        good.script, c.inputs / "evil.pt", {name: mf.payload_pickle("open", c.marker)}
    )
    return export(c, evil), "references io.open"


def _edit_root_code(good_path, edit):
    def change(relative, data):
        if relative.startswith("code/__torch__/model_files") and relative.endswith(".py"):
            return edit(data.decode()).encode()
        return data

    return change


@case("TorchScript code/: import os; os.system at module level")
def _(c, good):
    prefix = f"import os\nos.system('touch {c.marker}')\n"
    evil = mf.rewrite(
        good.script,
        c.inputs / "evil.pt",
        edit=_edit_root_code(good.script, lambda code: prefix + code),
    )
    return export(c, evil), "has a top-level Import statement"


@case("TorchScript code/: __import__('os').system inside forward")
def _(c, good):
    call = f"    _ = __import__('os').system('touch {c.marker}')\n"
    anchor = "    fc = self.fc\n"
    evil = mf.rewrite(
        good.trace,
        c.inputs / "evil.pt",
        edit=_edit_root_code(good.trace, lambda code: code.replace(anchor, call + anchor, 1)),
    )
    return info(c, evil), "unsupported forward: name '__import__'"


@case("TorchScript code/: unparsable source")
def _(c, good):
    evil = mf.rewrite(
        good.script,
        c.inputs / "evil.pt",
        edit=_edit_root_code(good.script, lambda code: code + "\ndef (:\n"),
    )
    return export(c, evil), "cannot be parsed (SyntaxError)"


# -- malicious .pt2 archives -------------------------------------------------------------------
@case(".pt2 weight stored as a pickle: os.system")
def _(c, good):
    config = json.loads(mf.read_member(good.pt2, "data/weights/model_weights_config.json"))
    entry = config["config"]["lstm.weight_ih_l0"]
    entry["use_pickle"] = True
    evil = mf.rewrite(
        good.pt2,
        c.inputs / "evil.pt2",
        {
            "data/weights/model_weights_config.json": json.dumps(config).encode(),
            f"data/weights/{entry['path_name']}": mf.payload_pickle("os.system", c.marker),
        },
    )
    return export(c, evil), "refused: weight 'lstm.weight_ih_l0' is stored as a pickle"


@case(".pt2 sample inputs: torch.save zip with eval")
def _(c, good):
    buffer = c.inputs / "inner.pt"
    torch.save((mf.Evaluator(c.marker),), buffer)
    evil = mf.rewrite(
        good.pt2, c.inputs / "evil.pt2", {"data/sample_inputs/model.pt": buffer.read_bytes()}
    )
    return info(c, evil), "references builtins.eval"


@case(".pt2 symbolic shape: __import__('os').system")
def _(c, good):
    program = mf.read_member(good.pt2, "models/model.json").decode()
    symbol = "Symbol('s77', positive=True, integer=True)"
    assert symbol in program
    payload = f"({symbol} if __import__('os').system('touch {c.marker}') == 0 else None)"
    evil = mf.rewrite(
        good.pt2,
        c.inputs / "evil.pt2",
        {"models/model.json": program.replace(json.dumps(symbol)[1:-1], payload, 1).encode()},
    )
    return export(c, evil), "refused: symbolic shape expression"


# -- spec artifacts ----------------------------------------------------------------------------
@case("spec tensors.npz: pickled object array (info)")
def _(c, good):
    evil = np.array([mf.Shell(c.marker)], dtype=object)
    return info(c, copy_spec(c, good, weight_ih_l0=evil)), "object arrays (pickles) are refused"


@case("spec tensors.npz: pickled object array (quantize)")
def _(c, good):
    evil = np.array([mf.Opener(c.marker)], dtype=object)
    spec = copy_spec(c, good, bias_hh_l0=evil)
    return quantize(c, good, spec), "object arrays (pickles) are refused"


@case("spec tensors.npz truncated (quantize)")
def _(c, good):
    spec = copy_spec(c, good)
    mf.truncate(spec / "tensors.npz", spec / "tensors.npz", 0.6)
    return quantize(c, good, spec), "is not an .npz archive"


@case("spec tensors.npz: bzip2 bomb member")
def _(c, good):
    spec = copy_spec(c, good)
    with zipfile.ZipFile(spec / "tensors.npz", "a", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("bomb.npy", bytes(64 << 20))
    return info(c, spec), "(a deflate bomb?)"


@case("spec tensor missing")
def _(c, good):
    return info(c, copy_spec(c, good, weight_hh_l0=None)), "missing tensor(s) 'weight_hh_l0'"


@case("spec complex tensor")
def _(c, good):
    spec = copy_spec(c, good, head__weight=np.zeros((2, 4), np.complex128))
    return info(c, spec), "tensor 'head.weight' must be floating-point, not complex128"


@case("spec boolean tensor (quantize)")
def _(c, good):
    spec = copy_spec(c, good, bias_ih_l0=np.ones(16, bool))
    return quantize(c, good, spec), "tensor 'bias_ih_l0' must be floating-point, not bool"


@case("spec string tensor")
def _(c, good):
    spec = copy_spec(c, good, weight_ih_l0=np.full((16, 3), "0.5"))
    return info(c, spec), "tensor 'weight_ih_l0' must be floating-point, not <U3"


@case("spec num_layers 0 (info)")
def _(c, good):
    spec = copy_spec(c, good, manifest=lambda m: {**m, "num_layers": 0})
    return info(c, spec), "num_layers must be >= 1, not 0"


@case("spec num_layers 0 (quantize)")
def _(c, good):
    spec = copy_spec(c, good, manifest=lambda m: {**m, "num_layers": 0})
    return quantize(c, good, spec), "num_layers must be >= 1, not 0"


@case("spec gate_order not a permutation of i, f, g, o")
def _(c, good):
    spec = copy_spec(c, good, manifest=lambda m: {**m, "gate_order": ["i", "f", "z", "o"]})
    return info(c, spec), "gate_order must be a permutation of ['i', 'f', 'g', 'o']"


@case("spec manifest nested 100000 deep")
def _(c, good):
    deep = '{"format": "lstmfpga.spec", "x": ' + "[" * 100000 + "]" * 100000 + "}"
    return info(c, copy_spec(c, good, manifest=lambda m: deep)), "levels deep, more than the limit"


@case("spec manifest of 65 MiB")
def _(c, good):
    huge = '{"format": "lstmfpga.spec", "pad": "' + " " * (65 << 20) + '"}'
    return quantize(c, good, copy_spec(c, good, manifest=lambda m: huge)), "-byte limit"


# -- sizes, strides, bombs, truncation ---------------------------------------------------------
def _state_dict(**changes):
    state = mf.Net().state_dict()
    state.update(changes)
    return state


@case("zip .pt: stride-0 view of 10^12 elements")
def _(c, good):
    torch.save(
        _state_dict(**{"lstm.weight_ih_l0": torch.zeros(1).expand(10**6, 10**6)}),
        c.inputs / "huge.pt",
    )
    return export(c, c.inputs / "huge.pt"), "tensor 'lstm.weight_ih_l0' declares shape"


@case("zip .pt: small stride-0 (expanded) weight")
def _(c, good):
    torch.save(
        _state_dict(**{"lstm.weight_ih_l0": torch.zeros(16, 1).expand(16, 3)}),
        c.inputs / "expanded.pt",
    )
    return info(c, c.inputs / "expanded.pt"), "is a stride-0 (expanded) view"


@case("legacy .pt: stride-0 view of 10^12 elements")
def _(c, good):
    path = c.inputs / "huge.pt"
    torch.save(
        _state_dict(**{"fc.weight": torch.zeros(1).expand(10**6, 10**6)}),
        path,
        _use_new_zipfile_serialization=False,
    )
    return export(c, path), "tensor 'fc.weight' declares shape"


@case("legacy .pt: storage declaring 10^11 elements")
def _(c, good):
    path = c.inputs / "huge.pt"
    path.write_bytes(mf.legacy_state_dict({"weight_ih_l0": (16, 3)}, 10**11, bytes(192)))
    return export(c, path), "a storage declares 100000000000 elements"


@case(".pt2 weight: stride-0 (expanded) view")
def _(c, good):
    strides = [{"as_int": 0}, {"as_int": 1}]
    bad = mf.with_tensor_meta(good.pt2, c.inputs / "bad.pt2", "lstm.weight_hh_l0", strides=strides)
    return export(c, bad), "is a stride-0 (expanded) view"


@case(".pt2 weight: view past the end of its storage")
def _(c, good):
    sizes = [{"as_int": 2}, {"as_int": 10**30}]
    bad = mf.with_tensor_meta(good.pt2, c.inputs / "bad.pt2", "fc.weight", sizes=sizes)
    return info(c, bad), "does not fit its storage of 8 element(s)"


@case("zip .pt: storage member declaring 300 MiB")
def _(c, good):
    bad = mf.declare_size(mf.rewrite(good.sd, c.inputs / "big.pt"), "data/0", 300 << 20, 300 << 20)
    return export(c, bad), "declares 314572800 bytes, more than the 268435456-byte limit"


@case("zip .pt: bzip2 bomb storage member")
def _(c, good):
    bomb = mf.rewrite(
        good.sd,
        c.inputs / "bomb.pt",
        compression=zipfile.ZIP_BZIP2,
        edit=lambda name, data: bytes(64 << 20) if name == "data/0" else data,
    )
    return export(c, bomb), "(a deflate bomb?)"


@case("TorchScript member declaring 4 GiB")
def _(c, good):
    bad = mf.declare_size(mf.rewrite(good.script, c.inputs / "big.pt"), "data.pkl", 2**32 - 1)
    return export(c, bad), "member 'script/data.pkl' declares 4294967295 bytes"


@case(".pt2 members declaring 1.25 GiB in all")
def _(c, good):
    bad = mf.rewrite(good.pt2, c.inputs / "big.pt2")
    mf.declare_size(bad, "", 250 << 20, 250 << 20)
    return export(c, bad), "bytes in all, more than the 1073741824-byte limit"


@case(".pt2 model.json nested 100000 deep")
def _(c, good):
    deep = b'{"x": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    bad = mf.rewrite(good.pt2, c.inputs / "deep.pt2", {"models/model.json": deep})
    return export(c, bad), "models/model.json nests 100001 levels deep"


@case("zip .pt truncated")
def _(c, good):
    return export(c, mf.truncate(good.sd, c.inputs / "cut.pt")), "not a readable PyTorch file"


@case("TorchScript truncated")
def _(c, good):
    return info(c, mf.truncate(good.script, c.inputs / "cut.pt", 0.7)), "cut.pt: "


@case(".pt2 truncated")
def _(c, good):
    return export(c, mf.truncate(good.pt2, c.inputs / "cut.pt2", 0.9)), "cut.pt2: "


@case("random bytes")
def _(c, good):
    (c.inputs / "noise.pt").write_bytes(np.random.default_rng(5).bytes(4096))
    return export(c, c.inputs / "noise.pt"), "noise.pt: refused: not a plain state_dict"


@case("empty file")
def _(c, good):
    (c.inputs / "empty.pt").write_bytes(b"")
    return info(c, c.inputs / "empty.pt"), "empty file, not a model"


@case("TorchScript big-endian")
def _(c, good):
    bad = mf.rewrite(good.script, c.inputs / "big-endian.pt", {"byteorder": b"big"})
    return export(c, bad), "big-endian TorchScript archives are not supported"


# -- unsupported models ------------------------------------------------------------------------
@case("GRU state_dict exported as an LSTM")
def _(c, good):
    torch.save(nn.GRU(3, 4).state_dict(), c.inputs / "gru.pt")
    return [*export(c, c.inputs / "gru.pt"), "--cell", "lstm"], "(3*hidden rows: a GRU?)"


@case("RNN TorchScript")
def _(c, good):
    torch.jit.script(nn.RNN(3, 4)).save(str(c.inputs / "rnn.pt"))
    return info(c, c.inputs / "rnn.pt"), "unsupported model (RNN)"


@case("Conv1d before the LSTM (TorchScript)")
def _(c, good):
    mf.save(mf.WithConv(), "script", c.inputs / "conv.pt")
    return export(c, c.inputs / "conv.pt"), "unsupported layer 'conv' (Conv1d)"


@case("NaN weight in a state_dict")
def _(c, good):
    weight = torch.zeros(16, 4)
    weight[3, 1] = float("nan")
    torch.save(_state_dict(**{"lstm.weight_hh_l0": weight}), c.inputs / "nan.pt")
    return export(c, c.inputs / "nan.pt"), "weight_hh_l0 contains 1 non-finite value(s)"


@case("Inf weight in a .pt2")
def _(c, good):
    model = mf.Net()
    with torch.no_grad():
        model.fc.bias[1] = float("inf")
    mf.save(model, "pt2", c.inputs / "inf.pt2")
    return export(c, c.inputs / "inf.pt2"), "head bias contains 1 non-finite value(s)"


@case("complex weight in a state_dict")
def _(c, good):
    torch.save(
        _state_dict(**{"fc.weight": torch.zeros(2, 4, dtype=torch.complex64)}),
        c.inputs / "complex.pt",
    )
    return export(c, c.inputs / "complex.pt"), "fc.weight must be a floating-point tensor"


@case("boolean weight in TorchScript")
def _(c, good):
    model = mf.Net()
    model.fc.weight = nn.Parameter(torch.zeros(2, 4, dtype=torch.bool), requires_grad=False)
    mf.save(model, "script", c.inputs / "bool.pt")
    return info(c, c.inputs / "bool.pt"), "fc.weight must be a floating-point array, not bool"


@case("complex weight in a .pt2")
def _(c, good):
    bad = mf.with_tensor_meta(good.pt2, c.inputs / "complex.pt2", "lstm.bias_ih_l0", dtype=10)
    return export(c, bad), "weight 'lstm.bias_ih_l0' must be floating-point, not complex64"


#: name -> (the model, how it is saved, file name, command, refusal): a forward lstmfpga
#: cannot represent, in an archive.
FORWARDS = {
    "forward: relu (TorchScript)": (
        mf.Relu, "script", "relu.pt", export, "unsupported forward: aten::relu"),
    "forward: relu (.pt2)": (mf.Relu, "pt2", "relu.pt2", export, "unsupported forward: aten::relu"),
    "forward: Linear before the LSTM": (
        mf.LinearFirst, "script", "first.pt", export,
        "aten::linear (an nn.Linear before the LSTM)"),
    "forward: timestep 0 (.pt2)": (
        mf.FirstStep, "pt2", "first.pt2", export, "aten::select selecting timestep 0"),
    "forward: mean over time (traced)": (
        mf.MeanOverTime, "trace", "mean.pt", info, "unsupported forward: aten::mean"),
    "forward: c_n (TorchScript)": (
        mf.CellState, "script", "cell.pt", export, "selecting index -1 of dim 0 of c_n"),
}  # fmt: skip


def _forward_case(model, how: str, name: str, command, match: str) -> Callable:
    def build(c, good):
        mf.save(model(), how, c.inputs / name)
        return command(c, c.inputs / name), match

    return build


for _name, _case in FORWARDS.items():
    case(_name)(_forward_case(*_case))


@case("export --head all of a last-step archive")
def _(c, good):
    return [*export(c, good.script), "--head", "all"], "forward applies its head to the last"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_model_file_is_refused(name, good, tmp_path):
    c = Case.make(tmp_path)
    argv, match = CASES[name](c, good)
    result = run_cli(c, *argv)
    assert_refused(result, c, match=match)
    assert not any(c.out.iterdir()), f"{name}: wrote {sorted(c.out.iterdir())}"


def test_the_good_files_are_accepted(good, tmp_path):
    """The files every case starts from export cleanly (so each refusal is the edit's)."""
    c = Case.make(tmp_path)
    for name in ("sd", "legacy", "script", "trace", "pt2"):
        result = run_cli(c, "export", getattr(good, name), "-o", c.out / name)
        assert result.returncode == 0, (name, result.stderr)
        assert result.stderr == "", (name, result.stderr)
    result = run_cli(c, "quantize", good.spec, "--calib", good.calib, "-o", c.out / "q")
    assert result.returncode == 0, result.stderr
    assert not c.marker.exists()
    assert len(CASES) >= 40
