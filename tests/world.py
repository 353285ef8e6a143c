"""Run a function on N real processes that form a torch.distributed world over real sockets.

`run_world(fn, n)` starts n processes (forked from a server that has imported torch), each
calling `fn(rank, world_size, *args)` after setting MASTER_ADDR/MASTER_PORT; it returns the per-rank return values, or raises with every failing
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


# Ranks are forked from a server process that has imported these once (multiprocessing's
# forkserver): a fresh interpreter importing torch costs ~3 CPU-seconds per rank, which on a
# 2-core machine was most of the suite's time. The server imports nothing of gradwire, and each
# rank gets the parent's environment as it is when the world starts.
_PRELOAD = ["torch", "torch.distributed", "numpy"]


def _context():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _adopt_stdio(parent_pid: int) -> None:
    """Write to where the parent's stdout and stderr point now (a spawned child inherits them;
    a forked one inherits the server's, e.g. an earlier test's capture file)."""
    for fd in (1, 2):
        try:
            target = os.open(f"/proc/{parent_pid}/fd/{fd}", os.O_WRONLY | os.O_APPEND)
        except OSError:
            continue
        os.dup2(target, fd)
        os.close(target)


def _child(fn, rank, size, port, env, args, queue, parent_env, parent_pid):
    _adopt_stdio(parent_pid)
    os.environ.clear()
    os.environ.update(parent_env)
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
    ctx = _context()
    queue = ctx.Queue()
    port = free_port()
    parent_env = dict(os.environ)
    procs = [
        ctx.Process(
            target=_child,
            args=(fn, r, size, port, env, args, queue, parent_env, os.getpid()),
            daemon=True,
        )
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
