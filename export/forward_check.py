"""What the ``forward`` of a model file computes, read from its graph without running it.

A TorchScript archive stores ``forward`` as Python-like source (``code/__torch__/...py``) and a
``torch.export`` archive as a JSON graph of ATen ops. Both are read here as data: the
TorchScript source is parsed with :func:`ast.parse` (never compiled or executed) and walked by a
small abstract interpreter; the ``.pt2`` graph is walked node by node. Values are abstract
(``the model input``, ``the LSTM output sequence, time on dim 1``, ``h_n``, ...), so nothing is
computed and nothing from the file runs.

The only forwards accepted are the ones a :class:`~lstmfpga.export.spec.ModelSpec` represents
exactly:

* ``lstm(x)`` (optionally with initial states passed straight from the inputs), returning the
  output sequence, or ``(output, (h_n, c_n))`` as ``nn.LSTM`` does: no head;
* the last timestep ``y[:, -1]`` (time on dim 1), ``y[-1]`` (time on dim 0) or ``h_n[-1]``
  (unidirectional LSTM), then ``nn.Linear``: head ``"last"``;
* ``nn.Linear`` on the whole sequence: head ``"all"``.

Between those steps only numerically neutral ops are allowed: ``transpose(0, 1)`` of the
sequence, full slices (``y[:]``), ``contiguous``, dropout (off at inference), ``nn.Identity``.
Anything else (an activation, arithmetic, another timestep, a ``Linear`` before the LSTM, a
view, data-dependent control flow, ...) raises :class:`SpecError` naming the op.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .spec import SpecError

__all__ = ["FORWARD_SUPPORTED", "LSTMSignature", "check_export_graph", "check_torchscript"]

FORWARD_SUPPORTED = (
    "lstmfpga exports only lstm(x) -> optional last timestep (y[:, -1], y[-1] time-major, "
    "h_n[-1]) -> optional nn.Linear"
)
_BIG = 2**62  # "to the end" in a slice
_MAX_DEPTH = 32  # nested module calls


@dataclass(frozen=True)
class LSTMSignature:
    """What the graph's LSTM call must match: the weights read from the same file."""

    num_layers: int
    bidirectional: bool
    bias: bool
    params: tuple[str, ...]  # parameter names in PyTorch's flat-weights order
    head: tuple[str, str | None] | None  # (weight, bias) names of the nn.Linear head


@dataclass(frozen=True)
class _Val:
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


_OPAQUE = _Val("opaque", name="a computed scalar")


class _Flow:
    """The semantics of the accepted ops on abstract values (shared by both readers)."""

    def __init__(self, where: str, lstm: LSTMSignature):
        self.where = where
        self.lstm_sig = lstm
        self.lstm_calls = 0
        self.linear_calls = 0

    def refuse(self, op: str, detail: str = "") -> SpecError:
        detail = f" {detail}" if detail else ""
        return SpecError(f"{self.where}: unsupported forward: {op}{detail}; {FORWARD_SUPPORTED}")

    def tensor(self, op: str, value, position: str = "input") -> _Val:
        if not isinstance(value, _Val) or value.kind == "opaque":
            raise self.refuse(op, f"on {_describe(value)} as its {position}")
        return value

    def lstm(self, op: str, x, hx, params, flags: Mapping[str, object]) -> tuple[_Val, _Val, _Val]:
        self.lstm_calls += 1
        if self.lstm_calls > 1:
            raise self.refuse(op, "(the LSTM is applied twice)")
        x = self.tensor(op, x)
        if x.kind == "head":
            raise self.refuse(op, "(an nn.Linear before the LSTM)")
        if x.kind != "input":
            raise self.refuse(op, f"on {x.describe()} (the LSTM must read the model input)")
        if hx is not None and not (isinstance(hx, _Val) and hx.kind == "state"):
            states = list(hx) if isinstance(hx, list | tuple) else [hx]
            if len(states) != 2 or any(
                not isinstance(s, _Val) or s.kind not in ("zeros", "state") for s in states
            ):
                raise self.refuse(op, "with initial states computed inside forward")
        sig = self.lstm_sig
        if params is not None:
            if not isinstance(params, list | tuple):
                raise self.refuse(op, f"with weights {_describe(params)}")
            names = [p.name if isinstance(p, _Val) and p.kind == "param" else None for p in params]
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
        seq = _Val("seq", time_dim=1 if batch_first else 0)
        return seq, _Val("h_n"), _Val("c_n")

    def linear(self, op: str, x, weight, bias) -> _Val:
        head = self.lstm_sig.head
        names = (
            weight.name if isinstance(weight, _Val) and weight.kind == "param" else None,
            bias.name if isinstance(bias, _Val) and bias.kind == "param" else None,
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
            return _Val("head", mode="last")
        if x.kind == "seq":
            return _Val("head", mode="all", time_dim=x.time_dim)
        raise self.refuse(op, f"on {x.describe()}")

    def select(self, op: str, x, dim, index) -> _Val:
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
            return _Val("last")
        if x.kind == "h_n" and dim in (0, -3):
            sig = self.lstm_sig
            layers = sig.num_layers * (2 if sig.bidirectional else 1)
            if sig.bidirectional:
                raise self.refuse(op, f"selecting h_n[{index}] of a bidirectional LSTM")
            if index not in (-1, layers - 1):
                raise self.refuse(op, f"selecting h_n[{index}] (only the last layer, -1, is)")
            return _Val("last")
        raise self.refuse(op, f"selecting index {index} of dim {dim} of {x.describe()}")

    def slice(self, op: str, x, dim, start, end, step) -> _Val:
        x = self.tensor(op, x)
        full = start in (None, 0) and step in (None, 1) and (end is None or _is_big(end))
        if not full:
            raise self.refuse(op, f"slicing [{start}:{end}:{step}] of dim {dim}")
        return x

    def transpose(self, op: str, x, dims: Sequence) -> _Val:
        x = self.tensor(op, x)
        dims = list(dims) if isinstance(dims, list | tuple) else []
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise self.refuse(op, f"with computed dims {dims!r:.40}")
        dims = [d + 3 if d < 0 else d for d in dims]
        if x.kind in ("seq", "head") and x.time_dim is not None and sorted(dims) == [0, 1]:
            return _Val(x.kind, time_dim=1 - x.time_dim, mode=x.mode)
        raise self.refuse(op, f"transposing dims {list(dims)} of {x.describe()}")

    def identity(self, op: str, x) -> _Val:
        x = self.tensor(op, x)
        if x.kind in ("param", "zeros"):
            raise self.refuse(op, f"on {x.describe()}")
        return x

    def result(self, value) -> str | None:
        """The head mode (``None``: no head) of what ``forward`` returns."""
        if self.lstm_calls == 0:
            raise self.refuse("forward", "never applies the LSTM")
        if isinstance(value, _Val) and value.kind == "head":
            return value.mode
        if isinstance(value, _Val) and value.kind == "seq":
            return None
        flat = _flatten(value)
        kinds = [v.kind if isinstance(v, _Val) else None for v in flat]
        if kinds == ["seq", "h_n", "c_n"]:
            return None
        raise self.refuse("forward", f"returns {_describe(value)}")


def _is_big(value) -> bool:
    return isinstance(value, int) and value >= _BIG


def _flatten(value) -> list:
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


def _describe(value) -> str:
    if isinstance(value, _Val):
        return value.describe()
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_describe(v) for v in value) + ")"
    return repr(value) if value is None or isinstance(value, bool | int | float | str) else "?"


# -- torch.export graphs ---------------------------------------------------------------------------
def _op_name(target: str) -> str:
    """``torch.ops.aten.relu.default`` → ``aten::relu``."""
    parts = target.removeprefix("torch.ops.").split(".")
    if len(parts) >= 2 and parts[0].isidentifier():
        return f"{parts[0]}::{parts[1]}"
    return target


def check_export_graph(where: str, program, lstm: LSTMSignature) -> str | None:
    """Walk the ``.pt2`` graph; return the head mode (``None``: no head) or raise."""
    return _malformed_is_refused(where, "exported program", _check_export_graph, program, lstm)


def _malformed_is_refused(where: str, what: str, check: Callable, *args):
    """Run ``check``; a graph shaped unlike any torch writes is refused in one line."""
    try:
        return check(where, *args)
    except SpecError:
        raise
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError) as error:
        raise SpecError(f"{where}: malformed {what} ({type(error).__name__})") from None


def _check_export_graph(where: str, program, lstm: LSTMSignature) -> str | None:
    flow = _Flow(where, lstm)
    try:
        graph = program["graph_module"]["graph"]
        signature = program["graph_module"]["signature"]
        nodes = graph["nodes"]
        input_specs, output_specs = signature["input_specs"], signature["output_specs"]
        if not all(isinstance(x, list) for x in (nodes, input_specs, output_specs)):
            raise TypeError("not lists")
    except (KeyError, TypeError):
        raise SpecError(f"{where}: malformed exported program (no graph signature)") from None
    env: dict[str, object] = {}
    user_inputs = 0
    for spec in input_specs:
        kind, body = _single(where, spec, "input spec")
        if kind == "parameter":
            env[_name(where, body.get("arg"))] = _Val("param", name=body.get("parameter_name"))
        elif kind == "user_input":
            arg = body.get("arg")
            if isinstance(arg, dict) and "as_tensor" in arg:
                env[_name(where, arg["as_tensor"])] = _Val("input" if user_inputs == 0 else "state")
                user_inputs += 1
        else:
            raise flow.refuse(f"a {kind} input", "(only parameters and tensor inputs are read)")
    for spec in output_specs:
        kind, _ = _single(where, spec, "output spec")
        if kind != "user_output":
            raise flow.refuse(f"a {kind} output")

    def arg(value):
        if not isinstance(value, dict) or len(value) != 1:
            return _OPAQUE
        ((key, body),) = value.items()
        if key == "as_tensor":
            return env.get(_name(where, body), _OPAQUE)
        if key in ("as_tensors", "as_optional_tensors"):
            if not isinstance(body, list):
                return _OPAQUE
            return [arg({"as_tensor": b}) if isinstance(b, dict) else None for b in body]
        if key in ("as_int", "as_float", "as_bool", "as_string"):
            return body
        if key in ("as_ints", "as_floats", "as_bools"):
            return list(body) if isinstance(body, list) else _OPAQUE
        if key == "as_none":
            return None
        if key == "as_sym_int":
            return body.get("as_int", _OPAQUE) if isinstance(body, dict) else _OPAQUE
        return _OPAQUE

    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("target"), str):
            raise SpecError(f"{where}: malformed exported program (bad node)")
        target = node["target"]
        op = _op_name(target)
        args = {}
        positional = []
        for item in node.get("inputs") or ():
            value = arg(item.get("arg")) if isinstance(item, dict) else _OPAQUE
            args[item.get("name") if isinstance(item, dict) else None] = value
            positional.append(value)
        outputs = [_output_names(where, o) for o in node.get("outputs") or ()]
        result = _export_op(flow, op, target, args, positional)
        if op == "aten::lstm":
            names = [n for group in outputs for n in group]
            for name, value in zip(names, result, strict=False):
                env[name] = value
        else:
            for name in (n for group in outputs for n in group):
                env[name] = result
    returned = [arg(o) for o in graph.get("outputs") or ()]
    return flow.result(returned[0] if len(returned) == 1 else returned)


def _export_op(flow: _Flow, op: str, target: str, args: dict, positional: list):
    get = args.get
    if op == "aten::lstm":
        flags = {k: get(k) for k in ("has_biases", "num_layers", "bidirectional", "batch_first")}
        if get("train") not in (False, None) and get("dropout") not in (0, 0.0, None):
            raise flow.refuse(op, "in training mode (dropout active)")
        return flow.lstm(op, get("input"), get("hx"), get("params"), flags)
    if op == "aten::linear":
        return flow.linear(op, get("input"), get("weight"), get("bias"))
    if op == "aten::select":
        return flow.select(op, get("self"), get("dim"), get("index"))
    if op == "aten::slice":
        return flow.slice(op, get("self"), get("dim"), get("start"), get("end"), get("step"))
    if op == "aten::transpose":
        return flow.transpose(op, get("self"), [get("dim0"), get("dim1")])
    if op == "aten::permute":
        dims = get("dims")
        if isinstance(dims, list) and len(dims) == 3 and dims[2] in (2, -1):
            return flow.transpose(op, get("self"), dims[:2])
        raise flow.refuse(op, f"permuting dims {dims!r}")
    if op in ("aten::dropout", "aten::clone", "aten::alias", "aten::contiguous", "aten::detach"):
        return flow.identity(op, get("input", get("self")))
    if op in ("aten::zeros", "aten::new_zeros"):
        return _Val("zeros")
    if op in ("aten::sym_size", "aten::sym_numel"):
        return _OPAQUE
    if target in ("_operator.getitem", "operator.getitem"):
        container, index = [*positional, None, None][:2]
        if isinstance(container, list | tuple) and isinstance(index, int):
            if -len(container) <= index < len(container):
                return container[index]
        raise flow.refuse("getitem", f"on {_describe(container)}")
    raise flow.refuse(op)


def _single(where: str, value, what: str) -> tuple[str, dict]:
    if isinstance(value, dict) and len(value) == 1:
        ((kind, body),) = value.items()
        if isinstance(body, dict):
            return kind, body
    raise SpecError(f"{where}: malformed exported program ({what} {value!r:.60})")


def _name(where: str, value) -> str:
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"]
    raise SpecError(f"{where}: malformed exported program (tensor reference {value!r:.60})")


def _output_names(where: str, value) -> list[str]:
    if isinstance(value, dict) and len(value) == 1:
        ((key, body),) = value.items()
        if key == "as_tensor":
            return [_name(where, body)]
        if key == "as_tensors" and isinstance(body, list):
            return [_name(where, b) for b in body]
    return []


# -- TorchScript --------------------------------------------------------------------------------
@dataclass
class ScriptModule:
    """A module record of a TorchScript archive, as the loader read it from ``data.pkl``."""

    path: str
    qualname: str  # demangled, without __torch__.
    raw_qualname: str  # as in the archive: __torch__.a.___torch_mangle_3.B
    state: dict = field(default_factory=dict)
    children: dict = field(default_factory=dict)  # attribute -> ScriptModule
    tensors: frozenset = frozenset()  # attribute names holding tensors


@dataclass(frozen=True)
class _Dotted:
    """A global name in TorchScript source (``torch.relu``, ``ops.prim.dtype``, ...)."""

    name: str


_LIBRARY_LSTM = "torch.nn.modules.rnn.LSTM"
_LIBRARY_LINEAR = "torch.nn.modules.linear.Linear"
#: torch.nn modules whose (straight-line) code is walked like the user's: nn.Linear's is
#: ``torch.linear(x, self.weight, self.bias)``, dropout's is ``torch.dropout`` (off at inference).
_NEUTRAL = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity")
_INTERPRETED = ("torch.nn.modules.container.",)  # Sequential & co
_GLOBALS = frozenset(
    "torch ops __torch__ CONSTANTS annotate unchecked_cast getattr int float bool".split()
)
_SCALAR_OPS: dict[str, Callable] = {
    "torch.__not__": lambda a: not a,
    "torch.eq": lambda a, b: a == b,
    "torch.ne": lambda a, b: a != b,
    "torch.__is__": lambda a, b: a is b,
    "torch.__isnot__": lambda a, b: a is not b,
    "torch.__contains__": lambda a, b: b in a,
    "torch.lt": lambda a, b: a < b,
    "torch.le": lambda a, b: a <= b,
    "torch.gt": lambda a, b: a > b,
    "torch.ge": lambda a, b: a >= b,
}


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _TorchScript:
    def __init__(self, flow: _Flow, classes: Mapping[str, ast.AST]):
        self.flow = flow
        self.classes = classes

    def refuse(self, op: str, detail: str = "") -> SpecError:
        return self.flow.refuse(op, detail)

    # -- modules
    def find(self, module: ScriptModule, name: str) -> ast.FunctionDef | None:
        cls = self.classes.get(module.raw_qualname)
        if not isinstance(cls, ast.ClassDef):
            raise SpecError(f"{self.flow.where}: TorchScript code for {module.qualname} is missing")
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and item.name == name:
                return item
        return None

    def method(self, module: ScriptModule, name: str) -> ast.FunctionDef:
        function = self.find(module, name)
        if function is None:
            raise self.refuse(f"{module.qualname}.{name}", "(no such method in the archive)")
        return function

    def constant(self, module: ScriptModule, name: str):
        """A ``name : Final[T] = value`` class constant, or ``None``."""
        cls = self.classes.get(module.raw_qualname)
        for item in cls.body if isinstance(cls, ast.ClassDef) else ():
            if (
                isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and item.target.id == name
                and isinstance(item.value, ast.Constant)
            ):
                return item.value.value
        return None

    def call_module(self, module: ScriptModule, method: str, args: list, depth: int):
        qualname = module.qualname
        label = f"{qualname.rsplit('.', 1)[-1]} {module.path!r}" if module.path else qualname
        if qualname == _LIBRARY_LSTM and method == "forward__1":
            raise self.refuse(f"nn.LSTM.{method}", "(packed sequences are not supported)")
        if qualname == _LIBRARY_LSTM and method == "forward" and self.find(module, method) is None:
            method = "forward__0"  # scripted nn.LSTM: forward is the overload for tensors
        short = qualname.rsplit(".", 1)[-1]
        readable = qualname in (_LIBRARY_LINEAR, _LIBRARY_LSTM) or short in _NEUTRAL
        if qualname.startswith("torch.") and not (readable or qualname.startswith(_INTERPRETED)):
            raise self.refuse(label, "(a module that changes the numerics)")
        return self.run(module, self.method(module, method), args, depth)

    # -- code
    def run(self, module: ScriptModule | None, function: ast.FunctionDef, args: list, depth: int):
        """Walk ``function`` (a method of ``module``, or a free function when ``None``)."""
        where = f"{module.qualname if module else 'function'}.{function.name}"
        if depth > _MAX_DEPTH:
            raise self.refuse(where, "(calls nested too deeply)")
        params = [a.arg for a in function.args.args]
        defaults = function.args.defaults
        bound = 1 if module is not None else 0
        if len(args) + bound > len(params):
            raise self.refuse(where, "(too many arguments)")
        env: dict[str, object] = {params[0]: module} if bound and params else {}
        first_default = len(params) - len(defaults)
        for index, name in enumerate(params[bound:], start=bound):
            if index - bound < len(args):
                env[name] = args[index - bound]
            elif index >= first_default:
                default = defaults[index - first_default]
                env[name] = default.value if isinstance(default, ast.Constant) else _OPAQUE
            else:
                raise self.refuse(where, "(missing argument)")
        try:
            self.block(function.body, env, depth)
        except _Return as done:
            return done.value
        return None

    def block(self, statements: list, env: dict, depth: int) -> None:
        for statement in statements:
            if isinstance(statement, ast.Assign):
                value = self.expr(statement.value, env, depth)
                for target in statement.targets:
                    self.assign(target, value, env)
            elif isinstance(statement, ast.Return):
                value = None if statement.value is None else self.expr(statement.value, env, depth)
                raise _Return(value)
            elif isinstance(statement, ast.If):
                test = self.expr(statement.test, env, depth)
                if not isinstance(test, bool):
                    # A shape check (``if size != expected: raise``) on values known only at
                    # run time: the model is analysed on the path that does not raise.
                    if _raises(statement.body) and not _raises(statement.orelse):
                        test = False
                    elif _raises(statement.orelse) and not _raises(statement.body):
                        test = True
                    else:
                        what = _describe(test)
                        raise self.refuse("if", f"on {what} (data-dependent control flow)")
                self.block(statement.body if test else statement.orelse, env, depth)
            elif isinstance(statement, ast.Pass):
                continue
            elif isinstance(statement, ast.Expr):
                self.expr(statement.value, env, depth)
            else:
                raise self.refuse(f"a {type(statement).__name__} statement")

    def assign(self, target, value, env: dict) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            if not isinstance(value, tuple | list) or len(value) != len(target.elts):
                raise self.refuse("unpacking", f"of {_describe(value)}")
            for element, item in zip(target.elts, value, strict=True):
                self.assign(element, item, env)
        else:
            raise self.refuse(f"assignment to a {type(target).__name__}")

    def expr(self, node, env: dict, depth: int):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in _GLOBALS:
                return _Dotted(node.id)
            raise self.refuse(f"name {node.id!r}")
        if isinstance(node, ast.Attribute):
            base = self.expr(node.value, env, depth)
            return self.attribute(base, node.attr)
        if isinstance(node, ast.Tuple):
            return tuple(self.expr(e, env, depth) for e in node.elts)
        if isinstance(node, ast.List):
            return [self.expr(e, env, depth) for e in node.elts]
        if isinstance(node, ast.Subscript):
            base = self.expr(node.value, env, depth)
            index = self.expr(node.slice, env, depth)
            if isinstance(base, tuple | list) and isinstance(index, int):
                if -len(base) <= index < len(base):
                    return base[index]
            raise self.refuse("indexing", f"{_describe(base)}[{_describe(index)}]")
        if isinstance(node, ast.Call):
            return self.call(node, env, depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.expr(node.operand, env, depth)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return -value
        raise self.refuse(f"the Python expression {type(node).__name__}")

    def attribute(self, base, name: str):
        if isinstance(base, ScriptModule):
            if name in base.children:
                return base.children[name]
            if name in base.tensors:
                return _Val("param", name=_join(base.path, name))
            if name == "_flat_weights" and isinstance(base.state.get("_flat_weights_names"), list):
                names = base.state["_flat_weights_names"]
                return [_Val("param", name=_join(base.path, str(n))) for n in names]
            if name in base.state:
                value = base.state[name]
                plain = value is None or isinstance(value, bool | int | float | str)
                return value if plain else _OPAQUE
            value = self.constant(base, name)
            if value is not None:
                return value
            raise self.refuse(f"attribute {name!r} of {base.qualname}")
        if isinstance(base, _Dotted):
            if base.name == "CONSTANTS":
                return _Val("opaque", name=f"the constant {name}")
            return _Dotted(f"{base.name}.{name}")
        raise self.refuse(f"attribute {name!r}", f"of {_describe(base)}")

    def call(self, node: ast.Call, env: dict, depth: int):
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = self.expr(func.value, env, depth)
            if isinstance(owner, ScriptModule) and func.attr not in owner.children:
                args = [self.expr(a, env, depth) for a in node.args]
                if node.keywords:
                    raise self.refuse(f"{owner.qualname}.{func.attr}", "(keyword arguments)")
                return self.call_module(owner, func.attr, args, depth + 1)
            callee = self.attribute(owner, func.attr)
        else:
            callee = self.expr(func, env, depth)
        if not isinstance(callee, _Dotted):
            raise self.refuse("a call", f"of {_describe(callee)}")
        if callee.name in ("annotate", "unchecked_cast") and len(node.args) == 2:
            return self.expr(node.args[1], env, depth)  # the first argument is a type
        args = [self.expr(a, env, depth) for a in node.args]
        kwargs = {k.arg: self.expr(k.value, env, depth) for k in node.keywords}
        function = self.classes.get(callee.name)
        if isinstance(function, ast.FunctionDef):  # a function of the archive's code/
            if kwargs:
                raise self.refuse(callee.name, "(keyword arguments)")
            return self.run(None, function, args, depth + 1)
        return self.op(callee.name, args, kwargs)

    def op(self, name: str, args: list, kwargs: dict):
        aten = "aten::" + name.removeprefix("torch.") if name.startswith("torch.") else name
        flow = self.flow
        if name in ("torch.__is__", "torch.__isnot__") and len(args) == 2 and None in args:
            is_none = args[0] is None and args[1] is None  # a tensor or tuple is not None
            return is_none if name == "torch.__is__" else not is_none
        if name in _SCALAR_OPS:
            leaves = _flatten(args)
            tensors = [a for a in leaves if isinstance(a, ScriptModule) or a_tensor(a)]
            if tensors or len(args) > 2:
                raise self.refuse(aten, f"on {_describe(tuple(args))}")
            if any(a is _OPAQUE or (isinstance(a, _Val) and a.kind == "opaque") for a in leaves):
                return _OPAQUE  # a comparison of sizes known only at run time
            try:
                return _SCALAR_OPS[name](*args)
            except TypeError:
                raise self.refuse(aten, "with wrong arguments") from None
        if name in ("annotate", "unchecked_cast") and len(args) == 2:
            return args[1]
        if name == "getattr" and len(args) == 2 and isinstance(args[1], str):
            return self.attribute(args[0], args[1])
        if name == "torch.lstm" and len(args) == 9 and not kwargs:
            keys = ("has_biases", "num_layers", "dropout", "train", "bidirectional", "batch_first")
            flags = dict(zip(keys, args[3:], strict=True))
            if flags["train"] is not False and flags["dropout"] not in (0, 0.0):
                raise self.refuse(aten, "in training mode (dropout active)")
            params = args[2] if isinstance(args[2], list) else [args[2]]
            return flow.lstm(aten, args[0], args[1], params, flags)
        if name == "torch.linear" and len(args) in (2, 3):
            return flow.linear(aten, args[0], args[1], args[2] if len(args) == 3 else None)
        if name == "torch.select" and len(args) == 3:
            return flow.select(aten, *args)
        if name == "torch.slice" and 1 <= len(args) <= 5:
            dim, start, end, step = (list(args[1:]) + [0, None, None, 1][len(args) - 1 :])[:4]
            return flow.slice(aten, args[0], dim, start, end, step)
        if name == "torch.transpose" and len(args) == 3:
            return flow.transpose(aten, args[0], args[1:])
        if name in ("torch.dropout", "torch.feature_dropout", "torch.alpha_dropout"):
            return flow.identity(aten, args[0] if args else None)
        if name == "torch.dim" and len(args) == 1:
            rank = {"input": 3, "state": 3, "zeros": 3, "seq": 3, "h_n": 3, "c_n": 3, "last": 2}
            value = args[0]
            if isinstance(value, _Val) and value.kind in rank:
                return rank[value.kind]
            raise self.refuse(aten, f"on {_describe(value)}")
        if name in ("torch.format", "torch.list", "torch.len") and not kwargs:
            return _OPAQUE
        if name in ("torch.contiguous", "torch.detach") and args:
            return flow.identity(aten, args[0])
        if name == "torch.zeros":
            return _Val("zeros")
        if name in ("torch.size", "torch.device", "ops.prim.NumToTensor", "ops.prim.dtype",
                    "ops.prim.device", "int"):  # fmt: skip
            return _OPAQUE  # sizes, dtypes, devices: never data
        if name == "ops.prim.RaiseException":
            raise self.refuse("prim::RaiseException", "(forward raises an exception)")
        if name.startswith("ops."):
            parts = name.split(".")
            aten = f"{parts[1]}::{'.'.join(parts[2:])}" if len(parts) > 2 else name
        raise self.refuse(aten)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def a_tensor(value) -> bool:
    return isinstance(value, _Val) and value.kind != "opaque"


def _raises(statements: list) -> bool:
    """Whether a block is a raise: it calls ``ops.prim.RaiseException`` at its top level."""
    for statement in statements:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            func = statement.value.func
            if isinstance(func, ast.Attribute) and func.attr == "RaiseException":
                return True
    return False


def check_torchscript(
    where: str, root: ScriptModule, classes: Mapping[str, ast.AST], lstm: LSTMSignature
) -> str | None:
    """Walk the root module's ``forward``; return the head mode (``None``: no head) or raise."""
    return _malformed_is_refused(where, "TorchScript code", _check_torchscript, root, classes, lstm)


def _check_torchscript(where: str, root: ScriptModule, classes, lstm: LSTMSignature):
    flow = _Flow(where, lstm)
    interpreter = _TorchScript(flow, classes)
    function = interpreter.find(root, "forward") or interpreter.method(root, "forward__0")
    params = [a.arg for a in function.args.args][1:]
    if not params:
        raise flow.refuse("forward", "takes no input")
    args: list = [_Val("input")] + [_Val("state") for _ in params[1:]]
    if root.qualname == _LIBRARY_LSTM:
        args = args[:1]
    try:
        value = interpreter.call_module(root, "forward", args, 0)
    except RecursionError:
        raise flow.refuse("forward", "(nested too deeply)") from None
    return flow.result(value)


def parse_classes(where: str, sources: Mapping[str, bytes]) -> dict[str, ast.AST]:
    """``{"__torch__.a.b.Class": ClassDef}`` from ``code/`` members (parsed, never run)."""
    classes: dict[str, ast.AST] = {}
    for member, data in sources.items():
        module = member.removesuffix(".py").replace("/", ".")
        try:
            tree = ast.parse(data.decode("utf-8"), filename=member)
        except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError) as error:
            reason = type(error).__name__
            raise SpecError(
                f"{where}: TorchScript code {member} cannot be parsed ({reason})"
            ) from None
        for item in tree.body:
            if isinstance(item, ast.ClassDef):
                classes[f"{module}.{item.name}"] = item
            elif isinstance(item, ast.FunctionDef):
                classes[f"{module}.{item.name}"] = item
            else:
                raise SpecError(
                    f"{where}: refused: TorchScript code {member} has a top-level "
                    f"{type(item).__name__} statement (TorchScript code holds only classes "
                    f"and functions)"
                )
    return classes
