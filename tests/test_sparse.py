"""all_reduce of sparse COO tensors: sums across ranks with different nonzeros, DDP with sparse
gradients (nn.Embedding(sparse=True)) matching gloo, and clear errors for what is not supported."""

from __future__ import annotations

import torch
from world import init, run_world


def _rank_tensor(rank: int, dtype) -> torch.Tensor:
    """Rank r: r + 1 nonzero rows (row r shared with rank r - 1's last one) of a 6 x 2 tensor
    with 1 sparse and 1 dense dim; rank 2 holds none."""
    if rank == 2:
        return torch.sparse_coo_tensor(
            torch.zeros(1, 0, dtype=torch.long), torch.zeros(0, 2), (6, 2)
        ).to(dtype)
    rows = torch.arange(rank, 2 * rank + 1)
    values = torch.stack([torch.full((2,), 10.0 * rank + i) for i in range(len(rows))])
    return torch.sparse_coo_tensor(rows.unsqueeze(0), values, (6, 2), check_invariants=True).to(
        dtype
    )


def _sums(rank, size):
    dist = init(rank, size, timeout_s=20)
    out = {}
    for dtype in (torch.float32, torch.float64, torch.int64, torch.bfloat16):
        t = _rank_tensor(rank, dtype)
        work = dist.all_reduce(t, async_op=True)
        work.wait()
        expected = sum(_rank_tensor(r, dtype).to_dense() for r in range(size))
        out[str(dtype)] = (t.is_sparse, torch.equal(t.to_dense(), expected))
    # uncoalesced input with duplicate indices, 2 sparse dims
    idx = torch.tensor([[0, 0, 1], [1, 1, 2]])
    t = torch.sparse_coo_tensor(
        idx, torch.tensor([1.0, 2.0, 3.0]) * (rank + 1), (2, 3), check_invariants=True
    )
    dist.all_reduce(t)
    expected = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 3.0]]) * sum(range(1, size + 1))
    out["2d"] = torch.equal(t.to_dense(), expected)
    # 12 bytes per rank (one int64 index, one float32): rank 1's part starts unaligned
    t = torch.zeros(5)
    t[rank] = rank + 1.0
    t = t.to_sparse()
    dist.all_reduce(t)
    out["unaligned"] = t.to_dense().tolist() == [1.0, 2.0, 3.0, 0.0, 0.0][:size] + [0.0] * (
        5 - size
    )
    # no rank holds a nonzero
    t = torch.zeros(4).to_sparse()
    dist.all_reduce(t)
    out["empty"] = t.is_sparse and t._nnz() == 0 and t.shape == (4,)
    # a dense collective after the sparse ones still lines up
    d = torch.ones(3) * rank
    dist.all_reduce(d)
    out["dense_after"] = d.tolist() == [float(sum(range(size)))] * 3
    dist.destroy_process_group()
    return out


def test_sparse_all_reduce_sums_different_nonzeros():
    res = run_world(_sums, 3, timeout=120)
    for r in res:
        assert r == {
            "torch.float32": (True, True),
            "torch.float64": (True, True),
            "torch.int64": (True, True),
            "torch.bfloat16": (True, True),
            "2d": True,
            "unaligned": True,
            "empty": True,
            "dense_after": True,
        }, r


def _errors(rank, size):
    dist = init(rank, size, timeout_s=20)
    msgs = []
    # sizes differ on rank 1: every rank fails with the same error, none hangs
    n = 5 if rank == 1 else 4
    try:
        dist.all_reduce(torch.ones(n).to_sparse())
    except Exception as e:  # noqa: BLE001
        msgs.append(str(e))
    try:
        dist.all_reduce(torch.ones(4).to_sparse(), op=dist.ReduceOp.MAX)
    except Exception as e:  # noqa: BLE001
        msgs.append(str(e))
    # the group still works after the rejected calls
    t = torch.ones(4).to_sparse() * (rank + 1)
    dist.all_reduce(t)
    msgs.append(t.to_dense().tolist())
    dist.destroy_process_group()
    return msgs


def test_sparse_all_reduce_errors_name_the_problem_and_rank():
    res = run_world(_errors, 2, timeout=90)
    for rank, (mismatch, bad_op, after) in enumerate(res):
        assert mismatch.startswith(f"rank {rank} "), mismatch
        assert "rank 0 float32 [4] (1 sparse dims), rank 1 float32 [5]" in mismatch, mismatch
        assert "supports only ReduceOp.SUM" in bad_op and f"rank {rank}" in bad_op, bad_op
        assert after == [3.0] * 4


def _ddp_sparse(rank, size, backend):
    dist = init(rank, size, backend=backend, timeout_s=30)
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 8, sparse=True), nn.Linear(8, 1))
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(rank)
    for _ in range(5):
        ids = torch.randint(0, 50, (16,), generator=gen)
        loss = ddp(ids).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    weights = [p.detach().tolist() for p in model.parameters()]  # tensors need the sender alive
    dist.destroy_process_group()
    return weights


def test_ddp_with_sparse_embedding_gradients_matches_gloo():
    ours = run_world(_ddp_sparse, 2, "gradwire", timeout=120)
    gloo = run_world(_ddp_sparse, 2, "gloo", timeout=120)
    for rank in range(2):
        for a, b in zip(ours[rank], gloo[rank], strict=True):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-6, atol=1e-7)
    # the ranks saw different ids, yet hold the same weights after the synchronized steps
    for a, b in zip(ours[0], ours[1], strict=True):
        assert a == b
