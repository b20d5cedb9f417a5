"""A one-line progress bar on a terminal, redrawn in place; silent when not on a terminal.

It is fed the number of jobs still due: progress only moves forward, and the total grows
when jobs are enqueued (or come due) meanwhile, so the bar never runs backwards. The rate is
jobs done per second since the first update, the ETA what is left at that rate.

Hand-written rather than tqdm or rich: one line of output needs no dependency, and the
count comes from polling the database, not from an iterable such a library wraps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class ProgressBar:
    def __init__(self, stream: TextIO, *, width: int = 30, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._width = width
        self._enabled = _is_terminal(stream) if enabled is None else enabled
        self._clock = clock
        self._started: float | None = None
        self._done = 0
        self._total = 0
        self._drawn = False
        self._last_length = 0

    @property
    def done(self) -> int:
        return self._done

    @property
    def total(self) -> int:
        return self._total

    @property
    def rate(self) -> float | None:
        """Jobs done per second so far (None before any time has passed)."""
        if self._started is None:
            return None
        elapsed = self._clock() - self._started
        return self._done / elapsed if elapsed > 0 else None

    def update(self, remaining: int) -> None:
        if self._started is None:
            self._started = self._clock()
        self._done = max(self._done, self._total - remaining)
        self._total = max(self._total, self._done + remaining)
        self._draw()

    def finish(self) -> None:
        """Show the bar full and end its line."""
        self.update(0)
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self) -> None:
        if not self._enabled:
            return
        filled = self._width if self._total == 0 else self._width * self._done // self._total
        bar = "#" * filled + "-" * (self._width - filled)
        line = f"[{bar}] {self._done}/{self._total} jobs  {self._speed()}"
        # Pad over the end of a longer previous line (the ETA shrinks).
        self._stream.write(f"\r{line.ljust(self._last_length)}")
        self._last_length = len(line)
        self._stream.flush()
        self._drawn = True


    def _speed(self) -> str:
        rate = self.rate
        if not rate:
            return "-/s  ETA -"
        left = self._total - self._done
        return f"{rate:.1f}/s  ETA {_duration(left / rate)}"


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False
