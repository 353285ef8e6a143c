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


def _buf(a: np.ndarray, what: str):
    """(buffer, element count, dtype code) of a validated array. The engine reads the address
    through the buffer protocol: numpy's `a.ctypes.data` costs more than a 4-byte allreduce over
    shared memory, which is also why this path is kept to a few attribute reads."""
    if not isinstance(a, np.ndarray):
        raise InvalidArgumentError(f"{what} must be a numpy array, got {type(a).__name__}")
    code = _NP_CODES.get(a.dtype)
    if code is None:
        raise InvalidArgumentError(f"{what} has unsupported dtype {a.dtype}")
    if not a.flags.c_contiguous:
        raise InvalidArgumentError(f"{what} must be C-contiguous")
    return a, a.size, code


def _op(op: str) -> int:
    code = _OPS.get(op)
    if code is not None:
        return code
    try:
        return _OPS[op.lower()]
    except (KeyError, AttributeError):
        raise InvalidArgumentError(f"unknown reduce op '{op}' (one of {sorted(_OPS)})") from None


class Communicator:
    """A group of `size` processes; each process creates one with its own `rank`."""

    def __init__(self, store, rank: int, size: int, name: str = "comm", timeout: float = 300.0):
        route = os.environ.get("MASTER_ADDR", "")
        self._c = _C.Communicator(store, rank, size, name, float(timeout), route, "")
        # fn(array, op): a synchronous allreduce with its checks in C++; NotImplemented for
        # anything but a C-contiguous array of a supported dtype and a lower-case op name.
        self._allreduce_now = self._c.sync_allreduce_fn(_NP_CODES, _OPS)
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

    @staticmethod
    def _run(work, async_op: bool):
        """A synchronous call (no callback, inline_ok) already waited in the engine and got None."""
        return work if async_op else None

    def allreduce(self, a: np.ndarray, op: str = "sum", async_op: bool = False):
        # The synchronous call is the latency-critical one: one C call that validates, runs the
        # op on this thread when the communicator is idle (else behind its queue) and returns
        # None. What it does not take goes the general way, which validates and raises.
        if not async_op and self._allreduce_now(a, op) is None:
            return None
        return self._run(
            self._c.allreduce(*_buf(a, "allreduce array"), _op(op), None, not async_op),
            async_op,
        )

    def broadcast(self, a: np.ndarray, root: int = 0, async_op: bool = False):
        return self._run(
            self._c.broadcast(*_buf(a, "broadcast array"), root, None, not async_op),
            async_op,
        )

    def reduce(self, a: np.ndarray, root: int = 0, op: str = "sum", async_op: bool = False):
        return self._run(
            self._c.reduce(*_buf(a, "reduce array"), _op(op), root, None, not async_op),
            async_op,
        )

    def allgather(self, a: np.ndarray, out: np.ndarray, async_op: bool = False):
        """out.size == size * a.size; rank i's array lands in block i."""
        a_ptr, n, code = _buf(a, "allgather input")
        out_ptr, out_n, out_code = _buf(out, "allgather output")
        if out_n != self.size * n or out_code != code:
            raise InvalidArgumentError(f"allgather output must be {self.size} x {n} {a.dtype}")
        return self._run(self._c.allgather(a_ptr, out_ptr, n, code, None, not async_op), async_op)

    def reduce_scatter(
        self, a: np.ndarray, out: np.ndarray, op: str = "sum", async_op: bool = False
    ):
        """a.size == size * out.size; this rank receives block `rank` of the reduction."""
        a_ptr, n, code = _buf(a, "reduce_scatter input")
        out_ptr, out_n, out_code = _buf(out, "reduce_scatter output")
        if n != self.size * out_n or out_code != code:
            raise InvalidArgumentError(
                f"reduce_scatter input must be {self.size} x {out_n} {out.dtype}"
            )
        return self._run(
            self._c.reduce_scatter(a_ptr, out_ptr, out_n, code, _op(op), None, not async_op),
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
        """Counts in elements, one per rank (default: equal splits)."""
        a_ptr, n, code = _buf(a, "alltoall input")
        out_ptr, out_n, out_code = _buf(out, "alltoall output")
        if out_code != code:
            raise InvalidArgumentError(f"alltoall dtypes differ: {a.dtype} vs {out.dtype}")
        sc = list(send_counts) if send_counts is not None else [n // self.size] * self.size
        rc = list(recv_counts) if recv_counts is not None else [out_n // self.size] * self.size
        if sum(sc) > n or sum(rc) > out_n:
            raise InvalidArgumentError(
                f"alltoall counts {sc} / {rc} exceed the arrays ({n} / {out_n})"
            )
        return self._run(
            self._c.alltoall(a_ptr, out_ptr, sc, rc, code, None, not async_op), async_op
        )

    def send(self, a: np.ndarray, dst: int, tag: int = 0, async_op: bool = False):
        """Send `a` to rank `dst`; pairs with the `recv` of the same tag there, in issue order."""
        ptr, n, code = _buf(a, "send array")
        return self._run(self._c.send(ptr, n, code, dst, tag, None, not async_op), async_op)

    def recv(self, a: np.ndarray, src: int, tag: int = 0, async_op: bool = False):
        """Receive into `a` (its size must match the sent array) from rank `src`."""
        ptr, n, code = _buf(a, "recv array")
        return self._run(self._c.recv(ptr, n, code, src, tag, None, not async_op), async_op)

    def barrier(self, async_op: bool = False):
        return self._run(self._c.barrier(None, not async_op), async_op)

    def stats(self) -> dict:
        return self._c.stats()

    def close(self) -> None:
        self._c.shutdown()
