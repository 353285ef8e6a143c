"""Subgroups (rank subsets, several alive at once), destroy and re-init in one process."""

from __future__ import annotations

import torch
from world import init, run_world


def _groups(rank, size):
    dist = init(rank, size)
    low = dist.new_group([0, 1])
    high = dist.new_group([1, 2, 3])
    evens = dist.new_group([0, 2], backend="gradwire")
    out = {}
    works = []
    # Ops in different groups in flight at once, from the same thread.
    t_world = torch.full((100,), float(rank))
    works.append(dist.all_reduce(t_world, async_op=True))
    if rank in (0, 1):
        t_low = torch.full((5,), float(rank + 1))
        works.append(dist.all_reduce(t_low, group=low, async_op=True))
    if rank in (1, 2, 3):
        t_high = torch.full((3,), float(rank))
        works.append(dist.all_reduce(t_high, group=high, op=dist.ReduceOp.MAX, async_op=True))
        b = torch.full((4,), float(rank))
        dist.broadcast(b, src=3, group=high)  # src is a global rank
        out["high_bcast"] = b.tolist()
    if rank in (0, 2):
        g = [torch.empty(2) for _ in range(2)]
        dist.all_gather(g, torch.full((2,), float(rank)), group=evens)
        out["evens_gather"] = [x.tolist() for x in g]
    for w in works:
        w.wait()
    out["world"] = t_world[0].item()
    if rank in (0, 1):
        out["low"] = t_low[0].item()
    if rank in (1, 2, 3):
        out["high"] = t_high[0].item()
    dist.barrier()
    dist.destroy_process_group()
    return out


def test_subgroups_alive_at_once():
    res = run_world(_groups, 4, timeout=120)
    for r in range(4):
        assert res[r]["world"] == 6.0
    assert res[0]["low"] == res[1]["low"] == 3.0
    for r in (1, 2, 3):
        assert res[r]["high"] == 3.0
        assert res[r]["high_bcast"] == [3.0] * 4
    for r in (0, 2):
        assert res[r]["evens_gather"] == [[0.0, 0.0], [2.0, 2.0]]


def _reinit(rank, size):
    import os

    from world import free_port

    results = []
    for round_ in range(3):
        if round_:
            # A fresh rendezvous for each incarnation, as a restarted job would use.
            os.environ["MASTER_PORT"] = str(int(os.environ["BASE_PORT"]) + round_)
        dist = init(rank, size)
        t = torch.full((8,), float(rank + round_))
        dist.all_reduce(t)
        results.append(t[0].item())
        dist.destroy_process_group()
    del free_port
    return results


def test_destroy_and_reinit_in_the_same_process():
    from world import free_port

    base = free_port()
    res = run_world(_reinit, 2, timeout=120, env={"BASE_PORT": str(base)})
    for r in range(2):
        assert res[r] == [1.0, 3.0, 5.0]
