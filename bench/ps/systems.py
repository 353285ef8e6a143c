"""The two parameter servers behind one interface, and the worker processes that use them.

A *system* is "gradwire" (gradwire.ps: C++ servers started by
``gradwire.ps.start_local_servers``) or "rpc" (the torch.distributed.rpc baseline in
``rpc_ps.py``: one Python server process per shard). Both are started the same way and with
the same process layout: S server processes and W worker processes on this machine, workers
spawned by `run_workers` and handed a picklable `Endpoint` to connect with.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

SYSTEMS = ("gradwire", "rpc")

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Endpoint:
    """What a worker needs to connect: the system, the layout and the servers' address(es)."""

    system: str
    num_servers: int
    num_workers: int
    addresses: Any  # gradwire: the handle's addresses; rpc: (host, port)


class Servers:
    """Running servers of one system; `stop()` ends them (idempotent)."""

    def __init__(self, system: str, num_servers: int, num_workers: int, mode: str = "asp"):
        if system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}; choose one of {SYSTEMS}")
        self.system = system
        self._handle = None
        self._procs: List[mp.Process] = []
        if system == "gradwire":
            import gradwire.ps

            self._handle = gradwire.ps.start_local_servers(num_servers, num_workers, mode=mode)
            addresses: Any = list(self._handle.addresses)
        else:
            if mode != "asp":
                raise ValueError("the rpc baseline applies pushes on arrival: mode 'asp' only")
            import rpc_ps

            port = free_port()
            ctx = mp.get_context("spawn")
            for i in range(num_servers):
                p = ctx.Process(
                    target=rpc_ps.serve,
                    args=(i, num_servers, num_workers, "127.0.0.1", port),
                    daemon=True,
                )
                p.start()
                self._procs.append(p)
            addresses = ("127.0.0.1", port)
        self.endpoint = Endpoint(system, num_servers, num_workers, addresses)

    def stop(self, timeout: float = 30.0) -> None:
        if self._handle is not None:
            self._handle.stop()
            self._handle = None
        deadline = time.monotonic() + timeout
        for p in self._procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        self._procs = []

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def connect(ep: Endpoint, worker_id: int):
    """A client with gradwire.ps's method names, for worker `worker_id` (call in the worker)."""
    if ep.system == "gradwire":
        import gradwire.ps

        return gradwire.ps.connect(
            servers=ep.addresses, worker_id=worker_id, num_workers=ep.num_workers
        )
    import rpc_ps

    host, port = ep.addresses
    return rpc_ps.Client(host, port, worker_id, ep.num_servers, ep.num_workers)


def optim_module(system: str):
    """The module holding SGD/Adagrad/Normal for `system`."""
    if system == "gradwire":
        import gradwire.ps

        return gradwire.ps
    import rpc_ps

    return rpc_ps


def embedding(system: str, client, num_rows: int, dim: int, table: str, lr: float, std: float):
    """A PS-backed embedding table (rows pulled in forward, gradients pushed in backward) with
    a server-side Adagrad."""
    m = optim_module(system)
    cls = m.ShardedEmbedding if system == "gradwire" else m.RpcEmbedding
    return cls(
        num_rows,
        dim,
        client=client,
        table=table,
        optimizer=m.Adagrad(lr=lr),
        init=m.Normal(std=std),
    )


def _child(fn, worker_id, ep, args, results):
    try:
        results.put((worker_id, "ok", fn(worker_id, ep, *args)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        results.put((worker_id, "error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def run_workers(
    fn: Callable[..., Any],
    ep: Endpoint,
    *args: Any,
    timeout: float = 600.0,
    barrier: Optional[Any] = None,
) -> List[Any]:
    """Runs fn(worker_id, endpoint, *args) in ep.num_workers spawned processes and returns their
    results in worker order. Pass `barrier=True` to get a shared multiprocessing Barrier as the
    first extra argument. Raises with every failing worker's traceback, or on timeout."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    extra = (ctx.Barrier(ep.num_workers),) if barrier else ()
    procs = [
        ctx.Process(target=_child, args=(fn, w, ep, extra + args, results), daemon=True)
        for w in range(ep.num_workers)
    ]
    for p in procs:
        p.start()
    got, errors = {}, {}
    deadline = time.monotonic() + timeout
    try:
        while len(got) + len(errors) < len(procs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ep.system} workers timed out after {timeout:.0f}s")
            try:
                w, status, value = results.get(timeout=0.5)
            except queue_mod.Empty:
                dead = [w for w, p in enumerate(procs) if not p.is_alive() and w not in got]
                if dead and results.empty() and not errors:
                    time.sleep(1.0)
                    if results.empty():
                        codes = {w: procs[w].exitcode for w in dead}
                        raise RuntimeError(
                            f"{ep.system} workers died: exit codes {codes}"
                        ) from None
                if errors:
                    break
                continue
            (got if status == "ok" else errors)[w] = value
        if errors:
            text = "\n".join(f"--- worker {w}:\n{e}" for w, e in sorted(errors.items()))
            raise RuntimeError(f"{ep.system} workers failed:\n{text}")
        return [got[w] for w in range(len(procs))]
    finally:
        for p in procs:
            p.join(timeout=5 if not errors else 0.5)
            if p.is_alive():
                p.kill()
                p.join()
