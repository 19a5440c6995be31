"""Progress shown to a user at the command line."""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]


class ProgressBar:
    """A one-line progress bar on a stream (stderr by default): ``bar(done, total)`` redraws
    it (``label [####....] done/total <unit> (elapsed, ~remaining)``) and ends the line when
    ``done >= total``."""

    def __init__(self, label: str = "simulating", stream=None, width: int = 30, unit="sequences"):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.unit = unit
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        elapsed = time.perf_counter() - self.started
        eta = ""
        if 0 < done < total:
            eta = f", ~{elapsed * (total - done) / done:.0f} s left"
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{done}/{total} {self.unit} ({elapsed:.1f} s{eta})"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
