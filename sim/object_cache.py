"""Verilator's runtime objects, compiled once and reused by every build.

Every Verilator model links the same runtime (``verilated.o``, ``verilated_vpi.o``,
``verilated_threads.o``, ``verilated_dpi.o``, compiled from the wheel's ``include/``); they
took ~15 of a build's CPU seconds. Verilator's Makefile runs each compile as
``$(OBJCACHE) $(CXX) ... -c -o verilated.o .../include/verilated.cpp`` (``OBJCACHE`` is
meant for ccache); :func:`enabled` points ``OBJCACHE`` at this file, which works like
ccache's preprocessor mode for those objects only:

* the key is a SHA-256 of the compiler's identity (its resolved path and ``--version``), the
  whole command line and the source's preprocessed text (``-E``: every header, every
  ``-D`` and include path as the compiler sees them), so an object is reused only where the
  compiler would produce it from the same input with the same options;
* a hit copies ``<folder>/<key>.o`` to the object the Makefile asked for; a miss compiles
  as usual and stores the object by an atomic rename. The folder is the default build
  cache's ``verilator-objects``, shared by every build cache (delete it to reclaim space);
  a lock file per key serializes concurrent builds (pytest-xdist workers, ``--jobs``): the
  second waits for the first and reuses its object;
* anything else (the model's own files, precompiled headers, the link) runs unchanged, and
  so does a runtime compile whose preprocessing fails.

The cached objects are byte for byte what the build would compile, so the build cache's
key (:mod:`lstmfpga.sim.cocotb_build`) does not change. This file runs as a script under
the Makefile (standard library only).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["CACHE_ENV", "FOLDER", "enabled"]

#: The environment variable naming the object folder while a build runs.
CACHE_ENV = "LSTMFPGA_VERILATOR_OBJECTS"
#: The object folder's name (in the default build cache, :mod:`lstmfpga.sim.cocotb_build`).
FOLDER = "verilator-objects"
#: Bump when the key's recipe changes.
_VERSION = 1
_DEPENDENCY_FLAGS = {"-MD", "-MMD", "-MP"}
_DEPENDENCY_OPTIONS = {"-MF", "-MT", "-MQ"}  # followed by an argument


@contextlib.contextmanager
def enabled(folder: Path):
    """While a Verilator build runs under :func:`lstmfpga.sim.simulators.tool_environment`
    (``VERILATOR_ROOT`` set): its runtime objects come from ``folder``. A folder that cannot
    be written, or whose path has white space (``MAKEFLAGS`` cannot carry it), leaves the
    build as it was."""
    try:
        folder = Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        launcher = _launcher(folder)
    except OSError:
        launcher = None
    if launcher is None or any(c.isspace() for c in str(launcher)):
        yield
        return
    # imported here: this file also runs as a plain script (the launcher), without its package
    from .environ import patched_environ

    makeflags = " ".join(filter(None, [f"OBJCACHE={launcher}", os.environ.get("MAKEFLAGS")]))
    with patched_environ({CACHE_ENV: str(folder), "MAKEFLAGS": makeflags}):
        yield


def _launcher(folder: Path) -> Path:
    """``folder/cxx-<hash>`` (written atomically, named by its text, so installations
    sharing the folder never run each other's): a compile whose last argument is a runtime
    source runs this file with this Python, any other compile runs as it is (no Python
    started for the model's files)."""
    text = (
        "#!/bin/sh\n"
        'for last; do :; done\ncase "$last" in\n'
        f'    "$VERILATOR_ROOT"/include/*.cpp) exec {shlex.quote(sys.executable)} '
        f'{shlex.quote(__file__)} "$@" ;;\n'
        'esac\nexec "$@"\n'
    )
    path = folder / f"cxx-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    try:
        if path.read_text() == text:
            return path
    except OSError:
        pass
    temporary = folder / f".cxx.{os.getpid()}.{threading.get_ident()}"
    temporary.write_text(text)
    temporary.chmod(0o755)
    os.replace(temporary, path)
    return path


def _runtime_object(command: list[str]) -> str | None:
    """The object ``command`` compiles when it is one of Verilator's runtime sources
    (``$VERILATOR_ROOT/include/*.cpp``, no precompiled header), else None."""
    root = os.environ.get("VERILATOR_ROOT")
    if not root or "-c" not in command or "-include" in command or command.count("-o") != 1:
        return None
    output = command[command.index("-o") + 1]
    source = Path(command[-1])
    if not output.endswith(".o") or source.suffix != ".cpp":
        return None
    if source.resolve().parent != (Path(root) / "include").resolve():
        return None
    return output


def _preprocessor(command: list[str]) -> list[str]:
    """``command`` with ``-c -o X`` replaced by ``-E -o -`` and no dependency-file options."""
    out, skip = [], False
    for i, arg in enumerate(command):
        if skip:
            skip = False
        elif arg in _DEPENDENCY_OPTIONS or (arg == "-o" and i > 0):
            skip = True
        elif arg not in _DEPENDENCY_FLAGS:
            out.append("-E" if arg == "-c" else arg)
    return [*out[:-1], "-o", "-", out[-1]]


def _key(command: list[str]) -> str | None:
    compiler = shutil.which(command[0])
    if compiler is None:
        return None
    version = subprocess.run([compiler, "--version"], capture_output=True, check=False)
    text = subprocess.run(_preprocessor(command), capture_output=True, check=False)
    if version.returncode or text.returncode:
        return None
    digest = hashlib.sha256(f"{_VERSION}\0{os.path.realpath(compiler)}\0".encode())
    digest.update(version.stdout + b"\0" + "\0".join(command[1:]).encode() + b"\0")
    digest.update(text.stdout)
    return digest.hexdigest()


def _copy(source: Path, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def main(command: list[str]) -> int:
    folder = os.environ.get(CACHE_ENV)
    output = _runtime_object(command) if folder and command else None
    key = _key(command) if output else None
    if key is None:
        return subprocess.run(command, check=False).returncode
    folder = Path(folder)
    cached = folder / f"{key}.o"
    with open(folder / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached.is_file():
            _copy(cached, Path(output))
            print(f"lstmfpga: {output} from the object cache ({cached})", flush=True)
            return 0
        code = subprocess.run(command, check=False).returncode
        if code == 0 and Path(output).is_file():
            _copy(Path(output), cached)
        return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
