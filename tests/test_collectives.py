"""Every collective x dtype x reduce op against a numpy reference, on 1-4 real processes.

Each rank derives every rank's input from (case, rank) seeds, so it can compute the expected
result locally. Values are small integers, so float sums are exact and results must match
bit for bit (fp16/bf16 AVG and PRODUCT compare with the type's rounding tolerance).
"""

from __future__ import annotations

import numpy as np
import pytest
from world import init, run_world

SIZES = [0, 1, 7, 1000]
BIG = 1_500_000  # 6 MB of float32: exercises chunked, pipelined ring paths
DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool"]
FLOAT_OPS = ["SUM", "AVG", "MIN", "MAX", "PRODUCT"]
INT_OPS = FLOAT_OPS + ["BAND", "BOR", "BXOR"]
BOOL_OPS = ["SUM", "MIN", "MAX", "PRODUCT", "BAND", "BOR", "BXOR"]


def _ops_for(dtype):
    if dtype == "bool":
        return BOOL_OPS
    if dtype in ("float32", "float64", "float16", "bfloat16"):
        return FLOAT_OPS
    return INT_OPS


def _data(dtype, n, seed, op=None):
    """Rank input as a float64/int64/bool numpy array (cast to the torch dtype by the caller)."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(n) < 0.5
    if op == "PRODUCT":
        return rng.choice([-2, -1, 1, 2] if dtype not in ("uint8",) else [1, 2, 3], n).astype(
            np.int64
        )
    if dtype == "uint8":
        return rng.integers(0, 60, n).astype(np.int64)
    return rng.integers(-20, 21, n).astype(np.int64)


def _reference(dtype, op, arrays, size):
    st = (
        np.stack(arrays)
        if arrays and len(arrays[0])
        else np.zeros((size, 0), dtype=arrays[0].dtype)
    )
    if dtype == "bool":
        b = st.astype(bool)
        return {
            "SUM": b.any(0),
            "MAX": b.any(0),
            "BOR": b.any(0),
            "MIN": b.all(0),
            "PRODUCT": b.all(0),
            "BAND": b.all(0),
            "BXOR": np.logical_xor.reduce(b, 0),
        }[op]
    npd = {"int8": np.int8, "uint8": np.uint8, "int32": np.int32, "int64": np.int64}.get(dtype)
    if npd is not None:
        a = st.astype(npd)
        if op == "SUM":
            return np.add.reduce(a, 0, dtype=npd)
        if op == "AVG":
            s = np.add.reduce(a, 0, dtype=npd).astype(np.int64)
            return (np.sign(s) * (np.abs(s) // size)).astype(npd)  # C division truncates
        if op == "PRODUCT":
            return np.multiply.reduce(a, 0, dtype=npd)
        return {
            "MIN": a.min(0),
            "MAX": a.max(0),
            "BAND": np.bitwise_and.reduce(a, 0),
            "BOR": np.bitwise_or.reduce(a, 0),
            "BXOR": np.bitwise_xor.reduce(a, 0),
        }[op]
    a = st.astype(np.float64)
    return {
        "SUM": a.sum(0),
        "AVG": a.sum(0) / size,
        "MIN": a.min(0),
        "MAX": a.max(0),
        "PRODUCT": a.prod(0),
    }[op]


def _close(got, want, dtype):
    import torch

    g = got.to(torch.float64).numpy() if got.dtype != torch.bool else got.numpy()
    if dtype in ("float16", "bfloat16"):
        return np.allclose(g, want, rtol=1e-2, atol=1e-2)
    if dtype == "float32":  # the reference rounded once to float32, as the engine rounds
        want = np.asarray(want, dtype=np.float64).astype(np.float32)
    return np.array_equal(g, np.asarray(want, dtype=g.dtype))


def _battery(rank, size):  # noqa: C901 - one long checklist on purpose
    import torch

    dist = init(rank, size)
    tdt = {d: getattr(torch, d) for d in DTYPES}
    fails = []

    def check(name, got, want, dtype):
        if not _close(got, want, dtype):
            fails.append(
                f"rank {rank}: {name}: got {got.flatten()[:8].tolist()} want {np.asarray(want).flatten()[:8].tolist()}"
            )

    case = 0
    # allreduce: every dtype x op x size, alternating sync and async (async ones batched).
    pending = []
    for dtype in DTYPES:
        for op in _ops_for(dtype):
            for n in SIZES:
                case += 1
                arrays = [_data(dtype, n, (case, r), op) for r in range(size)]
                t = torch.tensor(arrays[rank]).to(tdt[dtype])
                want = _reference(dtype, op, arrays, size)
                w = dist.all_reduce(t, op=getattr(dist.ReduceOp, op), async_op=bool(case % 2))
                if w is not None:
                    pending.append((w, t, want, f"all_reduce {dtype} {op} n={n} async"))
                else:
                    check(f"all_reduce {dtype} {op} n={n}", t, want, dtype)
    for w, t, want, name in pending:
        w.wait()
        check(name, t, want, name.split()[1])
    # Large: ring with pipelined chunks, in place and through a non-contiguous view.
    for op in ["SUM", "MAX", "AVG"]:
        case += 1
        arrays = [_data("float32", BIG, (case, r)) for r in range(size)]
        t = torch.tensor(arrays[rank], dtype=torch.float32)
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
        check(f"all_reduce big {op}", t, _reference("float32", op, arrays, size), "float32")
    base = torch.arange(40, dtype=torch.float32).reshape(8, 5) * (rank + 1)
    view = base.t()  # non-contiguous
    dist.all_reduce(view)
    check(
        "all_reduce non-contiguous",
        base,
        np.arange(40).reshape(8, 5) * sum(range(1, size + 1)),
        "float32",
    )

    # broadcast from every root, every dtype.
    for dtype in DTYPES:
        for root in range(size):
            for n in [0, 7, 100_000]:
                case += 1
                src = _data(dtype, n, (case, root))
                t = torch.tensor(src if rank == root else np.zeros_like(src)).to(tdt[dtype])
                dist.broadcast(t, src=root)
                check(f"broadcast {dtype} root={root} n={n}", t, src, dtype)

    # reduce to every root.
    for dtype in ["float32", "int64", "bfloat16", "bool"]:
        for op in _ops_for(dtype)[:4]:
            for root in range(size):
                case += 1
                arrays = [_data(dtype, 33, (case, r), op) for r in range(size)]
                t = torch.tensor(arrays[rank]).to(tdt[dtype])
                before = t.clone()
                dist.reduce(t, dst=root, op=getattr(dist.ReduceOp, op))
                if rank == root:
                    check(
                        f"reduce {dtype} {op} root={root}",
                        t,
                        _reference(dtype, op, arrays, size),
                        dtype,
                    )
                elif not torch.equal(t, before):
                    fails.append(f"rank {rank}: reduce modified a non-root input")

    # allgather (list and into tensor), reduce_scatter (list and tensor).
    for dtype in ["float32", "int8", "float16", "bool"]:
        for n in [0, 1, 7, 5000]:
            case += 1
            arrays = [_data(dtype, n, (case, r)) for r in range(size)]
            mine = torch.tensor(arrays[rank]).to(tdt[dtype])
            outs = [torch.empty(n, dtype=tdt[dtype]) for _ in range(size)]
            dist.all_gather(outs, mine)
            for r in range(size):
                check(f"all_gather {dtype} n={n} block {r}", outs[r], arrays[r], dtype)
            flat = torch.empty(size * n, dtype=tdt[dtype])
            dist.all_gather_into_tensor(flat, mine)
            check(f"all_gather_into_tensor {dtype} n={n}", flat, np.concatenate(arrays), dtype)
            if dtype == "bool":
                continue
            for op in ["SUM", "MAX", "AVG"] if dtype != "int8" else ["SUM", "MIN"]:
                case += 1
                ins = [_data(dtype, size * n, (case, r)) for r in range(size)]
                want = _reference(dtype, op, ins, size)
                out = torch.empty(n, dtype=tdt[dtype])
                dist.reduce_scatter_tensor(
                    out, torch.tensor(ins[rank]).to(tdt[dtype]), op=getattr(dist.ReduceOp, op)
                )
                check(
                    f"reduce_scatter_tensor {dtype} {op} n={n}",
                    out,
                    want[rank * n : (rank + 1) * n],
                    dtype,
                )
                out2 = torch.empty(n, dtype=tdt[dtype])
                pieces = (
                    list(torch.tensor(ins[rank]).to(tdt[dtype]).chunk(size))
                    if n
                    else [torch.empty(0, dtype=tdt[dtype])] * size
                )
                dist.reduce_scatter(out2, pieces, op=getattr(dist.ReduceOp, op))
                check(
                    f"reduce_scatter list {dtype} {op} n={n}",
                    out2,
                    want[rank * n : (rank + 1) * n],
                    dtype,
                )

    # all_to_all with uneven splits: rank r sends (r + p + 1) rows of width 3 to rank p.
    case += 1
    rows_to = [rank + p + 1 for p in range(size)]
    rows_from = [p + rank + 1 for p in range(size)]
    inp = torch.cat([torch.full((rows_to[p], 3), float(100 * rank + p)) for p in range(size)])
    out = torch.empty(sum(rows_from), 3)
    dist.all_to_all_single(out, inp, output_split_sizes=rows_from, input_split_sizes=rows_to)
    want = np.concatenate([np.full((rows_from[p], 3), 100 * p + rank) for p in range(size)])
    check("all_to_all_single uneven", out, want, "float32")
    ins = [torch.full((p + 1,), rank * 10 + p, dtype=torch.int32) for p in range(size)]
    outs = [torch.empty(rank + 1, dtype=torch.int32) for _ in range(size)]
    dist.all_to_all(outs, ins)
    for p in range(size):
        check(f"all_to_all list from {p}", outs[p], np.full(rank + 1, p * 10 + rank), "int32")
    even_in = torch.arange(size * 4, dtype=torch.int64) + 1000 * rank
    even_out = torch.empty(size * 4, dtype=torch.int64)
    dist.all_to_all_single(even_out, even_in)
    check(
        "all_to_all_single even",
        even_out,
        np.concatenate([np.arange(rank * 4, rank * 4 + 4) + 1000 * p for p in range(size)]),
        "int64",
    )

    # gather / scatter from every root.
    for root in range(size):
        mine = torch.full((6,), float(rank * 7 + root))
        gl = [torch.empty(6) for _ in range(size)] if rank == root else None
        dist.gather(mine, gather_list=gl, dst=root)
        if rank == root:
            for r in range(size):
                check(f"gather root={root} from {r}", gl[r], np.full(6, r * 7 + root), "float32")
        out = torch.empty(4, dtype=torch.int64)
        sl = (
            [torch.full((4,), root * 100 + r, dtype=torch.int64) for r in range(size)]
            if rank == root
            else None
        )
        dist.scatter(out, scatter_list=sl, src=root)
        check(f"scatter root={root}", out, np.full(4, root * 100 + rank), "int64")

    # point to point: ring exchange with tags, and batch_isend_irecv.
    if size > 1:
        right, left = (rank + 1) % size, (rank - 1) % size
        for tag in [0, 5]:
            sbuf = torch.full((1000,), float(rank + tag))
            rbuf = torch.empty(1000)
            reqs = [dist.isend(sbuf, right, tag=tag), dist.irecv(rbuf, left, tag=tag)]
            for q in reqs:
                q.wait()
            check(f"isend/irecv tag={tag}", rbuf, np.full(1000, left + tag), "float32")
        sbuf = torch.arange(10, dtype=torch.int64) + rank
        rbuf = torch.empty(10, dtype=torch.int64)
        ops = [dist.P2POp(dist.isend, sbuf, right), dist.P2POp(dist.irecv, rbuf, left)]
        for q in dist.batch_isend_irecv(ops):
            q.wait()
        check("batch_isend_irecv", rbuf, np.arange(10) + left, "int64")
        if rank == 0:
            dist.send(torch.tensor([42.0, 43.0]), dst=size - 1)
        elif rank == size - 1:
            t = torch.empty(2)
            dist.recv(t, src=0)
            check("send/recv", t, np.array([42.0, 43.0]), "float32")

    dist.barrier()
    stats = dist.distributed_c10d._get_default_group().stats()
    if stats["ops_failed"]:
        fails.append(f"rank {rank}: stats report failed ops: {stats}")
    dist.destroy_process_group()
    return fails


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_every_collective_dtype_and_op(size):
    results = run_world(_battery, size, timeout=240)
    fails = [f for r in results for f in r]
    assert not fails, "\n".join(fails[:40])
