"""DDP comm hook and FSDP2 reduce-scatter that compress through gradwire (docs/compression.md).

DDP::

    state = gradwire.hooks.CompressionState("int8", warmup_steps=10)
    model.register_comm_hook(state, gradwire.hooks.compressed)

FSDP2 (``fully_shard``)::

    fsdp_module.set_custom_reduce_scatter(gradwire.hooks.CompressedReduceScatter("int8"))

Fallback policy (per bucket): after the warm-up, every compressed step records
``ratio = ||residual|| / ||bucket gradient||`` (the error-feedback residual after the step against
the gradient that went in). When the mean ratio over the last ``fallback_window`` steps exceeds
``fallback_ratio``, the bucket switches to dense allreduce for the rest of the run, its residual
is dropped, and a warning is logged on logger "gradwire.compression". The default threshold is
10 for quantized codecs and 4 / ratio for top-k / random-k (their residual legitimately holds
about 1 / ratio steps of gradient); threshold sparsification uses 100.
"""

import logging
import math
from collections import deque
from typing import Dict, Optional

import torch
import torch.distributed as dist

from gradwire import _compressed
from gradwire import compression as _compression
from gradwire.errors import InvalidArgumentError

# No `from __future__ import annotations` here: DDP checks the hook's annotations at run time.

__all__ = ["CompressionState", "compressed", "CompressedReduceScatter"]

log = logging.getLogger("gradwire.compression")


def _default_fallback_ratio(codec: _compression.Codec) -> float:
    native = codec.native
    if native.quantized:
        return 10.0
    if codec.kind in ("topk", "randomk"):
        return 4.0 / native.ratio
    return 100.0


class _Bucket:
    __slots__ = ("steps", "dense", "ratios")

    def __init__(self, window: int):
        self.steps = 0
        self.dense = False
        self.ratios: deque = deque(maxlen=window)


class CompressionState:
    """State of the compressed DDP hook: codec, warm-up, per-bucket fallback, residuals.

    codec: spec string or Codec. warmup_steps: steps (hook calls per bucket) that run dense
    first. group: a gradwire process group (default: the world). fallback_ratio /
    fallback_window: the residual policy in the module docstring (``math.inf`` disables it).
    key_prefix: error-feedback keys are ``<key_prefix>/bucket<index>``.
    """

    def __init__(
        self,
        codec="int8",
        warmup_steps: int = 10,
        group=None,
        fallback_ratio: Optional[float] = None,
        fallback_window: int = 20,
        key_prefix: str = "ddp",
    ):
        self.codec = _compression.Codec.parse(codec)
        if warmup_steps < 0:
            raise InvalidArgumentError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if fallback_window < 1:
            raise InvalidArgumentError(f"fallback_window must be >= 1, got {fallback_window}")
        self.warmup_steps = int(warmup_steps)
        self.group = group
        self.fallback_ratio = (
            _default_fallback_ratio(self.codec) if fallback_ratio is None else float(fallback_ratio)
        )
        self.fallback_window = int(fallback_window)
        self.key_prefix = key_prefix
        self.buckets: Dict[int, _Bucket] = {}

    # ---- policy ---------------------------------------------------------------------------
    def key(self, index: int) -> str:
        return f"{self.key_prefix}/bucket{index}"

    def bucket(self, index: int) -> _Bucket:
        if index not in self.buckets:
            self.buckets[index] = _Bucket(self.fallback_window)
        return self.buckets[index]

    def dense_buckets(self):
        """Indices of the buckets that fell back to dense."""
        return sorted(i for i, b in self.buckets.items() if b.dense)

    def observe(self, index: int, grad_norm: float) -> None:
        """Records one compressed step of a bucket and applies the fallback policy."""
        b = self.bucket(index)
        if not math.isfinite(grad_norm) or grad_norm == 0.0:
            return
        ratio = _compression.residual_norm(self.key(index), self.group) / grad_norm
        b.ratios.append(ratio)
        if len(b.ratios) == b.ratios.maxlen:
            mean = sum(b.ratios) / len(b.ratios)
            if mean > self.fallback_ratio:
                b.dense = True
                _C_erase(self.group, self.key(index))
                log.warning(
                    "gradwire compression: bucket %d falls back to dense allreduce after step %d: "
                    "mean ||residual|| / ||gradient|| over the last %d steps is %.3g > %.3g (%s)",
                    index,
                    b.steps,
                    len(b.ratios),
                    mean,
                    self.fallback_ratio,
                    self.codec.spec,
                )

    # ---- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Codec, per-bucket progress and the error-feedback residuals (float32 tensors, keyed
        "bucket<index>", so they load into a state with another key_prefix too)."""
        prefix = self.key_prefix + "/"
        saved = _compression.state_dict(self.group, prefix=prefix)["residuals"]
        residuals = {k[len(prefix) :]: v for k, v in saved.items()}  # "bucket<i>"
        return {
            "codec": self.codec.spec,
            "warmup_steps": self.warmup_steps,
            "buckets": {
                i: {"steps": b.steps, "dense": b.dense, "ratios": list(b.ratios)}
                for i, b in self.buckets.items()
            },
            "residuals": residuals,
        }

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("codec") != self.codec.spec:
            raise InvalidArgumentError(
                f"compression state was saved with codec {sd.get('codec')!r}, "
                f"this state uses {self.codec.spec!r}"
            )
        self.warmup_steps = int(sd.get("warmup_steps", self.warmup_steps))
        self.buckets = {}
        for i, bd in sd.get("buckets", {}).items():
            b = self.bucket(int(i))
            b.steps, b.dense = int(bd["steps"]), bool(bd["dense"])
            b.ratios.extend(bd.get("ratios", []))
        prefix = self.key_prefix + "/"
        residuals = {prefix + k: v for k, v in sd.get("residuals", {}).items()}
        _compression.load_state_dict({"residuals": residuals}, self.group, prefix=prefix)

    # Like torch's PowerSGDState: pickling drops the process group (the default group is used
    # after unpickling). Residuals live in the group, not here: checkpoint with state_dict().
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "group"}

    def __setstate__(self, d):
        self.__dict__.update(d)
        self.group = None


def _C_erase(group, key: str) -> None:  # noqa: N802
    from gradwire import _C

    _C.residual_erase(_compression._group(group).communicator, key)


def _pg(group):
    return _compression._group(group)


def compressed(
    state: CompressionState, bucket: dist.GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: averages the bucket through gradwire with ``state``'s codec.

    Dense (a plain gradwire allreduce, whatever the group's own codec) during warm-up and for
    buckets that fell back.
    """
    pg = _pg(state.group)
    buf = bucket.buffer()
    index = bucket.index()
    b = state.bucket(index)
    b.steps += 1
    world = pg.size()
    if b.steps <= state.warmup_steps or b.dense or not state.codec.lossy:
        with _compression.compression(None):  # dense even on a group with a default codec
            fut = dist.all_reduce(buf, group=pg, async_op=True).get_future()
        return fut.then(lambda f: f.value()[0].div_(world))
    work = _compressed.allreduce(pg, buf, state.codec, state.key(index), True, None, [buf])

    def done(f):
        out = f.value()[0]
        # The engine's error-feedback pass measured the bucket's norm on the way (no extra pass).
        state.observe(index, _compression.input_norm(state.key(index), state.group))
        return out

    return work.get_future().then(done)


class CompressedReduceScatter:
    """FSDP2 custom reduce-scatter (``FSDPModule.set_custom_reduce_scatter``) with a codec.

    Each instance keeps its own error-feedback residual (key ``fsdp/<key>``), so give every
    FSDP module its own instance. Parameter all-gathers stay exact.
    """

    def __init__(self, codec="int8", key: Optional[str] = None):
        self.codec = _compression.Codec.parse(codec)
        self.key = f"fsdp/{key if key is not None else id(self)}"

    def allocate(self, size, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return torch.empty(*size, dtype=dtype, device=device)

    def __call__(self, output_tensor, input_tensor, group, op, async_op: bool = False):
        from gradwire.backend import ProcessGroupGradwire

        pg = group
        if not isinstance(pg, ProcessGroupGradwire):
            # FSDP hands over torch's ProcessGroup wrapper: its CPU backend is ours.
            try:
                pg = group._get_backend(torch.device("cpu"))
            except (AttributeError, RuntimeError, ValueError):
                pg = None
        if not isinstance(pg, ProcessGroupGradwire):
            raise InvalidArgumentError(
                f"CompressedReduceScatter needs a gradwire process group, got {type(group)!r}"
            )
        if not self.codec.lossy or not input_tensor.is_floating_point():
            with _compression.compression(None):
                return dist.reduce_scatter_tensor(
                    output_tensor, input_tensor, op=op, group=group, async_op=async_op
                )
        if not _compression.is_sum_or_avg(op):
            raise InvalidArgumentError(
                f"CompressedReduceScatter compresses SUM and AVG reductions, got {op!r}"
            )
        work = _compressed.reduce_scatter(
            pg,
            output_tensor,
            input_tensor,
            self.codec,
            self.key,
            _compression.is_avg(op),
            None,
            [output_tensor],
        )
        if async_op:
            return work
        work.wait()
        return None
