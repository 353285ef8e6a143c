"""The torch.distributed backend "gradwire": a ProcessGroup whose collectives run in gradwire._C.

Completion model: each collective returns a Work wrapping a future. The engine completes the
future on the communicator's executor thread right after the op, before it starts the next one,
so future callbacks (comm hooks) run there; collectives they issue execute immediately, at the
same point of the op stream on every rank (see docs/architecture.md).
"""

from __future__ import annotations

import atexit
import os
import weakref
from datetime import timedelta
from typing import Callable, List, Optional, Sequence

import torch
import torch.distributed as dist

from gradwire import _C, _compressed, _registry, _sparse
from gradwire import _futures as futures
from gradwire import compression as _compression
from gradwire._tensors import check_same, dtype_code, reduce_code, stage
from gradwire.errors import InvalidArgumentError
from gradwire.work import GradwireWork

BACKEND_NAME = "gradwire"

_live_groups: weakref.WeakSet[ProcessGroupGradwire] = weakref.WeakSet()


def _route_hint(store) -> str:
    """Host of the rendezvous master: the interface that reaches it is the one peers reach."""
    if os.environ.get("MASTER_ADDR"):
        return os.environ["MASTER_ADDR"]
    while store is not None:
        host = getattr(store, "host", None)
        if host:
            return host
        store = getattr(store, "underlying_store", None)
    return ""


def _flat_cpu(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One contiguous CPU buffer holding the tensors one after the other."""
    if len(tensors) == 1:
        t = tensors[0]
        return t.detach().reshape(-1).to("cpu", memory_format=torch.contiguous_format)
    return torch.cat([t.detach().reshape(-1).to("cpu") for t in tensors])


def _scatter_flat(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    """Copy consecutive pieces of `flat` into `tensors` (inverse of _flat_cpu)."""
    offset = 0
    for t in tensors:
        n = t.numel()
        piece = flat[offset : offset + n].view(t.shape)
        if piece.data_ptr() != t.data_ptr() or t.device.type != "cpu":
            t.copy_(piece)
        offset += n


class ProcessGroupGradwire(dist.ProcessGroup):
    """A torch.distributed process group backed by gradwire.

    Created by ``dist.init_process_group("gradwire")`` or ``dist.new_group(..., backend="gradwire")``;
    ``import torch`` registers the backend (torch's backend autoload), or ``import gradwire`` does
    when that autoload is off (``TORCH_DEVICE_BACKEND_AUTOLOAD=0``)::

        import torch, torch.distributed as dist
        dist.init_process_group("gradwire")
        dist.all_reduce(torch.ones(4))
    """

    def __init__(
        self,
        store,
        rank: int,
        size: int,
        timeout: timedelta = timedelta(minutes=30),
        group_name: str = "default",
        listen_host: str = "",
        options: Optional[_compression.Options] = None,
    ):
        super().__init__(rank, size)
        self._group_label = group_name
        self._options = options
        self._comm = _C.Communicator(
            store,
            rank,
            size,
            f"gradwire-{group_name}",
            float(timeout.total_seconds()),
            _route_hint(store),
            listen_host,
        )
        self._coalesced_works: Optional[List[dist.Work]] = None
        _live_groups.add(self)

    # ---- identity -------------------------------------------------------------------------
    def getBackendName(self) -> str:  # noqa: N802 - torch's name
        return BACKEND_NAME

    # torch asks a Python process group for its name and description through these overrides
    # (the C++ defaults look for a C++ backend that a Python group does not have).
    def setGroupName(self, name: str) -> None:  # noqa: N802
        self._torch_group_name = name

    def getGroupName(self) -> str:  # noqa: N802
        return getattr(self, "_torch_group_name", self._group_label)

    def setGroupDesc(self, desc: str) -> None:  # noqa: N802
        self._torch_group_desc = desc

    def getGroupDesc(self) -> str:  # noqa: N802
        return getattr(self, "_torch_group_desc", "")

    @property
    def communicator(self):
        """The native communicator (stats, listen address)."""
        return self._comm

    def stats(self) -> dict:
        """Ops completed/failed and bytes sent/received by this group on this rank."""
        return self._comm.stats()

    def shutdown(self) -> None:
        self._comm.shutdown()

    def abort(self) -> None:
        self._comm.abort("abort() was called")

    def _set_default_timeout(self, timeout: timedelta) -> None:
        self._comm.timeout = float(timeout.total_seconds())

    # ---- plumbing -------------------------------------------------------------------------
    def _err(self, msg: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"rank {self.rank()} of group '{self._group_label}': {msg}")

    def _submit(
        self,
        launch: Callable[[Callable], object],
        result: List[torch.Tensor],
        finish: Sequence[Callable[[], None]] = (),
        opts=None,
    ) -> GradwireWork:
        """Run `launch(done)`; `done` copies results into place and completes the future.

        `done` holds `launch`, and with it every buffer the launch captured, until the engine has
        finished with them: the op may still read its inputs long after this call returns.
        """
        fut = futures.new_future()

        def done(error, _buffers_in_use=launch):
            if error is not None:
                futures.fail(fut, error)
                return
            try:
                for f in finish:
                    f()
            except BaseException as e:  # noqa: BLE001 - surfaced through the future
                futures.fail(fut, e)
                return
            futures.complete(fut, result)

        # A caller that waits for the result right away (asyncOp=False) may run the op itself.
        sync = opts is not None and getattr(opts, "asyncOp", True) is False
        native = launch(done, sync)
        work = GradwireWork(fut, native)
        if self._coalesced_works is not None:
            self._coalesced_works.append(work)
        return work

    def _one(self, tensors: List[torch.Tensor], what: str) -> torch.Tensor:
        if len(tensors) != 1:
            raise self._err(f"{what} takes exactly one tensor per rank, got {len(tensors)}")
        return tensors[0]

    def _check_root(self, root: int, what: str) -> None:
        if not 0 <= root < self.size():
            raise self._err(f"{what} root {root} is out of range for a group of size {self.size()}")

    # ---- allreduce ------------------------------------------------------------------------
    def allreduce(self, tensors, opts=None):
        op = opts.reduceOp if opts is not None else dist.ReduceOp.SUM
        if len(tensors) != 1:
            return self._allreduce_flat(tensors, op, opts)
        t = tensors[0]
        if t.is_sparse:
            return _sparse.allreduce(self, t, op, opts)
        dt, rc = dtype_code(t, self.rank, "allreduce tensor"), reduce_code(op, self.rank)
        codec, key = _compression.codec_for(self, "allreduce", t, op)
        if codec is not None:
            return _compressed.allreduce(self, t, codec, key, _compression.is_avg(op), opts, [t])
        s = stage(t, writable=True)
        return self._submit(
            lambda done, il: self._comm.allreduce(s.ptr, s.count, dt, rc, done, il),
            [t],
            [s.finish],
            opts=opts,
        )

    def allreduce_coalesced(self, tensors, opts=None):
        op = opts.reduceOp if opts is not None else dist.ReduceOp.SUM
        return self._allreduce_flat(tensors, op, opts)

    def _allreduce_flat(self, tensors, op, opts=None):
        if not tensors:
            raise self._err("allreduce_coalesced needs at least one tensor")
        for i, t in enumerate(tensors):
            if t.dtype != tensors[0].dtype:
                raise self._err(f"coalesced tensors must share a dtype: [{i}] is {t.dtype}")
            if t.is_sparse:
                raise self._err(f"allreduce_coalesced takes dense tensors; [{i}] is sparse")
        dt = dtype_code(tensors[0], self.rank, "allreduce tensor")
        rc = reduce_code(op, self.rank)
        flat = _flat_cpu(tensors)
        codec, key = _compression.codec_for(self, "allreduce", flat, op)
        if codec is not None:
            avg = _compression.is_avg(op)
            finish = [lambda: _scatter_flat(flat, tensors)]
            return _compressed.allreduce(self, flat, codec, key, avg, opts, list(tensors), finish)
        return self._submit(
            lambda done, il: self._comm.allreduce(flat.data_ptr(), flat.numel(), dt, rc, done, il),
            list(tensors),
            [lambda: _scatter_flat(flat, tensors)],
            opts=opts,
        )

    # ---- rooted ---------------------------------------------------------------------------
    def broadcast(self, tensors, opts=None):
        t = self._one(tensors, "broadcast")
        root = opts.rootRank if opts is not None else 0
        self._check_root(root, "broadcast")
        dt = dtype_code(t, self.rank, "broadcast tensor")
        s = stage(t, writable=True)
        return self._submit(
            lambda done, il: self._comm.broadcast(s.ptr, s.count, dt, root, done, il),
            [t],
            [s.finish],
            opts=opts,
        )

    def reduce(self, tensors, opts=None):
        t = self._one(tensors, "reduce")
        root = opts.rootRank if opts is not None else 0
        self._check_root(root, "reduce")
        op = opts.reduceOp if opts is not None else dist.ReduceOp.SUM
        dt, rc = dtype_code(t, self.rank, "reduce tensor"), reduce_code(op, self.rank)
        s = stage(t, writable=True)
        return self._submit(
            lambda done, il: self._comm.reduce(s.ptr, s.count, dt, rc, root, done, il),
            [t],
            [s.finish],
            opts=opts,
        )

    def gather(self, output_tensors, input_tensors, opts=None):
        inp = self._one(input_tensors, "gather")
        root = opts.rootRank if opts is not None else 0
        self._check_root(root, "gather")
        dt = dtype_code(inp, self.rank, "gather input")
        s_in = stage(inp, writable=False)
        if self.rank() == root:
            if len(output_tensors) != 1 or len(output_tensors[0]) != self.size():
                raise self._err(f"gather on the root needs a list of {self.size()} output tensors")
            outs = output_tensors[0]
            check_same(outs, self.rank(), "gather output", ref=inp)
            flat = torch.empty(self.size() * inp.numel(), dtype=inp.dtype)
            finish = [lambda: _scatter_flat(flat, outs)]
            out_ptr, result = flat.data_ptr(), list(outs)
        else:
            if output_tensors and any(len(o) for o in output_tensors):
                raise self._err("gather output tensors may only be given on the root")
            finish, out_ptr, result = [], 0, []
        return self._submit(
            lambda done, il: self._comm.gather(s_in.ptr, out_ptr, s_in.count, dt, root, done, il),
            result,
            finish,
            opts=opts,
        )

    def scatter(self, output_tensors, input_tensors, opts=None):
        out = self._one(output_tensors, "scatter")
        root = opts.rootRank if opts is not None else 0
        self._check_root(root, "scatter")
        dt = dtype_code(out, self.rank, "scatter output")
        s_out = stage(out, writable=True)
        if self.rank() == root:
            if len(input_tensors) != 1 or len(input_tensors[0]) != self.size():
                raise self._err(f"scatter on the root needs a list of {self.size()} input tensors")
            check_same(input_tensors[0], self.rank(), "scatter input", ref=out)
            flat = _flat_cpu(input_tensors[0])
        else:
            if input_tensors and any(len(i) for i in input_tensors):
                raise self._err("scatter input tensors may only be given on the root")
            flat = None
        return self._submit(
            lambda done, il: self._comm.scatter(
                0 if flat is None else flat.data_ptr(), s_out.ptr, s_out.count, dt, root, done, il
            ),
            [out],
            [s_out.finish],
            opts=opts,
        )

    # ---- allgather ------------------------------------------------------------------------
    def allgather(self, output_tensors, input_tensors, opts=None):
        inp = self._one(input_tensors, "allgather")
        if len(output_tensors) != 1 or len(output_tensors[0]) != self.size():
            raise self._err(f"allgather needs a list of {self.size()} output tensors")
        outs = output_tensors[0]
        check_same(outs, self.rank(), "allgather output", ref=inp)
        return self._allgather_flat([inp], [outs], list(outs), opts)

    def allgather_coalesced(self, output_lists, input_list, opts=None):
        # torch's layout: output_lists[r][i] receives rank r's input_list[i].
        if not input_list:
            raise self._err("all_gather_coalesced needs at least one input tensor")
        if len(output_lists) != self.size():
            raise self._err(
                f"all_gather_coalesced needs one output list per rank ({self.size()}), "
                f"got {len(output_lists)}"
            )
        for r, outs in enumerate(output_lists):
            if len(outs) != len(input_list):
                raise self._err(
                    f"all_gather_coalesced output list {r} holds {len(outs)} tensors for "
                    f"{len(input_list)} inputs"
                )
            for i, (out, inp) in enumerate(zip(outs, input_list)):
                if out.dtype != inp.dtype or out.numel() != inp.numel():
                    raise self._err(
                        f"all_gather_coalesced output[{r}][{i}] is {out.numel()} x {out.dtype}, "
                        f"input[{i}] is {inp.numel()} x {inp.dtype}"
                    )
        by_input = [[outs[i] for outs in output_lists] for i in range(len(input_list))]
        return self._allgather_flat(
            input_list, by_input, [t for outs in output_lists for t in outs], opts
        )

    def _allgather_flat(self, inputs, output_lists, result, opts=None):
        """Gather the concatenation of `inputs`; rank r's piece i lands in output_lists[i][r]."""
        for i, t in enumerate(inputs):
            if t.dtype != inputs[0].dtype:
                raise self._err(f"coalesced tensors must share a dtype: [{i}] is {t.dtype}")
        dt = dtype_code(inputs[0], self.rank, "allgather input")
        flat_in = _flat_cpu(inputs)
        n = flat_in.numel()
        flat_out = torch.empty(self.size() * n, dtype=inputs[0].dtype)

        def finish():
            for r in range(self.size()):
                _scatter_flat(flat_out[r * n : (r + 1) * n], [outs[r] for outs in output_lists])

        codec, key = _compression.codec_for(self, "allgather", flat_in)
        if codec is not None:
            return _compressed.allgather(
                self, flat_out, flat_in, codec, key, opts, result, [finish]
            )

        return self._submit(
            lambda done, il: self._comm.allgather(
                flat_in.data_ptr(), flat_out.data_ptr(), n, dt, done, il
            ),
            result,
            [finish],
            opts=opts,
        )

    def all_gather_single(self, output, input, opts=None):
        if output.numel() != self.size() * input.numel() or output.dtype != input.dtype:
            raise self._err(
                f"all_gather_into_tensor output must hold {self.size()} x {input.numel()} "
                f"{input.dtype} elements, got {output.numel()} {output.dtype}"
            )
        dt = dtype_code(input, self.rank, "allgather input")
        codec, key = _compression.codec_for(self, "allgather", input)
        if codec is not None:
            return _compressed.allgather(self, output, input, codec, key, opts, [output])
        s_in, s_out = stage(input, writable=False), stage(output, writable=True)
        return self._submit(
            lambda done, il: self._comm.allgather(s_in.ptr, s_out.ptr, s_in.count, dt, done, il),
            [output],
            [s_out.finish],
            opts=opts,
        )

    _allgather_base = all_gather_single

    def all_gather_single_coalesced(self, outputs, inputs, opts=None):
        if len(outputs) != len(inputs):
            raise self._err("all_gather_into_tensor_coalesced needs one output per input")
        for o, i in zip(outputs, inputs):
            if o.numel() != self.size() * i.numel():
                raise self._err(f"output of {o.numel()} elements for an input of {i.numel()}")
        views = [
            [o.view(-1)[r * i.numel() : (r + 1) * i.numel()] for r in range(self.size())]
            for o, i in zip(outputs, inputs)
        ]
        return self._allgather_flat(list(inputs), views, list(outputs), opts)

    allgather_into_tensor_coalesced = all_gather_single_coalesced

    # ---- reduce_scatter -------------------------------------------------------------------
    def reduce_scatter(self, output_tensors, input_tensors, opts=None):
        out = self._one(output_tensors, "reduce_scatter")
        if len(input_tensors) != 1 or len(input_tensors[0]) != self.size():
            raise self._err(f"reduce_scatter needs a list of {self.size()} input tensors")
        check_same(input_tensors[0], self.rank(), "reduce_scatter input", ref=out)
        op = opts.reduceOp if opts is not None else dist.ReduceOp.SUM
        return self._reduce_scatter_blocks([_flat_cpu(input_tensors[0])], [out], op, opts)

    def reduce_scatter_single(self, output, input, opts=None):
        if input.numel() != self.size() * output.numel() or output.dtype != input.dtype:
            raise self._err(
                f"reduce_scatter_tensor input must hold {self.size()} x {output.numel()} "
                f"{output.dtype} elements, got {input.numel()} {input.dtype}"
            )
        op = opts.reduceOp if opts is not None else dist.ReduceOp.SUM
        dt, rc = (
            dtype_code(input, self.rank, "reduce_scatter input"),
            reduce_code(op, self.rank),
        )
        codec, key = _compression.codec_for(self, "reduce_scatter", input, op)
        if codec is not None:
            avg = _compression.is_avg(op)
            return _compressed.reduce_scatter(self, output, input, codec, key, avg, opts, [output])
        s_in, s_out = stage(input, writable=False), stage(output, writable=True)
        return self._submit(
            lambda done, il: self._comm.reduce_scatter(
                s_in.ptr, s_out.ptr, s_out.count, dt, rc, done, il
            ),
            [output],
            [s_out.finish],
            opts=opts,
        )

    _reduce_scatter_base = reduce_scatter_single

    def reduce_scatter_single_coalesced(self, outputs, inputs, opts=None):
        if len(outputs) != len(inputs):
            raise self._err("reduce_scatter_tensor_coalesced needs one output per input")
        for o, i in zip(outputs, inputs):
            if i.numel() != self.size() * o.numel():
                raise self._err(f"input of {i.numel()} elements for an output of {o.numel()}")
        op = opts.reduceOp if opts is not None else dist.ReduceOp.SUM
        return self._reduce_scatter_blocks(
            [i.detach().reshape(-1).cpu() for i in inputs], list(outputs), op, opts
        )

    reduce_scatter_tensor_coalesced = reduce_scatter_single_coalesced

    def _reduce_scatter_blocks(self, inputs, outputs, op, opts=None):
        """inputs[i] holds `size` blocks of outputs[i].numel(); block r of each goes to rank r."""
        for i, t in enumerate(outputs):
            if t.dtype != outputs[0].dtype or inputs[i].dtype != t.dtype:
                raise self._err(f"coalesced tensors must share a dtype: [{i}] is {t.dtype}")
        dt = dtype_code(outputs[0], self.rank, "reduce_scatter output")
        rc = reduce_code(op, self.rank)
        n = sum(o.numel() for o in outputs)
        # Rank-major layout: block r = concatenation of every input's r-th block.
        blocks = [inp.reshape(self.size(), -1) for inp in inputs]
        flat_in = (
            torch.cat(blocks, dim=1).reshape(-1).contiguous()
            if len(blocks) > 1
            else blocks[0].reshape(-1).contiguous()
        )
        flat_out = torch.empty(n, dtype=outputs[0].dtype)
        codec, key = _compression.codec_for(self, "reduce_scatter", flat_in, op)
        if codec is not None:
            return _compressed.reduce_scatter(
                self, flat_out, flat_in, codec, key, _compression.is_avg(op), opts, list(outputs)
            )
        return self._submit(
            lambda done, il: self._comm.reduce_scatter(
                flat_in.data_ptr(), flat_out.data_ptr(), n, dt, rc, done, il
            ),
            list(outputs),
            [lambda: _scatter_flat(flat_out, outputs)],
            opts=opts,
        )

    # ---- all-to-all -----------------------------------------------------------------------
    def alltoall(self, output_tensors, input_tensors, opts=None):
        if len(output_tensors) != self.size() or len(input_tensors) != self.size():
            raise self._err(f"all_to_all needs {self.size()} input and output tensors")
        ref = input_tensors[0]
        for t in list(output_tensors) + list(input_tensors):
            if t.dtype != ref.dtype:
                raise self._err(f"all_to_all tensors must share a dtype ({t.dtype} vs {ref.dtype})")
        dt = dtype_code(ref, self.rank, "all_to_all tensor")
        flat_in = _flat_cpu(input_tensors)
        flat_out = torch.empty(sum(t.numel() for t in output_tensors), dtype=ref.dtype)
        sc = [t.numel() for t in input_tensors]
        rc = [t.numel() for t in output_tensors]
        return self._submit(
            lambda done, il: self._comm.alltoall(
                flat_in.data_ptr(), flat_out.data_ptr(), sc, rc, dt, done, il
            ),
            list(output_tensors),
            [lambda: _scatter_flat(flat_out, output_tensors)],
            opts=opts,
        )

    def all_to_all_single(self, output, input, output_split_sizes, input_split_sizes, opts=None):
        if output.dtype != input.dtype:
            raise self._err(f"all_to_all_single dtypes differ: {output.dtype} vs {input.dtype}")
        sc = self._split_counts(input, input_split_sizes, "input")
        rc = self._split_counts(output, output_split_sizes, "output")
        dt = dtype_code(input, self.rank, "all_to_all_single input")
        s_in, s_out = stage(input, writable=False), stage(output, writable=True)
        return self._submit(
            lambda done, il: self._comm.alltoall(s_in.ptr, s_out.ptr, sc, rc, dt, done, il),
            [output],
            [s_out.finish],
            opts=opts,
        )

    alltoall_base = all_to_all_single

    def _split_counts(self, t: torch.Tensor, splits, what: str) -> List[int]:
        n = self.size()
        rows = t.shape[0] if t.dim() > 0 else 1
        row_elems = t.numel() // rows if rows else 0
        if not splits:
            if rows % n:
                raise self._err(
                    f"all_to_all_single {what} of {rows} rows cannot be split evenly over {n} ranks"
                )
            return [rows // n * row_elems] * n
        if len(splits) != n:
            raise self._err(
                f"all_to_all_single {what} split sizes need {n} entries, got {len(splits)}"
            )
        if sum(splits) != rows or any(s < 0 for s in splits):
            raise self._err(
                f"all_to_all_single {what} split sizes {list(splits)} do not add up to {rows} rows"
            )
        return [int(s) * row_elems for s in splits]

    # ---- barrier and point-to-point -------------------------------------------------------
    def barrier(self, opts=None):
        return self._submit(lambda done, il: self._comm.barrier(done, il), [], opts=opts)

    def send(self, tensors, dst, tag=0):
        t = self._one(tensors, "send")
        self._check_peer(dst, "send destination")
        dt = dtype_code(t, self.rank, "send tensor")
        s = stage(t, writable=False)
        return self._submit(
            lambda done, il: self._comm.send(s.ptr, s.count, dt, dst, tag, done, il), [t]
        )

    def recv(self, tensors, src, tag=0):
        self._check_peer(src, "recv source")
        return self._recv(tensors, src, tag)

    def recv_anysource(self, tensors, tag=0):
        """Receive the first message with `tag` from any rank; ``work._source_rank()`` names it."""
        return self._recv(tensors, -1, tag)  # the engine refuses any source in a 1-rank group

    def _recv(self, tensors, src: int, tag: int):
        t = self._one(tensors, "recv")
        dt = dtype_code(t, self.rank, "recv tensor")
        s = stage(t, writable=True)
        return self._submit(
            lambda done, il: self._comm.recv(s.ptr, s.count, dt, src, tag, done, il),
            [t],
            [s.finish],
        )

    def _check_peer(self, peer: int, what: str) -> None:
        if not 0 <= peer < self.size() or peer == self.rank():
            raise self._err(f"{what} {peer} is not another rank of a group of size {self.size()}")

    # ---- coalescing manager (batch_isend_irecv, _coalescing_manager with a device) --------
    def _start_coalescing(self, device):
        if self._coalesced_works is not None:
            raise self._err("coalescing already started")
        self._coalesced_works = []

    def _end_coalescing(self, device):
        works, self._coalesced_works = self._coalesced_works or [], None
        all_done = torch.futures.collect_all([w.get_future() for w in works])
        # The combined future raises the first member's error on wait().
        combined = all_done.then(lambda f: [t for x in f.value() for t in x.wait()])
        return GradwireWork(combined, f"{len(works)} coalesced ops")


def _create_backend(dist_opts, pg_opts=None):
    """torch calls this with the ``pg_options`` of init_process_group / new_group."""
    timeout = dist_opts.timeout if dist_opts.timeout is not None else timedelta(minutes=30)
    if pg_opts is not None and not isinstance(pg_opts, _compression.Options):
        raise InvalidArgumentError(
            f"pg_options for the gradwire backend must be gradwire.Options, got {type(pg_opts)!r}"
        )
    return ProcessGroupGradwire(
        dist_opts.store,
        dist_opts.group_rank,
        dist_opts.group_size,
        timeout,
        str(dist_opts.group_id),
        options=pg_opts,
    )


def register() -> None:
    """Register "gradwire" with torch.distributed (done by ``import torch`` and ``import gradwire``).

    The one registration lives in gradwire._registry: a creator that reaches _create_backend.
    """
    _registry.register()


@atexit.register
def _shutdown_all() -> None:
    # Executor threads call into Python; stop them before the interpreter goes away.
    for pg in list(_live_groups):
        try:
            pg.shutdown()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
