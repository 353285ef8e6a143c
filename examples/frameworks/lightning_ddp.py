"""Lightning on 2 CPU processes with the backend named on the command line; no `import gradwire`.

    torchrun --nproc-per-node 2 lightning_ddp.py --backend gradwire --out PREFIX
    torchrun --nproc-per-node 2 lightning_ddp.py --backend gradwire --strategy model-parallel ...

`--strategy ddp` is `DDPStrategy(process_group_backend=...)`; `model-parallel` is
`ModelParallelStrategy(process_group_backend=...)` with the model sharded by FSDP2 over a
2-way data-parallel mesh.
"""

from __future__ import annotations

import argparse

import lightning as L
import task
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy


class Classifier(L.LightningModule):
    def __init__(self, shard: bool):
        super().__init__()
        self.net = task.model()
        self.shard = shard

    def configure_model(self):
        if self.shard:
            from torch.distributed.fsdp import fully_shard

            mesh = self.device_mesh["data_parallel"]
            for layer in self.net:
                if isinstance(layer, torch.nn.Linear):
                    fully_shard(layer, mesh=mesh)
            fully_shard(self.net, mesh=mesh)

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return task.optimizer(self.parameters())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", required=True)
    ap.add_argument("--strategy", choices=["ddp", "model-parallel"], default="ddp")
    ap.add_argument("--out", required=True, help="prefix of the result files")
    args = ap.parse_args()

    if args.strategy == "ddp":
        strategy = DDPStrategy(process_group_backend=args.backend)
    else:
        strategy = ModelParallelStrategy(
            data_parallel_size=2, tensor_parallel_size=1, process_group_backend=args.backend
        )
    module = Classifier(shard=args.strategy == "model-parallel")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_epochs=task.EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    # Lightning shards the loader over the ranks (a DistributedSampler, in order: no shuffle).
    loader = torch.utils.data.DataLoader(task.dataset(), batch_size=task.BATCH)
    trainer.fit(module, loader)
    state = module.net.state_dict()
    if args.strategy == "model-parallel":  # DTensor shards -> full tensors (a collective)
        state = {k: v.full_tensor() for k, v in state.items()}
    task.report(args.out, trainer.global_rank, state, framework="lightning", strategy=args.strategy)


if __name__ == "__main__":
    main()
