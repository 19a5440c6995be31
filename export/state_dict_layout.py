"""Which tensors of a PyTorch state_dict are which: the LSTM or GRU architecture that its
keys and shapes imply, and its ``nn.Linear`` head's keys (no torch: only names and shapes).

:func:`recurrent_keys` groups the recurrent keys (``{prefix}{kind}_l{layer}[_reverse]``,
:data:`LSTM_KEY`) by layer and direction, :func:`architecture_from_shapes` reads the options
(layers, directions, bias, projection, sizes, the cell type) from them and layer 0's shapes,
and :func:`find_head` picks the head among the other keys. Everything that does not fit is a
one-line :class:`~lstmfpga.export.spec.SpecError` naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .spec import SpecError
from .structure import SUPPORTED

__all__ = [
    "LSTM_KEY",
    "Architecture",
    "RecurrentKeys",
    "architecture_from_shapes",
    "find_head",
    "recurrent_keys",
]

#: A PyTorch LSTM or GRU parameter name: ``{prefix}{kind}_l{layer}[_reverse]``.
LSTM_KEY = re.compile(
    r"^(?P<prefix>(?:.*\.)?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
    r"_l(?P<layer>0|[1-9][0-9]*)(?P<reverse>_reverse)?$"
)


#: ``{(layer, direction): {kind: state_dict key}}`` of the LSTM or GRU tensors.
RecurrentKeys = dict[tuple[int, int], dict[str, str]]


@dataclass(frozen=True)
class Architecture:
    """The LSTM or GRU options a state_dict's keys and shapes imply."""

    input_size: int
    hidden_size: int
    output_size: int  # hidden_size, or proj_size with a projection
    num_layers: int
    bidirectional: bool
    bias: bool
    proj_size: int
    cell: str = "lstm"

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1


def recurrent_keys(state_dict: Mapping) -> tuple[RecurrentKeys, str]:
    """The LSTM or GRU keys by layer and direction, and their common prefix (``""``,
    ``"lstm."``)."""
    lstm: RecurrentKeys = {}
    prefixes = set()
    for key in state_dict:
        match = LSTM_KEY.match(key)
        if match is None:
            continue
        prefixes.add(match["prefix"])
        cell = lstm.setdefault((int(match["layer"]), 1 if match["reverse"] else 0), {})
        cell[match["kind"]] = key
    if not lstm:
        found = ", ".join(repr(k) for k in list(state_dict)[:4]) or "nothing"
        raise SpecError(
            f"state_dict holds no LSTM or GRU weights (expected keys like 'weight_ih_l0' or "
            f"'lstm.weight_ih_l0', found {found}): {SUPPORTED}"
        )
    if len(prefixes) > 1:
        names = ", ".join(repr(p.rstrip(".")) for p in sorted(prefixes))
        raise SpecError(
            f"state_dict holds recurrent weights of several modules ({names}): {SUPPORTED}"
        )
    return lstm, prefixes.pop()


def architecture_from_shapes(
    lstm: RecurrentKeys,
    shapes: Mapping[str, tuple[int, ...]],
    prefix: str,
    cell: str | None = None,
) -> Architecture:
    """Layers, directions, bias and projection from the keys; sizes from layer 0's shapes;
    the cell ``cell``, or inferred (see :func:`from_state_dict`)."""
    num_layers = 1 + max(layer for layer, _ in lstm)
    missing_layers = sorted(set(range(num_layers)) - {layer for layer, _ in lstm})
    if missing_layers:
        raise SpecError(
            f"state_dict has layers up to {num_layers - 1} but no weights for "
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
    key, output_size = lstm[0, 0]["weight_hh"], w_hh[1]
    if cell is None:
        cell = _infer_cell(key, w_hh, projection)
    if cell == "gru":
        hidden_size = _gru_hidden_size(lstm, key, w_hh)
        projection = False
    else:
        hidden_size = _lstm_hidden_size(key, w_hh, projection)
    return Architecture(
        input_size=w_ih[1],
        hidden_size=hidden_size,
        output_size=output_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        proj_size=output_size if projection else 0,
        cell=cell,
    )


def _lstm_hidden_size(key: str, w_hh: tuple[int, int], projection: bool) -> int:
    """An LSTM's hidden size: ``weight_hh`` is ``(4*hidden, hidden or proj_size)``."""
    rows, output_size = w_hh
    hint = ""
    if not projection and rows == 3 * output_size:
        hint = " (3*hidden rows: a GRU?)"
    elif not projection and rows == output_size:
        hint = " (hidden rows: an RNN?)"
    if rows == 0 or rows % 4:
        raise SpecError(f"{key} must have 4*hidden_size rows (gates i, f, g, o), not {rows}{hint}")
    hidden_size = rows // 4
    if not projection and output_size != hidden_size:
        raise SpecError(
            f"{key} has shape {w_hh}, but an LSTM without "
            f"projection has weight_hh of shape (4*hidden, hidden){hint}"
        )
    return hidden_size


def _infer_cell(key: str, w_hh: tuple[int, int], projection: bool) -> str:
    """``"lstm"`` or ``"gru"`` from ``weight_hh_l0``'s shape (see :func:`from_state_dict`)."""
    rows, cols = w_hh
    if projection or (cols and rows == 4 * cols):
        return "lstm"
    if cols and rows == 3 * cols:
        return "gru"
    if rows and rows % 12 == 0:
        raise SpecError(
            f"{key} has shape {w_hh}, which is neither an LSTM's (4*hidden, hidden) nor a "
            f"GRU's (3*hidden, hidden): say which it is with --cell lstm or --cell gru"
        )
    return "lstm"


def _gru_hidden_size(lstm: RecurrentKeys, key: str, w_hh: tuple[int, int]) -> int:
    """A GRU's hidden size: no projection, ``weight_hh`` of shape ``(3*hidden, hidden)``."""
    rows, hidden_size = w_hh
    for cell in lstm.values():
        if "weight_hr" in cell:
            raise SpecError(f"{cell['weight_hr']} given, but a GRU has no projection")
    hint = " (4*hidden rows: an LSTM?)" if rows == 4 * hidden_size else ""
    if hidden_size == 0 or rows != 3 * hidden_size:
        raise SpecError(
            f"{key} has shape {w_hh}, but a GRU has weight_hh of shape (3*hidden, hidden) "
            f"(gates r, z, n){hint}"
        )
    return hidden_size


def find_head(
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
