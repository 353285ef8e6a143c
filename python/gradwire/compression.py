"""Gradient compression for gradwire process groups (docs/compression.md).

Three ways to turn it on:

* around collectives, in this thread::

      with gradwire.compression("int8"):
          dist.all_reduce(grad)                     # compressed, error feedback on

* for a whole process group::

      dist.init_process_group("gradwire", pg_options=gradwire.Options(compression="int8"))

* in DDP, with warm-up and per-bucket fallback (``gradwire.hooks``)::

      state = gradwire.hooks.CompressionState("topk:0.01", warmup_steps=10)
      model.register_comm_hook(state, gradwire.hooks.compressed)

Codec specs: "none", "fp16", "bf16", "int8", "int8:stochastic", "int4", "int4:stochastic",
"sign", "qsgd:<levels>", "topk:<ratio>", "topk:<ratio>:sampled", "randomk:<ratio>",
"threshold:<value>"; append ":noef" to turn error feedback off (it is on for every lossy codec).

Compression applies to SUM/AVG all_reduce, reduce_scatter and all_gather of floating-point
tensors (fp16/bf16/fp64 are compressed from float32); other ops and dtypes run dense.
"""

from __future__ import annotations

import sys
import threading
import types
from collections import defaultdict
from typing import Dict, Optional, Tuple, Union

import torch

from gradwire import _C
from gradwire.errors import InvalidArgumentError

__all__ = [
    "Codec",
    "Options",
    "compression",
    "current",
    "stats",
    "state_dict",
    "load_state_dict",
    "COMPRESSIBLE_OPS",
]

# The collectives compression can apply to (names used by Options.compress_ops and in keys).
COMPRESSIBLE_OPS = ("allreduce", "reduce_scatter", "allgather")

CodecLike = Union["Codec", str, None]


class Codec:
    """A parsed codec spec.

    >>> Codec.parse("topk:0.01").kind
    'topk'
    >>> Codec.parse("int8:noef").error_feedback
    False
    """

    __slots__ = ("native",)

    def __init__(self, spec: str = "none", error_feedback: Optional[bool] = None):
        if not isinstance(spec, str):
            raise InvalidArgumentError(f"a codec spec is a string, got {type(spec).__name__}")
        self.native = _C.CodecSpec.parse(spec)  # raises InvalidArgumentError on a bad spec
        if error_feedback is not None:
            if error_feedback and not self.native.lossy:
                raise InvalidArgumentError("codec 'none' has no error feedback to turn on")
            self.native.error_feedback = bool(error_feedback)

    @classmethod
    def parse(cls, spec: CodecLike) -> Codec:
        """A Codec from a spec string (None means "none"); a Codec is returned as is."""
        if isinstance(spec, Codec):
            return spec
        return cls("none" if spec is None else spec)

    @property
    def spec(self) -> str:
        """Canonical spec string: ``Codec.parse(c.spec)`` equals ``c``."""
        return self.native.name

    @property
    def kind(self) -> str:
        return self.native.kind

    @property
    def lossy(self) -> bool:
        return self.native.lossy

    @property
    def error_feedback(self) -> bool:
        return self.native.error_feedback

    def encoded_bytes(self, count: int) -> int:
        """Bytes on the wire for `count` elements (an upper bound for threshold/sampled top-k)."""
        return self.native.encoded_bytes(count)

    def encode(self, tensor: torch.Tensor, seed: int = 0) -> bytes:
        """Encodes a tensor (as float32) into this codec's wire format."""
        x = tensor.detach().reshape(-1).to("cpu", torch.float32).contiguous()
        return self.native.encode(x.data_ptr(), x.numel(), seed, 0)

    def decode(self, data: bytes, count: int, seed: int = 0) -> torch.Tensor:
        """Decodes `count` float32 elements encoded with the same seed."""
        out = torch.empty(count, dtype=torch.float32)
        self.native.decode(data, count, out.data_ptr(), seed, False)
        return out

    def roundtrip(self, tensor: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """decode(encode(tensor)) with the tensor's shape (float32)."""
        return self.decode(self.encode(tensor, seed), tensor.numel(), seed).view(tensor.shape)

    def __reduce__(self):
        return (Codec, (self.spec,))

    def __eq__(self, other) -> bool:
        return isinstance(other, Codec) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"Codec({self.spec!r})"


class Options:
    """Process-group options: ``pg_options=gradwire.Options(compression="int8")``.

    compress_ops limits compression to some collectives, e.g. ``("reduce_scatter",)`` so that
    FSDP's parameter all-gathers stay exact. Error-feedback keys of group-level compression are
    ``group/<op>/<shape>``: tensors of the same shape share a residual (use the context manager's
    ``key=`` or the DDP hook for per-tensor residuals).
    """

    def __init__(self, compression: CodecLike = None, compress_ops=COMPRESSIBLE_OPS):
        self.codec = Codec.parse(compression)
        ops = (compress_ops,) if isinstance(compress_ops, str) else tuple(compress_ops)
        for op in ops:
            if op not in COMPRESSIBLE_OPS:
                raise InvalidArgumentError(
                    f"compress_ops: unknown collective {op!r}; expected some of {COMPRESSIBLE_OPS}"
                )
        self.compress_ops = ops

    def __repr__(self) -> str:
        return f"Options(compression={self.codec.spec!r}, compress_ops={self.compress_ops!r})"


class _Scope:
    """One ``with gradwire.compression(...)`` block: its codec and its key counters."""

    def __init__(self, codec: CodecLike, key: Optional[str]):
        self.codec = Codec.parse(codec)
        self.prefix = key if key is not None else "scope"
        self._counts: Dict[Tuple[str, Tuple[int, ...]], int] = defaultdict(int)

    def next_key(self, op: str, shape) -> str:
        shape = tuple(int(s) for s in shape)
        n = self._counts[(op, shape)]
        self._counts[(op, shape)] = n + 1
        dims = "x".join(str(s) for s in shape) or "scalar"
        return f"{self.prefix}/{op}/{dims}#{n}"

    def __enter__(self) -> _Scope:
        _stack().append(self)
        return self

    def __exit__(self, *exc) -> None:
        stack = _stack()
        if not stack or stack[-1] is not self:
            raise RuntimeError("gradwire.compression blocks must be exited in LIFO order")
        stack.pop()


_local = threading.local()


def _stack():
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def compression(codec: CodecLike, key: Optional[str] = None) -> _Scope:
    """Compress the collectives this thread issues on gradwire groups inside the block.

    ``codec`` is a spec string, a Codec, or None / "none" (dense; restores dense inside an outer
    block). Error-feedback residuals live in the process group and are keyed
    ``<key>/<op>/<shape>#<n>`` where n counts earlier calls of that op and shape in the same
    block; ``key`` defaults to "scope". Entering one block per training step with the same calls
    in the same order therefore reuses each tensor's residual across steps::

        for step in range(steps):
            loss(model).backward()
            with gradwire.compression("int8"):
                for p in model.parameters():
                    dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
    """
    return _Scope(codec, key)


def current() -> Optional[_Scope]:
    """The innermost active block of this thread, or None."""
    stack = _stack()
    return stack[-1] if stack else None


def _op_int(op) -> int:
    return int(op.op if hasattr(op, "op") else op)


def is_avg(reduce_op) -> bool:
    """True for ReduceOp.AVG (an object or a RedOpType)."""
    import torch.distributed as dist

    return _op_int(reduce_op) == int(dist.ReduceOp.AVG)


def is_sum_or_avg(reduce_op) -> bool:
    import torch.distributed as dist

    try:
        code = _op_int(reduce_op)
    except (TypeError, ValueError):
        return False
    return code in (int(dist.ReduceOp.SUM), int(dist.ReduceOp.AVG))


def codec_for(pg, op: str, tensor: torch.Tensor, reduce_op=None) -> Tuple[Optional[Codec], str]:
    """(codec, error-feedback key) for one collective on `pg`, or (None, "") to run it dense."""
    if not tensor.is_floating_point():
        return None, ""
    if reduce_op is not None and not is_sum_or_avg(reduce_op):
        return None, ""
    scope = current()
    if scope is not None:
        if not scope.codec.lossy:
            return None, ""
        return scope.codec, scope.next_key(op, tensor.shape)
    opts = getattr(pg, "_options", None)
    if opts is not None and opts.codec.lossy and op in opts.compress_ops:
        dims = "x".join(str(int(s)) for s in tensor.shape) or "scalar"
        return opts.codec, f"group/{op}/{dims}"
    return None, ""


def _group(group):
    import torch.distributed as dist

    from gradwire.backend import ProcessGroupGradwire

    pg = group if group is not None else dist.distributed_c10d._get_default_group()
    if not isinstance(pg, ProcessGroupGradwire):
        raise InvalidArgumentError(f"group {pg!r} is not a gradwire process group")
    return pg


def stats(group=None) -> dict:
    """Compressed collectives of `group` (default: the world) on this rank.

    ops: compressed ops completed; raw_bytes: what the dense ring algorithms would have sent for
    them; wire_bytes: what was actually sent; ratio: raw_bytes / wire_bytes (1.0 before any
    bytes moved).
    """
    s = _group(group).communicator.stats()
    raw, wire = s["compressed_raw_bytes"], s["compressed_wire_bytes"]
    return {
        "ops": s["compressed_ops"],
        "raw_bytes": raw,
        "wire_bytes": wire,
        "ratio": raw / wire if wire else 1.0,
    }


def state_dict(group=None, prefix: str = "") -> dict:
    """Error-feedback residuals of `group` (keys starting with `prefix`) as float32 tensors."""
    comm = _group(group).communicator
    out = {}
    for k in _C.residual_keys(comm):
        if k.startswith(prefix):
            out[k] = torch.frombuffer(bytearray(_C.residual_get(comm, k)), dtype=torch.float32)
    return {"residuals": out}


def load_state_dict(sd: dict, group=None, prefix: str = "") -> None:
    """Restores residuals saved by state_dict(); residuals under `prefix` not in `sd` are dropped."""
    comm = _group(group).communicator
    residuals = sd.get("residuals")
    if not isinstance(residuals, dict):
        raise InvalidArgumentError("a compression state dict holds a 'residuals' dict")
    for k in _C.residual_keys(comm):
        if k.startswith(prefix) and k not in residuals:
            _C.residual_erase(comm, k)
    for k, t in residuals.items():
        data = t.detach().reshape(-1).to("cpu", torch.float32).contiguous()
        _C.residual_set(comm, k, data.numpy().tobytes())


def residual_norm(key: str, group=None) -> float:
    """L2 norm of one error-feedback residual (0.0 for an unknown key)."""
    return _C.residual_squared_norm(_group(group).communicator, key) ** 0.5


def input_norm(key: str, group=None) -> float:
    """L2 norm of the last input compensated under ``key`` (before its residual was added)."""
    return _C.residual_input_squared_norm(_group(group).communicator, key) ** 0.5


class _CallableModule(types.ModuleType):
    """Lets ``gradwire.compression("int8")`` work while ``gradwire.compression.Codec`` does too."""

    def __call__(self, codec: CodecLike, key: Optional[str] = None) -> _Scope:
        return compression(codec, key)


sys.modules[__name__].__class__ = _CallableModule
