"""Parameter server, dense tensors: each consistency mode on real server processes and real
worker processes, against a single-process reference."""

from __future__ import annotations

import time

import gradwire.ps as ps
import pytest
import torch
from gradwire.errors import InvalidArgumentError
from ps_helpers import dyadic_grad, int_grad
from world import run_world

N = 150_000  # three 64K-element blocks: spread over both servers
STEPS = 4


def _bsp_worker(rank, size, addresses):
    c = ps.connect(addresses, worker_id=rank, num_workers=size, timeout=60)
    init = torch.arange(N, dtype=torch.float32) / 8 if rank == 0 else torch.zeros(N)
    c.register_dense("w", init, optimizer=ps.SGD(lr=0.5, momentum=0.5))
    seen = []
    out = torch.empty(N)
    for step in range(STEPS):
        c.push_pull("w", dyadic_grad(rank, step, N), out)
        seen.append(out.clone())
        c.clock()
    c.pull("w", out)  # at clock STEPS: every update applied
    seen.append(out.clone())
    c.close()
    return [t.numpy() for t in seen]  # numpy pickles by value (torch tensors by shared fd)


@pytest.mark.timeout(120)
def test_bsp_matches_single_process_sgd_exactly():
    workers = 3
    with ps.start_local_servers(2, workers, mode="bsp") as servers:
        results = run_world(_bsp_worker, workers, servers.addresses)
    p = torch.nn.Parameter(torch.arange(N, dtype=torch.float32) / 8)
    opt = torch.optim.SGD([p], lr=0.5, momentum=0.5)
    for step in range(STEPS):
        g = torch.zeros(N)
        for w in range(workers):
            g = g + dyadic_grad(w, step, N)
        p.grad = g
        opt.step()
        for w in range(workers):
            assert torch.equal(torch.from_numpy(results[w][step]), p.detach()), (w, step)
    for w in range(workers):
        assert torch.equal(torch.from_numpy(results[w][STEPS]), p.detach())


def _asp_worker(rank, size, addresses, steps):
    c = ps.connect(addresses, worker_id=rank, num_workers=size, timeout=60)
    c.register_dense("w", torch.full((N,), 100.0), optimizer=ps.SGD(lr=1.0))
    futures = [c.push_async("w", int_grad(rank, s, N)) for s in range(steps)]
    for f in futures:
        f.wait()
    c.close()


@pytest.mark.timeout(120)
def test_asp_applies_every_push_exactly_once():
    workers, steps = 2, 6
    with ps.start_local_servers(2, workers, mode="asp") as servers:
        run_world(_asp_worker, workers, servers.addresses, steps)
        c = ps.connect(servers.addresses, worker_id=0, num_workers=workers, timeout=30)
        c.register_dense("w", torch.zeros(N), optimizer=ps.SGD(lr=1.0))
        got = c.pull("w", torch.empty(N))
        c.close()
    want = torch.full((N,), 100.0)
    for w in range(workers):
        for s in range(steps):
            want -= int_grad(w, s, N)
    assert torch.equal(got, want)


def _ssp_worker(rank, size, addresses, staleness, steps):
    c = ps.connect(addresses, worker_id=rank, num_workers=size, timeout=60)
    c.register_dense("w", torch.zeros(1000), optimizer=ps.SGD(lr=1.0))
    out = torch.empty(1000)
    for _ in range(steps):
        if rank == size - 1:
            time.sleep(0.05)  # the straggler: the others run ahead until the bound holds them
        c.pull("w", out)
        c.push("w", torch.ones(1000))
        c.clock()
    final = c.max_observed_staleness
    c.close()
    return final


@pytest.mark.timeout(120)
def test_ssp_bound_holds_and_fast_workers_run_ahead():
    workers, staleness, steps = 3, 2, 8
    with ps.start_local_servers(1, workers, mode="ssp", staleness=staleness) as servers:
        gaps = run_world(_ssp_worker, workers, servers.addresses, staleness, steps)
        c = ps.connect(servers.addresses, worker_id=0, num_workers=workers, timeout=30)
        c.register_dense("w", torch.zeros(1000), optimizer=ps.SGD(lr=1.0))
        got = c.pull("w", torch.empty(1000))
        c.close()
    # Every read was served within the bound (the server reports the slowest clock with it)...
    assert max(gaps) <= staleness, gaps
    # ...the fast workers did use the slack (not BSP in disguise)...
    assert max(gaps[:-1]) >= 1, gaps
    # ...and every push was applied once.
    assert torch.equal(got, torch.full((1000,), -float(workers * steps)))


@pytest.mark.timeout(60)
def test_async_ops_registration_and_bad_requests():
    with ps.start_local_servers(2, 1, mode="asp") as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=30)
        c.register_dense("w", torch.ones(3, 4), optimizer=ps.SGD(lr=0.5))
        f = c.push_pull_async("w", torch.ones(3, 4), torch.empty(3, 4))
        assert torch.equal(f.wait(), torch.full((3, 4), 0.5))
        out = c.pull_async("w", torch.empty(3, 4)).wait()
        assert torch.equal(out, torch.full((3, 4), 0.5))
        # registering again keeps the servers' value
        c.register_dense("w", torch.zeros(3, 4), optimizer=ps.SGD(lr=0.5))
        assert torch.equal(c.pull("w", torch.empty(3, 4)), torch.full((3, 4), 0.5))
        with pytest.raises(ValueError, match=r"shape \[4, 3\] but 'w' was registered"):
            c.push("w", torch.ones(4, 3))
        with pytest.raises(ValueError, match="float32"):
            c.push("w", torch.ones(3, 4, dtype=torch.float64))
        with pytest.raises(ValueError, match="not registered"):
            c.pull("nope", torch.empty(3))
        with pytest.raises(ValueError, match="lr must be"):
            c.register_dense("v", torch.ones(2), optimizer=ps.SGD(lr=-1.0))
        c.close()


def _mismatch_worker(rank, size, addresses):
    c = ps.connect(addresses, worker_id=rank, num_workers=size, timeout=30)
    shape = (4, 6) if rank == 0 else (6, 4)
    try:
        c.register_dense("w", torch.zeros(shape), optimizer=ps.SGD(lr=0.1))
        return "ok"
    except InvalidArgumentError as e:
        return str(e)
    finally:
        c.close()


@pytest.mark.timeout(60)
def test_mismatched_registration_names_both_shapes():
    with ps.start_local_servers(1, 2, mode="asp") as servers:
        res = run_world(_mismatch_worker, 2, servers.addresses)
    assert res[0] == "ok"
    assert "worker 1 registers shape [6, 4]" in res[1] and "[4, 6]" in res[1], res[1]
