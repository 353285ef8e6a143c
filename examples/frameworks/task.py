"""The small training task every framework script runs: same data, same initial weights.

Four overlapping Gaussian clusters in 20 dimensions and a 2-layer MLP. Nothing here knows about
a backend or a framework.
"""

from __future__ import annotations

import hashlib
import json

import torch

SAMPLES, BATCH, EPOCHS, LR = 512, 32, 3, 0.05


def dataset(n: int = SAMPLES, seed: int = 0) -> torch.utils.data.TensorDataset:
    centers = torch.randn(4, 20, generator=torch.Generator().manual_seed(1234)) * 2.0
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    return torch.utils.data.TensorDataset(
        centers[labels] + 3.0 * torch.randn(n, 20, generator=g), labels
    )


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=LR, momentum=0.9)


def digest(state: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes: equal digests mean equal bits."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def report(prefix: str, rank: int, state: dict, **info) -> None:
    """Each rank writes what it ran on and the digest of its final weights to `prefix`.rankN.json;
    rank 0 also saves the weights to `prefix`.pt."""
    import sys

    import torch.distributed as dist

    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    pg = dist.distributed_c10d._get_default_group()
    info.update(
        digest=digest(state),
        backend=dist.get_backend(),
        group_type=type(pg).__name__,
        world_size=dist.get_world_size(),
        # the scripts never import gradwire: the backend came from torch's autoload
        engine_loaded="gradwire.backend" in sys.modules,
    )
    with open(f"{prefix}.rank{rank}.json", "w") as f:
        json.dump(info, f)
    if rank == 0:
        torch.save(state, f"{prefix}.pt")
