"""One measured row and the JSON file that holds a run's rows.

A row is one (backend, collective, type, world size, size, placement) with the per-repetition
times of the slowest rank summarized. Times are seconds; bandwidths are GB/s (1e9 bytes/s, as
in nccl-tests), computed from the median time.

>>> import numpy as np
>>> s = Timing.of(np.array([1.0, 2.0, 3.0, 10.0]))
>>> s.median, s.min, s.max
(2.5, 1.0, 10.0)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import numpy as np

SCHEMA = "gradwire-bench/1"


@dataclass
class Timing:
    median: float
    mean: float
    min: float
    max: float
    p99: float

    @classmethod
    def of(cls, samples: np.ndarray) -> Timing:
        return cls(
            median=float(np.median(samples)),
            mean=float(np.mean(samples)),
            min=float(np.min(samples)),
            max=float(np.max(samples)),
            p99=float(np.percentile(samples, 99)),
        )


@dataclass
class Row:
    backend: str
    op: str
    dtype: str
    redop: str  # "none" for collectives that do not reduce
    root: int  # -1 for collectives without a root
    world: int
    nbytes: int
    count: int
    placement: str  # "out" or "in"
    iters: int
    wrong: Optional[int]  # None when the check did not run
    time: Timing
    algbw: float
    busbw: float
    label: str = ""  # the run's label (compare: the peer's name)
    codec: Optional[str] = None  # compression spec of the row (None: dense)
    wire_bytes: Optional[float] = None  # bytes one rank sent per call (mean over ranks)
    ratio: Optional[float] = None  # bytes a dense ring would send / wire_bytes

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Row:
        d = dict(d)
        d["time"] = Timing(**d["time"])
        return cls(**d)


def bandwidths(nbytes: int, seconds: float, factor: float):
    """(algbw, busbw) in GB/s for a call moving `nbytes` in `seconds`."""
    if seconds <= 0 or nbytes == 0:
        return 0.0, 0.0
    alg = nbytes / seconds / 1e9
    return alg, alg * factor


def write_json(path: str, rows: List[Row], meta: Dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump({"schema": SCHEMA, "meta": meta, "rows": [asdict(r) for r in rows]}, f, indent=1)
        f.write("\n")


def read_json(path: str):
    """(rows, meta) of a file written by write_json."""
    with open(path) as f:
        data = json.load(f)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a gradwire bench result ({SCHEMA})")
    return [Row.from_dict(r) for r in data["rows"]], data.get("meta", {})
