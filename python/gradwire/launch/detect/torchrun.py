"""torchrun / torchelastic: the process already is one rank with torch's variables set."""

from __future__ import annotations

from typing import Mapping, Optional

from gradwire.launch.detect.detected import Detected, Host
from gradwire.launch.detect.util import EnvReader


def detect(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    r = EnvReader(env, "torchrun")
    if not (r.has("TORCHELASTIC_RUN_ID") or r.has("GROUP_RANK", "LOCAL_RANK")):
        return None
    if not r.has("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        return None
    local_size = r.int("LOCAL_WORLD_SIZE", 1)
    world = r.int("WORLD_SIZE")
    d = Detected(
        source="torchrun",
        passthrough=True,
        launcher_rank=r.int("RANK"),
        launchers=world,
        local_launcher_rank=r.int("LOCAL_RANK", 0),
        local_launchers=local_size,
        node_rank=r.int("GROUP_RANK"),
        nnodes=world // local_size if local_size and world % local_size == 0 else None,
        master_addr=r.str("MASTER_ADDR"),
        master_port=r.int("MASTER_PORT"),
        nproc_per_node=1,
    )
    r.str("TORCHELASTIC_RUN_ID")
    d.used = r.used
    d.notes.append(
        "started by torchrun: each `gradwire run` is already one rank; the script runs "
        "directly with torchrun's rendezvous (torchrun handles restarts)"
    )
    return d
