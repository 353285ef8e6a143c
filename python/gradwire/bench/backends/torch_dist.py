"""gradwire and gloo measured through the same torch.distributed calls on the same tensors.

torch's allreduce, broadcast and reduce work in place only, so those rows have no out-of-place
column here (an extra copy would be measured, not the collective); alltoall uses
all_to_all_single, which has no in-place form.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Callable

import numpy as np

from gradwire.bench.backends.base import Backend, Call
from gradwire.bench.backends.orderly_exit import close_when_all_done
from gradwire.bench.collectives import IN_PLACE, OUT_OF_PLACE, Collective
from gradwire.bench.dtypes import DType
from gradwire.bench.env import export_torch_env

_IN_ONLY, _OUT_ONLY, _BOTH = (IN_PLACE,), (OUT_OF_PLACE,), (OUT_OF_PLACE, IN_PLACE)


class TorchBackend(Backend):
    """A torch.distributed backend named by the subclass."""

    api = "torch.distributed"
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

    def __init__(self, rank: int, size: int, timeout: float):
        import torch
        import torch.distributed as dist

        import gradwire  # noqa: F401 - registers the "gradwire" backend

        export_torch_env(rank, size)
        dist.init_process_group(
            self.name, rank=rank, world_size=size, timeout=timedelta(seconds=timeout)
        )
        self.rank, self.size, self._timeout = rank, size, timeout
        self._torch, self._dist = torch, dist
        # torch 2.13 names them *_single; older releases *_into_tensor / *_tensor
        self._all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        self._reduce_scatter = (
            getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        )
        R = dist.ReduceOp
        self._ops = {"sum": R.SUM, "prod": R.PRODUCT, "min": R.MIN, "max": R.MAX, "avg": R.AVG}

    def alloc(self, n: int, dtype: DType):
        return self._torch.zeros(max(1, n), dtype=getattr(self._torch, dtype.name))

    def bind(self, coll: Collective, send, recv, call: Call) -> Callable[[], None]:
        dist, op, root = self._dist, self._ops[call.redop], call.root
        name = coll.name
        if name == "allreduce":
            return lambda: dist.all_reduce(recv, op=op)
        if name == "broadcast":
            return lambda: dist.broadcast(recv, src=root)
        if name == "reduce":
            return lambda: dist.reduce(recv, dst=root, op=op)
        if name == "allgather":
            return lambda: self._all_gather(recv, send)
        if name == "reduce_scatter":
            return lambda: self._reduce_scatter(recv, send, op=op)
        if name == "alltoall":
            return lambda: dist.all_to_all_single(recv, send)
        if name == "barrier":
            return dist.barrier
        if name == "sendrecv":
            nxt, prv = (self.rank + 1) % self.size, (self.rank - 1) % self.size

            def sendrecv():
                s, r = dist.isend(send, nxt), dist.irecv(recv, prv)
                s.wait()
                r.wait()

            return sendrecv
        raise ValueError(f"{self.name} cannot run {name}")

    def barrier(self) -> None:
        self._dist.barrier()

    def allgather_f64(self, values: np.ndarray) -> np.ndarray:
        t = self._torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
        out = self._torch.empty(self.size * t.numel(), dtype=self._torch.float64)
        self._all_gather(out, t)
        return out.numpy().reshape(self.size, -1)

    def close(self, orderly: bool = True) -> None:
        if not orderly:
            self._dist.destroy_process_group()
            return
        store = self._dist.distributed_c10d._get_default_store()
        close_when_all_done(
            store, self.rank, self.size, self._dist.destroy_process_group, self._timeout
        )


class GradwireTorch(TorchBackend):
    name = "gradwire"

    def set_codec(self, spec):
        self.codec = spec

    def compression_bytes(self):
        import gradwire

        s = gradwire.compression.stats()
        return s["raw_bytes"], s["wire_bytes"]

    def bind(self, coll: Collective, send, recv, call: Call) -> Callable[[], None]:
        run = super().bind(coll, send, recv, call)
        if self.codec is None:
            return run
        import gradwire

        codec = gradwire.compression.Codec.parse(self.codec)

        def compressed():
            with gradwire.compression(codec, key="bench"):
                run()

        return compressed


class GlooTorch(TorchBackend):
    name = "gloo"
    redops = frozenset({"sum", "prod", "min", "max"})  # gloo has no AVG
