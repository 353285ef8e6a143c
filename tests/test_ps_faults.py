"""Parameter server durability and failures: a server SIGKILLed mid-training and restarted with
the same shard id loses no acknowledged update; a whole job restores from its checkpoint
directory; a server that stays dead gives a clear error, never a hang. Workers are threads here
(each with its own client and sockets); the servers are real processes."""

from __future__ import annotations

import threading

import gradwire.ps as ps
import pytest
import torch
from gradwire.errors import PeerError, TimeoutError
from ps_helpers import dyadic_grad, int_grad

N = 140_000
ROWS, DIM = 1000, 8
STEPS = 30


def _ids(worker: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(31 * worker + step)
    return torch.randint(0, ROWS, (64,), generator=g)


def _train(addresses, worker, workers, halfway, errors, acked):
    try:
        c = ps.connect(addresses, worker_id=worker, num_workers=workers, timeout=60)
        init = torch.arange(N, dtype=torch.float32) / 4 if worker == 0 else torch.zeros(N)
        c.register_dense("w", init, optimizer=ps.SGD(lr=0.5, momentum=0.5))
        c.register_sparse("emb", ROWS, DIM, init=ps.Zeros(), optimizer=ps.SGD(lr=1.0))
        out = torch.empty(N)
        for step in range(STEPS):
            c.push_rows("emb", _ids(worker, step), torch.ones(64, DIM) * (worker + 1))
            c.push_pull("w", dyadic_grad(worker, step, N), out)
            c.clock()
            acked.append((worker, step))
            if step == STEPS // 3:
                halfway.set()
        c.close()
    except BaseException as e:  # reported by the test
        errors.append(f"worker {worker}: {type(e).__name__}: {e}")
        halfway.set()


def _reference(workers):
    p = torch.nn.Parameter(torch.arange(N, dtype=torch.float32) / 4)
    opt = torch.optim.SGD([p], lr=0.5, momentum=0.5)
    emb = torch.zeros(ROWS, DIM)
    for step in range(STEPS):
        g = torch.zeros(N)
        for w in range(workers):
            g = g + dyadic_grad(w, step, N)
            ids = _ids(w, step)
            # worker-side dedup sums repeats; one SGD step per row and clock
            emb -= torch.zeros(ROWS, DIM).index_add_(0, ids, torch.ones(64, DIM) * (w + 1))
        p.grad = g
        opt.step()
    return p, opt, emb


@pytest.mark.timeout(150)
def test_killed_server_restarts_without_losing_acknowledged_updates(tmp_path):
    workers = 2
    ckpt = str(tmp_path / "ckpt")
    servers = ps.start_local_servers(
        2, workers, mode="bsp", checkpoint_dir=ckpt, checkpoint_every=0.2
    )
    try:
        halfway, errors, acked = threading.Event(), [], []
        threads = [
            threading.Thread(
                target=_train, args=(servers.addresses, w, workers, halfway, errors, acked)
            )
            for w in range(workers)
        ]
        for t in threads:
            t.start()
        assert halfway.wait(60)
        servers.kill(1)  # SIGKILL: no chance to flush or checkpoint
        servers.restart(1)  # same shard id, same port: checkpoint + write-ahead log
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(acked) == workers * STEPS
        p, opt, want_emb = _reference(workers)
        want_w = p.detach().clone()
        c = ps.connect(servers.addresses, worker_id=0, num_workers=workers, timeout=30)
        c.register_dense("w", torch.zeros(N), optimizer=ps.SGD(lr=0.5, momentum=0.5))
        c.register_sparse("emb", ROWS, DIM, init=ps.Zeros(), optimizer=ps.SGD(lr=1.0))
        assert torch.equal(c.pull("w", torch.empty(N)), want_w)
        assert torch.equal(c.pull_rows("emb", torch.arange(ROWS)), want_emb)
        c.close()
    finally:
        servers.stop()

    # The whole job again from its checkpoint directory: every shard resumes where it stopped.
    with ps.start_local_servers(2, workers, mode="bsp", checkpoint_dir=ckpt) as again:
        c = ps.connect(again.addresses, worker_id=0, num_workers=workers, timeout=30)
        c.register_dense("w", torch.zeros(N), optimizer=ps.SGD(lr=0.5, momentum=0.5))
        c.register_sparse("emb", ROWS, DIM, init=ps.Zeros(), optimizer=ps.SGD(lr=1.0))
        assert torch.equal(c.pull("w", torch.empty(N)), want_w)
        assert torch.equal(c.pull_rows("emb", torch.arange(ROWS)), want_emb)
        # the momentum buffers came back too: one more step continues them (this new client is
        # at clock 0, behind the restored clocks, so its push applies at once)
        c.push("w", torch.ones(N))
        p.grad = torch.ones(N)
        opt.step()
        assert torch.equal(c.pull("w", torch.empty(N)), p.detach())
        c.close()


@pytest.mark.timeout(90)
def test_asp_pushes_survive_a_kill_with_on_demand_checkpoint(tmp_path):
    with ps.start_local_servers(1, 1, mode="asp", checkpoint_dir=str(tmp_path)) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=60)
        c.register_dense("w", torch.zeros(1000), optimizer=ps.SGD(lr=1.0))
        for s in range(5):
            c.push("w", int_grad(0, s, 1000))
        c.checkpoint()
        for s in range(5, 10):
            c.push("w", int_grad(0, s, 1000))  # only in the write-ahead log
        servers.kill(0)
        servers.restart(0)
        for s in range(10, 12):
            c.push("w", int_grad(0, s, 1000))  # transparently resent to the new process
        got = c.pull("w", torch.empty(1000))
        c.close()
    want = -sum(int_grad(0, s, 1000) for s in range(12))
    assert torch.equal(got, want)


@pytest.mark.timeout(60)
def test_dead_server_gives_a_clear_error_not_a_hang():
    with ps.start_local_servers(2, 1, mode="asp") as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=2)
        c.register_dense("w", torch.zeros(200_000))
        servers.kill(0)
        with pytest.raises(PeerError, match=r"shard 0 at 127\.0\.0\.1:\d+ is unreachable"):
            c.push("w", torch.ones(200_000))
        c.close()
        dead = servers.addresses[0]
    with pytest.raises(TimeoutError, match="could not connect to parameter server shard 0"):
        ps.connect([dead], worker_id=0, num_workers=1, timeout=1)


@pytest.mark.timeout(60)
def test_bsp_read_of_a_missing_worker_times_out_clearly():
    with ps.start_local_servers(1, 2, mode="bsp") as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=2, timeout=1.5)
        c.register_dense("w", torch.zeros(10))
        c.clock()  # worker 1 never advances: a pull at clock 1 must wait for it
        with pytest.raises(TimeoutError, match="pull\\('w'\\) did not complete"):
            c.pull("w", torch.empty(10))
        c.close()
