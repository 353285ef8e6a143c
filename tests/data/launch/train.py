"""A training step run by `gradwire run` in the launcher tests, on the real gradwire backend.

Every rank all-reduces rank+1 and checks the sum, then records its launch settings as JSON in
$TEST_OUT/rank<R>.json (when TEST_OUT is set) for the test to compare across ranks.
Knobs for failure tests: TEST_KILL_RANK (SIGKILL itself mid-run on the first attempt),
TEST_EXIT_RANK + TEST_EXIT_CODE, TEST_SIGTERM_DIR (wait to be terminated, record it).
"""

import json
import os
import signal
import socket
import sys
import time

import gradwire  # noqa: F401 - registers the backend
import torch
import torch.distributed as dist

KEYS = [
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
    "MASTER_ADDR", "MASTER_PORT", "GRADWIRE_ROLE", "GRADWIRE_ROLE_RANK",
    "GRADWIRE_ROLE_WORLD_SIZE", "GRADWIRE_RESTART_COUNT", "GRADWIRE_SOCKET_IFNAME",
    "GRADWIRE_LAUNCH_SOURCE",
]  # fmt: skip


def leave_together(world: int) -> None:
    # Meet in the store before tearing down, so no rank exits while a peer is mid-collective.
    store = dist.distributed_c10d._get_default_store()
    store.add("test/left", 1)
    deadline = time.monotonic() + 60
    while store.add("test/left", 0) < world and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> int:
    rank = int(os.environ["RANK"])
    attempt = os.environ.get("GRADWIRE_RESTART_COUNT", "0")
    if os.environ.get("TEST_SIGTERM_DIR"):
        out = os.environ["TEST_SIGTERM_DIR"]

        def on_term(signum, frame):
            with open(os.path.join(out, f"term{rank}"), "w") as f:
                f.write(signal.Signals(signum).name)
            sys.exit(0)

        signal.signal(signal.SIGTERM, on_term)
        with open(os.path.join(out, f"ready{rank}"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
        return 3
    dist.init_process_group("gradwire")
    world = dist.get_world_size()
    assert dist.get_rank() == rank
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    expected = world * (world + 1) / 2
    if t.item() != expected:
        print(f"rank {rank}: all_reduce gave {t.item()}, expected {expected}", flush=True)
        return 4
    if os.environ.get("TEST_KILL_RANK") == str(rank) and attempt == "0":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("TEST_EXIT_RANK") == str(rank):
        return int(os.environ.get("TEST_EXIT_CODE", "1"))
    if os.environ.get("TEST_OUT"):
        rec = {k: os.environ.get(k) for k in KEYS}
        rec.update(sum=t.item(), host=socket.gethostname())
        with open(os.path.join(os.environ["TEST_OUT"], f"rank{rank}.json"), "w") as f:
            json.dump(rec, f)
    print(f"rank {rank}/{world} sum {t.item():g} on {socket.gethostname()} attempt {attempt}")
    leave_together(world)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
