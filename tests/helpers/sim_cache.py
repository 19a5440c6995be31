"""The simulator build cache shared by every test of a session."""

import os


def cache_root(tmp_path_factory):
    """One simulator build cache per test session (the parent of xdist's worker dirs), so a
    design is compiled once per session whatever test needs it; the content cache (and its
    lock file) makes sharing it safe."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "lstmfpga-sim-cache"
    root.mkdir(parents=True, exist_ok=True)
    return root
