"""gradwire demo: a 2-process DDP training run on the "gradwire" backend, then an all_reduce
benchmark of gradwire against torch's gloo in the same processes.

    python examples/demo.py [--world-size 2] [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def make_data(n: int, seed: int = 0):
    """Four Gaussian clusters in 20 dimensions with a planted linear structure."""
    centers = torch.randn(4, 20, generator=torch.Generator().manual_seed(1234)) * 2.0
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    x = centers[labels] + 3.0 * torch.randn(n, 20, generator=g)  # overlapping clusters
    return x, labels


def train(rank: int, world: int, steps: int) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    x, y = make_data(4096)
    xs, ys = x[rank::world], y[rank::world]  # each rank trains on its own shard
    xt, yt = make_data(1024, seed=1)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(xs), (64,))
        loss = torch.nn.functional.cross_entropy(ddp(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rank == 0 and (step % max(1, steps // 6) == 0 or step == steps):
            with torch.no_grad():
                acc = (model(xt).argmax(1) == yt).float().mean().item()
            print(
                f"  step {step:4d}/{steps}  loss {loss.item():.4f}  test accuracy {acc:.3f}",
                flush=True,
            )
    # Every rank must hold the same parameters after DDP training.
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    same = all(torch.equal(gathered[0], g) for g in gathered)
    if rank == 0:
        print(
            f"  {steps} steps in {time.perf_counter() - t0:.2f} s; parameters identical on all "
            f"{world} ranks: {same}",
            flush=True,
        )
    if not same:
        raise SystemExit("parameters diverged across ranks")


def bench(rank: int, gloo, sizes, reps: int):
    rows = []
    for nbytes in sizes:
        t = torch.ones(max(1, nbytes // 4))
        result = {}
        for name, group in (("gradwire", None), ("gloo", gloo)):
            for _ in range(10):
                dist.all_reduce(t, group=group)
            times = []
            for _ in range(reps):
                dist.barrier(group=group)
                t0 = time.perf_counter()
                dist.all_reduce(t, group=group)
                times.append(time.perf_counter() - t0)
            result[name] = statistics.median(times)
        rows.append((nbytes, result["gradwire"], result["gloo"]))
    return rows


def worker(rank: int, world: int, port: int, steps: int) -> None:
    import gradwire  # noqa: F401 - registers the backend

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gradwire", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    if rank == 0:
        print(f"[1/2] DDP training on {world} processes over the gradwire backend", flush=True)
    train(rank, world, steps)
    gloo = dist.new_group(backend="gloo")
    if rank == 0:
        print("[2/2] all_reduce float32, median of 20 runs, same processes, same sizes", flush=True)
    rows = bench(rank, gloo, [4, 4096, 1 << 20, 16 << 20], reps=20)
    if rank == 0:
        print(f"  {'size':>10} {'gradwire':>12} {'gloo':>12} {'gloo/gradwire':>14}")
        for nbytes, gw, gl in rows:
            print(f"  {nbytes:>10} {gw * 1e6:>10.1f}us {gl * 1e6:>10.1f}us {gl / gw:>13.2f}x")
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(args.world_size, port, args.steps), nprocs=args.world_size)


if __name__ == "__main__":
    main()
