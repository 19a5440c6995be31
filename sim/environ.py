"""Environment variables set for the duration of a build or a run."""

from __future__ import annotations

import contextlib
import os

__all__ = ["patched_environ"]


@contextlib.contextmanager
def patched_environ(values: dict[str, str]):
    """While the block runs, ``os.environ`` has ``values``; afterwards every key is back to
    what it was (removed if it was unset)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
