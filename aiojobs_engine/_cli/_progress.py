"""A one-line progress bar on a terminal, redrawn in place; silent when not on a terminal.

It is fed the number of jobs still due: progress only moves forward, and the total grows
when jobs are enqueued (or come due) meanwhile, so the bar never runs backwards.
"""

from __future__ import annotations

from typing import TextIO


class ProgressBar:
    def __init__(self, stream: TextIO, *, width: int = 30, enabled: bool | None = None) -> None:
        self._stream = stream
        self._width = width
        self._enabled = _is_terminal(stream) if enabled is None else enabled
        self._done = 0
        self._total = 0
        self._drawn = False

    @property
    def done(self) -> int:
        return self._done

    @property
    def total(self) -> int:
        return self._total

    def update(self, remaining: int) -> None:
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
        self._stream.write(f"\r[{bar}] {self._done}/{self._total} jobs")
        self._stream.flush()
        self._drawn = True


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False
