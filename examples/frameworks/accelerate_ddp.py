"""Accelerate on 2 CPU processes with the backend named on the command line; no `import gradwire`.

    torchrun --nproc-per-node 2 accelerate_ddp.py --backend gradwire --out PREFIX [--route R]

Routes to the backend:
  pre-init  `dist.init_process_group(backend)` before `Accelerator(cpu=True)`; Accelerate uses
            the group that exists (the supported route for gradwire on CPU).
  kwargs    `Accelerator(cpu=True, kwargs_handlers=[InitProcessGroupKwargs(backend=...)])`:
            works for gloo; for any other backend Accelerate's CPU set-up refuses
            ("backend ... is not available, please use gloo").
"""

from __future__ import annotations

import argparse
import os

import task
import torch
import torch.distributed as dist
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", required=True)
    ap.add_argument("--route", choices=["pre-init", "kwargs"], default="pre-init")
    ap.add_argument("--out", required=True, help="prefix of the result files")
    args = ap.parse_args()

    if args.route == "pre-init":
        dist.init_process_group(args.backend)
        accelerator = Accelerator(cpu=True)
    else:
        handler = InitProcessGroupKwargs(backend=args.backend)
        accelerator = Accelerator(cpu=True, kwargs_handlers=[handler])

    model = task.model()
    opt = task.optimizer(model.parameters())
    # Accelerate shards the loader over the ranks (in order: no shuffle).
    loader = torch.utils.data.DataLoader(task.dataset(), batch_size=task.BATCH)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    for _ in range(task.EPOCHS):
        for x, y in loader:
            opt.zero_grad()
            accelerator.backward(F.cross_entropy(model(x), y))
            opt.step()
    task.report(
        args.out,
        accelerator.process_index,
        accelerator.unwrap_model(model).state_dict(),
        framework="accelerate",
        route=args.route,
        accelerate_distributed_type=str(accelerator.distributed_type),
        accelerate_backend_label=accelerator.state.backend,
        omp_threads=os.environ.get("OMP_NUM_THREADS"),
    )


if __name__ == "__main__":
    main()
