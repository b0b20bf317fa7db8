"""One way to report the progress of long work (targets, training, attacks, studies).

A *reporter* is any callable taking a one-line message: ``print_line`` (the default), a list's
``append`` in tests, or None for silence. ``Counter`` adds a count, the elapsed time and an
estimate of the time left to each message.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional

Reporter = Optional[Callable[[str], Any]]


def print_line(message: str) -> None:
    """Prints ``message`` to standard output at once (progress lines interleave with Keras')."""
    print(message, file=sys.stdout, flush=True)


def silent(message: str) -> None:
    """Discards ``message``."""


def reporter(progress: Reporter) -> Callable[[str], Any]:
    """The callable to report with: ``progress`` itself, or ``silent`` for None."""
    return silent if progress is None else progress


def format_seconds(seconds: float) -> str:
    """``75`` -> ``"1 min 15 s"``; ``3 * 3600`` -> ``"3 h 0 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Counter:
    """Counts finished items of long work and reports each with an estimate of the time left.

    Args:
        total: The number of items.
        what: What is counted, e.g. ``"runs"``; starts every line.
        progress: The reporter (None: silent).
    """

    def __init__(self, total: int, what: str, progress: Reporter = print_line):
        self.total = int(total)
        self.what = what
        self.done = 0
        self.report = reporter(progress)
        self.started = time.monotonic()

    def advance(self, detail: str = "", count: int = 1) -> None:
        """Marks ``count`` more items finished and reports the line."""
        self.done += int(count)
        elapsed = time.monotonic() - self.started
        line = f"{self.what} {self.done}/{self.total}"
        if detail:
            line += f": {detail}"
        line += f" ({format_seconds(elapsed)} elapsed"
        if 0 < self.done < self.total:
            line += f", about {format_seconds(elapsed / self.done * (self.total - self.done))} left"
        self.report(line + ")")
