"""The abstract values and data flow the forward checkers walk (nothing from a file runs).

:class:`Flow` follows abstract tensors (:class:`Val`: ``the model input``, ``the LSTM output
sequence, time on dim 1``, ``h_n``, ...) through the ops of a model's ``forward`` and refuses
anything a :class:`~lstmfpga.export.spec.ModelSpec` cannot represent; the TorchScript reader
(:mod:`lstmfpga.export.forward_check`) and the ``.pt2`` reader
(:mod:`lstmfpga.export.forward_export`) feed it. The rules are in
:mod:`lstmfpga.export.forward_check`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .spec import SpecError

FORWARD_SUPPORTED = (
    "lstmfpga exports only lstm(x) or gru(x) -> optional last timestep (y[:, -1], "
    "y[-1] time-major, h_n[-1]) -> optional nn.Linear"
)
BIG = 2**62  # "to the end" in a slice
MAX_DEPTH = 32  # nested module calls


@dataclass(frozen=True)
class LSTMSignature:
    """What the graph's LSTM (or GRU) call must match: the weights read from the same file."""

    num_layers: int
    bidirectional: bool
    bias: bool
    params: tuple[str, ...]  # parameter names in PyTorch's flat-weights order
    head: tuple[str, str | None] | None  # (weight, bias) names of the nn.Linear head
    cell: str = "lstm"  # "lstm": the graph calls aten::lstm; "gru": aten::gru

    @property
    def op(self) -> str:
        return f"aten::{self.cell}"


@dataclass(frozen=True)
class Val:
    """An abstract tensor: ``kind`` is one of the names below."""

    kind: str  # input, state, zeros, seq, last, h_n, c_n, head, param, opaque
    time_dim: int | None = None  # seq: which dim is time
    mode: str | None = None  # head: "last" or "all"
    name: str = ""  # param: its name; opaque: what it is

    def describe(self) -> str:
        return {
            "input": "the model input",
            "state": "an initial-state input",
            "zeros": "a zero tensor",
            "seq": "the LSTM output sequence",
            "last": "the last timestep",
            "h_n": "h_n",
            "c_n": "c_n",
            "head": "the nn.Linear output",
            "param": f"parameter {self.name!r}",
        }.get(self.kind, self.name or "a computed value")


OPAQUE = Val("opaque", name="a computed scalar")


class Flow:
    """The semantics of the accepted ops on abstract values (shared by both readers)."""

    def __init__(self, where: str, lstm: LSTMSignature):
        self.where = where
        self.lstm_sig = lstm
        self.lstm_calls = 0
        self.linear_calls = 0

    def refuse(self, op: str, detail: str = "") -> SpecError:
        detail = f" {detail}" if detail else ""
        return SpecError(f"{self.where}: unsupported forward: {op}{detail}; {FORWARD_SUPPORTED}")

    def tensor(self, op: str, value, position: str = "input") -> Val:
        if not isinstance(value, Val) or value.kind == "opaque":
            raise self.refuse(op, f"on {describe(value)} as its {position}")
        return value

    def lstm(self, op: str, x, hx, params, flags: Mapping[str, object]) -> tuple[Val, ...]:
        """``aten::lstm`` or ``aten::gru`` (``op``): ``(seq, h_n, c_n)``, or ``(seq, h_n)``
        for a GRU, whose ``hx`` is one tensor rather than ``(h0, c0)``."""
        sig = self.lstm_sig
        if op != sig.op:
            weights = "an nn.GRU's" if sig.cell == "gru" else "an nn.LSTM's"
            raise self.refuse(op, f"(the file's recurrent weights are {weights})")
        self.lstm_calls += 1
        if self.lstm_calls > 1:
            raise self.refuse(op, f"(the {sig.cell.upper()} is applied twice)")
        x = self.tensor(op, x)
        if x.kind == "head":
            raise self.refuse(op, "(an nn.Linear before the LSTM)")
        if x.kind != "input":
            raise self.refuse(op, f"on {x.describe()} (the LSTM must read the model input)")
        if hx is not None and not (isinstance(hx, Val) and hx.kind == "state"):
            states = list(hx) if isinstance(hx, list | tuple) else [hx]
            if len(states) != (1 if sig.cell == "gru" else 2) or any(
                not isinstance(s, Val) or s.kind not in ("zeros", "state") for s in states
            ):
                raise self.refuse(op, "with initial states computed inside forward")
        if params is not None:
            if not isinstance(params, list | tuple):
                raise self.refuse(op, f"with weights {describe(params)}")
            names = [p.name if isinstance(p, Val) and p.kind == "param" else None for p in params]
            if tuple(names) != sig.params:
                raise self.refuse(op, "with weights other than the LSTM's own, in order")
        expected = {"has_biases": sig.bias, "num_layers": sig.num_layers}
        expected["bidirectional"] = sig.bidirectional
        for key, value in expected.items():
            if key in flags and flags[key] != value:
                raise self.refuse(op, f"with {key}={flags[key]!r}, but its weights say {value!r}")
        batch_first = flags.get("batch_first")
        if not isinstance(batch_first, bool):
            raise self.refuse(op, f"with batch_first={batch_first!r}")
        seq = Val("seq", time_dim=1 if batch_first else 0)
        if sig.cell == "gru":
            return seq, Val("h_n")
        return seq, Val("h_n"), Val("c_n")

    def linear(self, op: str, x, weight, bias) -> Val:
        head = self.lstm_sig.head
        names = (
            weight.name if isinstance(weight, Val) and weight.kind == "param" else None,
            bias.name if isinstance(bias, Val) and bias.kind == "param" else None,
        )
        if head is None or names != tuple(head):
            raise self.refuse(op, "with weights other than the nn.Linear head's")
        x = self.tensor(op, x)
        self.linear_calls += 1
        if self.linear_calls > 1:
            raise self.refuse(op, "(the nn.Linear head is applied twice)")
        if x.kind in ("input", "state"):
            raise self.refuse(op, "(an nn.Linear before the LSTM)")
        if x.kind == "last":
            return Val("head", mode="last")
        if x.kind == "seq":
            return Val("head", mode="all", time_dim=x.time_dim)
        raise self.refuse(op, f"on {x.describe()}")

    def select(self, op: str, x, dim, index) -> Val:
        x = self.tensor(op, x)
        if not isinstance(dim, int) or not isinstance(index, int):
            raise self.refuse(op, f"with a computed dim/index ({dim!r}, {index!r})")
        if x.kind == "seq":
            dim = dim + 3 if dim < 0 else dim
            if dim != x.time_dim:
                what = "features" if dim == 2 else "batch"
                raise self.refuse(op, f"selecting index {index} of the {what} dimension {dim}")
            if index != -1:
                raise self.refuse(op, f"selecting timestep {index} (only the last, -1, is)")
            return Val("last")
        if x.kind == "h_n" and dim in (0, -3):
            sig = self.lstm_sig
            layers = sig.num_layers * (2 if sig.bidirectional else 1)
            if sig.bidirectional:
                raise self.refuse(op, f"selecting h_n[{index}] of a bidirectional LSTM")
            if index not in (-1, layers - 1):
                raise self.refuse(op, f"selecting h_n[{index}] (only the last layer, -1, is)")
            return Val("last")
        raise self.refuse(op, f"selecting index {index} of dim {dim} of {x.describe()}")

    def slice(self, op: str, x, dim, start, end, step) -> Val:
        x = self.tensor(op, x)
        full = start in (None, 0) and step in (None, 1) and (end is None or is_big(end))
        if not full:
            raise self.refuse(op, f"slicing [{start}:{end}:{step}] of dim {dim}")
        return x

    def transpose(self, op: str, x, dims: Sequence) -> Val:
        x = self.tensor(op, x)
        dims = list(dims) if isinstance(dims, list | tuple) else []
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise self.refuse(op, f"with computed dims {dims!r:.40}")
        dims = [d + 3 if d < 0 else d for d in dims]
        if x.kind in ("seq", "head") and x.time_dim is not None and sorted(dims) == [0, 1]:
            return Val(x.kind, time_dim=1 - x.time_dim, mode=x.mode)
        raise self.refuse(op, f"transposing dims {list(dims)} of {x.describe()}")

    def identity(self, op: str, x) -> Val:
        x = self.tensor(op, x)
        if x.kind in ("param", "zeros"):
            raise self.refuse(op, f"on {x.describe()}")
        return x

    def result(self, value) -> str | None:
        """The head mode (``None``: no head) of what ``forward`` returns."""
        if self.lstm_calls == 0:
            raise self.refuse("forward", "never applies the LSTM")
        if isinstance(value, Val) and value.kind == "head":
            return value.mode
        if isinstance(value, Val) and value.kind == "seq":
            return None
        flat = flatten(value)
        kinds = [v.kind if isinstance(v, Val) else None for v in flat]
        if kinds == (["seq", "h_n"] if self.lstm_sig.cell == "gru" else ["seq", "h_n", "c_n"]):
            return None
        raise self.refuse("forward", f"returns {describe(value)}")


def is_big(value) -> bool:
    return isinstance(value, int) and value >= BIG


def flatten(value) -> list:
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in flatten(item)]
    return [value]


def describe(value) -> str:
    if isinstance(value, Val):
        return value.describe()
    if isinstance(value, list | tuple):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return repr(value) if value is None or isinstance(value, bool | int | float | str) else "?"


def malformed_is_refused(where: str, what: str, check: Callable, *args):
    """Run ``check``; a graph shaped unlike any torch writes is refused in one line."""
    try:
        return check(where, *args)
    except SpecError:
        raise
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError) as error:
        raise SpecError(f"{where}: malformed {what} ({type(error).__name__})") from None
