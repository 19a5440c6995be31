"""PyTorch → :class:`ModelSpec`: the only module of lstmfpga that imports torch.

Three entry points, all returning a validated :class:`~lstmfpga.export.spec.ModelSpec` and
raising :class:`~lstmfpga.export.spec.SpecError` (one-line message) for anything they
cannot represent exactly:

* :func:`from_module` — a live ``nn.LSTM``, or an ``nn.Module`` holding one ``nn.LSTM`` and
  at most one ``nn.Linear`` head;
* :func:`from_state_dict` — a mapping of parameter names to tensors (or NumPy arrays); the
  architecture is inferred from the key names and shapes;
* :func:`load_model` — a file: a ``state_dict`` saved with ``torch.save``, a TorchScript
  archive (``torch.jit.save``) or a ``torch.export`` program (``torch.export.save``, ``.pt2``).

What is supported
-----------------
One ``nn.LSTM`` with any of its options (``input_size``, ``hidden_size``, ``num_layers``,
``bias``, ``batch_first``, ``bidirectional``, ``proj_size``, ``dropout``) and an optional
``nn.Linear`` head applied either to the last timestep (``head="last"``) or to every
timestep (``head="all"``). ``batch_first`` does not appear in the spec (every lstmfpga API
takes ``(batch, seq, features)``); ``dropout`` is recorded but has no effect at inference.

Modules are classified by type, never by running them:

* ``nn.LSTM`` and ``nn.Linear`` (exact types, or subclasses that do not override
  ``forward``) are the model;
* ``nn.Dropout*``, ``nn.Identity``, ``nn.Flatten``, containers (``Sequential``,
  ``ModuleList``, ``ModuleDict``) and loss modules are ignored: they do not change the
  inference numerics (``Flatten`` only reshapes, dropout is off in ``eval()``);
* every other ``torch.nn`` module is refused, with or without parameters: an activation,
  normalization or second recurrent layer changes the numerics;
* user-defined modules are taken as containers: refused if they own parameters or buffers
  themselves.

For a live module the ``forward`` code is *not* inspected: the spec assumes the model
computes ``lstm(x)`` followed by the head on ``output[:, -1]`` (``"last"``) or on every
timestep (``"all"``). For TorchScript and ``torch.export`` archives it is: the archive's
graph is read (never run) by :mod:`lstmfpga.export.forward_check` and must be exactly one of
those patterns (``y[:, -1]``, ``y[-1]`` time-major, ``h_n[-1]`` unidirectional, ``Linear`` on
every step, no head); anything else is refused naming the op (``aten::relu``, ...), and the
head mode is the one the graph computes (a contradicting ``head`` argument is refused).

Safety of model files
---------------------
No file is ever unpickled with arbitrary globals, and no code stored in a file is run:

* every zip container (``torch.save`` zip, TorchScript, ``.pt2``, and a ``.pt2``'s nested
  sample-input zip) has its members' declared sizes checked first
  (:func:`lstmfpga.export.files.check_zip_members`: oversized members, deflate/bzip2 bombs);
* state_dicts are read with ``torch.load(weights_only=True)``; a pickle that would call
  anything else (``os.system``, a whole pickled ``nn.Module``) is refused. For a legacy
  (non-zip) file the storage sizes its pickle declares are read from the opcodes first
  (``torch.load`` would allocate them); stride-0 (expanded) and oversized tensors are refused;
* TorchScript archives are *not* passed to ``torch.jit.load`` (a TorchScript program is
  code, and PyTorch advises loading only trusted archives). Their ``data.pkl`` is parsed
  with a restricted unpickler that knows module records and tensor storages only; every
  other pickle member (``constants.pkl``, ``*.debug_pkl``, ``traced_inputs.pkl``) is scanned
  by opcode and refused if it names anything but tensor rebuilders; ``code/`` is parsed with
  :func:`ast.parse` (never compiled) and walked by :mod:`lstmfpga.export.forward_check`;
* ``.pt2`` archives are *not* passed to ``torch.export.load``, which falls back to plain
  pickle for some payloads and ``eval``\\ s symbolic-shape strings through sympy. The
  weights are read from the archive's JSON payload config and raw storage records, the
  module structure from the ``nn_module_stack`` of the serialized graph (plain JSON, within
  the size and depth limits of :func:`lstmfpga.export.files.parse_json`), when the graph
  carries that metadata. Archives with pickled payloads or tensor constants, pickle members
  naming anything but tensor rebuilders, or symbolic shapes that are not plain sympy
  expressions are refused.

Tests pin both readers against ``torch.jit.load`` / ``torch.export.load`` on trusted files.
"""

from __future__ import annotations

import _compat_pickle
import ast
import collections
import dataclasses
import io
import math
import pickle
import pickletools
import re
import typing
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import files
from .forward_check import (
    FORWARD_SUPPORTED,
    LSTMSignature,
    ScriptModule,
    check_export_graph,
    check_torchscript,
    parse_classes,
)
from .spec import HEAD_MODES, HeadSpec, LayerWeights, ModelSpec, SpecError

__all__ = ["detect_format", "from_module", "from_state_dict", "load_model"]

SUPPORTED = "lstmfpga supports one nn.LSTM and an optional nn.Linear head"

_LSTM_QUALNAME = "torch.nn.modules.rnn.LSTM"
_LINEAR_QUALNAME = "torch.nn.modules.linear.Linear"
#: torch.nn classes (by short name) that do not change inference numerics.
_IGNORED_TORCH_MODULES = frozenset(
    {
        "Dropout",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "AlphaDropout",
        "FeatureAlphaDropout",
        "Identity",
        "Flatten",
        "Sequential",
        "ModuleList",
        "ModuleDict",
    }
)
_LSTM_KEY = re.compile(
    r"^(?P<prefix>(?:.*\.)?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
    r"_l(?P<layer>0|[1-9][0-9]*)(?P<reverse>_reverse)?$"
)


# -- head mode ---------------------------------------------------------------------------------
def _check_head_mode(name: str, value) -> str | None:
    if value is not None and value not in HEAD_MODES:
        raise SpecError(f"{name} must be 'last' or 'all', not {value!r}")
    return value


# -- module structure --------------------------------------------------------------------------
@dataclass(frozen=True)
class _ModuleEntry:
    """One module of a model, as far as the classification needs: see the module docstring."""

    path: str  # dotted path, "" for the root
    qualname: str  # "torch.nn.modules.rnn.LSTM", "__main__.MyModel", ...
    kind: str | None  # "lstm", "linear", or None (decided from qualname)
    own_tensors: tuple[str, ...]  # names of parameters/buffers owned directly


def _describe_module(entry: _ModuleEntry) -> str:
    short = entry.qualname.rsplit(".", 1)[-1]
    # A torch.ao quantized "LSTM" must not read like the supported nn.LSTM.
    label = entry.qualname if short in ("LSTM", "Linear") else short
    where = f"layer {entry.path!r}" if entry.path else "model"
    return f"{where} ({label})"


def _check_structure(entries: Iterable[_ModuleEntry], model: str) -> tuple[str, str | None]:
    """Classify modules; return ``(lstm path, head path or None)`` or raise :class:`SpecError`."""
    lstms, linears = [], []
    for entry in entries:
        if entry.kind == "lstm":
            lstms.append(entry.path)
        elif entry.kind == "linear":
            linears.append(entry.path)
        elif entry.qualname.startswith("torch."):
            short = entry.qualname.rsplit(".", 1)[-1]
            ignored = short in _IGNORED_TORCH_MODULES and entry.qualname.startswith("torch.nn.")
            if not (ignored or entry.qualname.startswith("torch.nn.modules.loss.")):
                raise SpecError(f"unsupported {_describe_module(entry)}: {SUPPORTED}")
        elif entry.own_tensors:
            names = ", ".join(repr(n) for n in entry.own_tensors)
            raise SpecError(
                f"unsupported parameter(s) {names} of {_describe_module(entry)}: {SUPPORTED}"
            )
    if not lstms:
        raise SpecError(f"no nn.LSTM found in {model}: {SUPPORTED}")
    if len(lstms) > 1:
        paths = ", ".join(repr(p) for p in lstms)
        raise SpecError(f"found {len(lstms)} nn.LSTM modules ({paths}): {SUPPORTED}")
    if len(linears) > 1:
        paths = ", ".join(repr(p) for p in linears)
        raise SpecError(f"found {len(linears)} nn.Linear modules ({paths}): {SUPPORTED}")
    return lstms[0], (linears[0] if linears else None)


def _live_kind(module: nn.Module, base: type[nn.Module]) -> bool:
    return isinstance(module, base) and type(module).forward is base.forward


def _live_entries(module: nn.Module) -> list[_ModuleEntry]:
    entries = []
    for path, sub in module.named_modules():
        cls = type(sub)
        qualname = f"{cls.__module__}.{cls.__qualname__}"
        kind = None
        if _live_kind(sub, nn.LSTM):
            kind = "lstm"
        elif _live_kind(sub, nn.Linear):
            kind = "linear"
        elif isinstance(sub, nn.LSTM | nn.Linear):
            label = "nn.LSTM" if isinstance(sub, nn.LSTM) else "nn.Linear"
            where = f"layer {path!r}" if path else "model"
            raise SpecError(
                f"unsupported {where} ({cls.__name__}): a subclass of {label} that "
                f"overrides forward; {SUPPORTED}"
            )
        own = [n for n, _ in sub.named_parameters(recurse=False)]
        own += [n for n, _ in sub.named_buffers(recurse=False)]
        entries.append(_ModuleEntry(path, qualname, kind, tuple(own)))
    return entries


def _qualname_kind(qualname: str) -> str | None:
    return {_LSTM_QUALNAME: "lstm", _LINEAR_QUALNAME: "linear"}.get(qualname)


def _entries_from_tensor_owners(
    modules: Mapping[str, str], keys: Iterable[str]
) -> list[_ModuleEntry]:
    """Entries for ``{path: qualname}``, owning the ``keys`` whose parent path they are."""
    owned: dict[str, list[str]] = {}
    for key in keys:
        parent, _, name = key.rpartition(".")
        owned.setdefault(parent, []).append(name)
    return [
        _ModuleEntry(path, qualname, _qualname_kind(qualname), tuple(owned.get(path, ())))
        for path, qualname in modules.items()
    ]


# -- tensors -----------------------------------------------------------------------------------
def _to_float64(name: str, value) -> np.ndarray:
    """A float64 NumPy copy of a floating-point tensor or array."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise SpecError(f"{name} must be a floating-point tensor, not {value.dtype}")
        try:
            return value.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
        except (RuntimeError, NotImplementedError, TypeError) as error:
            raise SpecError(f"{name} cannot be read: {_first_line(error)}") from None
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            raise SpecError(f"{name} must be a floating-point array, not {value.dtype}")
        return value.astype(np.float64)
    raise SpecError(f"{name} must be a tensor, not {type(value).__name__}")


def _shape(name: str, value) -> tuple[int, ...]:
    if not isinstance(value, torch.Tensor | np.ndarray):
        raise SpecError(f"state_dict value {name!r} must be a tensor, not {type(value).__name__}")
    return tuple(int(n) for n in value.shape)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0].strip() if text else ""
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


# -- state_dict --------------------------------------------------------------------------------
def from_state_dict(state_dict: Mapping, head: str | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` from an ``nn.LSTM`` (+ ``nn.Linear``) state_dict.

    Parameters
    ----------
    state_dict:
        Mapping of names to tensors or float NumPy arrays. The LSTM keys are PyTorch's
        (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
        ``weight_hr_l{k}``, each optionally with ``_reverse``), all under one common prefix
        (``""``, ``"lstm."``, ``"encoder.rnn."``, ...). The architecture (``input_size``,
        ``hidden_size``, ``num_layers``, ``bias``, ``bidirectional``, ``proj_size``) is
        inferred from the keys and shapes. A head is the one remaining 2-D ``*.weight``
        (with its ``*.bias`` if present).
    head:
        ``"last"`` or ``"all"``; ``None`` means ``"last"`` when the state_dict has a head.
        Giving a mode for a state_dict without head weights is an error.

    Raises :class:`SpecError` for inconsistent shapes, missing tensors, non-float or
    non-finite values, more than one LSTM or head candidate, and unknown keys (named).
    ``dropout`` is not part of a state_dict: the spec records ``0.0``.
    """
    return _spec_from_state_dict(state_dict, head, source="state_dict")


def _spec_from_state_dict(
    state_dict: Mapping,
    head: str | None,
    *,
    source: str,
    dropout: float = 0.0,
) -> ModelSpec:
    if not isinstance(state_dict, Mapping):
        raise SpecError(f"state_dict must be a mapping, not {type(state_dict).__name__}")
    _check_head_mode("head", head)
    for key in state_dict:
        if not isinstance(key, str):
            raise SpecError(f"state_dict keys must be strings, not {key!r}")
    shapes = {key: _shape(key, value) for key, value in state_dict.items()}

    lstm: dict[tuple[int, int], dict[str, str]] = {}
    prefixes = set()
    for key in state_dict:
        match = _LSTM_KEY.match(key)
        if match is None:
            continue
        prefixes.add(match["prefix"])
        cell = lstm.setdefault((int(match["layer"]), 1 if match["reverse"] else 0), {})
        cell[match["kind"]] = key
    if not lstm:
        found = ", ".join(repr(k) for k in list(state_dict)[:4]) or "nothing"
        raise SpecError(
            f"state_dict holds no LSTM weights (expected keys like 'weight_ih_l0' or "
            f"'lstm.weight_ih_l0', found {found}): {SUPPORTED}"
        )
    if len(prefixes) > 1:
        names = ", ".join(repr(p.rstrip(".")) for p in sorted(prefixes))
        raise SpecError(f"state_dict holds LSTM weights of several modules ({names}): {SUPPORTED}")
    prefix = prefixes.pop()

    num_layers = 1 + max(layer for layer, _ in lstm)
    missing_layers = sorted(set(range(num_layers)) - {layer for layer, _ in lstm})
    if missing_layers:
        raise SpecError(
            f"state_dict has LSTM layers up to {num_layers - 1} but no weights for "
            f"layer(s) {missing_layers}"
        )
    reverse = {layer for layer, d in lstm if d == 1}
    if reverse and reverse != set(range(num_layers)):
        raise SpecError(
            f"state_dict has _reverse weights for layer(s) {sorted(reverse)} only, "
            f"not for all {num_layers} layer(s)"
        )
    bidirectional = bool(reverse)
    kinds = {kind for cell in lstm.values() for kind in cell}
    bias = "bias_ih" in kinds or "bias_hh" in kinds
    projection = "weight_hr" in kinds
    expected = {"weight_ih", "weight_hh"} | ({"bias_ih", "bias_hh"} if bias else set())
    expected |= {"weight_hr"} if projection else set()
    for layer in range(num_layers):
        for d in range(2 if bidirectional else 1):
            for kind in sorted(expected - set(lstm.get((layer, d), {}))):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                raise SpecError(f"state_dict is missing {prefix}{kind}{suffix}")

    w_ih, w_hh = shapes[lstm[0, 0]["weight_ih"]], shapes[lstm[0, 0]["weight_hh"]]
    for key, shape in ((lstm[0, 0]["weight_ih"], w_ih), (lstm[0, 0]["weight_hh"], w_hh)):
        if len(shape) != 2:
            raise SpecError(f"{key} must be 2-D, not {shape}")
    rows, output_size = w_hh
    hint = ""
    if not projection and rows == 3 * output_size:
        hint = " (3*hidden rows: a GRU?)"
    elif not projection and rows == output_size:
        hint = " (hidden rows: an RNN?)"
    if rows == 0 or rows % 4:
        raise SpecError(
            f"{lstm[0, 0]['weight_hh']} must have 4*hidden_size rows (gates i, f, g, o), "
            f"not {rows}{hint}"
        )
    hidden_size = rows // 4
    proj_size = output_size if projection else 0
    if not projection and output_size != hidden_size:
        raise SpecError(
            f"{lstm[0, 0]['weight_hh']} has shape {w_hh}, but an LSTM without "
            f"projection has weight_hh of shape (4*hidden, hidden){hint}"
        )

    used = {key for cell in lstm.values() for key in cell.values()}
    head_weight, head_bias = _find_head(state_dict, shapes, used)
    if head_weight is None:
        if head is not None:
            raise SpecError(f"head={head!r} given, but the model has no nn.Linear head")
        head_spec = None
    else:
        head_spec = HeadSpec(
            weight=_to_float64(head_weight, state_dict[head_weight]),
            bias=None if head_bias is None else _to_float64(head_bias, state_dict[head_bias]),
            mode=head or "last",
        )
        width = (2 if bidirectional else 1) * output_size
        if shapes[head_weight][1:] != (width,):
            raise SpecError(
                f"head {head_weight} has shape {shapes[head_weight]}, but the LSTM output "
                f"has {width} features"
            )

    def tensor(layer: int, d: int, kind: str) -> np.ndarray | None:
        key = lstm[layer, d].get(kind)
        return None if key is None else _to_float64(key, state_dict[key])

    layers = tuple(
        tuple(
            LayerWeights(
                w_ih=tensor(layer, d, "weight_ih"),
                w_hh=tensor(layer, d, "weight_hh"),
                b_ih=tensor(layer, d, "bias_ih"),
                b_hh=tensor(layer, d, "bias_hh"),
                w_hr=tensor(layer, d, "weight_hr"),
            )
            for d in range(2 if bidirectional else 1)
        )
        for layer in range(num_layers)
    )
    return ModelSpec(
        input_size=w_ih[1],
        hidden_size=hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        proj_size=proj_size,
        bias=bias,
        layers=layers,
        head=head_spec,
        dropout=float(dropout),
        source=source,
    )


def _find_head(
    state_dict: Mapping, shapes: Mapping[str, tuple[int, ...]], used: set[str]
) -> tuple[str | None, str | None]:
    """The ``(weight key, bias key or None)`` of the head, or ``(None, None)``."""
    rest = [key for key in state_dict if key not in used]
    weights = [k for k in rest if k.rpartition(".")[2] == "weight" and len(shapes[k]) == 2]
    if len(weights) > 1:
        names = ", ".join(repr(k) for k in weights)
        raise SpecError(f"found {len(weights)} candidate head weights ({names}): {SUPPORTED}")
    weight = weights[0] if weights else None
    bias = None
    if weight is not None:
        candidate = weight[: -len("weight")] + "bias"
        bias = candidate if candidate in state_dict else None
    unknown = [k for k in rest if k not in (weight, bias)]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise SpecError(f"unknown state_dict key(s) {names}: {SUPPORTED}")
    if bias is not None and len(shapes[bias]) != 1:
        raise SpecError(f"head bias {bias} must be 1-D, not {shapes[bias]}")
    return weight, bias


def _check_head_given(head: str | None, declared: str | None, has_head: bool, model: str):
    """A head mode given (argument) or declared (``head_mode``) needs an nn.Linear head."""
    if has_head:
        return
    if head is not None:
        raise SpecError(f"head={head!r} given, but {model} has no nn.Linear head")
    if declared is not None:
        raise SpecError(f"head_mode={declared!r} declared, but {model} has no nn.Linear head")


# -- live modules ------------------------------------------------------------------------------
def from_module(module: nn.Module, head: str | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` from a live module (weights copied as float64).

    ``module`` is an ``nn.LSTM``, or an ``nn.Module`` whose ``named_modules()`` hold exactly
    one ``nn.LSTM`` and at most one ``nn.Linear`` (the head); see the module docstring for
    which other modules are ignored or refused. The head mode is ``head`` if given, else the
    module's ``head_mode`` attribute if it has one, else ``"last"``. ``dropout`` is copied
    from the LSTM (ignored at inference); ``batch_first`` does not matter.

    Raises :class:`TypeError` if ``module`` is not an ``nn.Module``, :class:`SpecError` for
    an unsupported structure, a head mode without a head, or non-finite weights.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, not {module!r}")
    _check_head_mode("head", head)
    declared = _check_head_mode("head_mode", getattr(module, "head_mode", None))
    model = type(module).__name__
    lstm_path, head_path = _check_structure(_live_entries(module), model)
    _check_head_given(head, declared, head_path is not None, model)
    # Only the LSTM and the head: every other module was checked to hold no tensors
    # that matter (a loss module's class weights, say, are not part of the model).
    state_dict = {}
    for path in (lstm_path, head_path):
        if path is not None:
            prefix = f"{path}." if path else ""
            for name, value in module.get_submodule(path).state_dict().items():
                state_dict[prefix + name] = value
    lstm = module.get_submodule(lstm_path)
    return _spec_from_state_dict(
        state_dict,
        head or declared,
        source=f"torch module {model}",
        dropout=lstm.dropout,
    )


# -- files -------------------------------------------------------------------------------------
def detect_format(path: str | Path) -> str:
    """The kind of model file at ``path``: ``"state_dict"``, ``"torchscript"``, ``"torch.export"``.

    Decided from the content, not the extension: a TorchScript archive is a zip holding
    ``constants.pkl`` or ``code/``; a ``torch.export`` archive holds ``archive_format`` or
    ``models/``; anything else (a ``torch.save`` zip, or a legacy non-zip pickle) is read
    as a state_dict. Raises :class:`SpecError` for a missing path, a directory, an empty
    file or a zip archive that is none of these.
    """
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    if path.is_dir():
        hint = (
            " (a spec directory? use ModelSpec.load)" if (path / "manifest.json").is_file() else ""
        )
        raise SpecError(
            f"{path} is a directory, not a model file (.pt/.pth, TorchScript or .pt2){hint}"
        )
    if path.stat().st_size == 0:
        raise SpecError(f"{path}: empty file, not a model")
    if not zipfile.is_zipfile(path):
        return "state_dict"
    _, names = _zip_names(path)
    if "constants.pkl" in names or any(n.startswith("code/") for n in names):
        return "torchscript"
    if "archive_format" in names or any(n.startswith("models/") for n in names):
        return "torch.export"
    if "data.pkl" in names:
        return "state_dict"
    raise SpecError(
        f"{path}: a zip archive, but not a PyTorch file (no data.pkl, TorchScript code or "
        f"torch.export program)"
    )


def load_model(path: str | Path, head: str | None = None) -> ModelSpec:
    """Read a model file (see :func:`detect_format`) into a :class:`ModelSpec`.

    * state_dict (``torch.save(model.state_dict())``, also a training checkpoint dict with
      a ``"state_dict"`` or ``"model_state_dict"`` entry): ``torch.load(weights_only=True)``
      then :func:`from_state_dict`. A pickle needing anything beyond tensors and containers
      (code, a whole pickled ``nn.Module``) is refused.
    * TorchScript archive: module structure and tensors read without running TorchScript;
      a ``head_mode`` string attribute of the root module is honoured like in
      :func:`from_module`.
    * ``torch.export`` archive: weights and module structure read without
      ``torch.export.load`` (see the module docstring).

    ``head`` is as in :func:`from_state_dict`. ``dropout`` is recorded as ``0.0`` (files
    do not hold it in a form read here). Raises :class:`SpecError` for a missing, corrupt,
    refused or unsupported file; its message starts with ``"{path}: "``.
    """
    _check_head_mode("head", head)
    path = Path(path)
    kind = detect_format(path)
    try:
        return _load_model(path, kind, head)
    except SpecError as error:
        if str(error).startswith(f"{path}:"):
            raise
        raise SpecError(f"{path}: {error}") from None


def _load_model(path: Path, kind: str, head: str | None) -> ModelSpec:
    if kind == "state_dict":
        state_dict = _load_state_dict_file(path)
        return _spec_from_state_dict(state_dict, head, source=f"state_dict {path.name}")
    elif kind == "torchscript":
        modules, tensors, root, code = _read_torchscript_program(path)
        declared = root.state.get("head_mode")
        declared = declared if isinstance(declared, str) else None
        model = modules.get("", "model")
        _, head_path = _check_structure(_entries_from_tensor_owners(modules, tensors), model)
        _check_head_mode("head_mode", declared)
        _check_head_given(head, declared, head_path is not None, model)
        spec = _spec_from_state_dict(
            tensors, head or declared, source=f"TorchScript archive {path.name}"
        )
        classes = parse_classes(str(path), code)
        mode = check_torchscript(str(path), root, classes, _lstm_signature(spec, tensors))
        return _with_graph_head(path, spec, mode, head)
    elif kind == "torch.export":
        modules, tensors, program = _read_export_archive(path)
        if modules:  # graphs without nn_module_stack metadata: the state_dict checks remain
            model = modules.get("", "model")
            _check_structure(_entries_from_tensor_owners(modules, tensors), model)
        spec = _spec_from_state_dict(tensors, head, source=f"torch.export program {path.name}")
        mode = check_export_graph(str(path), program, _lstm_signature(spec, tensors))
        return _with_graph_head(path, spec, mode, head)
    else:
        raise AssertionError(f"unhandled model file kind {kind!r}")  # pragma: no cover


def _lstm_signature(spec: ModelSpec, tensors: Mapping[str, object]) -> LSTMSignature:
    """The parameter names the graph's LSTM and head calls must use, from the file's tensors."""
    prefix = ""
    for key in tensors:
        match = _LSTM_KEY.match(key)
        if match is not None:
            prefix = match["prefix"]
            break
    kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if spec.bias else [])
    kinds += ["weight_hr"] if spec.proj_size else []
    params = tuple(
        f"{prefix}{kind}_l{layer}{'_reverse' if d else ''}"
        for layer in range(spec.num_layers)
        for d in range(spec.num_directions)
        for kind in kinds
    )
    rest = [key for key in tensors if _LSTM_KEY.match(key) is None]
    head = None
    if spec.head is not None:
        weight = next(k for k in rest if k.rpartition(".")[2] == "weight")
        bias = weight[: -len("weight")] + "bias"
        head = (weight, bias if bias in tensors else None)
    return LSTMSignature(spec.num_layers, spec.bidirectional, spec.bias, params, head)


def _with_graph_head(path: Path, spec: ModelSpec, mode: str | None, head: str | None) -> ModelSpec:
    """``spec`` with the head mode the graph computes; a contradicting ``head`` is refused."""
    if mode is None:
        if spec.head is not None:
            raise SpecError(
                f"{path}: unsupported forward: the nn.Linear head is never applied to the "
                f"LSTM output; {FORWARD_SUPPORTED}"
            )
        return spec
    if head is not None and head != mode:
        where = "the last timestep" if mode == "last" else "every timestep"
        raise SpecError(
            f"{path}: head={head!r} given, but the model's forward applies its head to {where}"
        )
    if spec.head.mode == mode:
        return spec
    return dataclasses.replace(spec, head=HeadSpec(spec.head.weight, spec.head.bias, mode))


def _zip_names(path: Path) -> tuple[str, set[str]]:
    """``(root folder, names below it)`` of a PyTorch zip archive (one top-level folder).

    The members' declared sizes are checked first (:func:`files.check_zip_members`: oversized
    members and deflate bombs are refused before anything is read).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            files.check_zip_members(archive, str(path))
            names = archive.namelist()
    except files.FileFormatError as error:
        raise SpecError(str(error)) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise SpecError(f"{path}: corrupt zip archive ({_first_line(error)})") from None
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1:
        raise SpecError(f"{path}: not a PyTorch archive (expected one top-level folder)")
    root = roots.pop()
    return root, {name[len(root) + 1 :] for name in names if "/" in name}


def _check_legacy_storages(path: Path) -> None:
    """Refuse a legacy (non-zip) ``torch.save`` file whose storages declare too many bytes.

    ``torch.load`` allocates each storage at the size its pickle declares before reading it, so
    the declared sizes are read first from the pickle opcodes (nothing is unpickled).
    """
    size = path.stat().st_size
    if size > files.MAX_ARCHIVE_BYTES:
        raise SpecError(f"{path}: {size} bytes, more than the {files.MAX_ARCHIVE_BYTES}-byte limit")
    integers = {"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG"}
    with open(path, "rb") as stream:
        try:
            magic = [arg for op, arg, _ in pickletools.genops(stream) if op.name in integers]
            if magic != [_LEGACY_MAGIC]:
                return  # not a legacy torch.save file: torch.load refuses it before allocating
            for _ in range(2):  # protocol version, system info
                for _ in pickletools.genops(stream):
                    pass
        except Exception:  # truncated or not a pickle: torch.load reports it
            return
        total, recent, last_tuple = 0, collections.deque(maxlen=32), []
        try:
            for op, arg, _ in pickletools.genops(stream):  # the main pickle, streamed
                recent.append((op.name, arg))
                if op.name == "TUPLE":
                    ops = list(recent)
                    marks = [i for i, (name, _) in enumerate(ops) if name == "MARK"]
                    last_tuple = ops[marks[-1] + 1 : -1] if marks else []
                elif op.name == "BINPERSID":
                    names = " ".join(a for _, a in last_tuple if isinstance(a, str))
                    numbers = [a for name, a in last_tuple if name in integers]
                    if not numbers or not names.startswith("storage"):
                        continue
                    declared = numbers[-1] * (16 if "ComplexDouble" in names else 8)
                    total += declared
                    if declared > files.MAX_ARRAY_BYTES or total > files.MAX_ARCHIVE_BYTES:
                        raise SpecError(
                            f"{path}: a storage declares {numbers[-1]} elements, more than the "
                            f"{files.MAX_ARRAY_BYTES}-byte limit"
                        )
        except SpecError:
            raise
        except Exception as error:
            raise SpecError(
                f"{path}: not a readable PyTorch file (corrupt pickle: {_first_line(error)})"
            ) from None


def _check_tensor_geometry(path: Path, name: str, tensor: torch.Tensor) -> None:
    """Refuse expanded (stride-0) views and tensors declaring more than the array limit."""
    shape = tuple(tensor.shape)
    nbytes = tensor.numel() * 8  # what the float64 copy would take
    if nbytes > files.MAX_ARRAY_BYTES:
        raise SpecError(
            f"{path}: tensor {name!r} declares shape {shape} ({tensor.numel()} elements), more "
            f"than the {files.MAX_ARRAY_BYTES}-byte limit"
        )
    if any(stride == 0 and n > 1 for n, stride in zip(shape, tensor.stride(), strict=True)):
        raise SpecError(
            f"{path}: tensor {name!r} of shape {shape} is a stride-0 (expanded) view with "
            f"strides {tuple(tensor.stride())}, not a stored weight"
        )


def _load_state_dict_file(path: Path) -> dict:
    if not zipfile.is_zipfile(path):
        _check_legacy_storages(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _weights_only_reason(str(error))
        if any(g.startswith("torch.nn.modules.") for g in _pickled_globals(path)):
            raise SpecError(
                f"{path}: refused: a whole pickled nn.Module (torch.save(model)), not a plain "
                f"state_dict; save model.state_dict(), a TorchScript or a torch.export archive"
            ) from None
        raise SpecError(
            f"{path}: refused: not a plain state_dict (weights_only load failed: {reason})"
        ) from None
    except Exception as error:  # torch.load raises anything on corrupt input
        raise SpecError(
            f"{path}: not a readable PyTorch file (torch.load failed: {_first_line(error)})"
        ) from None
    if isinstance(obj, nn.Module):  # possible only with user-registered safe globals
        raise SpecError(
            f"{path}: refused: a whole pickled nn.Module (torch.save(model)), not a plain "
            f"state_dict"
        )
    if not isinstance(obj, Mapping):
        raise SpecError(
            f"{path}: expected a state_dict (a dict of tensors), not {type(obj).__name__}"
        )
    if not any(isinstance(v, torch.Tensor) for v in obj.values()):
        nested = [k for k in ("state_dict", "model_state_dict") if isinstance(obj.get(k), Mapping)]
        if len(nested) == 1:
            obj = obj[nested[0]]
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            _check_tensor_geometry(path, str(key), value)
    return dict(obj)


#: Globals a tensor pickle (TorchScript constants/debug/traced inputs, .pt2 sample inputs) may
#: name; anything else (``os.system``, ``builtins.eval``, ...) makes the archive refused.
_TENSOR_PICKLE_GLOBALS = frozenset(
    ["torch._utils._rebuild_tensor_v2", "collections.OrderedDict"]
    + [f"torch.jit._pickle.{n}" for n in ("restore_type_tag", "build_intlist")]
    + [f"torch.jit._pickle.build_{n}list" for n in ("tensor", "double", "bool", "generic")]
)  # and the torch.*Storage classes of _TS_STORAGES


def _pickle_globals(data: bytes) -> list[str]:
    """The globals a pickle names, from its opcodes alone (nothing is unpickled).

    ``STACK_GLOBAL`` whose module and name are not the two string literals just before it
    gives ``"<computed global>"`` (refused by the callers: it could name anything).
    """
    found, pushed = [], []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            found.append(_python3_name(module, name))
        elif op.name == "STACK_GLOBAL":
            ok = len(pushed) >= 2 and all(isinstance(a, str) for a in pushed[-2:])
            found.append(_python3_name(*pushed[-2:]) if ok else "<computed global>")
        if op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            continue
        pushed.append(arg if op.name.endswith("UNICODE") or op.name.endswith("STRING") else None)
        del pushed[:-2]
    return found


def _python3_name(module: str, name: str) -> str:
    """``module.name`` as unpickling resolves it (protocol-2 pickles say ``__builtin__``)."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def _check_tensor_pickle(path: Path, member: str, data: bytes) -> None:
    """Refuse a pickle member that names anything but tensor-rebuilding globals."""
    try:
        names = _pickle_globals(data)
    except Exception as error:  # malformed opcodes
        raise SpecError(
            f"{path}: {member} is not a readable pickle ({_first_line(error)})"
        ) from None
    for name in names:
        storage = name.startswith("torch.") and name[len("torch.") :] in _TS_STORAGES
        if name not in _TENSOR_PICKLE_GLOBALS and not storage:
            raise SpecError(
                f"{path}: refused: {member} references {name}, which lstmfpga does not read"
            )


def _pickled_globals(path: Path) -> set[str]:
    """Globals named by the ``data.pkl`` of a ``torch.save`` zip (opcodes only, nothing runs).

    Only used to word an error message; any problem gives an empty set.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            ops = list(pickletools.genops(archive.read(name)))
    except Exception:  # best effort: a corrupt file is reported elsewhere
        return set()
    found, strings = set(), []
    for op, arg, _ in ops:
        if op.name == "GLOBAL":
            found.add(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
        if isinstance(arg, str):
            strings.append(arg)
    return found


def _weights_only_reason(message: str) -> str:
    """The one informative sentence of torch's multi-paragraph weights_only error."""
    boilerplate = (
        "Weights only load failed",
        "(1)",
        "(2)",
        "Please file an issue",
        "Check the documentation",
        "In PyTorch 2.6",
    )
    for line in message.splitlines():
        line = line.strip()
        if not line or line.startswith(boilerplate):
            continue
        line = line.removeprefix("WeightsUnpickler error:").strip()
        if line:
            return line.split(". ")[0].rstrip(".")
    return "unsupported pickle content"


# -- raw tensors -------------------------------------------------------------------------------
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy torch.save file
_BFLOAT16 = "bfloat16"  # NumPy has no bfloat16: stored as uint16, widened on read


def _strided_copy(
    name: str,
    raw: bytes,
    dtype: str,
    sizes: tuple[int, ...],
    strides: tuple[int, ...],
    offset: int,
) -> np.ndarray:
    """Copy a strided view of a raw little-endian storage, with every index bounds-checked."""
    storage_dtype = np.dtype("<u2" if dtype == _BFLOAT16 else dtype)
    if len(raw) % storage_dtype.itemsize:
        raise SpecError(f"{name}: storage size {len(raw)} is not a multiple of {storage_dtype}")
    flat = np.frombuffer(raw, dtype=storage_dtype)
    if len(sizes) != len(strides) or min((*sizes, *strides, offset), default=0) < 0:
        raise SpecError(f"{name}: invalid tensor geometry {sizes}/{strides}+{offset}")
    if max((*sizes, *strides, offset), default=0) > flat.size:
        raise SpecError(
            f"{name}: tensor {sizes} (strides {strides}, offset {offset}) does not fit its "
            f"storage of {flat.size} element(s)"
        )
    if any(stride == 0 and n > 1 for n, stride in zip(sizes, strides, strict=True)):
        raise SpecError(
            f"{name}: tensor {sizes} is a stride-0 (expanded) view with strides {strides}, "
            f"not a stored weight"
        )
    count = math.prod(sizes)
    if count == 0:
        array = np.zeros(sizes, dtype=storage_dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(sizes, strides, strict=True))
        if last >= flat.size or count > flat.size:
            raise SpecError(
                f"{name}: tensor {sizes} does not fit its storage of {flat.size} element(s)"
            )
        array = np.array(
            np.lib.stride_tricks.as_strided(
                flat[offset:],
                shape=sizes,
                strides=tuple(s * storage_dtype.itemsize for s in strides),
                writeable=False,
            )
        )
    if dtype == _BFLOAT16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


# -- TorchScript archives ----------------------------------------------------------------------
_TS_STORAGES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
}
_MANGLE = re.compile(r"\.___torch_mangle_\d+")


class _ScriptObject:
    """A TorchScript object record from ``data.pkl``: its class name and attributes."""

    qualname = ""
    raw_qualname = ""
    state: typing.ClassVar[dict] = {}  # replaced per object by BUILD; never mutated

    def __setstate__(self, state):
        self.state = state


@dataclass(frozen=True)
class _StorageType:
    dtype: str


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    raw: bytes


class _Function:
    """A callable the restricted unpickler hands out; refuses to be modified by BUILD."""

    def __init__(self, function: Callable):
        self._function = function

    def __call__(self, *args):
        return self._function(*args)

    def __setstate__(self, state):
        raise pickle.UnpicklingError("BUILD applied to a function")


class _TorchScriptUnpickler(pickle.Unpickler):
    """Reads TorchScript ``data.pkl``: module records, tensors and a few list builders.

    Every global other than TorchScript classes (``__torch__.*``), ``torch.*Storage``,
    ``torch._utils._rebuild_tensor_v2``, ``collections.OrderedDict`` and the
    ``torch.jit._pickle`` list builders is refused. TorchScript classes become inert
    :class:`_ScriptObject` records: no code from the archive runs.
    """

    def __init__(self, data: bytes, read_record: Callable[[str], bytes], path: Path):
        super().__init__(io.BytesIO(data))
        self._read_record = read_record
        self._path = path
        self._classes: dict[str, type] = {}
        self._functions = {
            ("torch._utils", "_rebuild_tensor_v2"): _Function(self._rebuild_tensor),
            ("collections", "OrderedDict"): _Function(OrderedDict),
            ("torch.jit._pickle", "restore_type_tag"): _Function(lambda value, _type: value),
        }
        for builder in ("tensorlist", "intlist", "doublelist", "boollist", "genericlist"):
            self._functions["torch.jit._pickle", f"build_{builder}"] = _Function(list)

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = _MANGLE.sub("", f"{module}.{name}").removeprefix("__torch__.")
            raw = f"{module}.{name}"
            if raw not in self._classes:
                attrs = {"qualname": qualname, "raw_qualname": raw}
                self._classes[raw] = type(name, (_ScriptObject,), attrs)
            return self._classes[raw]
        if module == "torch" and name in _TS_STORAGES:
            return _StorageType(_TS_STORAGES[name])
        if (module, name) in self._functions:
            return self._functions[module, name]
        raise SpecError(
            f"{self._path}: refused: the TorchScript archive references "
            f"{_python3_name(module, name)}, which lstmfpga does not read"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        raw = self._read_record(f"data/{key}")
        itemsize = 2 if storage_type.dtype == _BFLOAT16 else np.dtype(storage_type.dtype).itemsize
        if not isinstance(numel, int) or len(raw) < numel * itemsize:
            raise pickle.UnpicklingError(f"storage {key} is shorter than {numel!r} element(s)")
        return _Storage(key, storage_type.dtype, raw[: numel * itemsize])

    def _rebuild_tensor(self, storage, offset, size, stride, *_rest):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("tensor without storage")
        for value in (offset, *size, *stride):
            if not isinstance(value, int):
                raise pickle.UnpicklingError(f"tensor geometry must be integers, not {value!r}")
        return _strided_copy(
            f"storage {storage.key}", storage.raw, storage.dtype, tuple(size), tuple(stride), offset
        )


#: Largest total size of the TorchScript source (``code/``) read from one archive.
MAX_CODE_BYTES = 16 << 20


def _read_torchscript(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray], str | None]:
    """``({module path: qualname}, {tensor name: array}, root head_mode)`` of an archive."""
    modules, tensors, root, _ = _read_torchscript_program(path)
    declared = root.state.get("head_mode")
    return modules, tensors, declared if isinstance(declared, str) else None


def _read_torchscript_program(path: Path):
    """``(modules, tensors, root ScriptModule, {code member: source bytes})`` of an archive."""
    root_dir, _ = _zip_names(path)
    try:
        with zipfile.ZipFile(path) as archive:

            def read_record(name: str) -> bytes:
                try:
                    return archive.read(f"{root_dir}/{name}")
                except KeyError:
                    raise SpecError(f"{path}: TorchScript archive is missing {name}") from None

            byteorder = f"{root_dir}/byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
                raise SpecError(f"{path}: big-endian TorchScript archives are not supported")
            unpickler = _TorchScriptUnpickler(read_record("data.pkl"), read_record, path)
            top = unpickler.load()
            code, total = {}, 0
            for info in archive.infolist():
                relative = info.filename[len(root_dir) + 1 :]
                if relative.endswith(("pkl", ".pt")) and relative != "data.pkl":
                    _check_tensor_pickle(path, relative, archive.read(info))
                if relative.startswith("code/") and relative.endswith(".py"):
                    total += info.file_size
                    if total > MAX_CODE_BYTES:
                        raise SpecError(
                            f"{path}: TorchScript code is more than {MAX_CODE_BYTES} bytes"
                        )
                    code[relative.removeprefix("code/")] = archive.read(info)
    except SpecError:
        raise
    except Exception as error:  # malformed pickles raise anything
        raise SpecError(f"{path}: corrupt TorchScript archive ({_first_line(error)})") from None
    if not isinstance(top, _ScriptObject):
        raise SpecError(f"{path}: TorchScript archive does not hold a module")

    modules: dict[str, str] = {}
    tensors: dict[str, np.ndarray] = {}
    records: dict[int, ScriptModule] = {}
    pending = [("", top)]
    while pending:
        prefix, obj = pending.pop()
        if id(obj) in records:
            continue
        state = getattr(obj, "state", {})
        if not isinstance(state, dict):
            raise SpecError(
                f"{path}: TorchScript object {prefix!r} ({obj.qualname}) has custom state: "
                f"{SUPPORTED}"
            )
        record = ScriptModule(prefix, obj.qualname, obj.raw_qualname)
        records[id(obj)] = record
        modules[prefix] = obj.qualname
        own = []
        for name, value in state.items():
            full = f"{prefix}.{name}" if prefix else str(name)
            if isinstance(value, np.ndarray):
                tensors[full] = value
                own.append(str(name))
            elif isinstance(value, _ScriptObject):
                pending.append((full, value))
            else:
                record.state[str(name)] = value
        record.tensors = frozenset(own)
    _link_children(top, records)
    return modules, tensors, records[id(top)], code


def _link_children(top: _ScriptObject, records: dict[int, ScriptModule]) -> None:
    pending, seen = [top], set()
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for name, value in obj.state.items():
            if isinstance(value, _ScriptObject):
                records[id(obj)].children[str(name)] = records[id(value)]
                pending.append(value)


# -- torch.export archives ---------------------------------------------------------------------
#: ``torch._export.serde.schema.ScalarType`` codes of the floating-point dtypes read here.
_PT2_DTYPES = {6: "<f2", 7: "<f4", 8: "<f8", 13: _BFLOAT16}
_PT2_DTYPE_NAMES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64",
                    9: "complex32", 10: "complex64", 11: "complex128", 12: "bool"}  # fmt: skip
_PT2_MODEL = "model"


def _as_int(value, what: str) -> int:
    if isinstance(value, dict) and isinstance(value.get("as_int"), int):
        return value["as_int"]
    raise SpecError(f"{what} must be a static integer, not {value!r}")


def _read_export_archive(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray], dict]:
    """``({module path: qualname}, {weight name: array}, program)`` of a ``.pt2`` archive.

    ``program`` is the parsed JSON of ``models/model.json`` (the graph, never evaluated).
    """
    root, names = _zip_names(path)
    try:
        with zipfile.ZipFile(path) as archive:

            def read(name: str) -> bytes:
                try:
                    return archive.read(f"{root}/{name}")
                except KeyError:
                    raise SpecError(f"{path}: torch.export archive is missing {name}") from None

            def read_json(name: str):
                try:
                    return files.parse_json(read(name), f"{path}: {name}")
                except files.FileFormatError as error:
                    raise SpecError(str(error)) from None

            archive_format = read("archive_format").decode(errors="replace").strip()
            version = read("archive_version").decode(errors="replace").strip()
            if archive_format != "pt2" or version != "0":
                raise SpecError(
                    f"{path}: torch.export archive format {archive_format!r} version "
                    f"{version!r} is not supported (lstmfpga reads 'pt2' version '0')"
                )
            if "byteorder" in names and read("byteorder").strip() != b"little":
                raise SpecError(f"{path}: big-endian torch.export archives are not supported")
            models = sorted(n for n in names if n.startswith("models/") and n.endswith(".json"))
            if models != [f"models/{_PT2_MODEL}.json"]:
                raise SpecError(
                    f"{path}: expected one exported program models/{_PT2_MODEL}.json, "
                    f"found {models}"
                )
            program = read_json(f"models/{_PT2_MODEL}.json")
            for name in sorted(names):
                if name.endswith((".pkl", ".pt")):
                    _check_pt2_pickle(path, name, read(name))
            _check_symbolic_expressions(path, program)
            weights_config = read_json(f"data/weights/{_PT2_MODEL}_weights_config.json")
            constants_config = read_json(f"data/constants/{_PT2_MODEL}_constants_config.json")

            constants = (
                constants_config.get("config") if isinstance(constants_config, dict) else None
            )
            if constants:
                listed = ", ".join(repr(k) for k in constants)
                raise SpecError(
                    f"{path}: the exported program holds constant(s) {listed}: {SUPPORTED}"
                )
            config = weights_config.get("config") if isinstance(weights_config, dict) else None
            if not isinstance(config, dict):
                raise SpecError(f"{path}: malformed weights config")
            tensors = {}
            for fqn, entry in config.items():
                tensors[fqn] = _read_export_weight(path, fqn, entry, read)
    except SpecError:
        raise
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, AttributeError) as error:
        raise SpecError(f"{path}: corrupt torch.export archive ({_first_line(error)})") from None
    if not isinstance(program, dict):
        raise SpecError(f"{path}: malformed exported program (not a JSON object)")
    return _export_modules(path, program), tensors, program


def _check_pt2_pickle(path: Path, name: str, data: bytes) -> None:
    """A ``.pt2`` pickle member (sample inputs): a ``torch.save`` zip or a plain pickle, whose
    pickles may only rebuild tensors (``torch.export.load`` would unpickle it)."""
    if not data.startswith(b"PK"):
        _check_tensor_pickle(path, name, data)
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            files.check_zip_members(inner, f"{path}: {name}")
            for info in inner.infolist():
                if info.filename.endswith(".pkl"):
                    _check_tensor_pickle(path, f"{name}/{info.filename}", inner.read(info))
    except SpecError:
        raise
    except files.FileFormatError as error:
        raise SpecError(str(error)) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise SpecError(f"{path}: {name} is a corrupt zip ({_first_line(error)})") from None


#: Names a symbolic-shape expression of a ``.pt2`` graph may use (sympy's ``srepr`` form and
#: torch's shape functions). ``torch.export.load`` evaluates these strings; lstmfpga never does,
#: and refuses archives whose expressions are anything else (they could be code).
_SYMPY_NAMES = frozenset(
    "Symbol Integer Rational Float Mul Add Pow Mod Max Min Abs FloorDiv CeilToInt FloorToInt "
    "TruncToInt RoundToInt CleanDiv IntTrueDiv FloatTrueDiv PythonMod ModularIndexing "
    "Eq Ne Lt Le Gt Ge StrictLessThan LessThan StrictGreaterThan GreaterThan And Or Not "
    "true false oo S Identity ToFloat".split()
)
_SYMBOL_NAME = re.compile(r"^[a-z]+[0-9]+$")


def _check_symbolic_expressions(path: Path, program) -> None:
    pending = [program]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "expr_str":
                    _check_expression(path, item)
                else:
                    pending.append(item)
        elif isinstance(value, list):
            pending.extend(value)
    guards = program.get("guards_code") if isinstance(program, dict) else None
    if guards:
        raise SpecError(f"{path}: refused: the exported program carries guard code")


def _check_expression(path: Path, text) -> None:
    def refuse(why: str) -> SpecError:
        return SpecError(
            f"{path}: refused: symbolic shape expression {str(text)[:60]!r} {why} (only plain "
            f"sympy expressions are accepted; lstmfpga never evaluates them)"
        )

    if not isinstance(text, str) or len(text) > 10_000:
        raise refuse("is not a short string")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise refuse("does not parse") from None
    allowed = (ast.Expression, ast.Call, ast.Constant, ast.keyword, ast.Load, ast.BinOp,
               ast.UnaryOp, ast.operator, ast.unaryop)  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in _SYMPY_NAMES and not _SYMBOL_NAME.match(node.id):
                raise refuse(f"uses the name {node.id!r}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise refuse("calls something other than a sympy class")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | str | bool) or (
                isinstance(node.value, str) and not _SYMBOL_NAME.match(node.value)
            ):
                raise refuse(f"holds the constant {node.value!r:.30}")
        elif not isinstance(node, allowed):
            raise refuse(f"holds a {type(node).__name__}")


def _read_export_weight(path: Path, fqn: str, entry, read: Callable[[str], bytes]) -> np.ndarray:
    if not isinstance(entry, dict) or not isinstance(entry.get("tensor_meta"), dict):
        raise SpecError(f"{path}: malformed weights config entry {fqn!r}")
    if entry.get("use_pickle"):
        raise SpecError(
            f"{path}: refused: weight {fqn!r} is stored as a pickle (only raw tensor payloads "
            f"are read)"
        )
    meta = entry["tensor_meta"]
    dtype = _PT2_DTYPES.get(meta.get("dtype"))
    if dtype is None:
        code = meta.get("dtype")
        label = _PT2_DTYPE_NAMES.get(code) if isinstance(code, int) else None
        label = label or f"dtype code {code!r:.20}"
        raise SpecError(f"{path}: weight {fqn!r} must be floating-point, not {label}")
    sizes = tuple(_as_int(v, f"{fqn} size") for v in meta.get("sizes", ()))
    strides = tuple(_as_int(v, f"{fqn} stride") for v in meta.get("strides", ()))
    offset = _as_int(meta.get("storage_offset"), f"{fqn} storage offset")
    name = entry.get("path_name")
    if not isinstance(name, str) or not re.fullmatch(r"weight_\d+", name):
        raise SpecError(f"{path}: weight {fqn!r} has an invalid payload name {name!r}")
    return _strided_copy(
        f"{path}: weight {fqn!r}", read(f"data/weights/{name}"), dtype, sizes, strides, offset
    )


def _export_modules(path: Path, program) -> dict[str, str]:
    """``{module path: qualname}`` from the ``nn_module_stack`` metadata of the graph nodes."""
    try:
        nodes = program["graph_module"]["graph"]["nodes"]
        stacks = {(node.get("metadata") or {}).get("nn_module_stack") for node in nodes}
    except (KeyError, TypeError, AttributeError):
        raise SpecError(f"{path}: malformed exported program (no graph nodes)") from None
    modules: dict[str, str] = {}
    for stack in stacks:
        if not stack:
            continue
        if not isinstance(stack, str):
            raise SpecError(f"{path}: malformed nn_module_stack {stack!r}")
        for item in stack.split(";"):
            parts = item.split(",")
            if len(parts) != 3:
                raise SpecError(f"{path}: malformed nn_module_stack entry {item!r}")
            modules[parts[1]] = parts[2]
    return modules
