"""gradwire measured through its own numpy-level API, gradwire.comm.Communicator: no
torch.distributed dispatch on the path, the same engine underneath.

The Communicator's allreduce, broadcast and reduce work in place; sendrecv pairs the engine's
point-to-point send and recv, which the public Communicator does not wrap yet (so it calls the
binding directly, and follows its signature).
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
        from gradwire.comm import _NP_CODES, Communicator

        export_torch_env(rank, size)
        self._comm = Communicator.from_env(name="bench", timeout=timeout)
        self._codes = _NP_CODES
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
        engine, code = self._comm._c, self._codes[send.dtype]
        nxt, prv = (self.rank + 1) % self.size, (self.rank - 1) % self.size
        s_ptr, r_ptr, n = send.ctypes.data, recv.ctypes.data, send.size

        def sendrecv():
            # inline_ok=False: both must be queued before either is waited for
            s = engine.send(s_ptr, n, code, nxt, _SENDRECV_TAG, None, False)
            r = engine.recv(r_ptr, n, code, prv, _SENDRECV_TAG, None, False)
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
