"""Parameter server durability and failures: a server SIGKILLed mid-training and restarted with
the same shard id loses no acknowledged update; a whole job restores from its checkpoint
directory; a server that stays dead gives a clear error, never a hang. Workers are threads here
(each with its own client and sockets); the servers are real processes."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import gradwire.ps as ps
import pytest
import torch
from gradwire.errors import PeerError, ProtocolError, TimeoutError
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


def _cut_worker(addresses, worker, workers, errors):
    try:
        c = ps.connect(addresses, worker_id=worker, num_workers=workers, timeout=60)
        c.register_dense("w", torch.zeros(N), optimizer=ps.SGD(lr=0.5))
        for step in range(5):
            if step == 3:
                c.checkpoint(collective=True)
            c.push("w", dyadic_grad(worker, step, N))
            c.clock()
        c.close()
    except BaseException as e:
        errors.append(f"worker {worker}: {type(e).__name__}: {e}")


@pytest.mark.timeout(90)
def test_collective_checkpoint_is_one_consistent_cut(tmp_path):
    workers = 2
    with ps.start_local_servers(2, workers, mode="asp", checkpoint_dir=str(tmp_path)) as servers:
        errors = []
        threads = [
            threading.Thread(target=_cut_worker, args=(servers.addresses, w, workers, errors))
            for w in range(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
    for wal in tmp_path.glob("shard-*.wal.*"):
        wal.unlink()  # restore the cut itself, not what the logs added after it
    want = torch.zeros(N)
    for step in range(3):
        for w in range(workers):
            want -= 0.5 * dyadic_grad(w, step, N)
    with ps.start_local_servers(2, workers, mode="asp", checkpoint_dir=str(tmp_path)) as again:
        c = ps.connect(again.addresses, worker_id=0, num_workers=workers, timeout=30)
        c.register_dense("w", torch.zeros(N), optimizer=ps.SGD(lr=0.5))
        got = c.pull("w", torch.empty(N))
        c.close()
    # every worker's first three pushes, on both shards, and nothing after
    assert torch.equal(got, want)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sync", ["write", "fdatasync"])
def test_asp_pushes_survive_a_kill_with_on_demand_checkpoint(tmp_path, sync):
    env = dict(os.environ, GRADWIRE_PS_WAL_SYNC=sync)
    with ps.start_local_servers(1, 1, mode="asp", checkpoint_dir=str(tmp_path), env=env) as servers:
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
def test_stopped_server_fails_the_op_at_its_deadline():
    with ps.start_local_servers(1, 1) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=2)
        n = 16 << 20  # 64 MB: more than the socket buffers hold
        c.register_dense("w", torch.zeros(n))
        os.kill(servers.procs[0].pid, signal.SIGSTOP)
        try:
            with pytest.raises((TimeoutError, PeerError), match="push\\('w'\\)"):
                c.push("w", torch.ones(n))
        finally:
            os.kill(servers.procs[0].pid, signal.SIGCONT)
        c.close()


@pytest.mark.timeout(60)
def test_garbage_and_unauthenticated_peers_are_refused_and_serving_goes_on():
    env = dict(os.environ, GRADWIRE_AUTH_TOKEN="the-job-secret")
    with ps.start_local_servers(1, 1, env=env) as servers:
        host, port = servers.addresses[0].rsplit(":", 1)
        for junk in (b"", b"GET / HTTP/1.0\r\n\r\n", bytes(range(256)) * 8):
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(junk)
        # this process has no token: the server refuses the handshake, the client says why
        with pytest.raises(ProtocolError, match="refused our authentication"):
            ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=5)
        assert servers.procs[0].poll() is None  # still serving


@pytest.mark.timeout(60)
def test_bsp_read_of_a_missing_worker_times_out_clearly():
    with ps.start_local_servers(1, 2, mode="bsp") as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=2, timeout=1.5)
        c.register_dense("w", torch.zeros(10))
        c.clock()  # worker 1 never advances: a pull at clock 1 must wait for it
        with pytest.raises(TimeoutError, match="pull\\('w'\\) did not complete"):
            c.pull("w", torch.empty(10))
        c.close()


def _sparse_rows(c):
    c.register_sparse(
        "rows",
        1 << 40,
        4,
        init=ps.Uniform(-1.0, 1.0, seed=9),
        optimizer=ps.Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-8),
    )


@pytest.mark.timeout(120)
def test_sparse_rows_restore_from_checkpoint_and_log(tmp_path):
    """Many rows (several row-store chunks per shard) with Adam moments and per-row step counts:
    a restore from the checkpoint alone gives the rows of the cut and continues them exactly;
    checkpoint + log gives the later pushes too, and so does the checkpoint written after that
    restore."""
    ckpt, cut = tmp_path / "ckpt", tmp_path / "cut"
    n = 40_000
    gen = torch.Generator().manual_seed(11)
    ids = torch.unique(torch.randint(0, 1 << 40, (n,), generator=gen))
    ids = ids[torch.randperm(len(ids), generator=gen)]
    grads = [torch.randn(len(ids), 4, generator=gen) for _ in range(3)]
    half = len(ids) // 2

    with ps.start_local_servers(2, 1, mode="asp", checkpoint_dir=str(ckpt)) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=60)
        _sparse_rows(c)
        c.push_rows("rows", ids[:half], grads[0][:half])
        c.push_rows("rows", ids[half:], grads[0][half:])
        c.push_rows("rows", ids[:half], grads[1][:half])  # these rows are at step 2
        c.checkpoint()
        at_cut = c.pull_rows("rows", ids)
        c.push_rows("rows", ids, grads[2])  # only in the write-ahead log
        final = c.pull_rows("rows", ids)
        c.close()
    cut.mkdir()
    for f in ckpt.glob("shard-*.ckpt"):
        (cut / f.name).write_bytes(f.read_bytes())

    for _ in range(2):  # the second start reads the checkpoint the first one wrote
        with ps.start_local_servers(2, 1, mode="asp", checkpoint_dir=str(ckpt)) as again:
            c = ps.connect(again.addresses, worker_id=0, num_workers=1, timeout=60)
            _sparse_rows(c)
            assert torch.equal(c.pull_rows("rows", ids), final)
            c.close()

    with ps.start_local_servers(2, 1, mode="asp", checkpoint_dir=str(cut)) as again:
        c = ps.connect(again.addresses, worker_id=0, num_workers=1, timeout=60)
        _sparse_rows(c)
        assert torch.equal(c.pull_rows("rows", ids), at_cut)
        c.push_rows("rows", ids, grads[2])
        assert torch.equal(c.pull_rows("rows", ids), final)
        c.close()


# Written by the server as of checkpoint format version 1 before sparse rows moved into a flat
# row store: one shard, one worker, ASP, _v1_tables with _v1_pushes(c, range(3)), checkpoint().
V1_CHECKPOINT = Path(__file__).parent / "data" / "ps" / "shard-0-v1.ckpt"
_V1_POOL = torch.randint(0, 1 << 40, (30,), generator=torch.Generator().manual_seed(3))


def _v1_tables(c):
    c.register_sparse("sgd", 1000, 4, init=ps.Zeros(), optimizer=ps.SGD(lr=0.5, momentum=0.5))
    c.register_sparse(
        "adam", 1 << 40, 6, init=ps.Normal(std=0.5, seed=2), optimizer=ps.Adam(lr=0.05)
    )


def _v1_pushes(c, rounds):
    for r in rounds:
        gen = torch.Generator().manual_seed(100 + r)
        ids = torch.randint(0, 1000, (40,), generator=gen)
        c.push_rows("sgd", ids, dyadic_grad(0, r, 40 * 4).reshape(40, 4))
        pick = torch.randperm(len(_V1_POOL), generator=gen)[:20]
        c.push_rows("adam", _V1_POOL[pick], torch.randn(20, 6, generator=gen))


def _v1_pull(c):
    return c.pull_rows("sgd", torch.arange(1000)), c.pull_rows("adam", _V1_POOL)


@pytest.mark.timeout(60)
def test_checkpoint_of_format_version_1_still_loads(tmp_path):
    with ps.start_local_servers(1, 1, mode="asp") as fresh:
        c = ps.connect(fresh.addresses, worker_id=0, num_workers=1, timeout=30)
        _v1_tables(c)
        _v1_pushes(c, range(3))
        want = _v1_pull(c)
        _v1_pushes(c, [3])
        want_next = _v1_pull(c)
        c.close()
    (tmp_path / "shard-0.ckpt").write_bytes(V1_CHECKPOINT.read_bytes())
    with ps.start_local_servers(1, 1, mode="asp", checkpoint_dir=str(tmp_path)) as restored:
        c = ps.connect(restored.addresses, worker_id=0, num_workers=1, timeout=30)
        _v1_tables(c)
        for got, w in zip(_v1_pull(c), want):
            assert torch.equal(got, w)
        _v1_pushes(c, [3])  # momentum buffers, Adam moments and step counts came back too
        for got, w in zip(_v1_pull(c), want_next):
            assert torch.equal(got, w)
        c.close()
