"""Reading PyTorch zip archives without running anything stored in them.

The pieces every reader of a model file shares, and the TorchScript reader:

* :func:`zip_names` lists a PyTorch zip archive after checking its members' declared sizes
  (:func:`lstmfpga.export.files.check_zip_members`: oversized members, deflate/bzip2 bombs);
* :func:`check_tensor_pickle` scans a pickle by opcode (nothing is unpickled) and refuses it
  if it names anything but tensor rebuilders;
* :func:`strided_copy` copies a tensor out of a raw storage record, every index bounds-checked;
* :func:`read_torchscript_program` reads a TorchScript archive (``torch.jit.save``) *without*
  ``torch.jit.load`` (a TorchScript program is code, and PyTorch advises loading only trusted
  archives). Its ``data.pkl`` is parsed with a restricted unpickler that knows module records
  and tensor storages only; every other pickle member (``constants.pkl``, ``*.debug_pkl``,
  ``traced_inputs.pkl``) goes through :func:`check_tensor_pickle`; ``code/`` is returned as
  bytes, to be parsed with :func:`ast.parse` (never compiled) by
  :mod:`lstmfpga.export.forward_check`.

The ``.pt2`` reader is :mod:`lstmfpga.export.pt2_archive`; the file-kind detection and the
state_dict loader are :mod:`lstmfpga.export.model_files`. NumPy only: no torch import here.
Errors are :class:`~lstmfpga.export.spec.SpecError`, one line, starting with the path.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import pickletools
import re
import typing
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import files
from .forward_check import ScriptModule
from .spec import SpecError
from .structure import SUPPORTED


def first_line(error: BaseException) -> str:
    """``"TypeName: first line of the message"``, for one-line error messages."""
    text = str(error).strip()
    line = text.splitlines()[0].strip() if text else ""
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


# -- zip archives ------------------------------------------------------------------------------
def zip_names(path: Path) -> tuple[str, set[str]]:
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
        raise SpecError(f"{path}: corrupt zip archive ({first_line(error)})") from None
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1:
        raise SpecError(f"{path}: not a PyTorch archive (expected one top-level folder)")
    root = roots.pop()
    return root, {name[len(root) + 1 :] for name in names if "/" in name}


def member_reader(archive: zipfile.ZipFile, root: str, what: str) -> Callable[[str], bytes]:
    """``read(name)``: the bytes of ``{root}/{name}``; a missing member is refused naming it."""

    def read(name: str) -> bytes:
        try:
            return archive.read(f"{root}/{name}")
        except KeyError:
            raise SpecError(f"{what} is missing {name}") from None

    return read


# -- pickles ----------------------------------------------------------------------------------
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
            found.append(python3_name(module, name))
        elif op.name == "STACK_GLOBAL":
            ok = len(pushed) >= 2 and all(isinstance(a, str) for a in pushed[-2:])
            found.append(python3_name(*pushed[-2:]) if ok else "<computed global>")
        if op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            continue
        pushed.append(arg if op.name.endswith("UNICODE") or op.name.endswith("STRING") else None)
        del pushed[:-2]
    return found


def python3_name(module: str, name: str) -> str:
    """``module.name`` as unpickling resolves it (protocol-2 pickles say ``__builtin__``)."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def check_tensor_pickle(path: Path, member: str, data: bytes) -> None:
    """Refuse a pickle member that names anything but tensor-rebuilding globals."""
    try:
        names = _pickle_globals(data)
    except Exception as error:  # malformed opcodes
        raise SpecError(
            f"{path}: {member} is not a readable pickle ({first_line(error)})"
        ) from None
    for name in names:
        storage = name.startswith("torch.") and name[len("torch.") :] in _TS_STORAGES
        if name not in _TENSOR_PICKLE_GLOBALS and not storage:
            raise SpecError(
                f"{path}: refused: {member} references {name}, which lstmfpga does not read"
            )


# -- raw tensors -------------------------------------------------------------------------------
BFLOAT16 = "bfloat16"  # NumPy has no bfloat16: stored as uint16, widened on read


def strided_copy(
    name: str,
    raw: bytes,
    dtype: str,
    sizes: tuple[int, ...],
    strides: tuple[int, ...],
    offset: int,
) -> np.ndarray:
    """Copy a strided view of a raw little-endian storage, with every index bounds-checked."""
    storage_dtype = np.dtype("<u2" if dtype == BFLOAT16 else dtype)
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
    if dtype == BFLOAT16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


# -- TorchScript archives ----------------------------------------------------------------------
_TS_STORAGES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": BFLOAT16,
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
            f"{python3_name(module, name)}, which lstmfpga does not read"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        raw = self._read_record(f"data/{key}")
        itemsize = 2 if storage_type.dtype == BFLOAT16 else np.dtype(storage_type.dtype).itemsize
        if not isinstance(numel, int) or len(raw) < numel * itemsize:
            raise pickle.UnpicklingError(f"storage {key} is shorter than {numel!r} element(s)")
        return _Storage(key, storage_type.dtype, raw[: numel * itemsize])

    def _rebuild_tensor(self, storage, offset, size, stride, *_rest):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("tensor without storage")
        for value in (offset, *size, *stride):
            if not isinstance(value, int):
                raise pickle.UnpicklingError(f"tensor geometry must be integers, not {value!r}")
        return strided_copy(
            f"storage {storage.key}", storage.raw, storage.dtype, tuple(size), tuple(stride), offset
        )


#: Largest total size of the TorchScript source (``code/``) read from one archive.
MAX_CODE_BYTES = 16 << 20


def read_torchscript(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray], str | None]:
    """``({module path: qualname}, {tensor name: array}, root head_mode)`` of an archive."""
    modules, tensors, root, _ = read_torchscript_program(path)
    declared = root.state.get("head_mode")
    return modules, tensors, declared if isinstance(declared, str) else None


def read_torchscript_program(path: Path):
    """``(modules, tensors, root ScriptModule, {code member: source bytes})`` of an archive."""
    root_dir, _ = zip_names(path)
    try:
        with zipfile.ZipFile(path) as archive:
            read_record = member_reader(archive, root_dir, f"{path}: TorchScript archive")
            byteorder = f"{root_dir}/byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
                raise SpecError(f"{path}: big-endian TorchScript archives are not supported")
            unpickler = _TorchScriptUnpickler(read_record("data.pkl"), read_record, path)
            top = unpickler.load()
            code, total = {}, 0
            for info in archive.infolist():
                relative = info.filename[len(root_dir) + 1 :]
                if relative.endswith(("pkl", ".pt")) and relative != "data.pkl":
                    check_tensor_pickle(path, relative, archive.read(info))
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
        raise SpecError(f"{path}: corrupt TorchScript archive ({first_line(error)})") from None
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
