"""The Work handle every gradwire collective returns.

torch's generic future-wrapping Work swallows a failed future's error in ``wait()``, which would
turn a dead peer into silently wrong results. This Work re-raises the op's error from ``wait()``
and honours an explicit wait timeout; its future (``get_future()``) is what comm hooks chain on.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import List, Optional

import torch
import torch.distributed as dist

from gradwire.errors import TimeoutError as GradwireTimeoutError


class GradwireWork(dist.Work):
    def __init__(self, fut: torch.futures.Future, what=None):
        super().__init__()
        self._fut = fut
        # A string, or the engine's Work, which formats its description only when asked (errors).
        self._what = what

    @property
    def _description(self) -> str:
        if self._what is None or isinstance(self._what, str):
            return self._what or "op"
        return self._what.description

    def wait(self, timeout: Optional[timedelta] = None) -> bool:
        if timeout is not None and timeout.total_seconds() > 0 and not self._fut.done():
            deadline = time.monotonic() + timeout.total_seconds()
            delay = 1e-4
            while not self._fut.done():
                if time.monotonic() >= deadline:
                    raise GradwireTimeoutError(
                        f"{self._description} did not complete within the {timeout.total_seconds()} s "
                        "passed to wait(); it is still running"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
        self._fut.wait()  # raises the op's error, if any
        return True

    def is_completed(self) -> bool:
        return self._fut.done()

    def is_success(self) -> bool:
        return self._fut.done() and self.exception() is None

    def exception(self):
        if not self._fut.done():
            return None
        try:
            self._fut.wait()
        except Exception as e:  # noqa: BLE001 - returned, not raised
            return e
        return None

    def get_future(self) -> torch.futures.Future:
        return self._fut

    def result(self) -> List[torch.Tensor]:
        return self._fut.wait()

    def _source_rank(self) -> int:
        """The sender of a receive from any source (group rank), once it has matched."""
        source = getattr(self._what, "source_rank", -1)
        if source < 0:
            raise RuntimeError(f"{self._description} is not a completed receive from any source")
        return source

    def synchronize(self) -> None:
        pass  # results are in place once the future completes; CPU staging needs no stream sync
