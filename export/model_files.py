"""Model files → :class:`ModelSpec`: which kind of file it is, and loading it safely.

:func:`detect_format` decides from the content (never the extension) whether a file is a
``state_dict`` saved with ``torch.save``, a TorchScript archive (``torch.jit.save``) or a
``torch.export`` program (``torch.export.save``, ``.pt2``); :func:`load_model` reads it.

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
* TorchScript archives are read by :mod:`lstmfpga.export.archives` and ``.pt2`` archives by
  :mod:`lstmfpga.export.pt2_archive`, never by ``torch.jit.load`` / ``torch.export.load``;
  their graphs are checked (never run) by :mod:`lstmfpga.export.forward_check`.

Tests pin both readers against ``torch.jit.load`` / ``torch.export.load`` on trusted files.
"""

from __future__ import annotations

import collections
import dataclasses
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import files
from .archives import first_line, read_torchscript_program, zip_names
from .forward_check import (
    FORWARD_SUPPORTED,
    LSTMSignature,
    check_export_graph,
    check_torchscript,
    parse_classes,
)
from .pt2_archive import read_export_archive
from .spec import HeadSpec, ModelSpec, SpecError
from .state_dict_layout import LSTM_KEY
from .structure import (
    check_head_given,
    check_head_mode,
    check_structure,
    entries_from_tensor_owners,
)
from .torch_loader import spec_from_state_dict

__all__ = ["detect_format", "load_model", "load_state_dict_file"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy torch.save file


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
    _, names = zip_names(path)
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


def load_model(path: str | Path, head: str | None = None, cell: str | None = None) -> ModelSpec:
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

    ``head`` and ``cell`` are as in :func:`from_state_dict` (an archive's module structure
    names its cell, and its graph must call ``aten::lstm`` or ``aten::gru`` to match).
    ``dropout`` is recorded as ``0.0`` (files do not hold it in a form read here). Raises
    :class:`SpecError` for a missing, corrupt, refused or unsupported file; its message starts
    with ``"{path}: "``.
    """
    check_head_mode("head", head)
    path = Path(path)
    kind = detect_format(path)
    try:
        return _load_model(path, kind, head, cell)
    except SpecError as error:
        if str(error).startswith(f"{path}:"):
            raise
        raise SpecError(f"{path}: {error}") from None


def _load_model(path: Path, kind: str, head: str | None, cell: str | None) -> ModelSpec:
    if kind == "state_dict":
        state_dict = load_state_dict_file(path)
        return spec_from_state_dict(state_dict, head, source=f"state_dict {path.name}", cell=cell)
    elif kind == "torchscript":
        modules, tensors, root, code = read_torchscript_program(path)
        declared = root.state.get("head_mode")
        declared = declared if isinstance(declared, str) else None
        model = modules.get("", "model")
        entries = entries_from_tensor_owners(modules, tensors)
        _, found, head_path = check_structure(entries, model)
        check_head_mode("head_mode", declared)
        check_head_given(head, declared, head_path is not None, model)
        spec = spec_from_state_dict(
            tensors,
            head or declared,
            source=f"TorchScript archive {path.name}",
            cell=_archive_cell(cell, found),
        )
        classes = parse_classes(str(path), code)
        mode = check_torchscript(str(path), root, classes, _graph_signature(spec, tensors))
        return _with_graph_head(path, spec, mode, head)
    elif kind == "torch.export":
        modules, tensors, program = read_export_archive(path)
        found = None
        if modules:  # graphs without nn_module_stack metadata: the state_dict checks remain
            model = modules.get("", "model")
            _, found, _ = check_structure(entries_from_tensor_owners(modules, tensors), model)
        spec = spec_from_state_dict(
            tensors,
            head,
            source=f"torch.export program {path.name}",
            cell=_archive_cell(cell, found),
        )
        mode = check_export_graph(str(path), program, _graph_signature(spec, tensors))
        return _with_graph_head(path, spec, mode, head)
    else:
        raise AssertionError(f"unhandled model file kind {kind!r}")  # pragma: no cover


def _archive_cell(given: str | None, found: str | None) -> str | None:
    """The cell of an archive: its module's (``found``), which a given ``cell`` must match."""
    if given is not None and found is not None and given != found:
        raise SpecError(f"cell {given!r} given, but the archive holds an nn.{found.upper()}")
    return given or found


def _graph_signature(spec: ModelSpec, tensors: Mapping[str, object]) -> LSTMSignature:
    """The parameter names the graph's LSTM and head calls must use, from the file's tensors."""
    prefix = ""
    for key in tensors:
        match = LSTM_KEY.match(key)
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
    rest = [key for key in tensors if LSTM_KEY.match(key) is None]
    head = None
    if spec.head is not None:
        weight = next(k for k in rest if k.rpartition(".")[2] == "weight")
        bias = weight[: -len("weight")] + "bias"
        head = (weight, bias if bias in tensors else None)
    return LSTMSignature(spec.num_layers, spec.bidirectional, spec.bias, params, head, spec.cell)


def _with_graph_head(path: Path, spec: ModelSpec, mode: str | None, head: str | None) -> ModelSpec:
    """``spec`` with the head mode the graph computes; a contradicting ``head`` is refused."""
    if mode is None:
        if spec.head is not None:
            raise SpecError(
                f"{path}: unsupported forward: the nn.Linear head is never applied to the "
                f"{spec.cell.upper()} output; {FORWARD_SUPPORTED}"
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
                f"{path}: not a readable PyTorch file (corrupt pickle: {first_line(error)})"
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


def load_state_dict_file(path: Path) -> dict:
    """The tensors of a ``torch.save`` state_dict file, read with ``weights_only=True``
    (legacy storages and tensor geometry checked first; see the module docstring)."""
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
            f"{path}: not a readable PyTorch file (torch.load failed: {first_line(error)})"
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


_load_state_dict_file = load_state_dict_file  # the name export.brevitas_loader imports
