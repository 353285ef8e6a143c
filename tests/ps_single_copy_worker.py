"""One parameter-server worker for the single-copy tests, run as its own process (so that its
GRADWIRE_PS_SINGLE_COPY_MIN_BYTES, or the pid namespace it runs in, is its own). Usage:

    ps_single_copy_worker.py ADDRESS[,ADDRESS...]

Registers a dense tensor and a sparse table large enough for single copy in both directions,
trains a few exact (dyadic) steps, and prints one JSON line: the values it pulled back, the
bytes it moved by single copy (and of those, written in place by the servers), and its pid."""

import json
import os
import sys

import gradwire.ps as ps
import torch
from ps_helpers import dyadic_grad

N = 300_000  # 1.2 MB: one 64K-element block is 256 KiB, so every shard request qualifies
ROWS, DIM, BATCH = 50_000, 64, 4096  # a pull_rows reply of 1 MB over the shards

c = ps.connect(sys.argv[1].split(","), worker_id=0, num_workers=1, timeout=60)
c.register_dense("w", torch.arange(N, dtype=torch.float32) / 8, optimizer=ps.SGD(lr=0.5))
c.register_sparse("emb", ROWS, DIM, init=ps.Zeros(), optimizer=ps.SGD(lr=0.25))
out = torch.empty(N)
g = torch.Generator().manual_seed(5)
for step in range(4):
    c.push_pull("w", dyadic_grad(0, step, N), out)
    ids = torch.randint(0, ROWS, (BATCH,), generator=g)
    rows = c.pull_rows("emb", ids)
    c.push_rows("emb", ids, rows + dyadic_grad(1, step, BATCH * DIM).reshape(BATCH, DIM))
final = c.pull("w", torch.empty(N))
table = c.pull_rows("emb", torch.arange(ROWS))
print(
    json.dumps(
        {
            "push_pull_last": out.double().sum().item(),
            "w": final.double().sum().item(),
            "w_first": final[:4].tolist(),
            "emb": table.double().sum().item(),
            "emb_abs": table.double().abs().sum().item(),
            "single_copy": c.single_copy_bytes,
            "in_place": c.in_place_bytes,
            "pid": os.getpid(),
        }
    )
)
c.close()
