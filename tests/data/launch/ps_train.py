"""A worker of `gradwire run --num-servers S`: everything it needs comes from the environment."""

import os

import gradwire.ps as ps
import torch

client = ps.connect()
rank, world = client.worker_id, client.num_workers
client.register_dense("w", torch.zeros(100_000), optimizer=ps.SGD(lr=1.0))
out = torch.empty(100_000)
for _ in range(3):
    client.push_pull("w", torch.ones(100_000), out)
    client.clock()
print(
    f"worker {rank}/{world} servers {len(client.servers)} value {out[0].item():g} "
    f"({os.environ['GRADWIRE_PS_SERVERS'].count(',') + 1} addresses)",
    flush=True,
)
client.close()
