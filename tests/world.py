"""Run a function on N real processes that form a torch.distributed world over real sockets.

`run_world(fn, n)` spawns n processes, each calling `fn(rank, world_size, *args)` after setting
MASTER_ADDR/MASTER_PORT; it returns the per-rank return values, or raises with every failing
rank's traceback. A world that does not finish within `timeout` seconds is killed and reported:
a hang is a test failure, never a stuck test run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback
from typing import Any, Callable, Dict, List, Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(fn, rank, size, port, env, args, queue):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    os.environ.update(env or {})
    try:
        queue.put((rank, "ok", fn(rank, size, *args)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        queue.put((rank, "error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class WorldError(AssertionError):
    pass


def run_world(
    fn: Callable[..., Any],
    size: int,
    *args: Any,
    timeout: float = 120.0,
    env: Optional[Dict[str, str]] = None,
    allow_errors: bool = False,
) -> List[Any]:
    """Returns [result of rank 0, ...]. With allow_errors, failed ranks yield ("error", text)
    and ranks that died without reporting yield ("died", exitcode)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_child, args=(fn, r, size, port, env, args, queue), daemon=True)
        for r in range(size)
    ]
    for p in procs:
        p.start()
    results: Dict[int, Any] = {}
    errors: Dict[int, str] = {}
    import queue as queue_mod
    import time

    deadline = time.monotonic() + timeout
    try:
        while len(results) + len(errors) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [r for r in range(size) if r not in results and r not in errors]
                raise WorldError(
                    f"world of {size} timed out after {timeout}s; ranks {missing} hung"
                )
            try:
                rank, status, value = queue.get(timeout=min(remaining, 0.5))
            except queue_mod.Empty:
                dead = [
                    r
                    for r, p in enumerate(procs)
                    if not p.is_alive() and r not in results and r not in errors
                ]
                if dead and queue.empty():
                    time.sleep(0.2)
                    if queue.empty():
                        if not allow_errors:
                            codes = {r: procs[r].exitcode for r in dead}
                            raise WorldError(
                                f"ranks died without reporting: exit codes {codes}"
                            ) from None
                        for r in dead:
                            errors[r] = ("died", procs[r].exitcode)
                continue
            if status == "ok":
                results[rank] = value
            else:
                errors[rank] = value if not allow_errors else ("error", value)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    if errors and not allow_errors:
        text = "\n".join(f"--- rank {r} ---\n{e}" for r, e in sorted(errors.items()))
        raise WorldError(f"{len(errors)} rank(s) failed:\n{text}")
    return [results.get(r, errors.get(r)) for r in range(size)]


def init(rank: int, size: int, backend: str = "gradwire", timeout_s: float = 60.0):
    """Process-group set-up inside a world process."""
    from datetime import timedelta

    import gradwire  # noqa: F401 - registers the backend
    import torch.distributed as dist

    dist.init_process_group(
        backend, rank=rank, world_size=size, timeout=timedelta(seconds=timeout_s)
    )
    return dist
