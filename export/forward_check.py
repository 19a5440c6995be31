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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .forward_export import check_export_graph
from .forward_flow import (
    FORWARD_SUPPORTED,
    MAX_DEPTH,
    OPAQUE,
    Flow,
    LSTMSignature,
    Val,
    describe,
    flatten,
    malformed_is_refused,
)
from .spec import SpecError

__all__ = [
    "FORWARD_SUPPORTED",
    "LSTMSignature",
    "ScriptModule",
    "check_export_graph",
    "check_torchscript",
    "parse_classes",
]


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
_LIBRARY_GRU = "torch.nn.modules.rnn.GRU"
_LIBRARY_RNNS = {_LIBRARY_LSTM: "nn.LSTM", _LIBRARY_GRU: "nn.GRU"}
_LIBRARY_LINEAR = "torch.nn.modules.linear.Linear"
#: torch.nn modules whose (straight-line) code is walked like the user's: nn.Linear's is
#: ``torch.linear(x, self.weight, self.bias)``, dropout's is ``torch.dropout`` (off at inference).
_NEUTRAL = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity")
_INTERPRETED = ("torch.nn.modules.container.",)  # Sequential & co
_GLOBALS = frozenset(
    "torch ops __torch__ CONSTANTS annotate unchecked_cast uninitialized getattr int float "
    "bool".split()
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
    def __init__(self, flow: Flow, classes: Mapping[str, ast.AST]):
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
        rnn = _LIBRARY_RNNS.get(qualname)
        if rnn and method == "forward__1":
            raise self.refuse(f"{rnn}.{method}", "(packed sequences are not supported)")
        if rnn and method == "forward" and self.find(module, method) is None:
            method = "forward__0"  # scripted nn.LSTM/GRU: forward is the overload for tensors
        short = qualname.rsplit(".", 1)[-1]
        readable = qualname == _LIBRARY_LINEAR or rnn is not None or short in _NEUTRAL
        if qualname.startswith("torch.") and not (readable or qualname.startswith(_INTERPRETED)):
            raise self.refuse(label, "(a module that changes the numerics)")
        return self.run(module, self.method(module, method), args, depth)

    # -- code
    def run(self, module: ScriptModule | None, function: ast.FunctionDef, args: list, depth: int):
        """Walk ``function`` (a method of ``module``, or a free function when ``None``)."""
        where = f"{module.qualname if module else 'function'}.{function.name}"
        if depth > MAX_DEPTH:
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
                env[name] = default.value if isinstance(default, ast.Constant) else OPAQUE
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
                        what = describe(test)
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
                raise self.refuse("unpacking", f"of {describe(value)}")
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
            raise self.refuse("indexing", f"{describe(base)}[{describe(index)}]")
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
                return Val("param", name=_join(base.path, name))
            if name == "_flat_weights" and isinstance(base.state.get("_flat_weights_names"), list):
                names = base.state["_flat_weights_names"]
                return [Val("param", name=_join(base.path, str(n))) for n in names]
            if name in base.state:
                value = base.state[name]
                plain = value is None or isinstance(value, bool | int | float | str)
                return value if plain else OPAQUE
            value = self.constant(base, name)
            if value is not None:
                return value
            raise self.refuse(f"attribute {name!r} of {base.qualname}")
        if isinstance(base, _Dotted):
            if base.name == "CONSTANTS":
                return Val("opaque", name=f"the constant {name}")
            return _Dotted(f"{base.name}.{name}")
        raise self.refuse(f"attribute {name!r}", f"of {describe(base)}")

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
            raise self.refuse("a call", f"of {describe(callee)}")
        if callee.name in ("annotate", "unchecked_cast") and len(node.args) == 2:
            return self.expr(node.args[1], env, depth)  # the first argument is a type
        if callee.name == "uninitialized" and len(node.args) == 1:
            return OPAQUE  # a placeholder of the given type (scripted nn.GRU: raise branches)
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
            leaves = flatten(args)
            tensors = [a for a in leaves if isinstance(a, ScriptModule) or a_tensor(a)]
            if tensors or len(args) > 2:
                raise self.refuse(aten, f"on {describe(tuple(args))}")
            if any(a is OPAQUE or (isinstance(a, Val) and a.kind == "opaque") for a in leaves):
                return OPAQUE  # a comparison of sizes known only at run time
            try:
                return _SCALAR_OPS[name](*args)
            except TypeError:
                raise self.refuse(aten, "with wrong arguments") from None
        if name in ("annotate", "unchecked_cast") and len(args) == 2:
            return args[1]
        if name == "getattr" and len(args) == 2 and isinstance(args[1], str):
            return self.attribute(args[0], args[1])
        if name in ("torch.lstm", "torch.gru") and len(args) == 9 and not kwargs:
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
            if isinstance(value, Val) and value.kind in rank:
                return rank[value.kind]
            raise self.refuse(aten, f"on {describe(value)}")
        if name in ("torch.format", "torch.list", "torch.len") and not kwargs:
            return OPAQUE
        if name in ("torch.contiguous", "torch.detach") and args:
            return flow.identity(aten, args[0])
        if name == "torch.zeros":
            return Val("zeros")
        if name in ("torch.size", "torch.device", "ops.prim.NumToTensor", "ops.prim.dtype",
                    "ops.prim.device", "int"):  # fmt: skip
            return OPAQUE  # sizes, dtypes, devices: never data
        if name == "ops.prim.RaiseException":
            raise self.refuse("prim::RaiseException", "(forward raises an exception)")
        if name.startswith("ops."):
            parts = name.split(".")
            aten = f"{parts[1]}::{'.'.join(parts[2:])}" if len(parts) > 2 else name
        raise self.refuse(aten)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def a_tensor(value) -> bool:
    return isinstance(value, Val) and value.kind != "opaque"


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
    return malformed_is_refused(where, "TorchScript code", _check_torchscript, root, classes, lstm)


def _check_torchscript(where: str, root: ScriptModule, classes, lstm: LSTMSignature):
    flow = Flow(where, lstm)
    interpreter = _TorchScript(flow, classes)
    function = interpreter.find(root, "forward") or interpreter.method(root, "forward__0")
    params = [a.arg for a in function.args.args][1:]
    if not params:
        raise flow.refuse("forward", "takes no input")
    args: list = [Val("input")] + [Val("state") for _ in params[1:]]
    if root.qualname in _LIBRARY_RNNS:
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
