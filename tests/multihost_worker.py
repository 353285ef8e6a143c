"""One rank of the cross-host test, run inside a vcluster host (its own network namespace).

Prints one JSON line: {"rank":..., "address":..., "errors": [...]}.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import gradwire  # noqa: F401
import torch
import torch.distributed as dist


def main() -> int:
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gradwire", rank=rank, world_size=size, timeout=timedelta(seconds=60))
    pg = dist.distributed_c10d._get_default_group()
    errors = []

    def expect(name, got, want):
        if not torch.equal(got, want):
            errors.append(
                f"{name}: got {got.flatten()[:4].tolist()} want {want.flatten()[:4].tolist()}"
            )

    total = sum(range(1, size + 1))
    for n in [1, 1000, 2_000_000]:
        t = torch.full((n,), float(rank + 1))
        dist.all_reduce(t)
        expect(f"all_reduce n={n}", t, torch.full((n,), float(total)))
    b = (
        torch.arange(100_000, dtype=torch.int64)
        if rank == 2 % size
        else torch.zeros(100_000, dtype=torch.int64)
    )
    dist.broadcast(b, src=2 % size)
    expect("broadcast", b, torch.arange(100_000, dtype=torch.int64))
    out = torch.empty(size * 3)
    dist.all_gather_into_tensor(out, torch.full((3,), float(rank)))
    expect("all_gather", out, torch.arange(size, dtype=torch.float32).repeat_interleave(3))
    inp = torch.arange(size * 2, dtype=torch.float32) + 100 * rank
    a2a = torch.empty(size * 2)
    dist.all_to_all_single(a2a, inp)
    want = torch.cat(
        [torch.arange(rank * 2, rank * 2 + 2, dtype=torch.float32) + 100 * p for p in range(size)]
    )
    expect("all_to_all", a2a, want)
    rs = torch.empty(4)
    dist.reduce_scatter_tensor(rs, torch.ones(size * 4))
    expect("reduce_scatter", rs, torch.full((4,), float(size)))
    dist.barrier()
    address = pg.communicator.listen_address
    dist.destroy_process_group()
    print(json.dumps({"rank": rank, "address": address, "errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
