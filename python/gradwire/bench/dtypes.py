"""Element types the benchmark can move, by name, with what the correctness check needs.

>>> get_dtype("half").name, get_dtype("float").itemsize
('float16', 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from gradwire.bench.errors import BenchUsageError


@dataclass(frozen=True)
class DType:
    """`exact` is the largest integer the type holds exactly (the check's values stay below it);
    `numpy` is None where numpy has no such type (bfloat16)."""

    name: str
    itemsize: int
    is_float: bool
    exact: int
    numpy: Optional[np.dtype]
    rtol: float = 0.0  # tolerance for results that are not exact integers (avg)


DTYPES: Dict[str, DType] = {
    d.name: d
    for d in (
        DType("float32", 4, True, 1 << 24, np.dtype(np.float32), 1e-6),
        DType("float64", 8, True, 1 << 53, np.dtype(np.float64), 1e-14),
        DType("float16", 2, True, 1 << 11, np.dtype(np.float16), 2e-3),
        DType("bfloat16", 2, True, 1 << 8, None, 1.6e-2),
        DType("int8", 1, False, 127, np.dtype(np.int8)),
        DType("uint8", 1, False, 255, np.dtype(np.uint8)),
        DType("int32", 4, False, (1 << 31) - 1, np.dtype(np.int32)),
        DType("int64", 8, False, (1 << 63) - 1, np.dtype(np.int64)),
    )
}

# nccl-tests' and C spellings
_ALIASES = {
    "float": "float32",
    "f32": "float32",
    "double": "float64",
    "f64": "float64",
    "half": "float16",
    "f16": "float16",
    "bf16": "bfloat16",
    "int": "int32",
    "char": "int8",
    "long": "int64",
}


def get_dtype(name: str) -> DType:
    key = _ALIASES.get(name.lower(), name.lower())
    try:
        return DTYPES[key]
    except KeyError:
        raise BenchUsageError(f"unknown data type '{name}' (one of {', '.join(DTYPES)})") from None


def parse_dtypes(text: str) -> List[DType]:
    """A comma-separated list, or 'all'."""
    if text.strip().lower() == "all":
        return list(DTYPES.values())
    return [get_dtype(part.strip()) for part in text.split(",") if part.strip()]
