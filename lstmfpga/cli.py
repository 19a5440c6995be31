"""The ``lstmfpga`` command line: ``lstmfpga COMMAND ...``.

Each subcommand lives in ``lstmfpga/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and calls ``set_defaults(func=run)``;
``run(args)`` returns ``None`` (exit code 0) or an ``int`` exit code. To add a command,
write that module and append its name to :data:`COMMANDS`. Import heavy dependencies
(torch, amaranth) inside ``run``, so that ``lstmfpga --help`` stays fast.

Errors listed in :data:`lstmfpga.errors.REPORTED_ERRORS` (``SpecError``, ``CLIError``,
any ``ValueError``/``OSError``) are printed as one line ``lstmfpga: error: <message>`` on
stderr with exit code 2; ``LSTMFPGA_DEBUG=1`` re-raises them with their traceback.
Usage errors found by argparse (a missing option, an invalid choice or number) are one line
too, ``lstmfpga: error: lstmfpga CMD: <argparse's message> (see lstmfpga CMD --help)``,
exit code 2.
``MemoryError`` and ``RecursionError`` (which bounded readers should make impossible) are
reported the same way, as one line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from lstmfpga.errors import REPORTED_ERRORS

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand modules under ``lstmfpga.commands``, in ``--help`` order.
COMMANDS = [
    "export",
    "info",
    "predict",
    "quantize",
    "finetune",
    "generate",
    "pack_weights",
    "simulate",
    "report",
    "compare",
    "synth",
    "explore",
    "demo",
]

EXIT_ERROR = 2


def _version() -> str:
    try:
        return metadata.version("lstmfpga")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (subcommand parsers inherit the class)."""

    def error(self, message: str):
        message = " ".join(message.split())
        print(f"lstmfpga: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command of :data:`COMMANDS` registered."""
    parser = _Parser(
        prog="lstmfpga",
        description="Turn a PyTorch-trained LSTM into verified, bit-exact FPGA hardware.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"lstmfpga.commands.{name}")
        module.register(subparsers)
    return parser


def _one_line(error: BaseException) -> str:
    message = " ".join(str(error).split())
    return message or type(error).__name__


def _debug() -> bool:
    return os.environ.get("LSTMFPGA_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lstmfpga`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        result = args.func(args)
    except REPORTED_ERRORS as error:
        if _debug():
            raise
        print(f"lstmfpga: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except (MemoryError, RecursionError) as error:
        # A last line of defence: inputs are bounded before use, so this means a bug or a
        # limit set too high; still one line, not a traceback.
        if _debug():
            raise
        what = "out of memory" if isinstance(error, MemoryError) else "input nested too deeply"
        print(f"lstmfpga: error: {what} ({type(error).__name__})", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("lstmfpga: interrupted", file=sys.stderr)
        return 130
    return 0 if result is None else int(result)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
