"""``benchmarks/RESULTS.md`` sections: each benchmark script owns the text between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` and rewrites only that.

Also the command line every benchmark shares: :func:`benchmark_parser` (``--smoke``,
``--results``), :func:`command_line` (the command a figure came from) and
:func:`publish_run` (print the section, and write it where :func:`results_path` says).
"""

from __future__ import annotations

import argparse
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


def benchmark_parser(doc: str, smoke: str) -> argparse.ArgumentParser:
    """The parser a benchmark script starts from: the first paragraph of its docstring
    ``doc`` as the description, ``--smoke`` (``smoke`` says what it runs) and ``--results``
    (where to write: :func:`results_path`)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help=smoke)
    parser.add_argument(
        "--results",
        type=Path,
        help="markdown file to update (default: benchmarks/RESULTS.md, not with --smoke)",
    )
    return parser


def results_path(args: argparse.Namespace) -> Path | None:
    """Where a run writes its section: ``--results`` if given, else ``RESULTS.md``; a
    ``--smoke`` run without ``--results`` prints only (None)."""
    return args.results if args.results or args.smoke else RESULTS


def command_line(script: str, args: argparse.Namespace, *extra: str) -> str:
    """``python benchmarks/SCRIPT [--smoke] EXTRA...``: the command that produced a figure."""
    return " ".join(
        ["python", f"benchmarks/{script}", *(["--smoke"] if args.smoke else []), *extra]
    )


def publish_run(args: argparse.Namespace, name: str, body: str) -> int:
    """:func:`publish` ``body`` as section ``name`` where :func:`results_path` says; the exit
    status of a finished benchmark (0)."""
    publish(results_path(args), name, body)
    return 0
