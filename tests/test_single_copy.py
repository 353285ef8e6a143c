"""Single-copy messages between ranks on one host (GRADWIRE_CMA_MIN_BYTES): the receiver reads
the sender's buffer with process_vm_readv. Results must equal those of the ring path, messages
that arrive before their receive is posted must not be lost, and a receiver that cannot read the
sender (another pid namespace) must fall back to the ring without an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from world import free_port, init, run_world

SMALL = {"GRADWIRE_CMA_MIN_BYTES": "4K"}


def _collectives(rank, size):
    dist = init(rank, size)
    out = {}
    t = torch.arange(300_000, dtype=torch.float32) * (rank + 1)  # 1.2 MB: ring, several chunks
    dist.all_reduce(t)
    out["allreduce"] = float(t.double().sum())
    b = torch.arange(50_000, dtype=torch.float64) if rank == 1 else torch.zeros(50_000).double()
    dist.broadcast(b, src=1)
    out["broadcast"] = float(b.sum())
    g = [torch.zeros(20_000, dtype=torch.int32) for _ in range(size)]
    dist.all_gather(g, torch.full((20_000,), rank, dtype=torch.int32))
    out["allgather"] = [int(x[0]) for x in g] + [int(x[-1]) for x in g]
    rs = torch.zeros(10_000)
    dist.reduce_scatter_single(rs, torch.ones(10_000 * size) * (rank + 1))
    out["reduce_scatter"] = float(rs.sum())
    a2a = torch.empty(8_000 * size, dtype=torch.int64)
    dist.all_to_all_single(a2a, torch.full((8_000 * size,), rank, dtype=torch.int64))
    out["alltoall"] = [int(a2a[i * 8_000]) for i in range(size)]
    # A send whose receive is posted late: the offer is read into a buffer at once.
    if rank == 0:
        dist.send(torch.arange(40_000, dtype=torch.float32), dst=1)
    elif rank == 1:
        time.sleep(0.3)
        r = torch.zeros(40_000)
        dist.recv(r, src=0)
        out["late_recv"] = float(r.double().sum())
    dist.barrier()
    out["single_copy"] = dist.distributed_c10d._get_default_group().stats()["bytes_single_copy"]
    dist.destroy_process_group()
    return out


@pytest.mark.parametrize("size", [2, 3])
def test_single_copy_collectives_are_exact(size):
    res = run_world(_collectives, size, env=SMALL, timeout=120)
    n = 300_000
    for rank, out in enumerate(res):
        assert out["allreduce"] == float(
            np.arange(n, dtype=np.float64).sum() * size * (size + 1) / 2
        )
        assert out["broadcast"] == float(np.arange(50_000).sum())
        assert out["allgather"] == list(range(size)) * 2
        assert out["reduce_scatter"] == 10_000 * size * (size + 1) / 2
        assert out["alltoall"] == list(range(size))
        assert out["single_copy"] > 0, f"rank {rank} received nothing by single copy"
    assert res[1]["late_recv"] == float(np.arange(40_000).sum())


def test_single_copy_off_when_disabled():
    res = run_world(_collectives, 2, env={"GRADWIRE_CMA_MIN_BYTES": "0"}, timeout=120)
    assert all(out["single_copy"] == 0 for out in res)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_peer_in_another_pid_namespace_falls_back_to_the_ring():
    """Its pid means another process here (or none): the token check refuses, data still flows."""
    port = free_port()
    worker = str(Path(__file__).with_name("single_copy_worker.py"))
    env = dict(
        os.environ,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE="2",
        GRADWIRE_CMA_MIN_BYTES="4K",
        GRADWIRE_LOG_LEVEL="info",
    )
    procs = [
        subprocess.Popen(
            (["unshare", "--pid", "--fork"] if rank == 1 else []) + [sys.executable, worker],
            env=dict(env, RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, err
        outs.append((json.loads(out.strip().splitlines()[-1]), err))
    (r0, err0), (r1, err1) = outs
    assert r0["ok"] and r1["ok"]
    assert r1["pid"] == 1 or r1["pid"] != procs[1].pid  # rank 1 really ran in its own namespace
    assert r0["single_copy"] == 0 and r1["single_copy"] == 0
    assert "single copy from rank 1 unavailable" in err0
    assert "single copy from rank 0 unavailable" in err1
