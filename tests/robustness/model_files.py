"""Builders of hostile and broken model files for tests/robustness/test_model_files.py.

* :class:`Good` — one set of valid files (state_dict zip and legacy, TorchScript scripted and
  traced, ``.pt2`` with a symbolic batch, spec directory, calibration inputs), built once per
  test module and only read by the cases;
* payloads: objects whose unpickling would create a marker file (``os.system``, ``open``,
  ``eval``, ``exec``, ``subprocess.Popen``);
* zip surgery: replace members, patch the sizes a member declares, truncate;
* a hand-made legacy (non-zip) ``torch.save`` file whose storage declares any size.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import struct
import subprocess
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from helpers import forward_models as fm
from torch import nn


# -- models ------------------------------------------------------------------------------------
class Net(nn.Module):
    """``fc(y[:, -1])`` after a batch-first LSTM: the supported pattern the files start from."""

    def __init__(self, input_size: int = 3, hidden_size: int = 4):
        super().__init__()
        torch.manual_seed(3)
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, 2)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


class Relu(Net):
    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(torch.relu(y[:, -1]))


def _pattern(cls, input_size: int = 3, hidden_size: int = 4):
    """A forward pattern of ``helpers.forward_models`` over a batch-first LSTM, as ``Net``'s
    shape (a Linear head of 2 outputs), built when called."""
    return functools.partial(
        cls, out_features=2, input_size=input_size, hidden_size=hidden_size, batch_first=True
    )


#: Forwards lstmfpga refuses (one home: tests/helpers/forward_models.py).
LinearFirst = _pattern(fm.LinearFirst, input_size=4)
FirstStep = _pattern(fm.FirstStep)
MeanOverTime = _pattern(fm.MeanOverTime)
CellState = _pattern(fm.CellState)


class WithConv(Net):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 3, 1)

    def forward(self, x):
        y, _ = self.lstm(self.conv(x.transpose(1, 2)).transpose(1, 2))
        return self.fc(y[:, -1])


def example(model: nn.Module, batch: int = 2, seq: int = 5) -> torch.Tensor:
    features = model.lstm.input_size if hasattr(model, "lstm") else model.input_size
    return torch.randn(batch, seq, features, generator=torch.Generator().manual_seed(1))


def save(model: nn.Module, route: str, path: Path) -> Path:
    """Write ``model`` as ``state_dict``, ``legacy`` state_dict, ``script``, ``trace``, ``pt2``."""
    model = model.eval()
    if route == "state_dict":
        torch.save(model.state_dict(), path)
    elif route == "legacy":
        torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    elif route == "script":
        torch.jit.script(model).save(str(path))
    elif route == "trace":
        torch.jit.trace(model, (example(model),)).save(str(path))
    elif route == "pt2":
        dynamic = ({0: torch.export.Dim("batch")},)
        program = torch.export.export(model, (example(model),), dynamic_shapes=dynamic)
        torch.export.save(program, path)
    else:
        raise AssertionError(route)
    return path


@dataclass
class Good:
    """Valid files every case starts from (read-only)."""

    root: Path

    @classmethod
    def build(cls, root: Path) -> Good:
        from lstmfpga.export.torch_loader import from_module

        good = cls(root)
        model = Net()
        for route, name in (
            ("state_dict", "sd.pt"),
            ("legacy", "legacy.pt"),
            ("script", "script.pt"),
            ("trace", "trace.pt"),
            ("pt2", "model.pt2"),
        ):
            save(model, route, root / name)
        from_module(model).save(root / "spec")
        np.save(root / "calib.npy", np.random.default_rng(0).normal(size=(4, 6, 3)))
        return good

    def __getattr__(self, name: str) -> Path:
        files = {
            "sd": "sd.pt",
            "legacy": "legacy.pt",
            "script": "script.pt",
            "trace": "trace.pt",
            "pt2": "model.pt2",
            "spec": "spec",
            "calib": "calib.npy",
        }
        if name in files:
            return self.root / files[name]
        raise AttributeError(name)


# -- payloads ----------------------------------------------------------------------------------
class Shell:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Opener(Shell):
    def __reduce__(self):
        return (open, (self.marker, "w"))


class Evaluator(Shell):
    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w')",))


class Executor(Shell):
    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


class Spawner(Shell):
    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.marker],))


PAYLOADS = {
    "os.system": Shell,
    "open": Opener,
    "eval": Evaluator,
    "exec": Executor,
    "subprocess.Popen": Spawner,
}


def payload_pickle(kind: str, marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps(PAYLOADS[kind](marker), protocol=protocol)


# -- zip surgery -------------------------------------------------------------------------------
def members(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def read_member(path: Path, relative: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        root = archive.namelist()[0].split("/")[0]
        return archive.read(f"{root}/{relative}")


#: The weights config of a ``.pt2`` archive (below its root).
WEIGHTS_CONFIG = "data/weights/model_weights_config.json"


def with_tensor_meta(source: Path, target: Path, weight: str, **meta) -> Path:
    """A copy of the ``.pt2`` ``source`` at ``target`` whose weights config sets ``meta`` in
    the ``tensor_meta`` of ``weight`` (e.g. ``sizes``, ``strides``, ``dtype``)."""
    config = json.loads(read_member(source, WEIGHTS_CONFIG))
    config["config"][weight]["tensor_meta"].update(meta)
    return rewrite(source, target, {WEIGHTS_CONFIG: json.dumps(config).encode()})


def rewrite(
    source: Path,
    target: Path,
    replace: dict | None = None,
    *,
    edit=None,
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """Copy a one-folder zip; ``replace`` maps names below the root to new bytes, ``edit``
    is called as ``edit(relative_name, data)`` and returns the new bytes."""
    replace = replace or {}
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", compression) as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            relative = info.filename.split("/", 1)[1]
            data = replace.get(relative, zin.read(info.filename))
            if edit is not None:
                data = edit(relative, data)
            zout.writestr(info.filename, data)
        for relative, data in replace.items():
            if f"{root}/{relative}" not in zin.namelist():
                zout.writestr(f"{root}/{relative}", data)
    return target


def declare_size(path: Path, member_suffix: str, file_size: int, compress_size: int | None = None):
    """Patch the central directory so that members ending in ``member_suffix`` declare
    ``file_size`` uncompressed (and ``compress_size``) bytes: the data stays small."""
    data = bytearray(path.read_bytes())
    position = 0
    while (position := data.find(b"PK\x01\x02", position)) != -1:
        name_length = struct.unpack_from("<H", data, position + 28)[0]
        name = bytes(data[position + 46 : position + 46 + name_length]).decode()
        if name.endswith(member_suffix):
            struct.pack_into("<I", data, position + 24, file_size)
            if compress_size is not None:
                struct.pack_into("<I", data, position + 20, compress_size)
        position += 46
    path.write_bytes(bytes(data))
    return path


def truncate(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


# -- legacy torch.save -------------------------------------------------------------------------
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageRef:
    pass


def legacy_state_dict(shapes: dict[str, tuple[int, ...]], numel: int, data: bytes = b"") -> bytes:
    """A legacy (non-zip) ``torch.save`` file: every tensor views one float storage whose
    pickle declares ``numel`` elements (the bytes that follow may be far fewer)."""
    storage = _StorageRef()

    class Tensor:
        def __init__(self, shape):
            self.shape = shape

        def __reduce__(self):
            strides = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
            rebuild = torch._utils._rebuild_tensor_v2
            return (rebuild, (storage, 0, self.shape, strides, False, OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", torch.FloatStorage, "0", "cpu", numel, None)
            return None

    buffer = io.BytesIO()
    system = dict(
        protocol_version=_LEGACY_PROTOCOL,
        little_endian=True,
        type_sizes=dict(short=2, int=4, long=4),
    )
    for header in (_LEGACY_MAGIC, _LEGACY_PROTOCOL, system):
        pickle.dump(header, buffer, protocol=2)
    Pickler(buffer, protocol=2).dump(OrderedDict((k, Tensor(v)) for k, v in shapes.items()))
    pickle.dump(["0"], buffer, protocol=2)
    buffer.write(struct.pack("<q", numel))
    buffer.write(data)
    return buffer.getvalue()
