"""gradwire.comm: the numpy-level API, without torch.distributed; and the `gradwire` command."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from world import run_world


def _numpy_world(rank, size):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size))
    from gradwire.comm import Communicator
    from gradwire.errors import InvalidArgumentError

    comm = Communicator.from_env(timeout=30)
    out = {}
    a = np.full(1000, rank + 1, dtype=np.float32)
    comm.allreduce(a)
    out["allreduce"] = float(a[0])
    m = np.full(5, rank, dtype=np.int64)
    comm.allreduce(m, op="max", async_op=True).wait()
    out["max"] = int(m[0])
    b = np.arange(6, dtype=np.float64) if rank == 1 else np.zeros(6)
    comm.broadcast(b, root=1)
    out["bcast"] = b.tolist()
    g = np.empty(size * 2, dtype=np.int32)
    comm.allgather(np.full(2, rank, dtype=np.int32), g)
    out["gather"] = g.tolist()
    rs = np.empty(3, dtype=np.float32)
    comm.reduce_scatter(np.ones(size * 3, dtype=np.float32), rs)
    out["rs"] = rs.tolist()
    t = np.empty(size, dtype=np.int64)
    comm.alltoall(np.arange(size, dtype=np.int64) + 10 * rank, t)
    out["a2a"] = t.tolist()
    nxt, prv = (rank + 1) % size, (rank - 1) % size
    got = np.empty(4, dtype=np.float64)
    s = comm.send(np.full(4, float(rank)), nxt, tag=3, async_op=True)
    comm.recv(got, prv, tag=3)
    s.wait()
    out["p2p"] = got.tolist()
    comm.barrier()
    errors = []
    for bad in (
        lambda: comm.allreduce([1, 2]),
        lambda: comm.allreduce(np.ones((4, 4))[:, 0]),
        lambda: comm.allreduce(np.ones(3, dtype=np.complex64)),
        lambda: comm.allreduce(a, op="median"),
    ):
        try:
            bad()
            errors.append("no error")
        except InvalidArgumentError as e:
            errors.append(str(e))
    out["errors"] = errors
    out["stats"] = comm.stats()
    comm.close()
    return out


def test_numpy_api():
    res = run_world(_numpy_world, 3, timeout=60)
    for rank, r in enumerate(res):
        assert r["allreduce"] == 6.0 and r["max"] == 2
        assert r["bcast"] == list(range(6))
        assert r["gather"] == [0, 0, 1, 1, 2, 2]
        assert r["rs"] == [3.0] * 3
        assert r["a2a"] == [rank + 10 * p for p in range(3)]
        assert r["p2p"] == [float((rank - 1) % 3)] * 4
        assert all(e != "no error" for e in r["errors"]), r["errors"]
        assert r["stats"]["ops_completed"] >= 7 and r["stats"]["ops_failed"] == 0


@pytest.mark.parametrize("args, code", [(["info"], 0), (["--help"], 0), (["nosuch"], 2)])
def test_cli(args, code):
    p = subprocess.run(
        [sys.executable, "-m", "gradwire.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == code, p.stderr
    if args == ["info"]:
        # the development install builds the torch adapter against the torch it runs with
        assert p.stdout.startswith("gradwire ") and "torch adapter: present" in p.stdout, p.stdout
