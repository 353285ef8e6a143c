"""OpenMPI (or any MPI) measured through mpi4py's buffer interface on numpy arrays.

Run under mpirun. In-place calls use MPI_IN_PLACE where MPI defines it the way nccl-tests lays
buffers out; MPI's in-place reduce_scatter leaves the result in block 0 rather than the rank's
own block, and MPI_Bcast has one buffer, so those have one column only.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gradwire.bench.backends.base import Backend, Call
from gradwire.bench.collectives import IN_PLACE, OUT_OF_PLACE, Collective
from gradwire.bench.dtypes import DType
from gradwire.bench.errors import BenchUsageError

_IN_ONLY, _OUT_ONLY = (IN_PLACE,), (OUT_OF_PLACE,)

INSTALL_HINT = (
    "the mpi backend needs mpi4py and an MPI library: "
    "apt-get install -y openmpi-bin libopenmpi-dev && pip install mpi4py"
)


def import_mpi():
    """mpi4py's MPI module, or a BenchUsageError that says how to install it."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as e:  # RuntimeError: mpi4py present, libmpi not
        raise BenchUsageError(f"{INSTALL_HINT} ({e})") from None
    return MPI


class MpiBackend(Backend):
    name = "mpi"
    api = "mpi4py"
    redops = frozenset({"sum", "prod", "min", "max"})
    no_dtypes = frozenset({"float16", "bfloat16"})  # no MPI datatypes for them
    placements = {
        "broadcast": _IN_ONLY,
        "reduce_scatter": _OUT_ONLY,
        "sendrecv": _OUT_ONLY,
        "barrier": _OUT_ONLY,
    }

    def __init__(self):
        MPI = import_mpi()
        self._mpi, self._comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        self._ops = {"sum": MPI.SUM, "prod": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX}
        vendor = MPI.Get_library_version().splitlines()[0]
        self.api = f"mpi4py {__import__('mpi4py').__version__} on {vendor.split(',')[0]}"

    def alloc(self, n: int, dtype: DType):
        return np.zeros(max(1, n), dtype=dtype.numpy)

    def bind(self, coll: Collective, send, recv, call: Call) -> Callable[[], None]:
        comm, op, root = self._comm, self._ops.get(call.redop), call.root
        src = self._mpi.IN_PLACE if call.in_place else send
        name = coll.name
        if name == "allreduce":
            return lambda: comm.Allreduce(src, recv, op)
        if name == "broadcast":
            return lambda: comm.Bcast(recv, root)
        if name == "reduce":
            if call.in_place and self.rank != root:  # in place: only the root passes IN_PLACE
                return lambda: comm.Reduce(recv, None, op, root)
            return lambda: comm.Reduce(src, recv, op, root)
        if name == "allgather":
            return lambda: comm.Allgather(src, recv)
        if name == "reduce_scatter":
            return lambda: comm.Reduce_scatter_block(send, recv, op)
        if name == "alltoall":
            return lambda: comm.Alltoall(src, recv)
        if name == "barrier":
            return comm.Barrier
        if name == "sendrecv":
            nxt, prv = (self.rank + 1) % self.size, (self.rank - 1) % self.size
            return lambda: comm.Sendrecv(send, nxt, 0, recv, prv, 0)
        raise ValueError(f"mpi cannot run {name}")

    def barrier(self) -> None:
        self._comm.Barrier()

    def allgather_f64(self, values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty(self.size * values.size, dtype=np.float64)
        self._comm.Allgather(values, out)
        return out.reshape(self.size, -1)

    def close(self, orderly: bool = True) -> None:
        pass  # mpi4py finalizes MPI when the interpreter exits
