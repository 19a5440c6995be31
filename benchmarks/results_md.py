"""``benchmarks/RESULTS.md`` sections: each benchmark script owns the text between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` and rewrites only that."""

from __future__ import annotations

import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\n"
    "Each section is written by the script it names, between `<!-- NAME:begin -->` and\n"
    "`<!-- NAME:end -->`; re-run that script to update it (other sections are kept).\n"
)


def update_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``
    (appending the section if absent, creating the file with a header if missing)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def publish(results: Path | None, name: str, body: str) -> None:
    """Print ``body``; with ``results`` (None for a smoke run on the real file), also write it
    there as section ``name``."""
    print(body)
    if results is not None:
        update_section(results, name, body)
        print(f"\nupdated the {name} section of {results}", file=sys.stderr)
