"""The worker side of the parameter server (docs/parameter-server.md).

Tensors are float32 on the CPU; row ids are int64. Every operation runs in C++ with the GIL
released; the ``*_async`` variants return a :class:`Future` whose ``wait()`` returns the result.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from gradwire import _C
from gradwire.ps import env as ps_env
from gradwire.ps.optim import SGD, Adagrad, Adam, Normal, Uniform, Zeros

_Optim = (SGD, Adagrad, Adam)
_Init = (Zeros, Normal, Uniform)


# Tensors of operations that failed after a same-host server was given references to them (data
# it reads in place, a reply it writes in place; docs/parameter-server.md): that server may
# still be accessing them, so they are never freed. Only failed operations land here (a
# timeout, a lost server), and each once.
_IN_FLIGHT_FOREVER: List[Tuple] = []


class Future:
    """An operation in flight. ``wait()`` blocks (GIL released) until every server answered,
    raises the first error, and returns the operation's result (``None`` for pushes)."""

    def __init__(self, native, keep: Tuple = (), result: Optional[Callable[[], Any]] = None):
        self._native, self._keep, self._result = native, keep, result
        self._waited = False

    def wait(self) -> Any:
        if not self._waited:
            try:
                self._native.wait()
            except BaseException:
                if self._native.remote_access:
                    _IN_FLIGHT_FOREVER.append(self._keep)
                raise
            finally:
                self._waited = True
                self._keep = ()
        return self._result() if self._result is not None else None

    def done(self) -> bool:
        return self._native.done()

    def __del__(self):
        # The servers may still write into (or read from) the tensors this future holds.
        if not getattr(self, "_waited", True):
            try:
                self.wait()
            except Exception:
                pass


def _name(op: str, key: str) -> str:
    return f"{op}('{key}')"


def _f32(t: torch.Tensor, what: str, arg: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what}: {arg} must be a torch.Tensor, not {type(t).__name__}")
    if t.dtype != torch.float32:
        raise ValueError(
            f"{what}: {arg} has dtype {t.dtype}; the parameter server stores float32 "
            f"(convert with .float())"
        )
    if t.device.type != "cpu":
        raise ValueError(f"{what}: {arg} is on {t.device}; pass a CPU tensor")
    return t.contiguous()


def _ids(ids, what: str) -> torch.Tensor:
    ids = torch.as_tensor(ids)
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{what}: ids must be integers, not {ids.dtype}")
    return ids.reshape(-1).to(torch.int64).contiguous()


class Client:
    """A worker's connection to every parameter-server shard. Create it with :func:`connect`."""

    def __init__(self, servers: Sequence[str], worker_id: int, num_workers: int, timeout: float):
        self.servers = list(servers)
        self.worker_id, self.num_workers, self.timeout = worker_id, num_workers, timeout
        self._c = _C.ps.Client(self.servers, worker_id, num_workers, timeout)
        self._dense: Dict[str, torch.Size] = {}
        self._tables: Dict[str, Tuple[int, int]] = {}

    # ---- dense ------------------------------------------------------------------------------
    def register_dense(
        self, name: str, init: torch.Tensor, optimizer=None, compression: Optional[str] = None
    ) -> None:
        """Declare dense tensor ``name``. Every worker calls it; worker 0's ``init`` is the
        initial value (the others wait for it); shapes and optimizers must agree. A tensor the
        servers already hold (restored from a checkpoint) keeps its value.

        ``compression``: a codec spec (``"int8"``, ``"fp16"``, ``"topk:0.01"``, ... as in
        docs/compression.md) that this worker's pushes of the tensor use, with error feedback
        unless the spec ends in ``:noef``; pulls stay float32. Example::

            client.register_dense("w", torch.zeros(1 << 20), ps.SGD(lr=0.1), compression="int8")
        """
        what = _name("register_dense", name)
        optimizer = SGD(lr=0.1) if optimizer is None else optimizer
        if not isinstance(optimizer, _Optim):
            raise TypeError(f"{what}: optimizer must be gradwire.ps.SGD, Adagrad or Adam")
        if compression is not None and not isinstance(compression, str):
            raise TypeError(f"{what}: compression must be a codec spec string such as 'int8'")
        t = _f32(init, what, "init").detach()
        fut = self._c.register_dense(
            name, list(t.shape), t.data_ptr(), *optimizer._spec(), compression or ""
        )
        self._dense[name] = t.shape
        Future(fut, (t,)).wait()

    def _dense_arg(self, op: str, name: str, t: torch.Tensor, arg: str) -> torch.Tensor:
        what = _name(op, name)
        if name not in self._dense:
            raise ValueError(f"{what}: '{name}' is not registered; call register_dense first")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what}: {arg} must be a torch.Tensor")
        if t.shape != self._dense[name]:
            raise ValueError(
                f"{what}: {arg} has shape {list(t.shape)} but '{name}' was registered with "
                f"shape {list(self._dense[name])}"
            )
        return _f32(t, what, arg)

    def _out(self, op: str, name: str, out: torch.Tensor) -> torch.Tensor:
        o = self._dense_arg(op, name, out, "out")
        if o is not out or out.requires_grad:
            raise ValueError(f"{_name(op, name)}: out must be contiguous and not require grad")
        return o

    def push_async(self, name: str, grad: torch.Tensor) -> Future:
        g = self._dense_arg("push", name, grad, "grad").detach()
        return Future(self._c.push(name, g.data_ptr(), g.numel()), (g,))

    def pull_async(self, name: str, out: torch.Tensor) -> Future:
        o = self._out("pull", name, out)
        return Future(self._c.pull(name, o.data_ptr(), o.numel()), (o,), lambda: out)

    def push_pull_async(self, name: str, grad: torch.Tensor, out: torch.Tensor) -> Future:
        g = self._dense_arg("push_pull", name, grad, "grad").detach()
        o = self._out("push_pull", name, out)
        fut = self._c.push_pull(name, g.data_ptr(), o.data_ptr(), g.numel())
        return Future(fut, (g, o), lambda: out)

    def push(self, name: str, grad: torch.Tensor) -> None:
        """Send a gradient; the server applies its optimizer (when, depends on the mode)."""
        self.push_async(name, grad).wait()

    def pull(self, name: str, out: torch.Tensor) -> torch.Tensor:
        """Fetch the current value into ``out`` (float32, registered shape); returns ``out``."""
        return self.pull_async(name, out).wait()

    def push_pull(self, name: str, grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Push, then pull the value with this push applied (under BSP: with every worker's
        push of this clock applied)."""
        return self.push_pull_async(name, grad, out).wait()

    # ---- sparse -----------------------------------------------------------------------------
    def register_sparse(
        self, table: str, num_rows: int, dim: int, init=None, optimizer=None
    ) -> None:
        """Declare a table of ``num_rows`` x ``dim`` float32 rows, created on first push from
        ``init`` (deterministic per row id)."""
        what = _name("register_sparse", table)
        init = Zeros() if init is None else init
        optimizer = Adagrad(lr=0.1) if optimizer is None else optimizer
        if not isinstance(init, _Init):
            raise TypeError(f"{what}: init must be gradwire.ps.Zeros, Normal or Uniform")
        if not isinstance(optimizer, _Optim):
            raise TypeError(f"{what}: optimizer must be gradwire.ps.SGD, Adagrad or Adam")
        fut = self._c.register_sparse(
            table, int(num_rows), int(dim), *init._spec(), *optimizer._spec()
        )
        self._tables[table] = (int(num_rows), int(dim))
        Future(fut).wait()

    def _dim(self, op: str, table: str) -> int:
        if table not in self._tables:
            raise ValueError(
                f"{_name(op, table)}: '{table}' is not registered; call register_sparse first"
            )
        return self._tables[table][1]

    def pull_rows_async(self, table: str, ids) -> Future:
        what = _name("pull_rows", table)
        dim = self._dim("pull_rows", table)
        flat = _ids(ids, what)
        buf = torch.empty(flat.numel(), dim, dtype=torch.float32)
        # each distinct id is requested once (C++ de-duplicates and fans the rows back out)
        fut = self._c.pull_rows(table, flat.data_ptr(), flat.numel(), buf.data_ptr())
        return Future(fut, (flat, buf), lambda: buf)

    def pull_rows(self, table: str, ids) -> torch.Tensor:
        """Rows ``ids`` (int64, any order, repeats allowed) as float32 ``[len(ids), dim]``."""
        return self.pull_rows_async(table, ids).wait()

    def push_rows_async(self, table: str, ids, grads: torch.Tensor) -> Future:
        what = _name("push_rows", table)
        dim = self._dim("push_rows", table)
        flat = _ids(ids, what)
        if not isinstance(grads, torch.Tensor) or grads.shape != (flat.numel(), dim):
            shape = list(grads.shape) if isinstance(grads, torch.Tensor) else type(grads).__name__
            raise ValueError(f"{what}: grads must have shape [{flat.numel()}, {dim}], got {shape}")
        g = _f32(grads.detach(), what, "grads")
        # De-duplicated on the worker (in C++): one row, one summed gradient, one update.
        fut = self._c.push_rows(table, flat.data_ptr(), flat.numel(), g.data_ptr())
        return Future(fut, (flat, g))

    def push_rows(self, table: str, ids, grads: torch.Tensor) -> None:
        """Send row gradients (float32 ``[len(ids), dim]``); repeated ids are summed first."""
        self.push_rows_async(table, ids, grads).wait()

    # ---- clocks, checkpoints ----------------------------------------------------------------
    def clock(self) -> int:
        """Advance this worker's clock on every server (BSP/SSP progress); returns it."""
        Future(self._c.clock()).wait()
        return self._c.current_clock

    def checkpoint(self, collective: bool = False) -> None:
        """Every shard writes a checkpoint (needs servers started with a checkpoint dir).

        ``collective=True``: every worker calls it at the same point of its loop; the shards
        write once all workers have asked, so their checkpoints are one consistent cut of the
        job (each worker's operations before the call, none after)."""
        Future(self._c.checkpoint(collective)).wait()

    @property
    def current_clock(self) -> int:
        return self._c.current_clock

    @property
    def max_observed_staleness(self) -> int:
        """Largest (own clock - slowest worker's clock) any read was served at."""
        return self._c.max_observed_staleness

    @property
    def push_wire_bytes(self) -> int:
        """Data bytes of the dense pushes sent so far (encoded size for compressed tensors)."""
        return self._c.push_wire_bytes

    @property
    def push_dense_bytes(self) -> int:
        """What those pushes would have been as float32; ``push_dense_bytes / push_wire_bytes``
        is the compression ratio."""
        return self._c.push_dense_bytes

    def compression_state(self) -> Dict[str, torch.Tensor]:
        """The error-feedback residuals of compressed pushes (``"<tensor>/<shard>"`` -> float32
        tensor), to checkpoint with the model; :meth:`load_compression_state` restores them."""
        return {
            k: torch.frombuffer(bytearray(self._c.residual_get(k)), dtype=torch.float32)
            for k in self._c.residual_keys()
        }

    def load_compression_state(self, state: Dict[str, torch.Tensor]) -> None:
        self._c.residual_clear()
        for k, v in state.items():
            t = _f32(torch.as_tensor(v), "load_compression_state", k).detach()
            self._c.residual_set(k, t.numpy().tobytes())

    @property
    def single_copy_bytes(self) -> int:
        """Payload bytes this worker moved by same-host single copy (requests and replies;
        ``GRADWIRE_PS_SINGLE_COPY_MIN_BYTES``); 0 when every byte went over sockets."""
        return self._c.single_copy_bytes

    @property
    def in_place_bytes(self) -> int:
        """Of ``single_copy_bytes``, the pull and push_pull reply bytes the servers wrote
        straight into this worker's tensors (``GRADWIRE_PS_REPLY_IN_PLACE``)."""
        return self._c.in_place_bytes

    def close(self) -> None:
        self._c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(
    servers: Optional[List[str]] = None,
    worker_id: Optional[int] = None,
    num_workers: Optional[int] = None,
    timeout: Optional[float] = None,
) -> Client:
    """Connect this worker to every shard. ``None`` arguments come from the launcher's
    environment (GRADWIRE_PS_SERVERS, GRADWIRE_PS_WORKER_ID or RANK, GRADWIRE_PS_NUM_WORKERS or
    WORLD_SIZE). ``timeout`` (default GRADWIRE_PS_TIMEOUT, 300 s) bounds every operation,
    reconnects to a restarted server included.

    Example::

        client = gradwire.ps.connect()
        client.register_dense("w", torch.zeros(10), optimizer=gradwire.ps.SGD(lr=0.1))
        client.push("w", torch.ones(10))
        w = client.pull("w", torch.empty(10))
    """
    if servers is None:
        servers = ps_env.servers()
        if not servers:
            raise ValueError(
                f"gradwire.ps.connect: no servers given and {ps_env.SERVERS} is not set "
                "(start the job with `gradwire run --num-servers S` or pass servers=[...])"
            )
    if isinstance(servers, str):
        servers = [s for s in servers.split(",") if s]
    worker_id = ps_env.worker_id() if worker_id is None else worker_id
    num_workers = ps_env.num_workers() if num_workers is None else num_workers
    if worker_id is None or num_workers is None:
        raise ValueError(
            "gradwire.ps.connect: pass worker_id and num_workers, or set "
            f"{ps_env.WORKER_ID}/RANK and {ps_env.NUM_WORKERS}/WORLD_SIZE"
        )
    timeout = _C.ps.default_timeout() if timeout is None else float(timeout)
    return Client(servers, int(worker_id), int(num_workers), timeout)
