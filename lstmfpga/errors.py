"""Errors that lstmfpga reports to users as one line (``lstmfpga: error: <message>``).

The CLI (:mod:`lstmfpga.cli`) catches :data:`REPORTED_ERRORS`, prints the message on one
line to stderr and exits with code 2; set ``LSTMFPGA_DEBUG=1`` to get the traceback instead.

* :class:`lstmfpga.export.spec.SpecError` (a ``ValueError``): a model or artifact that
  cannot be represented; raised by export/ and by artifact readers.
* :class:`LstmfpgaError` (a ``ValueError``): base class for the errors of the other
  packages; subclass it (e.g. ``class QuantError(LstmfpgaError)``) so that library users
  can catch every lstmfpga error with one ``except``.
* :class:`ManifestError`: a design's ``manifest.json`` that is missing, malformed or of
  another version (:mod:`lstmfpga.hw.manifest`).
* :class:`SimulationError`: a simulation that cannot run or whose design broke the stream
  contract (:mod:`lstmfpga.sim`; :class:`lstmfpga.sim.budget.SimulationStuck` for a
  sequence over its cycle budget).
* :class:`SynthesisError`: a design folder, target or tool run that synthesis refuses or
  that failed (:mod:`lstmfpga.synth`).
* :class:`CLIError`: a bad command-line argument or input file, found by a command.

Library errors name the argument (``stall must be ...``); the CLI words its own flags
(``--stall must be ...``) where it checks them itself.

Any other ``ValueError`` or ``OSError`` escaping a command is reported the same way: the
wording rule (``X must be Y, not {x!r}``) makes those messages readable on their own.
"""

from __future__ import annotations

from lstmfpga.export.spec import SpecError

__all__ = [
    "REPORTED_ERRORS",
    "CLIError",
    "LstmfpgaError",
    "ManifestError",
    "SimulationError",
    "SpecError",
    "SynthesisError",
]


class LstmfpgaError(ValueError):
    """Base class of lstmfpga's user-facing errors (the message says what and why)."""


class ManifestError(LstmfpgaError):
    """A design manifest that is missing, malformed, or of another format version."""


class SimulationError(LstmfpgaError):
    """A simulation that cannot run, or a design that broke the stream contract or stopped
    making progress."""


class SynthesisError(LstmfpgaError):
    """A design folder, target or option that synthesis refuses, or a tool run that failed."""


class CLIError(LstmfpgaError):
    """A bad command-line argument or input file (missing, wrong format, wrong shape)."""


#: What :func:`lstmfpga.cli.main` reports as ``lstmfpga: error: <message>``, exit code 2.
REPORTED_ERRORS = (LstmfpgaError, SpecError, ValueError, OSError)
