"""One rank of a DDP training run on scikit-learn's digits, for the compression experiments.

Every run of a sweep sees the same data in the same order, the same initial weights and the same
number of steps; only the gradient exchange differs (the *variant*):

    dense                 plain DDP on the gradwire backend
    gloo/dense            plain DDP on torch's gloo backend
    torch-fp16            torch's fp16_compress_hook (a DDP-only Python hook)
    powersgd:R            torch's PowerSGD hook with matrix rank R (error feedback and warm
                          start on, same number of dense warm-up steps as the codecs)
    no-comm               no gradient exchange at all (a hook that keeps each rank's own
                          gradient): not training in sync, only the floor of the step time
                          that compute alone sets on this machine
    <codec spec>          gradwire's compressed comm hook: fp16, bf16, int8, int4, sign,
                          qsgd:<levels>, topk:<ratio>, randomk:<ratio>, ... (error feedback is
                          the engine's default for lossy codecs)

A `gloo/` or `gradwire/` prefix picks the backend (default gradwire). Run by the sweeps in this
directory, one process per rank, with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set:

    python bench/compression/training.py --variant int8 --out rank0.json [--hidden 256,256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import List, Optional

import torch
import torch.distributed as dist

BACKENDS = ("gradwire", "gloo")


@dataclass(frozen=True)
class Variant:
    text: str  # as given on the command line: the run's label
    backend: str
    kind: str  # "dense", "no-comm", "torch-fp16", "powersgd" or "codec"
    spec: str = ""  # the codec spec, or PowerSGD's rank
    warmup_steps: int = 10

    @property
    def needs_engine_codecs(self) -> bool:
        return self.kind == "codec"


def parse_variant(text: str, warmup_steps: int = 10) -> Variant:
    backend, _, rest = text.partition("/") if "/" in text else ("gradwire", "", text)
    if backend not in BACKENDS:
        raise ValueError(f"variant {text!r}: backend {backend!r} is not one of {BACKENDS}")
    if not rest:
        raise ValueError(f"variant {text!r}: nothing after the backend")
    if rest in ("dense", "no-comm"):
        return Variant(text, backend, rest, warmup_steps=warmup_steps)
    if rest == "torch-fp16":
        return Variant(text, backend, "torch-fp16", warmup_steps=warmup_steps)
    if rest.startswith("powersgd"):
        rank = rest.partition(":")[2] or "1"
        if not rank.isdigit() or int(rank) < 1:
            raise ValueError(f"variant {text!r}: PowerSGD needs a positive rank, e.g. powersgd:4")
        return Variant(text, backend, "powersgd", rank, warmup_steps)
    if backend != "gradwire":
        raise ValueError(f"variant {text!r}: codec {rest!r} needs the gradwire backend")
    return Variant(text, backend, "codec", rest, warmup_steps)


def engine_codecs_missing() -> Optional[str]:
    """Why this build of gradwire cannot run codec variants, or None when it can."""
    try:
        import gradwire.hooks  # noqa: F401
    except ImportError as e:
        return f"this gradwire build has no compression engine ({e})"
    return None


def load_digits_split(seed: int = 0):
    """scikit-learn's 8x8 digits (1797 images, shipped with the package: no download), scaled to
    [0, 1], split 80/20 stratified with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32) / 16.0  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return as_x(xtr), as_y(ytr), as_x(xte), as_y(yte)


def make_model(hidden: List[int], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: List[torch.nn.Module] = []
    width = 64
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, 10))
    return torch.nn.Sequential(*layers)


def register_variant(ddp, variant: Variant):
    """Installs the variant's comm hook on `ddp`; returns the hook state (or None)."""
    if variant.kind == "dense":
        return None
    if variant.kind == "no-comm":

        def keep_local(state, bucket):
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut

        ddp.register_comm_hook(None, keep_local)
        return None
    if variant.kind == "torch-fp16":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
        return None
    if variant.kind == "powersgd":
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

        state = psgd.PowerSGDState(
            process_group=None,
            matrix_approximation_rank=int(variant.spec),
            start_powerSGD_iter=max(variant.warmup_steps, 2),  # torch requires >= 2
            min_compression_rate=2,
            use_error_feedback=True,
            warm_start=True,
            random_seed=0,
        )
        ddp.register_comm_hook(state, psgd.powerSGD_hook)
        return state
    import gradwire.hooks

    state = gradwire.hooks.CompressionState(variant.spec, warmup_steps=variant.warmup_steps)
    ddp.register_comm_hook(state, gradwire.hooks.compressed)
    return state


def wire_stats(variant: Variant) -> dict:
    """Bytes this rank moved, as the engine counts them (empty for gloo)."""
    if variant.backend != "gradwire":
        return {}
    import gradwire

    out = {"engine": gradwire.stats()}
    if variant.needs_engine_codecs:
        out["compression"] = gradwire.compression.stats()
    return out


def evaluate(model, x, y) -> dict:
    with torch.no_grad():
        logits = model(x)
        return {
            "test_loss": torch.nn.functional.cross_entropy(logits, y).item(),
            "test_acc": (logits.argmax(1) == y).float().mean().item() * 100.0,
        }


def train(args, variant: Variant, rank: int, world: int) -> dict:
    xtr, ytr, xte, yte = load_digits_split(args.seed)
    if args.global_batch % world:
        raise ValueError(f"--global-batch {args.global_batch} is not divisible by {world} ranks")
    model = make_model(args.hidden, args.seed)
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb)
    hook_state = register_variant(ddp, variant)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=args.momentum)
    steps_per_epoch = len(xtr) // args.global_batch
    total = planned = args.steps or steps_per_epoch * args.epochs
    # cosine decay to zero over the run: the final accuracy settles instead of jittering
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    eval_every = args.eval_every or steps_per_epoch
    losses, step_s, evals = [], [], []
    train_s = 0.0
    load_start = os.getloadavg()
    step = 0
    epoch = 0
    while step < total:
        # The same global order on every rank and in every run: a permutation per epoch from
        # the seed; each global batch is split across ranks by position.
        perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(args.seed + epoch))
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[b * args.global_batch : (b + 1) * args.global_batch][rank::world]
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(ddp(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            dt = time.perf_counter() - t0
            train_s += dt
            step += 1
            losses.append(loss.item())
            step_s.append(dt)
            if step % eval_every == 0 or step == total:
                # rank 0 evaluates; the broadcast of its verdict keeps evaluation time out of
                # every rank's step times and lets all ranks stop together at --stop-at
                stop = torch.zeros(1)
                if rank == 0:
                    evals.append(
                        {"step": step, "epoch": step / steps_per_epoch, "train_s": train_s}
                        | evaluate(model, xte, yte)
                    )
                    stop[0] = float(0 < args.stop_at <= evals[-1]["test_acc"])
                    if args.verbose:
                        print(f"[{variant.text}] {evals[-1]}", file=sys.stderr, flush=True)
                dist.broadcast(stop, 0)
                if stop.item():
                    total = step
        epoch += 1
    return {
        "variant": variant.text,
        "backend": variant.backend,
        "kind": variant.kind,
        "spec": variant.spec,
        "rank": rank,
        "world_size": world,
        "params": sum(p.numel() for p in model.parameters()),
        "steps": step,
        "stopped_at_target": step < planned,
        "steps_per_epoch": steps_per_epoch,
        "loss": losses,
        "step_s": step_s,
        "median_step_s": statistics.median(step_s),
        "train_s": train_s,
        "evals": evals,
        "wire": wire_stats(variant),
        # buckets the engine's residual policy switched back to dense allreduce
        "fallback_buckets": getattr(hook_state, "dense_buckets", list)(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_training_args(p)
    p.add_argument("--variant", required=True)
    p.add_argument("--out", required=True, help="this rank's JSON result")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def add_training_args(p) -> None:
    """The options every sweep passes through unchanged to every rank."""
    p.add_argument("--hidden", type=_ints, default=[256, 256], help="MLP widths (default 256,256)")
    p.add_argument("--global-batch", type=int, default=64, help="samples per step, all ranks")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: epochs)")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: epoch)")
    p.add_argument("--stop-at", type=float, default=0.0, help="stop at this test accuracy (%%)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--warmup", type=int, default=10, help="dense steps before compressing")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="DDP bucket_cap_mb")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="process-group timeout (s)")


def training_argv(args) -> List[str]:
    """`args` (from add_training_args) as the command-line options of a rank."""
    return [
        f"--hidden={','.join(map(str, args.hidden))}",
        f"--global-batch={args.global_batch}",
        f"--epochs={args.epochs}",
        f"--steps={args.steps}",
        f"--eval-every={args.eval_every}",
        f"--stop-at={args.stop_at}",
        f"--lr={args.lr}",
        f"--momentum={args.momentum}",
        f"--warmup={args.warmup}",
        f"--bucket-mb={args.bucket_mb}",
        f"--threads={args.threads}",
        f"--seed={args.seed}",
        f"--timeout={args.timeout}",
    ]


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv=None) -> int:
    args = parse_args(argv)
    variant = parse_variant(args.variant, args.warmup)
    torch.set_num_threads(args.threads)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if variant.backend == "gradwire":
        import gradwire  # noqa: F401 - registers the backend
    dist.init_process_group(
        variant.backend, rank=rank, world_size=world, timeout=timedelta(seconds=args.timeout)
    )
    try:
        result = train(args, variant, rank, world)
    finally:
        dist.destroy_process_group()
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
