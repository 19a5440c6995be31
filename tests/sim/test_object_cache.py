"""Verilator's runtime objects are compiled once and reused (lstmfpga.sim.object_cache).

A fake ``VERILATOR_ROOT`` holds a tiny runtime source: the Makefile's compile command, run
through the cache, compiles it once, hands later builds the very same object, compiles again
when anything the compiler sees changes (a header, a define), leaves every other compile
alone, and two builds missing at the same time store one object.
"""

import os
import subprocess
import sys

import pytest

from lstmfpga.sim import object_cache


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """A fake Verilator root with ``include/rt.cpp`` (and its header), the object folder set."""
    monkeypatch.chdir(tmp_path)  # compile_command changes into its build folder
    include = tmp_path / "verilator" / "include"
    include.mkdir(parents=True)
    (include / "rt.h").write_text("#define RT_VALUE 41\n")
    (include / "rt.cpp").write_text('#include "rt.h"\nint rt_value() { return RT_VALUE + ONE; }\n')
    folder = tmp_path / "objects"
    folder.mkdir()
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path / "verilator"))
    monkeypatch.setenv(object_cache.CACHE_ENV, str(folder))
    return include, folder


def compile_command(source, output, *defines):
    """The Makefile's command for ``source`` (an absolute path), run in ``output``'s folder."""
    os.chdir(output.parent)
    return ["c++", "-O1", "-MMD", *defines, "-DONE=1", "-c", "-o", output.name, str(source)]


def stored(folder):
    return sorted(folder.glob("*.o"))


def test_a_runtime_object_is_compiled_once_and_then_copied(runtime, tmp_path, capsys):
    include, folder = runtime
    first, second = tmp_path / "a" / "rt.o", tmp_path / "b" / "rt.o"
    first.parent.mkdir(), second.parent.mkdir()
    assert object_cache.main(compile_command(include / "rt.cpp", first)) == 0
    assert (tmp_path / "a" / "rt.d").is_file()  # compiled as the Makefile asked
    (cached,) = stored(folder)
    assert cached.read_bytes() == first.read_bytes()
    capsys.readouterr()
    assert object_cache.main(compile_command(include / "rt.cpp", second)) == 0
    assert second.read_bytes() == first.read_bytes()
    assert not (tmp_path / "b" / "rt.d").exists()  # not compiled: copied
    assert "rt.o from the object cache" in capsys.readouterr().out
    assert stored(folder) == [cached]


@pytest.mark.parametrize("change", ["header", "define"])
def test_what_the_compiler_sees_changing_compiles_again(runtime, tmp_path, change):
    include, folder = runtime
    assert object_cache.main(compile_command(include / "rt.cpp", tmp_path / "old.o")) == 0
    defines = ()
    if change == "header":
        (include / "rt.h").write_text("#define RT_VALUE 42\n")
    else:
        defines = ("-DEXTRA=1",)
    new = tmp_path / "new.o"
    assert object_cache.main(compile_command(include / "rt.cpp", new, *defines)) == 0
    assert len(stored(folder)) == 2
    if change == "header":
        assert new.read_bytes() != (tmp_path / "old.o").read_bytes()


def test_the_models_own_files_are_compiled_as_they_are(runtime, tmp_path):
    _, folder = runtime
    model = tmp_path / "Vtop.cpp"
    model.write_text("int vtop() { return ONE; }\n")
    assert object_cache.main(compile_command(model, tmp_path / "Vtop.o")) == 0
    assert (tmp_path / "Vtop.o").is_file() and stored(folder) == []
    failing = tmp_path / "bad.cpp"
    failing.write_text("int broken( {\n")
    assert object_cache.main(compile_command(failing, tmp_path / "bad.o")) != 0


def test_a_failing_runtime_compile_stores_nothing(runtime, tmp_path):
    include, folder = runtime
    (include / "rt.h").write_text("#define RT_VALUE (\n")
    assert object_cache.main(compile_command(include / "rt.cpp", tmp_path / "rt.o")) != 0
    assert stored(folder) == []


def test_enabled_points_make_at_the_launcher_and_restores_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", "OPT_FAST=-O2")
    monkeypatch.delenv(object_cache.CACHE_ENV, raising=False)
    folder = tmp_path / "objects"
    with object_cache.enabled(folder):
        flags = os.environ["MAKEFLAGS"].split()
        assert os.environ[object_cache.CACHE_ENV] == str(folder.resolve())
    (launcher,) = folder.glob("cxx-*")
    assert flags == [f"OBJCACHE={launcher.resolve()}", "OPT_FAST=-O2"]
    assert os.environ["MAKEFLAGS"] == "OPT_FAST=-O2"
    assert object_cache.CACHE_ENV not in os.environ
    assert os.access(launcher, os.X_OK) and sys.executable in launcher.read_text()


def test_two_builds_missing_at_once_store_one_object(runtime, tmp_path):
    include, folder = runtime
    with object_cache.enabled(folder):
        launcher = os.environ["MAKEFLAGS"].split()[0].split("=", 1)[1]
        env = dict(os.environ)
    outputs = [tmp_path / f"build{i}" / "rt.o" for i in range(2)]
    procs = []
    for out in outputs:
        out.parent.mkdir()
        command = compile_command(include / "rt.cpp", out)
        procs.append(subprocess.Popen([launcher, *command], env=env, cwd=out.parent))
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0]
    (cached,) = stored(folder)
    assert outputs[0].read_bytes() == outputs[1].read_bytes() == cached.read_bytes()


def test_the_launcher_hands_only_runtime_sources_to_the_cache(runtime, tmp_path):
    include, folder = runtime
    with object_cache.enabled(folder):
        launcher = os.environ["MAKEFLAGS"].split()[0].split("=", 1)[1]
        env = dict(os.environ)
    model = tmp_path / "Vtop.cpp"
    model.write_text("int vtop() { return ONE; }\n")
    for source, output in ((model, tmp_path / "Vtop.o"), (include / "rt.cpp", tmp_path / "rt.o")):
        command = compile_command(source, output)
        assert subprocess.run([launcher, *command], env=env, cwd=tmp_path).returncode == 0
        assert output.is_file()
    (cached,) = stored(folder)  # the runtime object only
    assert cached.read_bytes() == (tmp_path / "rt.o").read_bytes()
