"""A progress bar on stderr, so stdout stays a clean table.

On a terminal the bar redraws in place; otherwise (logs, CI) it prints a line each time another
tenth of the work is done.

>>> import io
>>> p = Progress(total=4, stream=io.StringIO())
>>> p.step("allreduce 4B"); p.done
1
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

_WIDTH = 30


class Progress:
    def __init__(self, total: int, stream: Optional[TextIO] = None, enabled: bool = True):
        self.total, self.done = max(1, total), 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = time.monotonic()
        self._last_tenth = -1

    def step(self, label: str) -> None:
        self.done = min(self.total, self.done + 1)
        if not self.enabled:
            return
        frac = self.done / self.total
        filled = int(frac * _WIDTH)
        bar = "#" * filled + "." * (_WIDTH - filled)
        elapsed = time.monotonic() - self._start
        line = f"[{bar}] {self.done}/{self.total} {elapsed:6.1f}s {label}"
        if self.tty:
            end = "\n" if self.done == self.total else ""
            self.stream.write(f"\r\033[K{line}{end}")
        elif int(frac * 10) != self._last_tenth:
            self._last_tenth = int(frac * 10)
            self.stream.write(line + "\n")
        self.stream.flush()
