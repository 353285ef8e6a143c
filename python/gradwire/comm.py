"""gradwire's own array-level API: collectives on numpy arrays (or anything exposing the buffer
protocol), without torch.distributed in the way.

    from gradwire.comm import Communicator
    comm = Communicator.from_env()             # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    x = np.ones(1024, dtype=np.float32)
    comm.allreduce(x)                          # in place, SUM
    comm.allreduce(x, op="max", async_op=True).wait()

Rendezvous needs a key-value store with set/get/add; by default torch's TCPStore.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from gradwire import _C
from gradwire.errors import InvalidArgumentError

_NP_CODES = {
    np.dtype(np.float32): 0,
    np.dtype(np.float64): 1,
    np.dtype(np.float16): 2,
    np.dtype(np.int8): 4,
    np.dtype(np.uint8): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.int64): 7,
    np.dtype(np.bool_): 8,
}
_OPS = {
    "sum": 0,
    "avg": 1,
    "min": 2,
    "max": 3,
    "prod": 4,
    "product": 4,
    "band": 5,
    "bor": 6,
    "bxor": 7,
}


def _code(a: np.ndarray, what: str) -> int:
    if not isinstance(a, np.ndarray):
        raise InvalidArgumentError(f"{what} must be a numpy array, got {type(a).__name__}")
    if not a.flags.c_contiguous:
        raise InvalidArgumentError(f"{what} must be C-contiguous")
    code = _NP_CODES.get(a.dtype)
    if code is None:
        raise InvalidArgumentError(f"{what} has unsupported dtype {a.dtype}")
    return code


def _op(op: str) -> int:
    try:
        return _OPS[op.lower()]
    except KeyError:
        raise InvalidArgumentError(f"unknown reduce op '{op}' (one of {sorted(_OPS)})") from None


class Communicator:
    """A group of `size` processes; each process creates one with its own `rank`."""

    def __init__(self, store, rank: int, size: int, name: str = "comm", timeout: float = 300.0):
        route = os.environ.get("MASTER_ADDR", "")
        self._c = _C.Communicator(store, rank, size, name, float(timeout), route, "")
        self._store = store
        self.rank, self.size = rank, size

    @classmethod
    def from_env(cls, name: str = "comm", timeout: float = 300.0) -> Communicator:
        """Rendezvous through a torch TCPStore at MASTER_ADDR:MASTER_PORT (rank 0 hosts it)."""
        from datetime import timedelta

        from torch.distributed import TCPStore

        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        store = TCPStore(
            os.environ.get("MASTER_ADDR", "127.0.0.1"),
            int(os.environ.get("MASTER_PORT", "29500")),
            size,
            rank == 0,
            timeout=timedelta(seconds=timeout),
        )
        return cls(store, rank, size, name, timeout)

    def _run(self, work, async_op: bool):
        if async_op:
            return work
        work.wait()
        return None

    def allreduce(self, a: np.ndarray, op: str = "sum", async_op: bool = False):
        return self._run(
            self._c.allreduce(
                a.ctypes.data, a.size, _code(a, "allreduce array"), _op(op), None, not async_op
            ),
            async_op,
        )

    def broadcast(self, a: np.ndarray, root: int = 0, async_op: bool = False):
        return self._run(
            self._c.broadcast(
                a.ctypes.data, a.size, _code(a, "broadcast array"), root, None, not async_op
            ),
            async_op,
        )

    def reduce(self, a: np.ndarray, root: int = 0, op: str = "sum", async_op: bool = False):
        return self._run(
            self._c.reduce(
                a.ctypes.data, a.size, _code(a, "reduce array"), _op(op), root, None, not async_op
            ),
            async_op,
        )

    def allgather(self, a: np.ndarray, out: np.ndarray, async_op: bool = False):
        """out.size == size * a.size; rank i's array lands in block i."""
        if out.size != self.size * a.size or out.dtype != a.dtype:
            raise InvalidArgumentError(f"allgather output must be {self.size} x {a.size} {a.dtype}")
        _code(out, "allgather output")
        return self._run(
            self._c.allgather(
                a.ctypes.data,
                out.ctypes.data,
                a.size,
                _code(a, "allgather input"),
                None,
                not async_op,
            ),
            async_op,
        )

    def reduce_scatter(
        self, a: np.ndarray, out: np.ndarray, op: str = "sum", async_op: bool = False
    ):
        """a.size == size * out.size; this rank receives block `rank` of the reduction."""
        if a.size != self.size * out.size or out.dtype != a.dtype:
            raise InvalidArgumentError(
                f"reduce_scatter input must be {self.size} x {out.size} {out.dtype}"
            )
        _code(out, "reduce_scatter output")
        return self._run(
            self._c.reduce_scatter(
                a.ctypes.data,
                out.ctypes.data,
                out.size,
                _code(a, "reduce_scatter input"),
                _op(op),
                None,
                not async_op,
            ),
            async_op,
        )

    def alltoall(
        self,
        a: np.ndarray,
        out: np.ndarray,
        send_counts: Optional[Sequence[int]] = None,
        recv_counts: Optional[Sequence[int]] = None,
        async_op: bool = False,
    ):
        sc = list(send_counts) if send_counts is not None else [a.size // self.size] * self.size
        rc = list(recv_counts) if recv_counts is not None else [out.size // self.size] * self.size
        code = _code(a, "alltoall input")
        _code(out, "alltoall output")
        return self._run(
            self._c.alltoall(a.ctypes.data, out.ctypes.data, sc, rc, code, None, not async_op),
            async_op,
        )

    def barrier(self, async_op: bool = False):
        return self._run(self._c.barrier(None, not async_op), async_op)

    def stats(self) -> dict:
        return self._c.stats()

    def close(self) -> None:
        self._c.shutdown()
