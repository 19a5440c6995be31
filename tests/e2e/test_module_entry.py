"""``python -m lstmfpga`` is the same command line as the ``lstmfpga`` script."""

import subprocess
import sys
from importlib import metadata


def test_python_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "lstmfpga", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"lstmfpga {metadata.version('lstmfpga')}"


def test_python_m_refuses_like_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "lstmfpga", "demo", "--lanes", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "lstmfpga: error: --lanes must be a positive integer, not 0"
