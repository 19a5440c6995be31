"""Randomly damaged archives: ``load_model`` either reads them or refuses in one line.

Seeded mutations of the ``.pt2`` graph and weights config (values replaced by other JSON
values), of the TorchScript root code (tokens replaced) and of ``data.pkl`` (bytes flipped).
Whatever the damage, the only way out is a valid spec or a one-line :class:`SpecError` naming
the file: never another exception (a traceback for the CLI user).
"""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest
import torch
from export_models import TORCH_WARNINGS, example_input, make_model

from lstmfpga.export.model_files import load_model
from lstmfpga.export.spec import SpecError

pytestmark = [pytest.mark.filterwarnings(w) for w in TORCH_WARNINGS]

SEED = 20261201
TRIALS = 120
VALUES = [None, 0, -1, 1, 2, 10**30, "x", [], {}, [1, 2], {"as_int": 5}, True, 1.5,
          {"as_tensor": {"name": "x"}}]  # fmt: skip


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archives")
    model = make_model(12, head="last", input_size=3, hidden_size=4, batch_first=True)
    x = example_input(model)
    torch.jit.script(model).save(str(root / "script.pt"))
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, root / "model.pt2")
    return {"script": root / "script.pt", "pt2": root / "model.pt2"}


def _member(path: Path, part: str, suffix: str = "") -> tuple[str, bytes]:
    """The first member whose name holds ``part`` and ends with ``suffix``."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if part in n and n.endswith(suffix))
        return name, archive.read(name)


def _replace(source: Path, target: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, data if info.filename == name else zin.read(info))
    return target


def _mutate_json(rng: random.Random, value, count: int):
    for _ in range(count):
        current = value
        for _ in range(rng.randint(1, 12)):
            keys = list(current) if isinstance(current, dict) else range(len(current))
            if not keys:
                break
            key = rng.choice(list(keys))
            if isinstance(current[key], dict | list) and rng.random() < 0.8:
                current = current[key]
                continue
            current[key] = json.loads(json.dumps(rng.choice(VALUES)))
            break
    return value


def _outcome(path: Path) -> str:
    try:
        load_model(path)
    except SpecError as error:
        message = str(error)
        assert "\n" not in message, message
        assert message.startswith(f"{path}: "), message
        return "refused"
    return "loaded"


@pytest.mark.parametrize("member", ["models/model.json", "model_weights_config.json"])
def test_damaged_pt2_json_is_read_or_refused(member, archives, tmp_path):
    rng = random.Random(f"{SEED}-{member}")
    name, data = _member(archives["pt2"], member)
    original = json.loads(data)
    outcomes = []
    for trial in range(TRIALS):
        damaged = _mutate_json(rng, json.loads(json.dumps(original)), rng.randint(1, 4))
        path = _replace(
            archives["pt2"], tmp_path / f"{trial}.pt2", name, json.dumps(damaged).encode()
        )
        outcomes.append(_outcome(path))
    assert outcomes.count("refused") > TRIALS // 10  # the mutations do hit what is read


def test_damaged_torchscript_code_is_read_or_refused(archives, tmp_path):
    rng = random.Random(f"{SEED}-code")
    name, data = _member(archives["script"], "code/__torch__/export_models", ".py")  # mangled?
    tokens = ["-1", "0", "1", "None", "True", "x", "self", "torch.relu(x)", "(", ")", ",",
              "[0]", "y", "_0", "lstm", "fc", ""]  # fmt: skip
    outcomes = []
    for trial in range(TRIALS):
        words = data.decode().split(" ")
        for _ in range(rng.randint(1, 3)):
            words[rng.randrange(len(words))] = rng.choice(tokens)
        path = _replace(
            archives["script"], tmp_path / f"{trial}.pt", name, " ".join(words).encode()
        )
        outcomes.append(_outcome(path))
    assert outcomes.count("refused") > TRIALS // 10


def test_damaged_torchscript_pickle_is_read_or_refused(archives, tmp_path):
    rng = random.Random(f"{SEED}-pickle")
    name, data = _member(archives["script"], "/data.pkl", "/data.pkl")
    outcomes = []
    for trial in range(TRIALS):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        path = _replace(archives["script"], tmp_path / f"{trial}.pt", name, bytes(damaged))
        outcomes.append(_outcome(path))
    assert outcomes.count("refused") > TRIALS // 10
