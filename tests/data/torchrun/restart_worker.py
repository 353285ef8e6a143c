"""A training loop for torchrun restart tests.

Attempt 0: rank 1 kills itself with SIGKILL at step 3, so torchrun restarts every worker. In the
restarted attempt rank 0 starts late (RANK0_DELAY seconds): the other ranks then reach the store
first, where the dead attempt's keys still sit (torchrun keeps one store across attempts). Each
rank writes what it computed to TEST_OUT/attempt<N>-rank<R>.json.
"""

import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import gradwire  # noqa: F401
import torch
import torch.distributed as dist

attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
rank = int(os.environ["RANK"])
if attempt > 0 and rank == 0:
    time.sleep(float(os.environ.get("RANK0_DELAY", "2")))
start = time.monotonic()
dist.init_process_group("gradwire", timeout=timedelta(seconds=float(os.environ["PG_TIMEOUT"])))
setup = time.monotonic() - start
total = 0.0
for step in range(6):
    t = torch.full((1000,), float(rank + 1))
    dist.all_reduce(t)
    total += t[0].item()
    if attempt == 0 and rank == 1 and step == 3:
        os.kill(os.getpid(), signal.SIGKILL)
out = Path(os.environ["TEST_OUT"]) / f"attempt{attempt}-rank{rank}.json"
out.write_text(json.dumps({"sum": total, "setup_seconds": setup}))
dist.destroy_process_group()
