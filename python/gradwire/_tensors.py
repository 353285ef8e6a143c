"""Mapping torch tensors to the engine's (address, dtype code, count) and back.

The engine works on contiguous host memory. A tensor that is not (non-contiguous, or on a CUDA
device) is staged through a contiguous CPU copy, and results are copied back when the op
completes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.distributed as dist

from gradwire.errors import InvalidArgumentError

# Codes of gw::DType (csrc/gradwire/common/dtype.h).
DTYPE_CODES = {
    torch.float32: 0,
    torch.float64: 1,
    torch.float16: 2,
    torch.bfloat16: 3,
    torch.int8: 4,
    torch.uint8: 5,
    torch.int32: 6,
    torch.int64: 7,
    torch.bool: 8,
}

# Codes of gw::ReduceOp.
REDUCE_CODES = {
    dist.ReduceOp.SUM: 0,
    dist.ReduceOp.AVG: 1,
    dist.ReduceOp.MIN: 2,
    dist.ReduceOp.MAX: 3,
    dist.ReduceOp.PRODUCT: 4,
    dist.ReduceOp.BAND: 5,
    dist.ReduceOp.BOR: 6,
    dist.ReduceOp.BXOR: 7,
}


def dtype_code(t: torch.Tensor, rank, what: str) -> int:
    """The engine's code for t's dtype; `rank` (an int or a callable) is only for the error."""
    code = DTYPE_CODES.get(t.dtype)
    if code is None:
        rank = rank() if callable(rank) else rank
        supported = ", ".join(str(d).replace("torch.", "") for d in DTYPE_CODES)
        raise InvalidArgumentError(
            f"rank {rank}: {what} has dtype {t.dtype}, which gradwire does not support "
            f"(supported: {supported})"
        )
    return code


# RedOpType values are ints underneath; PREMUL_SUM and unknown ops have no entry.
_REDUCE_BY_INT = {int(k): v for k, v in REDUCE_CODES.items()}


def reduce_code(op, rank) -> int:
    """The engine's code for a ReduceOp (object or RedOpType); `rank` only for the error."""
    key = op.op if hasattr(op, "op") else op
    try:
        return _REDUCE_BY_INT[int(key)]
    except (KeyError, TypeError, ValueError):
        rank = rank() if callable(rank) else rank
        raise InvalidArgumentError(f"rank {rank}: unsupported reduce op {op!r}") from None


@dataclass
class Staged:
    """A tensor as the engine sees it: `buf` is contiguous CPU memory aliasing or copying `orig`."""

    orig: torch.Tensor
    buf: torch.Tensor
    copy_back: bool

    @property
    def ptr(self) -> int:
        return self.buf.data_ptr()

    @property
    def count(self) -> int:
        return self.buf.numel()

    def finish(self) -> None:
        if self.copy_back:
            self.orig.copy_(self.buf)


def stage(t: torch.Tensor, writable: bool) -> Staged:
    """Prepare `t` for the engine; `writable` means the op writes results into it."""
    if t.is_sparse:
        raise InvalidArgumentError(
            "gradwire takes sparse tensors only in all_reduce (ReduceOp.SUM); this op needs dense ones"
        )
    if t.device.type == "cpu" and t.is_contiguous():
        return Staged(t, t, False)
    buf = t.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
    return Staged(t, buf, writable)


def check_same(
    tensors: List[torch.Tensor], rank: int, what: str, ref: Optional[torch.Tensor] = None
):
    """All tensors share dtype and element count with `ref` (default: the first)."""
    ref = tensors[0] if ref is None else ref
    for i, t in enumerate(tensors):
        if t.dtype != ref.dtype:
            raise InvalidArgumentError(
                f"rank {rank}: {what}[{i}] has dtype {t.dtype}, expected {ref.dtype}"
            )
        if t.numel() != ref.numel():
            raise InvalidArgumentError(
                f"rank {rank}: {what}[{i}] has {t.numel()} elements, expected {ref.numel()}"
            )
