"""One rank of a job run by an installed gradwire in another environment (tests/test_install.py):
started as a script, by an interpreter other than the test's, with gradwire from a fresh install.

    install_worker.py numpy RANK SIZE STORE_DIR OUT   gradwire.comm collectives, without torch
    install_worker.py ddp RANK SIZE PORT BACKEND OUT  DDP with torch's built-in FP16_COMPRESS hook

Each writes a JSON file OUT with what it saw. Kept to the standard library, numpy and torch, and
runnable on every Python that pyproject.toml declares.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from urllib.parse import quote


class FileStore:
    """The set/get/add store gradwire.comm rendezvous through, on a shared directory (torch's
    TCPStore is not available without torch). get waits for the key, up to `timeout` seconds."""

    def __init__(self, path: str, timeout: float = 60.0):
        self.path, self.timeout = path, timeout

    def _file(self, key: str) -> str:
        return os.path.join(self.path, quote(key, safe=""))

    def set(self, key: str, value) -> None:
        data = value.encode() if isinstance(value, str) else bytes(value)
        tmp = self._file(key) + f".tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self._file(key))

    def get(self, key: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with open(self._file(key), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"store key '{key}' not set within {self.timeout}s"
                    ) from None
                time.sleep(0.005)

    def add(self, key: str, delta: int) -> int:
        with open(os.path.join(self.path, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self._file(key), "rb") as f:
                    value = int(f.read() or b"0")
            except FileNotFoundError:
                value = 0
            value += delta
            self.set(key, str(value))
            return value


def run_numpy(rank: int, size: int, store_dir: str) -> dict:
    import gradwire
    import numpy as np
    from gradwire.comm import Communicator

    comm = Communicator(FileStore(store_dir), rank, size, timeout=60)
    a = np.full(100_000, rank + 1, dtype=np.float32)  # several ring chunks
    comm.allreduce(a)
    m = np.full(7, rank, dtype=np.int64)
    comm.allreduce(m, op="max", async_op=True).wait()
    b = np.arange(5, dtype=np.float64) if rank == 0 else np.zeros(5)
    comm.broadcast(b, root=0)
    g = np.empty(2 * size, dtype=np.int32)
    comm.allgather(np.full(2, rank, dtype=np.int32), g)
    comm.barrier()
    comm.close()
    return {
        "gradwire": gradwire.__file__,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "allreduce": sorted(set(a.tolist())),
        "max": sorted(set(m.tolist())),
        "bcast": b.tolist(),
        "gather": g.tolist(),
    }


def run_ddp(rank: int, size: int, port: int, backend: str) -> dict:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from datetime import timedelta

    import gradwire
    import torch
    import torch.distributed as dist
    from gradwire import _futures

    dist.init_process_group(backend, rank=rank, world_size=size, timeout=timedelta(seconds=60))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    init = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)
    ddp._register_builtin_comm_hook(dist.BuiltinCommHookType.FP16_COMPRESS)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(100 + rank)  # different data on every rank
    for _ in range(6):
        loss = ddp(torch.randn(32, 16, generator=gen)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    dist.destroy_process_group()
    return {
        "gradwire": gradwire.__file__,
        "typed_futures": _futures.TYPED_FUTURES,
        "init": init.tolist(),
        "params": flat.tolist(),
    }


def main(argv) -> None:
    kind, rank, size = argv[0], int(argv[1]), int(argv[2])
    if kind == "numpy":
        result, out = run_numpy(rank, size, argv[3]), argv[4]
    elif kind == "ddp":
        result, out = run_ddp(rank, size, int(argv[3]), argv[4]), argv[5]
    else:
        raise SystemExit(f"unknown job kind '{kind}'")
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
