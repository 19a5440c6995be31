"""PyTorch → :class:`ModelSpec`: the only module of lstmfpga that imports torch.

Three entry points, all returning a validated :class:`~lstmfpga.export.spec.ModelSpec` and
raising :class:`~lstmfpga.export.spec.SpecError` (one-line message) for anything they
cannot represent exactly:

* :func:`from_module` — a live ``nn.LSTM`` or ``nn.GRU``, or an ``nn.Module`` holding one of
  them and at most one ``nn.Linear`` head;
* :func:`from_state_dict` — a mapping of parameter names to tensors (or NumPy arrays); the
  architecture is inferred from the key names and shapes
  (:mod:`lstmfpga.export.state_dict_layout`, which needs no torch);
* :func:`~lstmfpga.export.model_files.load_model` — a file: a ``state_dict`` saved with
  ``torch.save``, a TorchScript archive (``torch.jit.save``) or a ``torch.export`` program
  (``torch.export.save``, ``.pt2``); it lives in :mod:`lstmfpga.export.model_files` (which
  also says how files are read safely) and is still importable from here.

What is supported
-----------------
One ``nn.LSTM`` with any of its options (``input_size``, ``hidden_size``, ``num_layers``,
``bias``, ``batch_first``, ``bidirectional``, ``proj_size``, ``dropout``), or one ``nn.GRU``
with any of its options (the same but ``proj_size``; gates ``r, z, n``), and an optional
``nn.Linear`` head applied either to the last timestep (``head="last"``) or to every
timestep (``head="all"``). ``batch_first`` does not appear in the spec (every lstmfpga API
takes ``(batch, seq, features)``); ``dropout`` is recorded but has no effect at inference.

Modules are classified by type, never by running them:

* ``nn.LSTM``, ``nn.GRU`` and ``nn.Linear`` (exact types, or subclasses that do not
  override ``forward``) are the model;
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
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .archives import first_line
from .spec import CELLS, HeadSpec, LayerWeights, ModelSpec, SpecError, shape_options
from .state_dict_layout import (
    Architecture,
    RecurrentKeys,
    architecture_from_shapes,
    find_head,
    recurrent_keys,
)
from .structure import (
    SUPPORTED,
    ModuleEntry,
    check_head_given,
    check_head_mode,
    check_structure,
)

__all__ = ["from_module", "from_state_dict"]


def _live_kind(module: nn.Module, base: type[nn.Module]) -> bool:
    return isinstance(module, base) and type(module).forward is base.forward


def _live_entries(module: nn.Module) -> list[ModuleEntry]:
    entries = []
    for path, sub in module.named_modules():
        cls = type(sub)
        qualname = f"{cls.__module__}.{cls.__qualname__}"
        kind = None
        for base, name in ((nn.LSTM, "lstm"), (nn.GRU, "gru"), (nn.Linear, "linear")):
            if _live_kind(sub, base):
                kind = name
            elif isinstance(sub, base):
                where = f"layer {path!r}" if path else "model"
                raise SpecError(
                    f"unsupported {where} ({cls.__name__}): a subclass of nn.{base.__name__} "
                    f"that overrides forward; {SUPPORTED}"
                )
        own = [n for n, _ in sub.named_parameters(recurse=False)]
        own += [n for n, _ in sub.named_buffers(recurse=False)]
        entries.append(ModuleEntry(path, qualname, kind, tuple(own)))
    return entries


# -- tensors -----------------------------------------------------------------------------------
def _to_float64(name: str, value) -> np.ndarray:
    """A float64 NumPy copy of a floating-point tensor or array."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise SpecError(f"{name} must be a floating-point tensor, not {value.dtype}")
        try:
            return value.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
        except (RuntimeError, NotImplementedError, TypeError) as error:
            raise SpecError(f"{name} cannot be read: {first_line(error)}") from None
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            raise SpecError(f"{name} must be a floating-point array, not {value.dtype}")
        return value.astype(np.float64)
    raise SpecError(f"{name} must be a tensor, not {type(value).__name__}")


def _shape(name: str, value) -> tuple[int, ...]:
    if not isinstance(value, torch.Tensor | np.ndarray):
        raise SpecError(f"state_dict value {name!r} must be a tensor, not {type(value).__name__}")
    return tuple(int(n) for n in value.shape)


# -- state_dict --------------------------------------------------------------------------------
def from_state_dict(
    state_dict: Mapping, head: str | None = None, cell: str | None = None
) -> ModelSpec:
    """Build a :class:`ModelSpec` from an ``nn.LSTM`` or ``nn.GRU`` (+ ``nn.Linear``) state_dict.

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
    cell:
        ``"lstm"``, ``"gru"`` or ``None``: inferred from ``weight_hh_l0`` of shape ``(rows,
        cols)``: an LSTM with a projection (``weight_hr``) or ``rows == 4 * cols``, a GRU
        (no projection) when ``rows == 3 * cols``. A shape that could be a malformed tensor
        of either (``rows`` a multiple of 12) is refused asking for ``cell``; anything else
        is read as an LSTM (and its shape errors name the LSTM's rows).

    Raises :class:`SpecError` for inconsistent shapes, missing tensors, non-float or
    non-finite values, more than one LSTM or head candidate, and unknown keys (named).
    ``dropout`` is not part of a state_dict: the spec records ``0.0``.
    """
    return spec_from_state_dict(state_dict, head, source="state_dict", cell=cell)


def spec_from_state_dict(
    state_dict: Mapping,
    head: str | None,
    *,
    source: str,
    dropout: float = 0.0,
    cell: str | None = None,
) -> ModelSpec:
    """:func:`from_state_dict` with the spec's ``source`` and ``dropout`` given."""
    if cell is not None and cell not in CELLS:
        raise SpecError(f"cell must be 'lstm' or 'gru', not {cell!r:.40}")
    if not isinstance(state_dict, Mapping):
        raise SpecError(f"state_dict must be a mapping, not {type(state_dict).__name__}")
    check_head_mode("head", head)
    for key in state_dict:
        if not isinstance(key, str):
            raise SpecError(f"state_dict keys must be strings, not {key!r}")
    shapes = {key: _shape(key, value) for key, value in state_dict.items()}
    lstm, prefix = recurrent_keys(state_dict)
    arch = architecture_from_shapes(lstm, shapes, prefix, cell)
    head_spec = _head_spec(state_dict, shapes, lstm, arch, head)

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
            for d in range(arch.num_directions)
        )
        for layer in range(arch.num_layers)
    )
    return ModelSpec(
        **shape_options(arch), layers=layers, head=head_spec, dropout=float(dropout), source=source
    )


def _head_spec(
    state_dict: Mapping,
    shapes: Mapping[str, tuple[int, ...]],
    lstm: RecurrentKeys,
    arch: Architecture,
    head: str | None,
) -> HeadSpec | None:
    """The ``nn.Linear`` head among the keys the LSTM does not use, or ``None``."""
    used = {key for cell in lstm.values() for key in cell.values()}
    head_weight, head_bias = find_head(state_dict, shapes, used)
    if head_weight is None:
        if head is not None:
            raise SpecError(f"head={head!r} given, but the model has no nn.Linear head")
        return None
    head_spec = HeadSpec(
        weight=_to_float64(head_weight, state_dict[head_weight]),
        bias=None if head_bias is None else _to_float64(head_bias, state_dict[head_bias]),
        mode=head or "last",
    )
    width = arch.num_directions * arch.output_size
    if shapes[head_weight][1:] != (width,):
        raise SpecError(
            f"head {head_weight} has shape {shapes[head_weight]}, but the "
            f"{arch.cell.upper()} output has {width} features"
        )
    return head_spec


# -- live modules ------------------------------------------------------------------------------
def from_module(module: nn.Module, head: str | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` from a live module (weights copied as float64).

    ``module`` is an ``nn.LSTM`` or ``nn.GRU``, or an ``nn.Module`` whose ``named_modules()``
    hold exactly one of them and at most one ``nn.Linear`` (the head); see the module
    docstring for which other modules are ignored or refused. The head mode is ``head`` if
    given, else the module's ``head_mode`` attribute if it has one, else ``"last"``.
    ``dropout`` is copied from the recurrent module (ignored at inference); ``batch_first``
    does not matter.

    Raises :class:`TypeError` if ``module`` is not an ``nn.Module``, :class:`SpecError` for
    an unsupported structure, a head mode without a head, or non-finite weights.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, not {module!r}")
    check_head_mode("head", head)
    declared = check_head_mode("head_mode", getattr(module, "head_mode", None))
    model = type(module).__name__
    rnn_path, cell, head_path = check_structure(_live_entries(module), model)
    check_head_given(head, declared, head_path is not None, model)
    # Only the recurrent module and the head: every other module was checked to hold no
    # tensors that matter (a loss module's class weights, say, are not part of the model).
    state_dict = {}
    for path in (rnn_path, head_path):
        if path is not None:
            prefix = f"{path}." if path else ""
            for name, value in module.get_submodule(path).state_dict().items():
                state_dict[prefix + name] = value
    rnn = module.get_submodule(rnn_path)
    return spec_from_state_dict(
        state_dict,
        head or declared,
        source=f"torch module {model}",
        dropout=rnn.dropout,
        cell=cell,
    )


def __getattr__(name: str):
    """The file loaders moved to :mod:`lstmfpga.export.model_files`; old imports still work.

    Imported lazily: ``model_files`` imports this module.
    """
    if name in ("detect_format", "load_model", "_load_state_dict_file"):
        from . import model_files

        return getattr(model_files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
