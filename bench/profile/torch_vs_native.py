"""The same allreduce through torch.distributed and through gradwire.comm, in the same two
processes, on the same buffer (a torch tensor and its numpy view), interleaved round by round:
any difference is the API path, not the machine's state or the buffer's pages.

    gradwire run --nproc-per-node 2 bench/profile/torch_vs_native.py [BYTES=64M] [ROUNDS=6]
"""

import os
import statistics
import sys
import time

import gradwire  # noqa: F401 - registers the backend
import torch
import torch.distributed as dist
from gradwire.bench.sizes import parse_size
from gradwire.comm import Communicator


def main() -> None:
    nbytes = parse_size(sys.argv[1]) if len(sys.argv) > 1 else 64 << 20
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    dist.init_process_group("gradwire")
    os.environ["MASTER_PORT"] = str(int(os.environ["MASTER_PORT"]) + 1)  # a second store
    comm = Communicator.from_env(name="native")
    t = torch.ones(nbytes // 4)
    calls = {"torch": lambda: dist.all_reduce(t), "native": lambda: comm.allreduce(t.numpy())}
    times = {k: [] for k in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()  # warm-up
            for _ in range(3):
                comm.barrier()
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    if comm.rank == 0:
        load = os.getloadavg()[0]
        print(f"allreduce {nbytes} B float32, 2 ranks, {rounds} rounds x 3, load {load:.1f}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:7s} median {med * 1e3:8.2f} ms  busbw {nbytes / med / 1e9:.2f} GB/s")
    comm.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
