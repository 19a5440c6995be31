"""One-line checks of the fields of a JSON manifest (pure Python, no Amaranth, no torch).

Each check reads ``info[key]`` and returns it, or raises :class:`~lstmfpga.errors.ManifestError`
with one line naming where it was read and what it must be
(``<where>: <key> must be <wanted>, not <value>``). :mod:`.manifest` (the design manifest)
and :mod:`.weight_port` (its ``weight_port`` section) are built on them.
"""

from __future__ import annotations

import re

from ..errors import ManifestError

__all__ = [
    "FILE_NAME",
    "IDENTIFIER",
    "SHA256",
    "bool_field",
    "checked",
    "dict_field",
    "fixed_format_field",
    "int_field",
    "int_table",
    "is_span",
    "list_field",
    "require",
    "str_field",
]

#: A Verilog/Python identifier (port and top names).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: A plain file name inside a design folder (no path separator, no leading dot).
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: A SHA-256 digest in lowercase hex.
SHA256 = re.compile(r"[0-9a-f]{64}")


def require(info: dict, key: str, where: str):
    """``info[key]``; one line when ``info`` is not an object or has no ``key``."""
    if not isinstance(info, dict):
        raise ManifestError(f"{where} must be an object, not {info!r:.60}")
    if key not in info:
        raise ManifestError(f"{where}: {key} is missing")
    return info[key]


def checked(info: dict, key: str, where: str, ok, wanted: str):
    """``info[key]`` if ``ok(value)``, else one line: ``<where>: <key> must be <wanted>``."""
    value = require(info, key, where)
    if not ok(value):
        raise ManifestError(f"{where}: {key} must be {wanted}, not {value!r:.60}")
    return value


def int_field(info: dict, key: str, where: str, minimum: int = 0) -> int:
    def ok(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= minimum

    return checked(info, key, where, ok, f"an integer >= {minimum}")


def bool_field(info: dict, key: str, where: str) -> bool:
    return checked(info, key, where, lambda v: isinstance(v, bool), "true or false")


def str_field(info: dict, key: str, where: str, pattern: re.Pattern | None = None) -> str:
    def ok(v):
        return isinstance(v, str) and (pattern is None or pattern.fullmatch(v) is not None)

    wanted = "a string" if pattern is None else f"a string matching {pattern.pattern}"
    return checked(info, key, where, ok, wanted)


def dict_field(info: dict, key: str, where: str) -> dict:
    return checked(info, key, where, lambda v: isinstance(v, dict), "an object")


def list_field(info: dict, key: str, where: str) -> list:
    return checked(info, key, where, lambda v: isinstance(v, list), "a list")


def fixed_format_field(text, what: str, where: str) -> str:
    """``text`` if it parses as a :class:`~lstmfpga.quant.fixed.FixedFormat`."""
    from ..quant.fixed import FixedFormat  # numpy only

    try:
        if not isinstance(text, str):
            raise ValueError(f"must be a string, not {text!r:.60}")
        FixedFormat.parse(text)
    except ValueError as error:
        raise ManifestError(f"{where}: {what}: {error}") from None
    return text


def int_table(table: dict, what: str, where: str) -> dict[str, int]:
    """``{"T": cycles}`` tables: keys positive integers, values integers >= 0."""
    for key in table:
        if not (isinstance(key, str) and key.isdigit() and int(key) >= 1):
            raise ManifestError(f"{where}: {what} keys must be positive integers, not {key!r:.40}")
        int_field(table, key, f"{where}: {what}")
    return table


def is_span(value) -> bool:
    """Whether ``value`` is ``[offset, width]`` (offset >= 0, width >= 1)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        and value[1] >= 1
    )
