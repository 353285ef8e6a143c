"""Parameter server, sparse tables and server-side optimizers, against torch references."""

from __future__ import annotations

import gradwire.ps as ps
import pytest
import torch
from gradwire.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def servers():
    with ps.start_local_servers(2, 1, mode="asp") as s:
        yield s


@pytest.fixture()
def client(servers):
    c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=30)
    yield c
    c.close()


def test_rows_are_created_lazily_and_deterministically(client):
    init = ps.Normal(std=0.5, seed=7)
    client.register_sparse("lazy", 1 << 40, 16, init=init, optimizer=ps.SGD(lr=1.0))
    ids = torch.tensor([0, 5, 1 << 39, 5, 123456789])
    rows = client.pull_rows("lazy", ids)
    assert rows.shape == (5, 16) and rows.dtype == torch.float32
    assert torch.equal(rows[1], rows[3])
    assert 0.2 < rows.std().item() < 0.9  # drawn from N(0, 0.5^2)
    # the same rows from a job with a different number of servers
    with ps.start_local_servers(1, 1) as one:
        c1 = ps.connect(one.addresses, worker_id=0, num_workers=1, timeout=30)
        c1.register_sparse("lazy", 1 << 40, 16, init=init, optimizer=ps.SGD(lr=1.0))
        assert torch.equal(c1.pull_rows("lazy", ids), rows)
        c1.close()
    assert torch.equal(client.pull_rows("lazy", ids), rows)  # reading created nothing new


def test_push_rows_deduplicates_and_sums_on_the_worker(client):
    client.register_sparse("dedup", 100, 4, init=ps.Zeros(), optimizer=ps.Adagrad(lr=0.5))
    ids = torch.tensor([3, 7, 3, 3, 42])
    grads = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    client.push_rows("dedup", ids, grads)
    # reference: one Adagrad step per distinct row with its summed gradient
    p = torch.nn.Parameter(torch.zeros(100, 4))
    opt = torch.optim.Adagrad([p], lr=0.5)
    g = torch.zeros(100, 4).index_add_(0, ids, grads)
    p.grad = g
    opt.step()
    got = client.pull_rows("dedup", torch.tensor([3, 7, 42, 0]))
    assert torch.allclose(got, p.detach()[[3, 7, 42, 0]], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        (lambda: ps.SGD(lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
        (lambda: ps.Adagrad(lr=0.3), lambda p: torch.optim.Adagrad(p, lr=0.3, eps=1e-10)),
        (
            lambda: ps.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-8),
            lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-8),
        ),
    ],
    ids=["sgd-momentum", "adagrad", "adam"],
)
def test_server_optimizers_match_torch_optim(client, make):
    ours, theirs = make
    name = f"opt-{type(ours()).__name__}-{id(make)}"
    init = torch.randn(70_000, generator=torch.Generator().manual_seed(0))
    client.register_dense(name, init, optimizer=ours())
    client.register_sparse(name + "-rows", 50, 8, init=ps.Zeros(), optimizer=ours())
    p = torch.nn.Parameter(init.clone())
    rows = torch.nn.Parameter(torch.zeros(50, 8))
    opt = theirs([p, rows])
    ids = torch.arange(0, 50, 3)
    gen = torch.Generator().manual_seed(1)
    out = torch.empty(70_000)
    for step in range(5):
        g = torch.randn(70_000, generator=gen)
        rg = torch.randn(len(ids), 8, generator=gen)
        # push_pull on odd steps: under ASP its answer is copied as the update runs, tile by tile
        if step % 2:
            client.push_pull(name, g, out)
        else:
            client.push(name, g)
        client.push_rows(name + "-rows", ids, rg)
        p.grad = g
        rows.grad = torch.zeros(50, 8).index_add_(0, ids, rg)
        opt.step()
        if step % 2:
            assert torch.allclose(out, p.detach(), rtol=1e-5, atol=1e-6)
    got = client.pull(name, torch.empty(70_000))
    assert torch.allclose(got, p.detach(), rtol=1e-5, atol=1e-6)
    got_rows = client.pull_rows(name + "-rows", ids)
    assert torch.allclose(got_rows, rows.detach()[ids], rtol=1e-5, atol=1e-6)


def test_sharded_embedding_trains_like_nn_embedding(client):
    torch.manual_seed(0)
    emb = ps.ShardedEmbedding(1000, 8, client=client, table="emb-train", optimizer=ps.SGD(lr=0.1))
    ids = torch.tensor([[1, 2, 3], [3, 999, 1]])
    ref = torch.nn.Embedding(1000, 8)
    with torch.no_grad():
        ref.weight.copy_(client.pull_rows("emb-train", torch.arange(1000)))
    head, ref_head = torch.nn.Linear(8, 1), torch.nn.Linear(8, 1)
    ref_head.load_state_dict(head.state_dict())
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD([*ref.parameters(), *ref_head.parameters()], lr=0.1)
    for _ in range(3):
        for model, e, o in ((head, emb, opt), (ref_head, ref, ref_opt)):
            o.zero_grad()
            loss = (model(e(ids)).sum(dim=1) - 1.0).pow(2).mean()
            loss.backward()
            o.step()
    got = client.pull_rows("emb-train", torch.arange(1000))
    assert torch.allclose(got, ref.weight.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(got[1], ref.weight.detach()[0])  # rows did move


def test_sparse_bad_requests_are_clear(client):
    client.register_sparse("bad", 10, 4)
    with pytest.raises(InvalidArgumentError, match=r"row id 10 is out of range \[0, 10\)"):
        client.pull_rows("bad", torch.tensor([1, 10]))
    with pytest.raises(InvalidArgumentError, match="row id -1 is out of range"):
        client.push_rows("bad", torch.tensor([-1]), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"grads must have shape \[2, 4\]"):
        client.push_rows("bad", torch.tensor([1, 2]), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="not registered"):
        client.pull_rows("unknown", torch.tensor([0]))
    with pytest.raises(ValueError, match="ids must be integers"):
        client.pull_rows("bad", torch.tensor([0.5]))
    # a name the servers already hold as a dense tensor: the servers say so
    client.register_dense("taken", torch.zeros(3))
    other = ps.connect(client.servers, worker_id=0, num_workers=1, timeout=30)
    with pytest.raises(InvalidArgumentError, match="already registered as a dense tensor"):
        other.register_sparse("taken", 10, 4)
    other.close()


def test_many_rows_keep_their_values_and_steps(client):
    # 60,000 rows of dim 8 with Adam state, about 30,000 per shard: each shard's row store spans
    # several chunks and its index doubles a dozen times. Adam's bias correction depends on each
    # row's own step count: rows `a` take two steps, rows `b` one.
    n, dim = 60_000, 8
    gen = torch.Generator().manual_seed(5)
    drawn = torch.unique(torch.randint(0, 1 << 40, (n + 2_000,), generator=gen))
    drawn = drawn[torch.randperm(len(drawn), generator=gen)]
    ids, untouched = drawn[:n], drawn[n : n + 1_000]
    opt = ps.Adam(lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    client.register_sparse("many", 1 << 40, dim, init=ps.Normal(std=0.1, seed=3), optimizer=opt)
    before = client.pull_rows("many", drawn)
    g1 = torch.randn(n, dim, generator=gen)
    g2 = torch.randn(n // 3, dim, generator=gen)
    for part in torch.arange(n).chunk(4):  # four requests, ids in no particular order
        client.push_rows("many", ids[part], g1[part])
    client.push_rows("many", ids[: n // 3], g2)

    a = torch.nn.Parameter(before[: n // 3].clone())
    b = torch.nn.Parameter(before[n // 3 : n].clone())
    ref = torch.optim.Adam([a, b], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    a.grad, b.grad = g1[: n // 3], g1[n // 3 :]
    ref.step()
    a.grad, b.grad = g2, None  # b takes no step
    ref.step()
    got = client.pull_rows("many", ids)
    assert torch.allclose(got[: n // 3], a.detach(), rtol=1e-5, atol=1e-6)
    assert torch.allclose(got[n // 3 :], b.detach(), rtol=1e-5, atol=1e-6)
    # rows never pushed still read as their initial values
    assert torch.equal(client.pull_rows("many", untouched), before[n : n + 1_000])
