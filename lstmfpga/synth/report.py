"""Synthesis results in a JSON file: ``synth --json FILE``.

:func:`merge_report` sets ``report["synthesis"]`` in an lstmfpga report (checked, format and
version, by :func:`lstmfpga.sim.report.load_report`) or in a :data:`SYNTHESIS_FORMAT` file of
its own, created when missing; :func:`check_report_target` checks the file before a minute of
synthesis.
"""

from __future__ import annotations

import os
from pathlib import Path

from lstmfpga.errors import SynthesisError
from lstmfpga.export import files

__all__ = ["SYNTHESIS_FORMAT", "SYNTHESIS_VERSION", "check_report_target", "merge_report"]

#: The ``format`` of a JSON file ``synth --json`` creates (an existing one may also be an
#: ``lstmfpga.report``).
SYNTHESIS_FORMAT, SYNTHESIS_VERSION = "lstmfpga.synthesis", 1


def check_report_target(path: str | Path) -> dict | None:
    """Check ``synth --json FILE`` before synthesizing: an existing FILE must be a regular,
    writable file holding an lstmfpga report (checked by :func:`lstmfpga.sim.report.
    load_report`) or an earlier :data:`SYNTHESIS_FORMAT` result; a new FILE's folder must
    exist and be writable. Returns the existing contents (None for a new file)."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise SynthesisError(f"report {path} must be a file, not a directory")
    if not folder.is_dir():
        raise SynthesisError(f"report {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SynthesisError(f"report {path}: folder {folder} is not writable")
    if not path.exists():
        if path.is_symlink():
            raise SynthesisError(f"report {path} is a dangling symbolic link")
        return None
    if not path.is_file():
        raise SynthesisError(f"report {path} must be a regular file")
    data = files.read_json(path, "report")
    fmt = data.get("format")
    if fmt == SYNTHESIS_FORMAT:
        if data.get("version") != SYNTHESIS_VERSION or isinstance(data.get("version"), bool):
            raise SynthesisError(
                f"report {path}: {SYNTHESIS_FORMAT} version must be {SYNTHESIS_VERSION}, "
                f"not {data.get('version')!r:.80}"
            )
    else:
        from lstmfpga.sim.report import REPORT_FORMAT, load_report

        if fmt != REPORT_FORMAT:
            raise SynthesisError(
                f"report {path} must be an lstmfpga report ({REPORT_FORMAT!r}) or a synthesis "
                f"result ({SYNTHESIS_FORMAT!r}), not format {fmt!r:.80}"
            )
        data = load_report(path)
    if not os.access(path, os.W_OK):
        raise SynthesisError(f"report {path} is not writable")
    return data


def merge_report(path: str | Path, result: dict, key: str = "synthesis") -> dict:
    """Set ``report[key] = result`` in the report at ``path`` (checked by
    :func:`check_report_target`; created as a :data:`SYNTHESIS_FORMAT` file holding only
    ``result`` when missing), keeping every other key; written to a temporary name and
    renamed. Returns the report."""
    path = Path(path)
    report = check_report_target(path)
    if report is None:
        report = {"format": SYNTHESIS_FORMAT, "version": SYNTHESIS_VERSION}
    report[key] = result
    files.write_json(path, report)
    return report
