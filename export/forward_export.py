"""Checking the ``forward`` of a ``torch.export`` archive: its JSON graph of ATen ops, walked
node by node (never run), must be one of the forwards :mod:`lstmfpga.export.forward_check`
accepts.
"""

from __future__ import annotations

from .forward_flow import OPAQUE, Flow, LSTMSignature, Val, describe, malformed_is_refused
from .spec import SpecError

__all__ = ["check_export_graph"]


# -- torch.export graphs ---------------------------------------------------------------------------
def _op_name(target: str) -> str:
    """``torch.ops.aten.relu.default`` → ``aten::relu``."""
    parts = target.removeprefix("torch.ops.").split(".")
    if len(parts) >= 2 and parts[0].isidentifier():
        return f"{parts[0]}::{parts[1]}"
    return target


def check_export_graph(where: str, program, lstm: LSTMSignature) -> str | None:
    """Walk the ``.pt2`` graph; return the head mode (``None``: no head) or raise."""
    return malformed_is_refused(where, "exported program", _check_export_graph, program, lstm)


def _check_export_graph(where: str, program, lstm: LSTMSignature) -> str | None:
    flow = Flow(where, lstm)
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
            env[_name(where, body.get("arg"))] = Val("param", name=body.get("parameter_name"))
        elif kind == "user_input":
            arg = body.get("arg")
            if isinstance(arg, dict) and "as_tensor" in arg:
                env[_name(where, arg["as_tensor"])] = Val("input" if user_inputs == 0 else "state")
                user_inputs += 1
        else:
            raise flow.refuse(f"a {kind} input", "(only parameters and tensor inputs are read)")
    for spec in output_specs:
        kind, _ = _single(where, spec, "output spec")
        if kind != "user_output":
            raise flow.refuse(f"a {kind} output")

    def arg(value):
        if not isinstance(value, dict) or len(value) != 1:
            return OPAQUE
        ((key, body),) = value.items()
        if key == "as_tensor":
            return env.get(_name(where, body), OPAQUE)
        if key in ("as_tensors", "as_optional_tensors"):
            if not isinstance(body, list):
                return OPAQUE
            return [arg({"as_tensor": b}) if isinstance(b, dict) else None for b in body]
        if key in ("as_int", "as_float", "as_bool", "as_string"):
            return body
        if key in ("as_ints", "as_floats", "as_bools"):
            return list(body) if isinstance(body, list) else OPAQUE
        if key == "as_none":
            return None
        if key == "as_sym_int":
            return body.get("as_int", OPAQUE) if isinstance(body, dict) else OPAQUE
        return OPAQUE

    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("target"), str):
            raise SpecError(f"{where}: malformed exported program (bad node)")
        target = node["target"]
        op = _op_name(target)
        args = {}
        positional = []
        for item in node.get("inputs") or ():
            value = arg(item.get("arg")) if isinstance(item, dict) else OPAQUE
            args[item.get("name") if isinstance(item, dict) else None] = value
            positional.append(value)
        outputs = [_output_names(where, o) for o in node.get("outputs") or ()]
        result = _export_op(flow, op, target, args, positional)
        if op in ("aten::lstm", "aten::gru"):
            names = [n for group in outputs for n in group]
            for name, value in zip(names, result, strict=False):
                env[name] = value
        else:
            for name in (n for group in outputs for n in group):
                env[name] = result
    returned = [arg(o) for o in graph.get("outputs") or ()]
    return flow.result(returned[0] if len(returned) == 1 else returned)


def _export_op(flow: Flow, op: str, target: str, args: dict, positional: list):
    get = args.get
    if op in ("aten::lstm", "aten::gru"):
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
        return Val("zeros")
    if op in ("aten::sym_size", "aten::sym_numel"):
        return OPAQUE
    if target in ("_operator.getitem", "operator.getitem"):
        container, index = [*positional, None, None][:2]
        if isinstance(container, list | tuple) and isinstance(index, int):
            if -len(container) <= index < len(container):
                return container[index]
        raise flow.refuse("getitem", f"on {describe(container)}")
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
