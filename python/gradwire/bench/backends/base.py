"""The interface every measured library implements: allocate buffers, bind one collective call
to buffers (so the timed region is just the call), synchronize, and gather small arrays for the
statistics. Binding happens outside the timed region; the returned callable does nothing but
issue the library's own collective and wait for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, FrozenSet

import numpy as np

from gradwire.bench.collectives import IN_PLACE, OUT_OF_PLACE, Collective
from gradwire.bench.dtypes import DType
from gradwire.bench.errors import BenchUsageError


@dataclass(frozen=True)
class Call:
    """What a bound collective needs besides its buffers."""

    dtype: DType
    redop: str
    root: int
    in_place: bool


class Backend(ABC):
    """One library, initialized for this process's rank of a world."""

    name: str = "?"
    api: str = "?"  # what the label measures, printed in the header
    rank: int = 0
    size: int = 1
    # collective -> placements the library's API can express without an extra copy
    placements: dict = {}
    redops: FrozenSet[str] = frozenset({"sum", "prod", "min", "max", "avg"})

    no_dtypes: FrozenSet[str] = frozenset()  # element types the library cannot move

    @classmethod
    def check_supported(cls, dtype: DType, redop: str) -> None:
        """Raise BenchUsageError for a type or reduction this library cannot run (a class
        method: the command checks before it starts any process)."""
        if dtype.name in cls.no_dtypes:
            raise BenchUsageError(f"backend {cls.name} cannot move {dtype.name} data")
        if redop not in cls.redops:
            raise BenchUsageError(f"backend {cls.name} has no '{redop}' reduction")
        if redop == "avg" and not dtype.is_float:
            raise BenchUsageError("avg is only benchmarked on floating-point types")

    def supports(self, coll: Collective, placement: str) -> bool:
        return placement in self.placements.get(coll.name, (OUT_OF_PLACE, IN_PLACE))

    codec: str | None = None

    def set_codec(self, spec: str | None) -> None:
        """Compress this backend's collectives with a gradwire codec (gradwire only)."""
        if spec is not None:
            raise BenchUsageError(f"backend {self.name} cannot compress")

    def compression_bytes(self):
        """(raw, wire) bytes of this rank's compressed ops so far, or None."""
        return None

    @abstractmethod
    def alloc(self, n: int, dtype: DType):
        """A zeroed buffer of n elements (at least one, so empty calls still have an address)."""

    @abstractmethod
    def bind(self, coll: Collective, send, recv, call: Call) -> Callable[[], None]:
        """A zero-argument callable that runs the collective once, to completion."""

    @abstractmethod
    def barrier(self) -> None: ...

    @abstractmethod
    def allgather_f64(self, values: np.ndarray) -> np.ndarray:
        """[size, len(values)]: every rank's float64 values (for timings and #wrong)."""

    @abstractmethod
    def close(self, orderly: bool = True) -> None:
        """Release the library's resources (called once, on every rank). `orderly`: after a
        successful run, wait for every rank to be done first; after an error, close now."""
