"""Run the ``lstmfpga`` CLI as a hostile user would, and check that it refuses cleanly.

Every robustness case runs the real console entry point in a subprocess under a
:data:`ADDRESS_SPACE_LIMIT` address-space limit, with ``cwd`` set to a fresh work folder, and
:func:`assert_refused` checks the whole contract of a refusal:

* exit code 2;
* stderr is exactly one line, starting ``lstmfpga: error:`` (no traceback, no warnings such as
  ``coroutine ... never awaited``);
* nothing was created or changed outside the case's ``out`` folder (the inputs folder is
  snapshotted before and compared after);
* no payload ran: the marker file :attr:`Case.marker` (which every malicious payload tries to
  create) does not exist.

Cases build their bad inputs themselves inside :attr:`Case.inputs`.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ADDRESS_SPACE_LIMIT", "Case", "Result", "assert_refused", "run_cli"]

#: The address-space limit the CLI runs under in these tests (bytes).
ADDRESS_SPACE_LIMIT = 4 << 30


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Case:
    """The folders of one case: ``inputs`` (bad files), ``out`` (the only writable place)."""

    root: Path

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def marker(self) -> Path:
        """The file a malicious payload tries to create."""
        return self.root / "PWNED"

    @classmethod
    def make(cls, tmp_path: Path) -> Case:
        case = cls(Path(tmp_path))
        case.inputs.mkdir(parents=True, exist_ok=True)
        case.out.mkdir(parents=True, exist_ok=True)
        return case


def _limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    state = {}
    for path in sorted(root.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        rel = str(path.relative_to(root))
        if path.is_file():
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[rel] = "dir"
    return state


def run_cli(case: Case, *args: str | os.PathLike, timeout: float = 300) -> Result:
    """Run ``lstmfpga ARGS`` in ``case.out`` under the address-space limit."""
    argv = [str(a) for a in args]
    env = {k: v for k, v in os.environ.items() if k != "LSTMFPGA_DEBUG"}
    env["PYTHONWARNINGS"] = "default"  # warnings would show up on stderr: they must not happen
    before = _snapshot(case.root, case.out)
    proc = subprocess.run(
        [sys.executable, "-m", "lstmfpga.cli", *argv],
        cwd=case.out,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    after = _snapshot(case.root, case.out)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"lstmfpga {argv} wrote outside its output folder: {changed}"
    return Result(argv, proc.returncode, proc.stdout, proc.stderr)


def assert_refused(result: Result, case: Case, *, match: str | None = None) -> str:
    """Check the refusal contract (module docstring); return the error message."""
    where = f"lstmfpga {' '.join(result.args)}"
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, f"{where} printed a traceback:\n{result.stderr}"
    assert result.returncode == 2, (
        f"{where} exited {result.returncode}, not 2\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}"
    )
    assert len(lines) == 1, f"{where} printed {len(lines)} stderr lines, not 1:\n{result.stderr}"
    assert lines[0].startswith("lstmfpga: error: "), f"{where}: {lines[0]!r}"
    assert not case.marker.exists(), f"{where}: a payload ran (created {case.marker})"
    message = lines[0].removeprefix("lstmfpga: error: ")
    if match is not None:
        assert match.lower() in message.lower(), f"{where}: {message!r} does not mention {match!r}"
    return message
