"""Benchmark buffers are numpy arrays (native and MPI backends) or torch tensors (torch
backends); these helpers fill and read either kind, converting to and from the int64/float64
values of the correctness check.

>>> import numpy as np
>>> b = np.zeros(4, dtype=np.float32)
>>> write(b, 0, np.arange(4))
>>> read(b, 1, 3).tolist()
[1.0, 2.0]
"""

from __future__ import annotations

import numpy as np

from gradwire.bench.check import BLOCK


def _is_numpy(buf) -> bool:
    return isinstance(buf, np.ndarray)


def write(buf, lo: int, values: np.ndarray) -> None:
    """buf[lo : lo + len(values)] = values, converted to buf's element type."""
    hi = lo + len(values)
    if _is_numpy(buf):
        buf[lo:hi] = values.astype(buf.dtype)
        return
    import torch

    buf[lo:hi].copy_(torch.from_numpy(np.ascontiguousarray(values)))


def read(buf, lo: int, hi: int) -> np.ndarray:
    """buf[lo:hi] as float64 (floating types) or int64 (integer types)."""
    if _is_numpy(buf):
        part = buf[lo:hi]
        return part.astype(np.float64 if part.dtype.kind == "f" else np.int64)
    import torch

    part = buf[lo:hi]
    wide = torch.float64 if part.is_floating_point() else torch.int64
    return part.to(wide).numpy()


def fill(buf, n: int, values) -> None:
    """Fill the first n elements from `values(lo, hi)`, block by block."""
    for lo in range(0, n, BLOCK):
        write(buf, lo, values(lo, min(n, lo + BLOCK)))
