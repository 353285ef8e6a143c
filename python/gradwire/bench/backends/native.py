"""gradwire measured through its own numpy-level API, gradwire.comm.Communicator: no
torch.distributed dispatch on the path, the same engine underneath.

The Communicator's allreduce, broadcast and reduce work in place; sendrecv pairs its
point-to-point send and recv.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gradwire.bench.backends.base import Backend, Call
from gradwire.bench.backends.orderly_exit import close_when_all_done
from gradwire.bench.collectives import IN_PLACE, OUT_OF_PLACE, Collective
from gradwire.bench.dtypes import DType
from gradwire.bench.env import export_torch_env

_IN_ONLY, _OUT_ONLY, _BOTH = (IN_PLACE,), (OUT_OF_PLACE,), (OUT_OF_PLACE, IN_PLACE)
_SENDRECV_TAG = 7


class NativeBackend(Backend):
    name = "gradwire-native"
    api = "gradwire.comm (numpy)"
    placements = {
        "allreduce": _IN_ONLY,
        "broadcast": _IN_ONLY,
        "reduce": _IN_ONLY,
        "allgather": _BOTH,
        "reduce_scatter": _BOTH,
        "alltoall": _OUT_ONLY,
        "sendrecv": _OUT_ONLY,
        "barrier": _OUT_ONLY,
    }
    no_dtypes = frozenset({"bfloat16"})  # numpy has no bfloat16

    def __init__(self, rank: int, size: int, timeout: float):
        from gradwire.comm import Communicator

        export_torch_env(rank, size)
        self._comm = Communicator.from_env(name="bench", timeout=timeout)
        self.rank, self.size, self._timeout = rank, size, timeout

    def alloc(self, n: int, dtype: DType):
        return np.zeros(max(1, n), dtype=dtype.numpy)

    def bind(self, coll: Collective, send, recv, call: Call) -> Callable[[], None]:
        comm, op, root = self._comm, call.redop, call.root
        name = coll.name
        if name == "allreduce":
            return lambda: comm.allreduce(recv, op=op)
        if name == "broadcast":
            return lambda: comm.broadcast(recv, root=root)
        if name == "reduce":
            return lambda: comm.reduce(recv, root=root, op=op)
        if name == "allgather":
            return lambda: comm.allgather(send, recv)
        if name == "reduce_scatter":
            return lambda: comm.reduce_scatter(send, recv, op=op)
        if name == "alltoall":
            return lambda: comm.alltoall(send, recv)
        if name == "barrier":
            return comm.barrier
        if name == "sendrecv":
            return self._bind_sendrecv(send, recv)
        raise ValueError(f"{self.name} cannot run {name}")

    def _bind_sendrecv(self, send: np.ndarray, recv: np.ndarray) -> Callable[[], None]:
        comm = self._comm
        nxt, prv = (self.rank + 1) % self.size, (self.rank - 1) % self.size

        def sendrecv():
            # Both are queued before either is waited for.
            s = comm.send(send, nxt, tag=_SENDRECV_TAG, async_op=True)
            r = comm.recv(recv, prv, tag=_SENDRECV_TAG, async_op=True)
            s.wait()
            r.wait()

        return sendrecv

    def barrier(self) -> None:
        self._comm.barrier()

    def allgather_f64(self, values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty(self.size * values.size, dtype=np.float64)
        self._comm.allgather(values, out)
        return out.reshape(self.size, -1)

    def close(self, orderly: bool = True) -> None:
        if not orderly:
            self._comm.close()
            return
        close_when_all_done(
            self._comm._store, self.rank, self.size, self._comm.close, self._timeout
        )
