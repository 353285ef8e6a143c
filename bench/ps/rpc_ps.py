"""The baseline: a parameter server on torch.distributed.rpc, written the way PyTorch's RPC
tutorials write one ("Implementing a Parameter Server Using Distributed RPC Framework" and the
batch-updating server of "Implementing Batch RPC Processing Using Asynchronous Executions").

What it does, exactly:

* S server processes, one per shard, named ``ps0 .. ps{S-1}``; W trainer processes named
  ``worker0 ..``; all join one RPC group (TensorPipe backend, torch's defaults).
* Each server process holds one ``ShardServer`` object, created on first use under a
  module-level lock and reached by the trainers through an ``RRef`` (``rpc.remote``), as in the
  tutorial's ``get_parameter_server``. Trainers call its static methods with
  ``rpc.rpc_async(rref.owner(), ShardServer.method, args=(rref, ...))``; the method takes
  ``rref.local_value()``.
* Dense tensor ``name`` is flattened and cut into S contiguous chunks (``torch.chunk``); chunk
  i lives on server i. A sparse row r lives on server ``r % S`` at local row ``r // S``.
* The server keeps each dense chunk as a tensor with its own ``torch.optim`` optimizer (SGD or
  Adagrad) and a lock; a push sets ``.grad`` and calls ``optimizer.step()`` under the lock
  (applied on arrival: asynchronous, like the gradwire PS in mode "asp"). A sparse table shard
  is a preallocated ``[rows, dim]`` tensor with ``torch.optim.Adagrad`` or ``SGD`` stepped with
  a sparse COO gradient (torch.optim's sparse path touches only the pushed rows).
* A trainer de-duplicates ids and sums their gradients (``torch.unique`` + ``index_add_``)
  before a sparse push, and sends each server only its rows, all servers in parallel.

The client has the method names and shapes of ``gradwire.ps``'s client so the benchmark and
the workload run one code path on either system.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.distributed.rpc as rpc


@dataclass(frozen=True)
class SGD:
    lr: float = 0.01
    momentum: float = 0.0

    def make(self, params: List[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)


@dataclass(frozen=True)
class Adagrad:
    lr: float = 0.01
    eps: float = 1e-10

    def make(self, params: List[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adagrad(params, lr=self.lr, eps=self.eps)


@dataclass(frozen=True)
class Normal:
    std: float = 0.01
    seed: int = 0


def server_name(i: int) -> str:
    return f"ps{i}"


def worker_name(i: int) -> str:
    return f"worker{i}"


class _Slot:
    """One parameter (dense chunk or sparse table shard) with its optimizer and lock."""

    def __init__(self, value: torch.Tensor, optimizer) -> None:
        self.param = value.detach().clone().requires_grad_(True)
        self.opt = optimizer.make([self.param])
        self.lock = threading.Lock()


class ShardServer:
    def __init__(self, shard: int, num_shards: int) -> None:
        self.shard = shard
        self.num_shards = num_shards
        self.slots: Dict[str, _Slot] = {}
        self.lock = threading.Lock()

    def _slot(self, name: str) -> _Slot:
        slot = self.slots.get(name)
        if slot is None:
            raise KeyError(f"server {self.shard}: unknown key {name!r} (register it first)")
        return slot

    # Registration: the first trainer's value wins, later ones are ignored.
    @staticmethod
    def register_dense(rref, name: str, chunk: torch.Tensor, optimizer) -> None:
        self = rref.local_value()
        with self.lock:
            if name not in self.slots:
                self.slots[name] = _Slot(chunk, optimizer)

    @staticmethod
    def register_sparse(rref, table: str, num_rows: int, dim: int, init: Normal, optimizer):
        self = rref.local_value()
        with self.lock:
            if table in self.slots:
                return
            local = (num_rows - self.shard + self.num_shards - 1) // self.num_shards
            gen = torch.Generator().manual_seed(init.seed * 1000003 + self.shard)
            value = torch.randn(local, dim, generator=gen) * init.std
            self.slots[table] = _Slot(value, optimizer)

    @staticmethod
    def pull(rref, name: str) -> torch.Tensor:
        slot = rref.local_value()._slot(name)
        with slot.lock:
            return slot.param.detach().clone()

    @staticmethod
    def push(rref, name: str, grad: torch.Tensor) -> None:
        slot = rref.local_value()._slot(name)
        with slot.lock:
            slot.param.grad = grad
            slot.opt.step()

    @staticmethod
    def push_pull(rref, name: str, grad: torch.Tensor) -> torch.Tensor:
        slot = rref.local_value()._slot(name)
        with slot.lock:
            slot.param.grad = grad
            slot.opt.step()
            return slot.param.detach().clone()

    @staticmethod
    def pull_rows(rref, table: str, local_rows: torch.Tensor) -> torch.Tensor:
        slot = rref.local_value()._slot(table)
        with slot.lock:
            return slot.param.detach().index_select(0, local_rows)

    @staticmethod
    def push_rows(rref, table: str, local_rows: torch.Tensor, grads: torch.Tensor) -> None:
        slot = rref.local_value()._slot(table)
        with slot.lock:
            slot.param.grad = torch.sparse_coo_tensor(
                local_rows.unsqueeze(0), grads, slot.param.shape, check_invariants=False
            )
            slot.opt.step()


_server: Optional[ShardServer] = None
_server_lock = threading.Lock()


def get_shard_server(shard: int, num_shards: int) -> ShardServer:
    global _server
    with _server_lock:
        if _server is None:
            _server = ShardServer(shard, num_shards)
        return _server


def _init_rpc(name: str, rank: int, world_size: int, addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)
    opts = rpc.TensorPipeRpcBackendOptions(rpc_timeout=300, init_method=f"tcp://{addr}:{port}")
    rpc.init_rpc(name, rank=rank, world_size=world_size, rpc_backend_options=opts)


def serve(shard: int, num_servers: int, num_workers: int, addr: str, port: int) -> None:
    """Body of server process `shard`: joins the group and serves until every trainer leaves."""
    _init_rpc(server_name(shard), shard, num_servers + num_workers, addr, port)
    get_shard_server(shard, num_servers)
    rpc.shutdown()  # graceful: waits for all trainers' shutdown


class _Future:
    def __init__(self, futs, finish=None) -> None:
        self._futs, self._finish, self._done = futs, finish, False

    def wait(self):
        values = [f.wait() for f in self._futs]
        if not self._done:
            self._done = True
            if self._finish is not None:
                self._finish(values)
        return None


class Client:
    """A trainer's view of the servers, with gradwire.ps's client method names."""

    def __init__(self, addr: str, port: int, worker_id: int, num_servers: int, num_workers: int):
        _init_rpc(
            worker_name(worker_id), num_servers + worker_id, num_servers + num_workers, addr, port
        )
        self.num_servers = num_servers
        self.worker_id = worker_id
        self.rrefs = [
            rpc.remote(server_name(i), get_shard_server, args=(i, num_servers))
            for i in range(num_servers)
        ]
        self._dense_numel: Dict[str, int] = {}

    def _call(self, shard: int, method, *args):
        rref = self.rrefs[shard]
        return rpc.rpc_async(rref.owner(), method, args=(rref, *args))

    # dense -----------------------------------------------------------------------------------
    def _chunks(self, t: torch.Tensor) -> List[torch.Tensor]:
        return list(torch.chunk(t.detach().reshape(-1), self.num_servers))

    def register_dense(self, name: str, init: torch.Tensor, optimizer=None) -> None:
        optimizer = optimizer or SGD()
        self._dense_numel[name] = init.numel()
        chunks = self._chunks(init)
        futs = [
            self._call(i, ShardServer.register_dense, name, c, optimizer)
            for i, c in enumerate(chunks)
        ]
        torch.futures.wait_all(futs)

    def _write_chunks(self, out: torch.Tensor, values) -> None:
        torch.cat(values, out=out.view(-1))  # out must be contiguous, like gradwire's

    def push_async(self, name: str, grad: torch.Tensor) -> _Future:
        chunks = self._chunks(grad)
        return _Future([self._call(i, ShardServer.push, name, c) for i, c in enumerate(chunks)])

    def pull_async(self, name: str, out: torch.Tensor) -> _Future:
        futs = [self._call(i, ShardServer.pull, name) for i in range(len(self._chunks(out)))]
        return _Future(futs, lambda values: self._write_chunks(out, values))

    def push_pull_async(self, name: str, grad: torch.Tensor, out: torch.Tensor) -> _Future:
        chunks = self._chunks(grad)
        futs = [self._call(i, ShardServer.push_pull, name, c) for i, c in enumerate(chunks)]
        return _Future(futs, lambda values: self._write_chunks(out, values))

    def push(self, name: str, grad: torch.Tensor) -> None:
        self.push_async(name, grad).wait()

    def pull(self, name: str, out: torch.Tensor) -> None:
        self.pull_async(name, out).wait()

    def push_pull(self, name: str, grad: torch.Tensor, out: torch.Tensor) -> None:
        self.push_pull_async(name, grad, out).wait()

    # sparse ----------------------------------------------------------------------------------
    def register_sparse(self, table: str, num_rows: int, dim: int, init=None, optimizer=None):
        init = init or Normal()
        optimizer = optimizer or Adagrad()
        futs = [
            self._call(i, ShardServer.register_sparse, table, num_rows, dim, init, optimizer)
            for i in range(self.num_servers)
        ]
        torch.futures.wait_all(futs)

    def pull_rows(self, table: str, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.reshape(-1).to(torch.int64)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        owner = uniq % self.num_servers
        parts = [(owner == s).nonzero().squeeze(1) for s in range(self.num_servers)]
        futs = [
            self._call(s, ShardServer.pull_rows, table, uniq[p] // self.num_servers)
            for s, p in enumerate(parts)
        ]
        rows = None
        for p, f in zip(parts, futs):
            got = f.wait()
            if rows is None:
                rows = torch.empty(uniq.numel(), got.shape[1])
            rows[p] = got
        return rows[inverse]

    def push_rows(self, table: str, ids: torch.Tensor, grads: torch.Tensor) -> None:
        ids = ids.reshape(-1).to(torch.int64)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        summed = torch.zeros(uniq.numel(), grads.shape[-1]).index_add_(0, inverse, grads)
        owner = uniq % self.num_servers
        futs = []
        for s in range(self.num_servers):
            p = (owner == s).nonzero().squeeze(1)
            futs.append(
                self._call(s, ShardServer.push_rows, table, uniq[p] // self.num_servers, summed[p])
            )
        torch.futures.wait_all(futs)

    def clock(self) -> None:
        pass  # asynchronous only: nothing to count

    def close(self) -> None:
        rpc.shutdown()


class _RowsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight_token, ids, module):
        ctx.ids, ctx.module = ids, module
        return module.client.pull_rows(module.table, ids).view(*ids.shape, module.dim)

    @staticmethod
    def backward(ctx, grad_out):
        m = ctx.module
        m.client.push_rows(m.table, ctx.ids, grad_out.reshape(-1, m.dim).contiguous())
        return None, None, None


class RpcEmbedding(torch.nn.Module):
    """The baseline's counterpart of gradwire.ps.ShardedEmbedding: pulls rows in forward,
    pushes their gradients (server applies the optimizer) in backward."""

    def __init__(self, num_rows, dim, client, table="emb", optimizer=None, init=None):
        super().__init__()
        self.client, self.table, self.dim = client, table, dim
        client.register_sparse(table, num_rows, dim, init=init, optimizer=optimizer)
        # autograd only calls backward when some input requires grad
        self._token = torch.nn.Parameter(torch.zeros(()), requires_grad=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return _RowsFunction.apply(self._token, ids, self)
