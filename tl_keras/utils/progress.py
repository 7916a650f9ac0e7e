"""A progress line on stderr for the long silent steps: listing, checking and decoding images, hashing
them, computing feature caches. It shows the count, the total and the rate, redrawn at most ten times
a second, only when stderr is a terminal; `quiet()` (the CLI's `--quiet`) or `TL_KERAS_QUIET=1`
turns it off.

Examples:
    >>> import io
    >>> out = io.StringIO()  # not a terminal: nothing is written
    >>> with Progress("decoding images", 3, stream=out) as bar:
    ...     bar.advance(3)
    >>> out.getvalue()
    ''
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO


def quiet(on: bool = True) -> None:
    """Turns progress lines off (or back on) for this process and the ones it starts."""
    if on:
        os.environ["TL_KERAS_QUIET"] = "1"
    else:
        os.environ.pop("TL_KERAS_QUIET", None)


class Progress:
    """`with Progress("decoding images", total) as bar: ... bar.advance()`; thread-safe."""

    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None, interval: float = 0.1):
        self.label, self.total, self.count = label, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.enabled = (os.environ.get("TL_KERAS_QUIET") != "1" and hasattr(self.stream, "isatty")
                        and self.stream.isatty())
        self._lock = threading.Lock()
        self._started = self._shown = time.perf_counter()

    def __enter__(self) -> "Progress":
        self._started = time.perf_counter()
        return self

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.count += n
            now = time.perf_counter()
            if self.enabled and (now - self._shown >= self.interval or self.count == self.total):
                self._shown = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.count / max(now - self._started, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        self.stream.write(f"\r{self.label}: {self.count}{of} ({rate:,.0f}/s)")
        self.stream.flush()

    def __exit__(self, *exc) -> None:
        if self.enabled and self.count:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
