"""Message sizes: parsing ("4", "64K", "256M", "1G"), printing, and the sweep between two sizes.

>>> parse_size("256M")
268435456
>>> size_range(4, 64, factor=4)
[4, 16, 64]
>>> format_size(1 << 20)
'1M'
"""

from __future__ import annotations

import re
from typing import List, Optional

from gradwire.bench.errors import BenchUsageError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes for a size written like nccl-tests' -b/-e: a number with an optional K, M or G
    (powers of 1024) and an optional B/iB."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise BenchUsageError(f"cannot read size '{text}': use bytes like 4, 64K, 256M or 1G")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def format_size(nbytes: int) -> str:
    """The shortest exact spelling: 4, 3000, 64K, 256M, 1G."""
    for unit in ("G", "M", "K"):
        if nbytes and nbytes % _UNITS[unit] == 0:
            return f"{nbytes // _UNITS[unit]}{unit}"
    return str(nbytes)


def size_range(
    begin: int, end: int, factor: Optional[float] = 2.0, step: Optional[int] = None
) -> List[int]:
    """Sizes from `begin` to `end` inclusive, multiplying by `factor` or adding `step`."""
    if begin <= 0:
        raise BenchUsageError(f"minimum size must be positive, got {begin} bytes")
    if begin > end:
        raise BenchUsageError(
            f"minimum size {format_size(begin)} (-b) is larger than maximum size "
            f"{format_size(end)} (-e)"
        )
    if step is not None:
        if step <= 0:
            raise BenchUsageError(f"size increment (-i) must be positive, got {step}")
        return list(range(begin, end + 1, step))
    if factor is None or factor <= 1:
        raise BenchUsageError(f"size factor (-f) must be greater than 1, got {factor}")
    sizes, size = [], begin
    while size <= end:
        sizes.append(size)
        nxt = int(size * factor)
        size = nxt if nxt > size else size + 1
    return sizes
