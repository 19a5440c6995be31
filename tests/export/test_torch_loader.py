"""``torch_loader``: PyTorch modules, state_dicts and model files → ``ModelSpec``.

* Four input routes (live module, state_dict file, TorchScript archive, ``torch.export``
  archive) give the same spec, bit for bit.
* The archive readers (which avoid ``torch.jit.load``/``torch.export.load``) read the same
  tensors as those loaders do on trusted files.
* Anything that cannot be represented exactly is refused with a one-line ``SpecError``,
  and no file ever gets to run code (marker files stay absent).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from export_models import (
    TORCH_WARNINGS,
    assert_same_spec,
    example_input,
    make_lstm,
    make_model,
)
from torch import nn

from lstmfpga.export import archives, files, pt2_archive
from lstmfpga.export.model_files import detect_format, load_model
from lstmfpga.export.spec import ModelSpec, SpecError
from lstmfpga.export.torch_loader import from_module, from_state_dict
from lstmfpga.testing import with_changes

pytestmark = [pytest.mark.filterwarnings(w) for w in TORCH_WARNINGS]

# -- helpers -----------------------------------------------------------------------------------


def save_route(model: nn.Module, route: str, path: Path) -> Path:
    """Write ``model`` to ``path`` the way ``route`` names."""
    if route == "state_dict":
        torch.save(model.state_dict(), path)
    elif route == "jit_script":
        torch.jit.script(model).save(str(path))
    elif route == "jit_trace":
        torch.jit.trace(model, (example_input(model),)).save(str(path))
    elif route == "torch_export":
        program = torch.export.export(model, (example_input(model),))
        torch.export.save(program, path)
    else:
        raise AssertionError(route)
    return path


def rewrite_zip(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """Copy a zip, replacing members by their name below the archive's root folder."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            relative = info.filename.split("/", 1)[1]
            data = replace.get(relative, zin.read(info.filename))
            zout.writestr(info.filename, data)
    return target


def zip_member(path: Path, relative: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        root = archive.namelist()[0].split("/")[0]
        return archive.read(f"{root}/{relative}")


class WritesMarker:
    """Unpickling this calls ``builtins.open(marker, "w")``: must never happen."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class RunsShell:
    """Unpickling this calls ``os.system("touch marker")``: must never happen."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


PAYLOADS = {"open": WritesMarker, "os.system": RunsShell}

# -- the four routes ---------------------------------------------------------------------------

ROUTE_MODELS = {
    "bidir-proj-2layers-last": (
        dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2,
             batch_first=True, dropout=0.2),
        "last",
    ),
    "nobias-timemajor-all": (dict(input_size=4, hidden_size=3, bias=False), "all"),
    "bare-lstm": (dict(input_size=2, hidden_size=3, num_layers=2, batch_first=True), None),
}  # fmt: skip
ROUTES = ["state_dict", "jit_script", "jit_trace", "torch_export"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", list(ROUTE_MODELS))
def test_every_route_gives_the_same_spec(name, route, tmp_path):
    kwargs, head = ROUTE_MODELS[name]
    model = make_model(11, head=head, **kwargs)
    expected = from_module(model, head=head)
    path = save_route(model, route, tmp_path / f"model-{route}.bin")
    assert detect_format(path) == {"jit_script": "torchscript", "jit_trace": "torchscript"}.get(
        route, route.replace("torch_export", "torch.export")
    )
    assert_same_spec(load_model(path, head=head), expected, context=f"{name} via {route}")


def test_live_module_records_dropout_and_source():
    model = make_model(1, head="last", input_size=2, hidden_size=3, num_layers=2, dropout=0.4)
    spec = from_module(model)
    assert spec.dropout == 0.4
    assert spec.source == "torch module LSTMWithHead"
    assert "dropout=0.4 (ignored at inference)" in spec.describe()


@pytest.mark.parametrize("route", ["jit_script", "jit_trace"])
def test_torchscript_reader_matches_torch_jit_load(route, tmp_path):
    model = make_model(2, head="all", input_size=3, hidden_size=4, num_layers=2, proj_size=2)
    path = save_route(model, route, tmp_path / "model.ts")
    modules, tensors, _ = archives.read_torchscript(path)
    trusted = torch.jit.load(str(path))  # our own file: trusted
    expected = {k: v.detach().numpy() for k, v in trusted.state_dict().items()}
    assert tensors.keys() == expected.keys()
    for key, value in expected.items():
        assert value.dtype == tensors[key].dtype and np.array_equal(tensors[key], value), key
    assert modules[""].endswith("LSTMWithHead")
    assert modules["lstm"] == "torch.nn.modules.rnn.LSTM"
    assert modules["fc"] == "torch.nn.modules.linear.Linear"


def test_export_reader_matches_torch_export_load(tmp_path):
    model = make_model(3, head="last", input_size=3, hidden_size=4, bidirectional=True)
    path = save_route(model, "torch_export", tmp_path / "model.pt2")
    modules, tensors, _ = pt2_archive.read_export_archive(path)
    trusted = torch.export.load(path)  # our own file: trusted
    expected = {k: v.detach().numpy() for k, v in trusted.state_dict.items()}
    assert tensors.keys() == expected.keys()
    for key, value in expected.items():
        assert np.array_equal(tensors[key], value), key
    assert modules["lstm"] == "torch.nn.modules.rnn.LSTM"
    assert modules["fc"] == "torch.nn.modules.linear.Linear"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("route", ["state_dict", "jit_script", "torch_export"])
def test_low_precision_weights_are_widened_exactly(route, dtype, tmp_path):
    model = make_model(4, head="last", input_size=3, hidden_size=4).to(dtype)
    path = save_route(model, route, tmp_path / "model.bin")
    spec = load_model(path)
    expected = model.lstm.weight_ih_l0.detach().to(torch.float64).numpy()
    assert np.array_equal(spec.layers[0][0].w_ih, expected)
    assert np.array_equal(spec.head.weight, model.fc.weight.detach().to(torch.float64).numpy())


# -- head mode ---------------------------------------------------------------------------------


def test_head_mode_attribute_is_the_default_and_head_argument_overrides_it(tmp_path):
    model = make_model(5, head="all", input_size=2, hidden_size=3)
    assert from_module(model).head.mode == "all"
    assert from_module(model, head="last").head.mode == "last"
    state_dict = save_route(model, "state_dict", tmp_path / "model.pt")
    assert load_model(state_dict).head.mode == "last"  # a state_dict cannot declare it
    assert load_model(state_dict, head="all").head.mode == "all"


@pytest.mark.parametrize("route", ["jit_script", "jit_trace", "torch_export"])
def test_archive_head_mode_comes_from_its_forward(route, tmp_path):
    """An archive's forward fixes the head mode: a contradicting head argument is refused."""
    for mode, other in (("all", "last"), ("last", "all")):
        model = make_model(5, head=mode, input_size=2, hidden_size=3, batch_first=True)
        path = save_route(model, route, tmp_path / f"model-{mode}")
        assert load_model(path).head.mode == mode
        assert load_model(path, head=mode).head.mode == mode
        where = "the last timestep" if mode == "last" else "every timestep"
        message = rf"head={other!r} given, but the model's forward applies its head to {where}$"
        with pytest.raises(SpecError, match=message):
            load_model(path, head=other)


def test_head_defaults_to_last_without_attribute():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = make_lstm(0, input_size=2, hidden_size=3)
            self.out = nn.Linear(3, 1)

    spec = from_module(Plain())
    assert spec.head.mode == "last"
    assert spec.head.out_features == 1


@pytest.mark.parametrize("bad", ["first", "LAST", 1, ""])
def test_bad_head_mode_is_refused(bad):
    model = make_model(0, head="last", input_size=2, hidden_size=3)
    with pytest.raises(SpecError, match=rf"^head must be 'last' or 'all', not {bad!r}$"):
        from_module(model, head=bad)
    with pytest.raises(SpecError, match=r"^head must be 'last' or 'all'"):
        from_state_dict(model.state_dict(), head=bad)
    model.head_mode = bad
    with pytest.raises(SpecError, match=rf"^head_mode must be 'last' or 'all', not {bad!r}$"):
        from_module(model)


def test_head_mode_without_a_head_is_refused():
    lstm = make_lstm(0, input_size=2, hidden_size=3)
    with pytest.raises(SpecError, match=r"^head='last' given, but LSTM has no nn.Linear head$"):
        from_module(lstm, head="last")
    with pytest.raises(SpecError, match=r"^head='all' given, but the model has no nn.Linear"):
        from_state_dict(lstm.state_dict(), head="all")


# -- module structure --------------------------------------------------------------------------


class Wrapper(nn.Module):
    """An LSTM plus whatever extra modules a test adds."""

    def __init__(self, **extra: nn.Module):
        super().__init__()
        self.lstm = make_lstm(0, input_size=3, hidden_size=4)
        for name, module in extra.items():
            setattr(self, name, module)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = make_lstm(0, input_size=3, hidden_size=4)
        self.scale = nn.Parameter(torch.ones(1))


class Normalized(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = make_lstm(0, input_size=3, hidden_size=4)
        self.register_buffer("mean", torch.zeros(3))


class MyLSTM(nn.LSTM):
    def forward(self, x, hx=None):
        return super().forward(x * 2, hx)


UNSUPPORTED = "lstmfpga supports one nn.LSTM or nn.GRU and an optional nn.Linear head"
REFUSED_MODULES = {
    "LSTM and GRU": (
        lambda: Wrapper(rnn=nn.GRU(4, 4)),
        r"^found 2 nn.LSTM/nn.GRU modules \('lstm', 'rnn'\): ",
    ),
    "RNN layer": (lambda: Wrapper(rnn=nn.RNN(4, 4)), r"^unsupported layer 'rnn' \(RNN\): "),
    "Conv1d": (lambda: Wrapper(conv=nn.Conv1d(3, 3, 2)), r"^unsupported layer 'conv' \(Conv1d\)"),
    "Embedding": (lambda: Wrapper(emb=nn.Embedding(10, 3)), r"'emb' \(Embedding\)"),
    "ReLU": (lambda: Wrapper(act=nn.ReLU()), r"^unsupported layer 'act' \(ReLU\): "),
    "Tanh in Sequential": (
        lambda: Wrapper(head=nn.Sequential(nn.Linear(4, 2), nn.Tanh())),
        r"^unsupported layer 'head.1' \(Tanh\): ",
    ),
    "LayerNorm": (lambda: Wrapper(norm=nn.LayerNorm(4)), r"'norm' \(LayerNorm\)"),
    "second LSTM": (
        lambda: Wrapper(lstm2=make_lstm(1, input_size=4, hidden_size=4)),
        r"^found 2 nn.LSTM modules \('lstm', 'lstm2'\): ",
    ),
    "two Linear": (
        lambda: Wrapper(fc1=nn.Linear(4, 4), fc2=nn.Linear(4, 2)),
        r"^found 2 nn.Linear modules \('fc1', 'fc2'\): ",
    ),
    "no LSTM": (
        lambda: nn.Sequential(nn.Linear(3, 4)),
        r"^no nn.LSTM or nn.GRU found in Sequential: ",
    ),
    "own parameter": (lambda: Scaled(), r"^unsupported parameter\(s\) 'scale' of model \(Scaled\)"),
    "own buffer": (lambda: Normalized(), r"^unsupported parameter\(s\) 'mean' of model"),
    "LSTM subclass with forward": (
        lambda: Wrapper(lstm=MyLSTM(3, 4)),
        r"^unsupported layer 'lstm' \(MyLSTM\): a subclass of nn.LSTM that overrides forward",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED_MODULES))
def test_unsupported_modules_are_refused_by_name(name):
    build, message = REFUSED_MODULES[name]
    with pytest.raises(SpecError, match=message) as info:
        from_module(build())
    assert "\n" not in str(info.value)
    if "found" in message or "unsupported" in message or "no nn.LSTM" in message:
        assert str(info.value).endswith(UNSUPPORTED)


def test_numerically_neutral_modules_are_ignored():
    model = Wrapper(
        drop=nn.Dropout(0.5),
        body=nn.Sequential(nn.Identity(), nn.Flatten(), nn.Dropout1d(0.1)),
        blocks=nn.ModuleList([nn.Identity()]),
        loss=nn.MSELoss(),
        fc=nn.Linear(4, 2),
    )
    spec = from_module(model)
    assert spec.head.out_features == 2
    assert np.array_equal(spec.head.weight, model.fc.weight.detach().double().numpy())


def test_nested_lstm_and_head_are_found_anywhere():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = make_lstm(0, input_size=3, hidden_size=4, num_layers=2)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.decoder = nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 5))

    spec = from_module(Model(), head="all")
    assert (spec.num_layers, spec.head.out_features, spec.head.mode) == (2, 5, "all")


def test_refused_structure_in_torchscript_and_export_archives(tmp_path):
    class WithActivation(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = make_lstm(0, input_size=3, hidden_size=4, batch_first=True)
            self.act = nn.ReLU()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.act(self.lstm(x)[0]))

    model = WithActivation().eval()
    for route in ("jit_script", "torch_export"):
        path = save_route(model, route, tmp_path / f"model-{route}")
        with pytest.raises(SpecError, match=rf"^{path}: unsupported layer 'act' \(ReLU\): "):
            load_model(path)


def test_non_finite_weights_are_refused():
    model = make_model(0, head="last", input_size=2, hidden_size=3)
    with torch.no_grad():
        model.lstm.weight_hh_l0[1, 2] = float("nan")
    with pytest.raises(SpecError, match=r"^weight_hh_l0 contains 1 non-finite value\(s\)"):
        from_module(model)
    model = make_model(0, head="last", input_size=2, hidden_size=3)
    with torch.no_grad():
        model.fc.bias[0] = float("inf")
    with pytest.raises(SpecError, match=r"^head bias contains 1 non-finite value\(s\)"):
        from_module(model)


def test_module_argument_type_is_checked():
    with pytest.raises(TypeError, match=r"^module must be a torch.nn.Module, not \{\}$"):
        from_module({})


# -- state_dicts -------------------------------------------------------------------------------


def lstm_state_dict(prefix: str = "", **kwargs) -> dict[str, torch.Tensor]:
    lstm = make_lstm(0, **kwargs)
    return {prefix + k: v for k, v in lstm.state_dict().items()}


def test_state_dict_with_prefix_and_numpy_arrays():
    model = make_model(6, head="all", input_size=3, hidden_size=4, num_layers=2, proj_size=2)
    expected = from_module(model)
    prefixed = {f"encoder.{k}": v.numpy() for k, v in model.state_dict().items()}
    assert_same_spec(from_state_dict(prefixed, head="all"), expected)


def test_state_dict_infers_every_lstm_option():
    for kwargs in (
        dict(input_size=1, hidden_size=1),
        dict(input_size=3, hidden_size=5, num_layers=3, bias=False),
        dict(input_size=2, hidden_size=4, bidirectional=True, proj_size=3, num_layers=2),
    ):
        spec = from_state_dict(lstm_state_dict("rnn.", **kwargs))
        lstm = make_lstm(0, **kwargs)
        assert spec.input_size == lstm.input_size, kwargs
        assert spec.hidden_size == lstm.hidden_size, kwargs
        assert spec.num_layers == lstm.num_layers, kwargs
        assert spec.bias == lstm.bias, kwargs
        assert spec.bidirectional == lstm.bidirectional, kwargs
        assert spec.proj_size == lstm.proj_size, kwargs
        assert spec.head is None and spec.dropout == 0.0


def _base(prefix="", **changes):
    """A builder of the ``BASE`` LSTM's state_dict (keys under ``prefix``) with ``changes``
    (:func:`with_changes`: ``a__b`` names key ``a.b``, ``None`` deletes it)."""
    return lambda: with_changes(lstm_state_dict(prefix, **BASE), changes)


BASE = dict(input_size=3, hidden_size=4, num_layers=2)
Z = torch.zeros
BAD_STATE_DICTS = {
    "wrong shape in layer 1": (_base(weight_hh_l1=Z(16, 3)),
                               r"^weight_hh_l1 must have shape \(16, 4\), not \(16, 3\)$"),
    "wrong bias length": (_base(bias_ih_l0=Z(15)),
                          r"^bias_ih_l0 must have shape \(16,\), not \(15,\)$"),
    "missing bias_hh": (_base("lstm.", lstm__bias_hh_l0=None),
                        r"^state_dict is missing lstm.bias_hh_l0$"),
    "GRU weights read as an LSTM": (
        lambda: (nn.GRU(3, 4).state_dict(), "lstm"),
        r"^weight_hh_l0 has shape \(12, 4\), .* \(3\*hidden rows: a GRU\?\)$",
    ),
    "LSTM weights read as a GRU": (
        lambda: (lstm_state_dict(**BASE), "gru"),
        r"^weight_hh_l0 has shape \(16, 4\), but a GRU .* \(4\*hidden rows: an LSTM\?\)$",
    ),
    "neither LSTM nor GRU": (_base(weight_hh_l0=Z(24, 5)),
        r"^weight_hh_l0 has shape \(24, 5\), which is neither .* --cell lstm or --cell gru$"),
    "RNN weights": (lambda: nn.RNN(3, 4).state_dict(), r"\(hidden rows: an RNN\?\)$"),
    "rows not a multiple of 4": (_base(weight_hh_l0=Z(15, 4)),
        r"^weight_hh_l0 must have 4\*hidden_size rows \(gates i, f, g, o\), not 15$"),
    "1-D weight": (_base(weight_ih_l0=Z(16)), r"^weight_ih_l0 must be 2-D, not \(16,\)$"),
    "reverse for some layers": (
        _base(weight_ih_l0_reverse=Z(16, 3), weight_hh_l0_reverse=Z(16, 4),
              bias_ih_l0_reverse=Z(16), bias_hh_l0_reverse=Z(16)),
        r"^state_dict has _reverse weights for layer\(s\) \[0\] only, not for all 2 layer\(s\)$",
    ),
    "layer gap": (
        lambda: {k.replace("_l1", "_l2"): v for k, v in lstm_state_dict(**BASE).items()},
        r"^state_dict has layers up to 2 but no weights for layer\(s\) \[1\]$",
    ),
    "two LSTMs": (
        lambda: {**lstm_state_dict("a.", **BASE), **lstm_state_dict("b.", **BASE)},
        r"^state_dict holds recurrent weights of several modules \('a', 'b'\): ",
    ),
    "unknown keys": (_base(bn__running_mean=Z(4), step=torch.tensor(3)),
                     r"^unknown state_dict key\(s\) 'bn.running_mean', 'step': "),
    "two head candidates": (_base(fc1__weight=Z(2, 4), fc2__weight=Z(2, 2)),
                            r"^found 2 candidate head weights \('fc1.weight', 'fc2.weight'\): "),
    "head width": (_base(fc__weight=Z(2, 5)),
                   r"^head fc.weight has shape \(2, 5\), but the LSTM output has 4 features$"),
    "head bias shape": (_base(fc__weight=Z(2, 4), fc__bias=Z(3)),
                        r"^head bias must have shape \(2,\), not \(3,\)$"),
    "integer weights": (_base(weight_ih_l0=torch.ones(16, 3).int()),
                        r"^weight_ih_l0 must be a floating-point tensor, not torch.int32$"),
    "non-tensor value": (_base(epoch=3), r"^state_dict value 'epoch' must be a tensor, not int$"),
    "no LSTM at all": (
        lambda: nn.Linear(3, 2).state_dict(),
        r"^state_dict holds no LSTM or GRU weights \(expected keys like 'weight_ih_l0' .*, found",
    ),
    "not a mapping": (lambda: [1, 2], r"^state_dict must be a mapping, not list$"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_STATE_DICTS))
def test_bad_state_dicts_are_refused_with_one_line(name):
    build, message = BAD_STATE_DICTS[name]
    built = build()
    state_dict, cell = built if isinstance(built, tuple) else (built, None)
    with pytest.raises(SpecError, match=message) as info:
        from_state_dict(state_dict, cell=cell)
    assert "\n" not in str(info.value)


def test_checkpoint_dict_is_unwrapped(tmp_path):
    model = make_model(8, head="last", input_size=2, hidden_size=3)
    torch.save({"epoch": 4, "model_state_dict": model.state_dict()}, tmp_path / "ckpt.pt")
    assert_same_spec(load_model(tmp_path / "ckpt.pt"), from_module(model))


# -- bad files ---------------------------------------------------------------------------------


def test_missing_file_directory_and_empty_file(tmp_path):
    with pytest.raises(SpecError, match=r": no such file$"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(SpecError, match=r" is a directory, not a model file"):
        load_model(tmp_path)
    spec_dir = from_module(make_lstm(0, input_size=2, hidden_size=2)).save(tmp_path / "spec")
    with pytest.raises(SpecError, match=r"\(a spec directory\? use ModelSpec.load\)$"):
        load_model(spec_dir)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(SpecError, match=r"empty.pt: empty file, not a model$"):
        load_model(tmp_path / "empty.pt")


CORRUPT = {
    "random bytes": lambda good: np.random.default_rng(0).bytes(300),
    "text": lambda good: b"hello, this is not a model\n",
    "truncated zip": lambda good: good[: len(good) // 2],
    "foreign zip": lambda good: _zip_bytes({"hello.txt": b"hi"}),
}


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_files_are_refused_with_one_line(name, tmp_path):
    good = save_route(make_lstm(0, input_size=2, hidden_size=2), "state_dict", tmp_path / "a.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(CORRUPT[name](good.read_bytes()))
    with pytest.raises(SpecError, match=r"^.*bad.pt: ") as info:
        load_model(bad)
    assert "\n" not in str(info.value)


def test_corrupt_torchscript_archive(tmp_path):
    good = save_route(make_lstm(0, input_size=2, hidden_size=2), "jit_script", tmp_path / "a.ts")
    bad = rewrite_zip(good, tmp_path / "bad.ts", {"data.pkl": b"\x80\x02garbage"})
    with pytest.raises(SpecError, match=r"bad.ts: corrupt TorchScript archive \("):
        load_model(bad)


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("container", ["pickle.dump", "torch.save", "torch.save legacy"])
def test_malicious_pickle_is_refused_and_never_runs(container, payload, tmp_path):
    marker = tmp_path / "marker"
    evil = {"weight_ih_l0": PAYLOADS[payload](marker)}
    path = tmp_path / "evil.pt"
    if container == "pickle.dump":
        path.write_bytes(pickle.dumps(evil, protocol=2))
    else:
        torch.save(evil, path, _use_new_zipfile_serialization=container == "torch.save")
    refused = r"evil.pt: refused: not a plain state_dict \(weights_only load failed: .*\)$"
    with pytest.raises(SpecError, match=refused) as info:
        load_model(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("head", [None, "last"])
def test_whole_pickled_module_is_refused(head, tmp_path):
    model = make_model(0, head=head, input_size=2, hidden_size=3)
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(SpecError, match=r"whole.pt: refused: a whole pickled nn.Module \("):
        load_model(tmp_path / "whole.pt")


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_malicious_torchscript_archive_never_runs(payload, tmp_path):
    marker = tmp_path / "marker"
    good = save_route(make_lstm(0, input_size=2, hidden_size=2), "jit_script", tmp_path / "a.ts")
    data = pickle.dumps(PAYLOADS[payload](marker), protocol=2)
    evil = rewrite_zip(good, tmp_path / "evil.ts", {"data.pkl": data})
    with pytest.raises(SpecError, match=r"evil.ts: refused: the TorchScript archive references "):
        load_model(evil)
    assert not marker.exists()


@pytest.fixture(scope="module")
def dynamic_export(tmp_path_factory) -> tuple[Path, ModelSpec]:
    """A ``.pt2`` with a symbolic batch size (its graph holds sympy expression strings)."""
    model = make_model(9, head="last", input_size=3, hidden_size=4, batch_first=True)
    program = torch.export.export(
        model, (example_input(model),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    path = tmp_path_factory.mktemp("pt2") / "dynamic.pt2"
    torch.export.save(program, path)
    return path, from_module(model)


def test_export_archive_code_paths_are_never_evaluated(dynamic_export, tmp_path):
    """torch.export.load would eval the graph's sympy strings and unpickle sample inputs:
    lstmfpga reads neither, and refuses archives where they are anything but plain data."""
    path, expected = dynamic_export
    assert_same_spec(load_model(path), expected)
    marker = tmp_path / "marker"
    program = zip_member(path, "models/model.json").decode()
    symbol = "Symbol('s77', positive=True, integer=True)"
    assert symbol in program  # the symbolic batch size of this torch version
    payload = f"({symbol} if __import__('os').system('touch {marker}') == 0 else None)"
    evil_graph = rewrite_zip(
        path,
        tmp_path / "evil-graph.pt2",
        {"models/model.json": program.replace(json.dumps(symbol)[1:-1], payload, 1).encode()},
    )
    with pytest.raises(SpecError, match=r"evil-graph.pt2: refused: symbolic shape expression "):
        load_model(evil_graph)
    evil_inputs = rewrite_zip(
        path,
        tmp_path / "evil-inputs.pt2",
        {"data/sample_inputs/model.pt": pickle.dumps(WritesMarker(marker), protocol=2)},
    )
    with pytest.raises(
        SpecError,
        match=r"evil-inputs.pt2: refused: data/sample_inputs/model.pt references io.open, ",
    ):
        load_model(evil_inputs)
    assert not marker.exists()


def test_export_archive_with_pickled_weight_is_refused(dynamic_export, tmp_path):
    path, _ = dynamic_export
    marker = tmp_path / "marker"
    config = json.loads(zip_member(path, "data/weights/model_weights_config.json"))
    entry = config["config"]["lstm.weight_ih_l0"]
    entry["use_pickle"] = True
    evil = rewrite_zip(
        path,
        tmp_path / "evil.pt2",
        {
            "data/weights/model_weights_config.json": json.dumps(config).encode(),
            f"data/weights/{entry['path_name']}": pickle.dumps(RunsShell(marker), protocol=2),
        },
    )
    with pytest.raises(SpecError, match=r"evil.pt2: refused: weight 'lstm.weight_ih_l0' is stored"):
        load_model(evil)
    assert not marker.exists()


def test_export_archive_geometry_is_bounds_checked(dynamic_export, tmp_path):
    path, _ = dynamic_export
    config = json.loads(zip_member(path, "data/weights/model_weights_config.json"))
    config["config"]["lstm.weight_ih_l0"]["tensor_meta"]["storage_offset"] = {"as_int": 10**6}
    bad = rewrite_zip(
        path, tmp_path / "bad.pt2",
        {"data/weights/model_weights_config.json": json.dumps(config).encode()},
    )  # fmt: skip
    with pytest.raises(SpecError, match=r"does not fit its storage of 48 element\(s\)$"):
        load_model(bad)


def test_export_archive_version_is_checked(dynamic_export, tmp_path):
    path, _ = dynamic_export
    bad = rewrite_zip(path, tmp_path / "bad.pt2", {"archive_version": b"1"})
    with pytest.raises(SpecError, match=r"format 'pt2' version '1' is not supported"):
        load_model(bad)


# -- sizes and geometry checked before allocating ----------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_expanded_and_oversized_tensors_are_refused(legacy, tmp_path):
    state_dict = lstm_state_dict(**BASE)
    huge = dict(state_dict, weight_ih_l0=torch.zeros(1).expand(10**6, 10**6))
    small = dict(state_dict, weight_ih_l0=torch.zeros(16, 1).expand(16, 3))
    for name, value in (("huge.pt", huge), ("small.pt", small)):
        torch.save(value, tmp_path / name, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(SpecError, match=r"huge.pt: tensor 'weight_ih_l0' declares shape "):
        load_model(tmp_path / "huge.pt")
    with pytest.raises(
        SpecError, match=r"small.pt: tensor 'weight_ih_l0' of shape \(16, 3\) is a "
    ):
        load_model(tmp_path / "small.pt")


def test_zip_members_are_checked_before_reading(tmp_path, monkeypatch):
    path = save_route(make_lstm(0, input_size=2, hidden_size=2), "jit_script", tmp_path / "a.ts")
    monkeypatch.setattr(files, "MAX_ARRAY_BYTES", 100)
    with pytest.raises(
        SpecError, match=r"a.ts: member '.*' declares \d+ bytes, more than the 100-"
    ):
        load_model(path)


@pytest.mark.parametrize("route", ["state_dict", "jit_script"])
def test_complex_and_bool_tensors_are_refused_by_name(route, tmp_path):
    for dtype, name in ((torch.complex64, "complex64"), (torch.bool, "bool")):
        model = make_model(0, head="last", input_size=2, hidden_size=3)
        model.fc.weight = nn.Parameter(torch.zeros(3, 3, dtype=dtype), requires_grad=False)
        path = tmp_path / f"m-{name}"
        if route == "state_dict":
            torch.save(model.state_dict(), path)
        else:
            torch.jit.script(model).save(str(path))
        with pytest.raises(SpecError) as info:
            load_model(path)
        message = str(info.value)
        assert "\n" not in message
        assert re.search(
            rf"m-{name}: fc.weight must be a floating-point \w+, not \S*{name}$", message
        )
