"""One rank of the instruction-count profile of a small allreduce (see `run`).

Rank 0 runs under callgrind with instrumentation off; it switches it on (callgrind_control) only
around the timed loop, so the count covers exactly `iters` calls of the chosen API.
"""

import os
import subprocess
import sys

import numpy as np


def main() -> None:
    api, iters, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rank = int(os.environ["RANK"])
    if api == "native":
        from gradwire.comm import Communicator

        comm = Communicator.from_env()
        a = np.ones(max(1, nbytes // 4), np.float32)
        call, barrier = (lambda: comm.allreduce(a)), comm.barrier
    elif api == "torch":
        import gradwire  # noqa: F401 - registers the backend
        import torch
        import torch.distributed as dist

        dist.init_process_group("gradwire")
        t = torch.ones(max(1, nbytes // 4))
        call, barrier = (lambda: dist.all_reduce(t)), dist.barrier
    else:
        sys.exit(f"unknown api {api!r} (native or torch)")
    for _ in range(50):
        call()
    barrier()
    profiled = rank == 0 and os.environ.get("PROFILE_RANK0") == "1"
    if profiled:
        subprocess.run(
            ["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True
        )
    for _ in range(iters):
        call()
    if profiled:
        subprocess.run(
            ["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True
        )
    barrier()


if __name__ == "__main__":
    main()
