"""DDP (plain, find_unused_parameters, gradient_as_bucket_view, fp16/PowerSGD/built-in fp16
hooks) and FSDP2 on gradwire: parameters identical on every rank and equal to a gloo run of
the same script."""

from __future__ import annotations

import pytest
import torch
from world import init, run_world


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(16, 32)
        self.b = torch.nn.Linear(32, 32)
        self.unused = torch.nn.Linear(32, 32)  # only in the forward pass every third step
        self.c = torch.nn.Linear(32, 4)

    def forward(self, x, step=0):
        h = torch.relu(self.a(x))
        h = torch.relu(self.b(h))
        if step % 3 == 0:
            h = h + self.unused(h)
        return self.c(h)


def _ddp_run(rank, size, backend, variant):
    dist = init(rank, size, backend)
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

    torch.manual_seed(0)
    model = Net()
    kwargs = {}
    if variant == "find_unused":
        kwargs["find_unused_parameters"] = True
    if variant == "bucket_view":
        kwargs["gradient_as_bucket_view"] = True
    if variant != "find_unused":
        model.unused.requires_grad_(False)
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.01, **kwargs)
    if variant == "fp16_hook":
        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif variant == "builtin_fp16":
        ddp._register_builtin_comm_hook(dist.BuiltinCommHookType.FP16_COMPRESS)
    elif variant == "powersgd":
        state = psgd.PowerSGDState(
            process_group=None, matrix_approximation_rank=2, start_powerSGD_iter=3, random_seed=7
        )
        ddp.register_comm_hook(state, psgd.powerSGD_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(100 + rank)  # different data on every rank
    for step in range(8):
        x = torch.randn(32, 16, generator=gen)
        loss = ddp(x, step).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    dist.destroy_process_group()
    return flat.numpy()  # numpy: torch tensors cannot cross the result queue safely


VARIANTS = ["plain", "find_unused", "bucket_view", "fp16_hook", "builtin_fp16", "powersgd"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_ddp_matches_gloo(variant):
    ours = [torch.from_numpy(a) for a in run_world(_ddp_run, 2, "gradwire", variant, timeout=180)]
    theirs = [torch.from_numpy(a) for a in run_world(_ddp_run, 2, "gloo", variant, timeout=180)]
    assert torch.equal(ours[0], ours[1]), "parameters differ across gradwire ranks"
    assert torch.equal(theirs[0], theirs[1])
    tol = 1e-5 if variant in ("plain", "find_unused", "bucket_view") else 2e-3
    assert torch.allclose(ours[0], theirs[0], rtol=tol, atol=tol), (
        f"max diff vs gloo {(ours[0] - theirs[0]).abs().max().item()}"
    )
    # The run must have trained: parameters moved away from their initial values.
    torch.manual_seed(0)
    init_flat = torch.cat([p.detach().reshape(-1) for p in Net().parameters()])
    assert not torch.allclose(ours[0], init_flat)


def _fsdp_run(rank, size, backend):
    dist = init(rank, size, backend)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (size,))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 4),
    )
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(10 + rank)
    losses = []
    for _ in range(6):
        x = torch.randn(16, 16, generator=gen)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    full = torch.cat([p.full_tensor().detach().reshape(-1) for p in model.parameters()])
    dist.destroy_process_group()
    return full.numpy(), losses


def test_fsdp2_fully_shard_matches_gloo():
    ours = run_world(_fsdp_run, 2, "gradwire", timeout=180)
    theirs = run_world(_fsdp_run, 2, "gloo", timeout=180)
    a, b, g = (torch.from_numpy(x[0]) for x in (ours[0], ours[1], theirs[0]))
    assert torch.equal(a, b), "parameters differ across gradwire ranks"
    assert torch.allclose(a, g, rtol=1e-5, atol=1e-6), f"max diff vs gloo {(a - g).abs().max()}"
    assert ours[0][1][-1] < ours[0][1][0], f"loss did not decrease: {ours[0][1]}"
