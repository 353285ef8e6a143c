"""Compressed variants of the backend's collectives (see gradwire.compression).

The engine compresses float32: other floating dtypes and non-contiguous or non-CPU tensors are
staged through a float32 copy that is written back when the op completes.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch

from gradwire import _C


def as_f32(t: torch.Tensor, writable: bool) -> Tuple[torch.Tensor, Optional[Callable[[], None]]]:
    """(contiguous float32 CPU buffer, finish) for `t`; finish copies results back, if needed."""
    if t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous():
        return t.view(-1), None
    buf = t.detach().reshape(-1).to("cpu", torch.float32, copy=True).contiguous()
    if not writable:
        return buf, None
    return buf, lambda: t.copy_(buf.view(t.shape))


def _finishers(*fs) -> List[Callable[[], None]]:
    return [f for f in fs if f is not None]


def allreduce(pg, t: torch.Tensor, codec, key: str, average: bool, opts, result, finish=()):
    buf, fin = as_f32(t, writable=True)
    return pg._submit(
        lambda done, il: _C.compressed_allreduce(
            pg._comm, buf.data_ptr(), buf.numel(), codec.native, key, average, done, il
        ),
        result,
        _finishers(fin) + list(finish),
        opts=opts,
    )


def reduce_scatter(pg, out: torch.Tensor, inp: torch.Tensor, codec, key, average, opts, result):
    b_in, _ = as_f32(inp, writable=False)
    b_out, fin = as_f32(out, writable=True)
    return pg._submit(
        lambda done, il: _C.compressed_reduce_scatter(
            pg._comm,
            b_in.data_ptr(),
            b_out.data_ptr(),
            b_out.numel(),
            codec.native,
            key,
            average,
            done,
            il,
        ),
        result,
        _finishers(fin),
        opts=opts,
    )


def allgather(pg, out: torch.Tensor, inp: torch.Tensor, codec, key, opts, result, finish=()):
    b_in, _ = as_f32(inp, writable=False)
    b_out, fin = as_f32(out, writable=True)
    return pg._submit(
        lambda done, il: _C.compressed_allgather(
            pg._comm, b_in.data_ptr(), b_out.data_ptr(), b_in.numel(), codec.native, key, done, il
        ),
        result,
        _finishers(fin) + list(finish),
        opts=opts,
    )
