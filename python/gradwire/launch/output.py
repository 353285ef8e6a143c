"""Workers' output, line by line, labelled with the rank (coloured on a terminal) and copied
to per-rank log files.

Each worker's stdout and stderr are pipes read by one thread each; a line is written whole
under a lock, so lines of different ranks never interleave mid-line.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import IO, List, Optional

_COLORS = [36, 33, 35, 32, 34, 31, 96, 93, 95, 92, 94, 91]


def use_color(mode: str, stream: IO) -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


class Output:
    def __init__(self, color_mode: str = "auto", log_dir: Optional[str] = None):
        self.color_mode = color_mode
        self.log_dir = Path(log_dir) if log_dir else None
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []

    def label(self, rank: int, stream: IO) -> bytes:
        text = f"[rank{rank}]"
        if use_color(self.color_mode, stream):
            text = f"\x1b[{_COLORS[rank % len(_COLORS)]}m{text}\x1b[0m"
        return (text + " ").encode()

    def log_file(self, rank: int, attempt: int) -> Optional[IO[bytes]]:
        if self.log_dir is None:
            return None
        d = self.log_dir / f"attempt{attempt}"
        d.mkdir(parents=True, exist_ok=True)
        return open(d / f"rank{rank}.log", "ab")

    def attach(self, rank: int, attempt: int, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        log = self.log_file(rank, attempt)
        open_streams = [2]

        def pump(src: IO[bytes], dst: IO) -> None:
            prefix = self.label(rank, dst)
            sink = getattr(dst, "buffer", dst)
            try:
                for line in iter(src.readline, b""):
                    if not line.endswith(b"\n"):
                        line += b"\n"
                    with self._lock:
                        sink.write(prefix + line)
                        sink.flush()
                        if log is not None:
                            log.write(line)
            finally:
                src.close()
                with self._lock:
                    open_streams[0] -= 1
                    if log is not None and open_streams[0] == 0:
                        log.close()

        for src, dst in ((stdout, sys.stdout), (stderr, sys.stderr)):
            t = threading.Thread(target=pump, args=(src, dst), daemon=True)
            t.start()
            self._threads.append(t)

    def drain(self, timeout: float = 5.0) -> None:
        """Wait for the readers of exited workers to print what is left."""
        for t in self._threads:
            t.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]


def say(msg: str) -> None:
    """The launcher's own messages, on stderr, labelled so they stand out from the ranks'."""
    sys.stderr.write(f"[gradwire run] {msg}\n")
    sys.stderr.flush()
