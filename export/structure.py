"""Which modules a PyTorch model may hold, and which head modes it may declare.

Modules are classified by type, never by running them (the rules are in
:mod:`lstmfpga.export.torch_loader`'s docstring). A module is a :class:`ModuleEntry`: its
dotted path, its class's qualified name and the tensors it owns directly; live modules
(:mod:`~lstmfpga.export.torch_loader`) and archives (:mod:`~lstmfpga.export.model_files`)
both build entries and call :func:`check_structure`. No torch import here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .spec import HEAD_MODES, SpecError

#: What lstmfpga reads from a PyTorch model; ends the messages refusing anything else.
SUPPORTED = "lstmfpga supports one nn.LSTM or nn.GRU and an optional nn.Linear head"

_LSTM_QUALNAME = "torch.nn.modules.rnn.LSTM"
_GRU_QUALNAME = "torch.nn.modules.rnn.GRU"
#: The recurrent module kinds and their labels.
RNN_KINDS = {"lstm": "nn.LSTM", "gru": "nn.GRU"}
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


# -- head mode ---------------------------------------------------------------------------------
def check_head_mode(name: str, value) -> str | None:
    if value is not None and value not in HEAD_MODES:
        raise SpecError(f"{name} must be 'last' or 'all', not {value!r}")
    return value


# -- module structure --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModuleEntry:
    """One module of a model, as far as the classification needs: see the module docstring."""

    path: str  # dotted path, "" for the root
    qualname: str  # "torch.nn.modules.rnn.LSTM", "__main__.MyModel", ...
    kind: str | None  # "lstm", "gru", "linear", or None (decided from qualname)
    own_tensors: tuple[str, ...]  # names of parameters/buffers owned directly


def _describe_module(entry: ModuleEntry) -> str:
    short = entry.qualname.rsplit(".", 1)[-1]
    # A torch.ao quantized "LSTM" must not read like the supported nn.LSTM.
    label = entry.qualname if short in ("LSTM", "GRU", "Linear") else short
    where = f"layer {entry.path!r}" if entry.path else "model"
    return f"{where} ({label})"


def check_structure(entries: Iterable[ModuleEntry], model: str) -> tuple[str, str, str | None]:
    """Classify modules; return ``(rnn path, cell, head path or None)`` or raise
    :class:`SpecError`. ``cell`` is ``"lstm"`` or ``"gru"``: the kind of the one recurrent
    module (``nn.LSTM`` or ``nn.GRU``)."""
    rnns, linears = [], []
    for entry in entries:
        if entry.kind in RNN_KINDS:
            rnns.append(entry)
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
    if not rnns:
        raise SpecError(f"no nn.LSTM or nn.GRU found in {model}: {SUPPORTED}")
    if len(rnns) > 1:
        paths = ", ".join(repr(e.path) for e in rnns)
        labels = "/".join(sorted({RNN_KINDS[e.kind] for e in rnns}, reverse=True))
        raise SpecError(f"found {len(rnns)} {labels} modules ({paths}): {SUPPORTED}")
    if len(linears) > 1:
        paths = ", ".join(repr(p) for p in linears)
        raise SpecError(f"found {len(linears)} nn.Linear modules ({paths}): {SUPPORTED}")
    return rnns[0].path, rnns[0].kind, (linears[0] if linears else None)


def _qualname_kind(qualname: str) -> str | None:
    kinds = {_LSTM_QUALNAME: "lstm", _GRU_QUALNAME: "gru", _LINEAR_QUALNAME: "linear"}
    return kinds.get(qualname)


def entries_from_tensor_owners(
    modules: Mapping[str, str], keys: Iterable[str]
) -> list[ModuleEntry]:
    """Entries for ``{path: qualname}``, owning the ``keys`` whose parent path they are."""
    owned: dict[str, list[str]] = {}
    for key in keys:
        parent, _, name = key.rpartition(".")
        owned.setdefault(parent, []).append(name)
    return [
        ModuleEntry(path, qualname, _qualname_kind(qualname), tuple(owned.get(path, ())))
        for path, qualname in modules.items()
    ]


def check_head_given(head: str | None, declared: str | None, has_head: bool, model: str):
    """A head mode given (argument) or declared (``head_mode``) needs an nn.Linear head."""
    if has_head:
        return
    if head is not None:
        raise SpecError(f"head={head!r} given, but {model} has no nn.Linear head")
    if declared is not None:
        raise SpecError(f"head_mode={declared!r} declared, but {model} has no nn.Linear head")
