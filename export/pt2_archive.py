"""Reading a ``torch.export`` archive (``torch.export.save``, ``.pt2``) without loading it.

``.pt2`` archives are *not* passed to ``torch.export.load``, which falls back to plain pickle
for some payloads and ``eval``\\ s symbolic-shape strings through sympy. The weights are read
from the archive's JSON payload config and raw storage records, the module structure from the
``nn_module_stack`` of the serialized graph (plain JSON, within the size and depth limits of
:func:`lstmfpga.export.files.parse_json`), when the graph carries that metadata. Archives with
pickled payloads or tensor constants, pickle members naming anything but tensor rebuilders, or
symbolic shapes that are not plain sympy expressions are refused
(:class:`~lstmfpga.export.spec.SpecError`, one line starting with the path).

NumPy only: no torch import here. The graph itself is checked by
:func:`lstmfpga.export.forward_export.check_export_graph`.
"""

from __future__ import annotations

import ast
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import files
from .archives import (
    BFLOAT16,
    check_tensor_pickle,
    first_line,
    member_reader,
    strided_copy,
    zip_names,
)
from .spec import SpecError
from .structure import SUPPORTED

#: ``torch._export.serde.schema.ScalarType`` codes of the floating-point dtypes read here.
_PT2_DTYPES = {6: "<f2", 7: "<f4", 8: "<f8", 13: BFLOAT16}
_PT2_DTYPE_NAMES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64",
                    9: "complex32", 10: "complex64", 11: "complex128", 12: "bool"}  # fmt: skip
_PT2_MODEL = "model"


def _as_int(value, what: str) -> int:
    if isinstance(value, dict) and isinstance(value.get("as_int"), int):
        return value["as_int"]
    raise SpecError(f"{what} must be a static integer, not {value!r}")


def read_export_archive(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray], dict]:
    """``({module path: qualname}, {weight name: array}, program)`` of a ``.pt2`` archive.

    ``program`` is the parsed JSON of ``models/model.json`` (the graph, never evaluated).
    """
    root, names = zip_names(path)
    try:
        with zipfile.ZipFile(path) as archive:
            read = member_reader(archive, root, f"{path}: torch.export archive")

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
        raise SpecError(f"{path}: corrupt torch.export archive ({first_line(error)})") from None
    if not isinstance(program, dict):
        raise SpecError(f"{path}: malformed exported program (not a JSON object)")
    return _export_modules(path, program), tensors, program


def _check_pt2_pickle(path: Path, name: str, data: bytes) -> None:
    """A ``.pt2`` pickle member (sample inputs): a ``torch.save`` zip or a plain pickle, whose
    pickles may only rebuild tensors (``torch.export.load`` would unpickle it)."""
    if not data.startswith(b"PK"):
        check_tensor_pickle(path, name, data)
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            files.check_zip_members(inner, f"{path}: {name}")
            for info in inner.infolist():
                if info.filename.endswith(".pkl"):
                    check_tensor_pickle(path, f"{name}/{info.filename}", inner.read(info))
    except SpecError:
        raise
    except files.FileFormatError as error:
        raise SpecError(str(error)) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise SpecError(f"{path}: {name} is a corrupt zip ({first_line(error)})") from None


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
    return strided_copy(
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
