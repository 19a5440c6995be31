"""Export never silently changes the model: an archive's ``forward`` is read and matched exactly.

Real modules are scripted (``torch.jit.script``), traced (``torch.jit.trace``) and exported
(``torch.export.export`` + ``torch.export.save``) here, then read by ``load_model`` (which never
runs them):

* every supported forward (LSTM → optional ``y[:, -1]`` / ``y[-1]`` / ``h_n[-1]`` → optional
  ``nn.Linear``, or ``nn.Linear`` on every step, either layout) exports, and the float64
  reference on the spec equals the module in float64 to within 1e-9;
* every other forward is refused with a one-line error naming the op.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from export_models import TORCH_WARNINGS
from helpers import forward_models as fm

from lstmfpga.export import forward_check, reference
from lstmfpga.export.model_files import load_model
from lstmfpga.export.spec import SpecError

pytestmark = [pytest.mark.filterwarnings(w) for w in TORCH_WARNINGS]

TOLERANCE = 1e-9
ROUTES = ["jit_script", "jit_trace", "torch_export"]
BATCH, SEQ = 2, 5


def save_route(model: torch.nn.Module, route: str, x: torch.Tensor, path: Path) -> Path:
    if route == "jit_script":
        torch.jit.script(model).save(str(path))
    elif route == "jit_trace":
        torch.jit.trace(model, (x,)).save(str(path))
    elif route == "torch_export":
        torch.export.save(torch.export.export(model, (x,)), path)
    else:
        raise AssertionError(route)
    return path


def layout_input(kwargs: dict, seed: int) -> np.ndarray:
    """A seeded batch-first float64 input ``(batch, seq, input_size)``."""
    return np.random.default_rng(seed).normal(0, 1.5, (BATCH, SEQ, kwargs["input_size"]))


def to_model_layout(x: np.ndarray, kwargs: dict) -> torch.Tensor:
    xt = torch.from_numpy(x)
    return xt if kwargs.get("batch_first") else xt.transpose(0, 1).contiguous()


BF = dict(input_size=3, hidden_size=4, batch_first=True)
TM = dict(input_size=3, hidden_size=4, batch_first=False)

# name: (class, nn.LSTM kwargs, head mode, output time-major?)
SUPPORTED = {
    "y[:, -1]": (fm.LastStep, BF, "last", False),
    "y[:, -1] 2 layers bidir proj": (
        fm.LastStep, dict(BF, num_layers=2, bidirectional=True, proj_size=2), "last", False,
    ),
    "y[-1] time-major": (fm.LastStepTimeMajor, TM, "last", False),
    "y[-1] time-major bidir": (fm.LastStepTimeMajor, dict(TM, bidirectional=True), "last", False),
    "y[:, -1, :]": (fm.LastStepFullSlice, dict(BF, bias=False), "last", False),
    "h_n[-1] 3 layers": (fm.FinalHidden, dict(BF, num_layers=3), "last", False),
    "h_n[-1] time-major proj": (fm.FinalHidden, dict(TM, proj_size=2), "last", False),
    "fc(y) batch-first": (fm.EveryStep, BF, "all", False),
    "fc(y) time-major": (fm.EveryStep, dict(TM, num_layers=2), "all", True),
    "fc(y.transpose(0, 1))": (fm.EveryStepTransposed, dict(TM, bidirectional=True), "all", False),
    "no head, time-major": (fm.SequenceOnly, TM, None, True),
    "no head, (y, (h_n, c_n))": (fm.LSTMTuple, dict(BF, num_layers=2), None, False),
    "nested encoder, Sequential head": (fm.SequentialHead, BF, "last", False),
}  # fmt: skip


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", list(SUPPORTED))
def test_supported_forwards_export_and_match_torch(name, route, tmp_path):
    cls, kwargs, mode, time_major_out = SUPPORTED[name]
    seed = sum(map(ord, name))
    model = cls(**kwargs).eval()
    x = layout_input(kwargs, seed)
    path = save_route(model, route, to_model_layout(x, kwargs).float(), tmp_path / "model.bin")
    spec = load_model(path)
    assert (None if spec.head is None else spec.head.mode) == mode, name
    with torch.no_grad():
        expected = model.double()(to_model_layout(x, kwargs))
    if isinstance(expected, tuple):
        expected = expected[0]
    expected = expected.numpy()
    if time_major_out:
        expected = expected.swapaxes(0, 1)
    got = reference.forward(spec, x).prediction
    assert got.shape == expected.shape, name
    assert np.max(np.abs(got - expected)) <= TOLERANCE, f"{name} via {route} (seed {seed})"


# name: (class, nn.LSTM kwargs, the refusal's wording)
UNSUPPORTED = {
    "fc(relu(y[:, 0]) * 3)": (fm.ReluTimesThree, BF, "aten::select selecting timestep 0 "),
    "relu": (fm.Relu, BF, "aten::relu"),
    "scaled": (fm.Scaled, BF, "aten::mul"),
    "Linear before the LSTM": (
        fm.LinearFirst, dict(BF, input_size=4), "aten::linear (an nn.Linear before the LSTM)",
    ),
    "first timestep": (fm.FirstStep, BF, "aten::select selecting timestep 0 "),
    "mean over time": (fm.MeanOverTime, BF, "aten::mean"),
    "tanh": (fm.TanhEveryStep, BF, "aten::tanh"),
    "head + 1": (fm.PlusOne, BF, "aten::add"),
    "scaled input": (fm.ScaledInput, BF, "aten::mul"),
    "softmax": (fm.Softmax, BF, "aten::softmax"),
    "c_n[-1]": (fm.CellState, BF, "aten::select selecting index -1 of dim 0 of c_n"),
    "y[:, -1] of a time-major LSTM": (
        fm.BatchNotTime, TM, "aten::select selecting index -1 of the batch dimension 1",
    ),
    "last step without a head": (fm.LastStepNoHead, BF, "forward returns the last timestep"),
    "flip": (fm.Reversed, BF, "aten::flip"),
}  # fmt: skip


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_forwards_are_refused_naming_the_op(name, route, tmp_path):
    cls, kwargs, wording = UNSUPPORTED[name]
    model = cls(**kwargs).eval()
    x = to_model_layout(layout_input(kwargs, 1), kwargs).float()
    path = save_route(model, route, x, tmp_path / "model.bin")
    with pytest.raises(SpecError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unsupported forward: {wording}"), message
    assert message.endswith(forward_check.FORWARD_SUPPORTED)
    assert "\n" not in message


def test_data_dependent_control_flow_is_refused(tmp_path):
    class Branchy(fm.LastStep):
        def forward(self, x):
            y, _ = self.lstm(x)
            if bool(y.sum() > 0):
                return self.fc(y[:, -1])
            return self.fc(y[:, 0])

    path = tmp_path / "branchy.pt"
    torch.jit.script(Branchy(**BF).eval()).save(str(path))
    with pytest.raises(SpecError, match=r"unsupported forward: aten::sum"):
        load_model(path)


def test_bidirectional_h_n_is_refused_before_the_graph(tmp_path):
    """``h_n[-1]`` of a bidirectional LSTM is the reverse direction only: not ``y[:, -1]``."""
    model = fm.FinalHidden(**dict(BF, bidirectional=True)).eval()
    model.fc = torch.nn.Linear(4, 3)  # h_n[-1] has hidden_size features
    path = tmp_path / "bidir.pt"
    torch.jit.script(model).save(str(path))
    with pytest.raises(SpecError, match=r"head fc.weight has shape \(3, 4\), but the LSTM output"):
        load_model(path)


def _rewrite_code(source: Path, target: Path, edit, member: str = "forward_models.py") -> Path:
    """Copy a TorchScript archive, passing the code files whose path holds ``member``
    through ``edit``."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if member in info.filename and info.filename.endswith(".py"):
                data = edit(data.decode()).encode()
            zout.writestr(info.filename, data)
    return target


def test_edited_torchscript_code_is_read_as_written(tmp_path):
    """The archive's code, not the class name, decides: an edited forward is refused."""
    model = fm.LastStep(**BF).eval()
    good = tmp_path / "good.pt"
    torch.jit.script(model).save(str(good))
    assert load_model(good).head.mode == "last"
    edited = _rewrite_code(
        good, tmp_path / "edited.pt", lambda code: code.replace(", 1, -1)", ", 1, 2)")
    )
    with pytest.raises(SpecError, match=r"aten::select selecting timestep 2 "):
        load_model(edited)
    hostile = _rewrite_code(
        good, tmp_path / "hostile.pt",
        lambda code: code.replace("    lstm = self.lstm\n", "    lstm = __import__('os')\n", 1),
    )  # fmt: skip
    with pytest.raises(SpecError, match=r"unsupported forward: name '__import__'"):
        load_model(hostile)


def test_parse_classes_refuses_unparsable_code():
    with pytest.raises(SpecError, match=r"^m.pt: TorchScript code a.py cannot be parsed"):
        forward_check.parse_classes("m.pt", {"a.py": b"class (:\n"})
    deep = b"x = " + b"(" * 5000 + b")" * 5000
    with pytest.raises(SpecError, match=r"cannot be parsed"):
        forward_check.parse_classes("m.pt", {"a.py": deep})
    classes = forward_check.parse_classes("m.pt", {"__torch__/a.py": b"class B(Module):\n  pass\n"})
    assert isinstance(classes["__torch__.a.B"], ast.ClassDef)


@pytest.mark.parametrize("route", ROUTES)
def test_initial_states_passed_from_the_inputs_are_supported(route, tmp_path):
    kwargs = dict(BF, num_layers=2, bidirectional=True)
    model = fm.WithStates(**kwargs).eval()
    rng = np.random.default_rng(4)
    x = layout_input(kwargs, 4)
    h0, c0 = rng.normal(0, 0.5, (2, 4, BATCH, 4))
    args = tuple(torch.from_numpy(a).float() for a in (x, h0, c0))
    path = tmp_path / "states.bin"
    if route == "jit_script":
        torch.jit.script(model).save(str(path))
    elif route == "jit_trace":
        torch.jit.trace(model, args).save(str(path))
    else:
        torch.export.save(torch.export.export(model, args), path)
    spec = load_model(path)
    assert spec.head.mode == "last"
    with torch.no_grad():
        expected = model.double()(*(torch.from_numpy(a) for a in (x, h0, c0))).numpy()
    got = reference.forward(spec, x, h0, c0).prediction
    assert np.max(np.abs(got - expected)) <= TOLERANCE, route


@pytest.mark.parametrize("route", ["jit_script", "jit_trace"])
def test_edited_library_code_is_read_too(route, tmp_path):
    """nn.LSTM's and nn.Linear's code in the archive is walked like the model's own."""
    model = fm.LastStep(**BF).eval()
    good = save_route(model, route, to_model_layout(layout_input(BF, 2), BF).float(),
                      tmp_path / "good.pt")  # fmt: skip
    assert load_model(good).head.mode == "last"
    lstm = "/nn/modules/rnn"  # also when mangled: rnn/___torch_mangle_7.py

    def scale_lstm_input(code: str) -> str:
        if "torch.lstm(" not in code:
            return code
        head, _, rest = code.partition("torch.lstm(")
        first, _, tail = rest.partition(",")
        return f"{head}torch.lstm(torch.mul({first}, 2),{tail}"

    edited = _rewrite_code(good, tmp_path / "lstm.pt", scale_lstm_input, member=lstm)
    with pytest.raises(SpecError, match=r"unsupported forward: aten::mul"):
        load_model(edited)
    relu_head = _rewrite_code(
        good, tmp_path / "linear.pt",
        lambda code: code.replace("torch.linear(", "torch.relu(torch.linear(").replace(
            "bias)\n", "bias))\n"),
        member="/nn/modules/linear",
    )  # fmt: skip
    with pytest.raises(SpecError, match=r"unsupported forward: aten::relu"):
        load_model(relu_head)
