"""The correctness check: the pattern each rank fills in, the values each collective must
produce from it, and the count of elements that differ (the #wrong column).

Values are small integers chosen so that every reduction over the world is exact in the element
type (sums stay below the type's exact-integer limit; products are of 1s and 2s), so any
difference is an error, not rounding. `avg` is the one inexact result: it is compared with the
type's relative tolerance. Work goes in blocks so a 256 MB buffer needs no 256 MB temporaries.

>>> import numpy as np
>>> p = Pattern("sum", world=2, exact=1 << 24)
>>> p.values(rank=1, lo=0, hi=4).tolist()
[14, 21, 28, 35]
>>> p.reduce(lo=0, hi=2).tolist()  # rank 0 + rank 1
[15, 29]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gradwire.bench.collectives import Collective, Layout
from gradwire.bench.dtypes import DType

BLOCK = 1 << 22  # elements per check step


class Pattern:
    """Element `k` of rank `r`'s send buffer holds `(7k + 13r + 1) mod m` (`1 + (k + r) mod 2`
    for products)."""

    def __init__(self, redop: str, world: int, exact: int):
        self.redop, self.world = redop, world
        self.modulus = max(2, min(1021, exact // max(1, world) + 1))

    def of(self, rank, k) -> np.ndarray:
        k = np.asarray(k, dtype=np.int64)
        if self.redop == "prod":
            return 1 + (k + rank) % 2
        return (7 * k + 13 * np.asarray(rank, dtype=np.int64) + 1) % self.modulus

    def values(self, rank: int, lo: int, hi: int) -> np.ndarray:
        return self.of(rank, np.arange(lo, hi, dtype=np.int64))

    def reduce(self, lo: int, hi: int) -> np.ndarray:
        """Elements lo..hi of the reduction of every rank's send buffer (int64, or float64 for
        avg)."""
        k = np.arange(lo, hi, dtype=np.int64)
        acc = self.of(0, k)
        for r in range(1, self.world):
            v = self.of(r, k)
            if self.redop in ("sum", "avg"):
                acc = acc + v
            elif self.redop == "prod":
                acc = acc * v
            elif self.redop == "min":
                acc = np.minimum(acc, v)
            else:
                acc = np.maximum(acc, v)
        return acc / self.world if self.redop == "avg" else acc


def expected_fn(
    coll: Collective, pattern: Pattern, layout: Layout, rank: int, root: int
) -> Callable[[int, int], np.ndarray]:
    """`f(lo, hi)`: the values elements lo..hi of this rank's result must hold."""
    world, c = pattern.world, layout.count
    name = coll.name
    if name in ("allreduce", "reduce"):
        return pattern.reduce
    if name == "broadcast":
        return lambda lo, hi: pattern.values(root, lo, hi)
    if name == "reduce_scatter":
        return lambda lo, hi: pattern.reduce(rank * c + lo, rank * c + hi)
    if name == "sendrecv":
        return lambda lo, hi: pattern.values((rank - 1) % world, lo, hi)
    if name == "allgather":
        return lambda lo, hi: _from_blocks(pattern, lo, hi, c, offset=0)
    if name == "alltoall":
        return lambda lo, hi: _from_blocks(pattern, lo, hi, c, offset=rank * c)
    raise ValueError(f"no expected values for {name}")


def _from_blocks(pattern: Pattern, lo: int, hi: int, block: int, offset: int) -> np.ndarray:
    """Result element j comes from rank j // block, its send element offset + j % block."""
    j = np.arange(lo, hi, dtype=np.int64)
    return pattern.of(j // block, offset + j % block)


def count_wrong(
    read: Callable[[int, int], np.ndarray],
    expected: Callable[[int, int], np.ndarray],
    n: int,
    dtype: DType,
) -> int:
    """Elements of the result (read block by block) that differ from the expected values."""
    wrong = 0
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        got, want = read(lo, hi), expected(lo, hi)
        if dtype.is_float:
            ok = np.isclose(got, want, rtol=dtype.rtol, atol=0.0)
        else:
            ok = got == want.astype(dtype.numpy).astype(np.int64)
        wrong += int(hi - lo - np.count_nonzero(ok))
    return wrong
