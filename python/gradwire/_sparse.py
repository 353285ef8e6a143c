"""all_reduce of sparse COO tensors (SUM), as torch's sparse gradients need it.

Each rank's nonzeros differ in number and position, so they are gathered rather than reduced
in place: two allgathers in the group's op stream, the second issued from the first's completion
callback (which the engine runs at once, at the same point of the op stream on every rank):

1. a fixed-size header per rank: dtype, sparse and dense dimension counts, nnz, sizes. Every rank
   checks that all headers agree except for nnz, so a mismatch fails on every rank with the same
   error instead of hanging in step 2;
2. each rank's indices and values as bytes, padded to the largest nnz.

Every rank then sums the gathered entries (``coalesce``) in rank order, so all ranks hold the
same result, and copies it into the input tensor.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from gradwire import _futures as futures
from gradwire._tensors import DTYPE_CODES
from gradwire.work import GradwireWork

# dtypes travel as bytes, so any fixed-size dtype works; the header names it by position here.
_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.complex64,
    torch.complex128,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
]
_MAX_DIMS = 64
_HEADER = 4  # dtype, sparse_dim, dense_dim, nnz; then the sizes, zero-padded to _MAX_DIMS
_INT64 = DTYPE_CODES[torch.int64]
_UINT8 = DTYPE_CODES[torch.uint8]


def _describe(meta: torch.Tensor) -> str:
    dtype, sparse_dim, dense_dim = (int(v) for v in meta[:3])
    sizes = [int(v) for v in meta[_HEADER : _HEADER + sparse_dim + dense_dim]]
    name = str(_DTYPES[dtype]).replace("torch.", "") if 0 <= dtype < len(_DTYPES) else "?"
    return f"{name} {sizes} ({sparse_dim} sparse dims)"


def allreduce(pg, t: torch.Tensor, op, opts=None) -> GradwireWork:
    """Sum the sparse COO tensor `t` over the group, in place (what gloo offers for sparse)."""
    if int(getattr(op, "op", op)) != int(dist.ReduceOp.SUM):
        raise pg._err(f"sparse all_reduce supports only ReduceOp.SUM, got {op}")
    if t.layout != torch.sparse_coo:
        raise pg._err(f"all_reduce supports sparse COO tensors only, got layout {t.layout}")
    if t.dtype not in _DTYPES:
        raise pg._err(f"sparse all_reduce does not support dtype {t.dtype}")
    if t.dim() > _MAX_DIMS:
        raise pg._err(f"sparse all_reduce takes at most {_MAX_DIMS} dims, got {t.dim()}")
    size, rank = pg.size(), pg.rank()
    local = t.detach().to("cpu").coalesce()
    indices = local.indices().contiguous()  # (sparse_dim, nnz), int64
    values = local.values().contiguous()  # (nnz, *dense sizes)
    nnz = indices.shape[1]
    meta = torch.zeros(_HEADER + _MAX_DIMS, dtype=torch.int64)
    meta[:_HEADER] = torch.tensor([_DTYPES.index(t.dtype), t.sparse_dim(), t.dense_dim(), nnz])
    meta[_HEADER : _HEADER + t.dim()] = torch.tensor(list(t.shape), dtype=torch.int64)
    metas = torch.empty(size * meta.numel(), dtype=torch.int64)
    fut = futures.new_future()
    kept = {}  # buffers the engine works on, alive until the op completes

    def fail(error) -> None:
        kept.clear()
        futures.fail(fut, error)

    def headers_gathered(error) -> None:
        if error is not None:
            return fail(error)
        try:
            rows = metas.view(size, -1)
            same = torch.ones(meta.numel(), dtype=torch.bool)
            same[3] = False  # nnz may differ
            if any(not torch.equal(rows[r][same], meta[same]) for r in range(size)):
                passed = ", ".join(f"rank {r} {_describe(rows[r])}" for r in range(size))
                raise pg._err(
                    f"sparse all_reduce needs the same sizes and dtype on every rank: {passed}"
                )
            max_nnz = int(rows[:, 3].max())
            # Sections start at multiples of 16 bytes, so they can be viewed as int64 and as
            # any element type (complex128 is the widest).
            index_bytes = _round16(t.sparse_dim() * max_nnz * 8)
            row_bytes = values.element_size() * math.prod(values.shape[1:])  # one nonzero's values
            per_rank = index_bytes + _round16(max_nnz * row_bytes)
            if per_rank == 0:  # no rank holds a nonzero
                return finish([], [])
            send = torch.zeros(per_rank, dtype=torch.uint8)
            padded = torch.zeros(t.sparse_dim(), max_nnz, dtype=torch.int64)
            padded[:, :nnz] = indices
            send[: padded.numel() * 8] = padded.view(-1).view(torch.uint8)
            send[index_bytes : index_bytes + nnz * row_bytes] = values.reshape(-1).view(torch.uint8)
            recv = torch.empty(size * per_rank, dtype=torch.uint8)
            kept.update(send=send, recv=recv)

            def data_gathered(error) -> None:
                if error is not None:
                    return fail(error)
                try:
                    all_indices, all_values = [], []
                    for r in range(size):
                        n = int(rows[r][3])
                        chunk = recv[r * per_rank : (r + 1) * per_rank]
                        idx = chunk[: t.sparse_dim() * max_nnz * 8].view(torch.int64)
                        idx = idx.view(t.sparse_dim(), max_nnz)
                        val = chunk[index_bytes : index_bytes + n * row_bytes].view(t.dtype)
                        all_indices.append(idx[:, :n])
                        all_values.append(val.view(n, *values.shape[1:]))
                    finish(all_indices, all_values)
                except BaseException as e:  # noqa: BLE001 - surfaced through the future
                    fail(e)

            pg._comm.allgather(
                send.data_ptr(), recv.data_ptr(), per_rank, _UINT8, data_gathered, False
            )
        except BaseException as e:  # noqa: BLE001 - surfaced through the future
            fail(e)

    def finish(all_indices, all_values) -> None:
        if all_indices:
            total = torch.sparse_coo_tensor(
                torch.cat(all_indices, dim=1),
                torch.cat(all_values),
                t.shape,
                check_invariants=True,  # indices came over the wire: checked before use
            ).coalesce()
        else:
            total = torch.sparse_coo_tensor(
                torch.zeros(t.sparse_dim(), 0, dtype=torch.int64),
                torch.zeros(0, *t.shape[t.sparse_dim() :], dtype=t.dtype),
                t.shape,
                check_invariants=False,
            ).coalesce()
        with torch.no_grad():
            t.copy_(total.to(t.device))
        kept.clear()
        futures.complete(fut, [t])

    kept.update(meta=meta, metas=metas)
    sync = opts is not None and getattr(opts, "asyncOp", True) is False
    pg._comm.allgather(
        meta.data_ptr(), metas.data_ptr(), meta.numel(), _INT64, headers_gathered, sync
    )
    work = GradwireWork(fut, f"rank {rank}: sparse all_reduce({t.dtype} {list(t.shape)})")
    if pg._coalesced_works is not None:
        pg._coalesced_works.append(work)
    return work


def _round16(n: int) -> int:
    return (n + 15) // 16 * 16
