"""Closing a world without a false "peer lost" error.

Ranks leave the last collective at different times: a ring or dissemination step can be done
on one rank while another still waits for a third. If the first rank then closes its
connections, the engine on the slow rank sees a peer vanish during an op and fails it (as it
must for a crashed peer). So before closing, every rank announces through the rendezvous
store that all its ops are done and waits for everyone's announcement; only then does it
close. Rank 0 hosts the store, so it waits until every rank has closed before it returns.
"""

from __future__ import annotations

import time
from typing import Callable

from gradwire.bench.errors import BenchRunError

_DONE, _CLOSED = "gradwire-bench/ops-done", "gradwire-bench/closed"


def _wait_count(store, key: str, size: int, deadline: float) -> None:
    while int(store.add(key, 0)) < size:
        if time.monotonic() > deadline:
            raise BenchRunError(f"not every rank reached '{key}' before the timeout")
        time.sleep(0.005)


def close_when_all_done(store, rank: int, size: int, close: Callable[[], None], timeout: float):
    deadline = time.monotonic() + timeout
    store.add(_DONE, 1)
    _wait_count(store, _DONE, size, deadline)
    close()
    store.add(_CLOSED, 1)
    if rank == 0:
        _wait_count(store, _CLOSED, size, deadline)
