"""A progress line for long jobs: done / total, images per second, ETA, error rows.

On a terminal the line is redrawn in place (carriage return) at most :data:`REDRAW_SECONDS`
apart; into a file or pipe (a log, CI) it is printed as a new line every :data:`LOG_SECONDS`,
so a log stays short. The rate counts only the images of this run (not those resumed from an
earlier one), averaged since the first partition finished, which leaves out the start-up (the
walk, starting workers, loading the model) that would otherwise inflate the ETA of a long job.
"""
from __future__ import annotations

import sys
import time

__all__ = ["Progress", "format_duration"]

REDRAW_SECONDS = 0.2
LOG_SECONDS = 10.0
BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """``H:MM:SS``.

    >>> format_duration(3725.4)
    '1:02:05'
    """
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Progress of a job of ``total`` images, written to ``stream`` (default stderr).

    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress("predict", stream=out, tty=False)
    >>> p.start(total=10, done=4)
    >>> p.advance(6, errors=1)
    >>> p.finish()
    >>> out.getvalue().splitlines()[-1].startswith("predict 10/10 images 100%")
    True
    """

    def __init__(self, label: str, stream=None, tty: bool | None = None, enabled: bool = True):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.enabled = enabled
        self.total = self.done = self.errors = self.run = 0
        self._t_first = self._t_shown = None
        self._run_first = 0

    def start(self, total: int, done: int = 0, errors: int = 0) -> None:
        self.total, self.done, self.errors, self.run = total, done, errors, 0
        self._t_first = None
        self._t_shown = time.perf_counter()
        if done:
            self._show(force=True)

    def advance(self, n: int, errors: int = 0) -> None:
        self.done += n
        self.errors += errors
        self.run += n
        if self._t_first is None:
            self._t_first, self._run_first = time.perf_counter(), self.run
        self._show()

    def rate(self) -> float:
        """Images per second of this run since its first partition finished (0 before)."""
        if self._t_first is None:
            return 0.0
        elapsed = time.perf_counter() - self._t_first
        return (self.run - self._run_first) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        share = self.done / self.total if self.total else 1.0
        filled = int(round(share * BAR_WIDTH))
        rate = self.rate()
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        bar = f" [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]" if self.tty else ""
        return (f"{self.label} {self.done:,}/{self.total:,} images {share:4.0%}{bar} "
                f"{rate:,.0f} images/s ETA {eta} errors {self.errors:,}")

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._t_shown < (REDRAW_SECONDS if self.tty else LOG_SECONDS):
            return
        self._t_shown = now
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if not self.enabled or self._t_shown is None:
            return
        self._show(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
