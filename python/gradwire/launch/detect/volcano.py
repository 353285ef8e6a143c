"""Volcano Job with the svc/env plugins: VC_TASK_INDEX and VC_<TASK>_HOSTS / VC_<TASK>_NUM.

Every task's host list is exported to every pod; node ranks follow the task order "master"
first (if there is such a task), then the other tasks by name, each in host-list order.
"""

from __future__ import annotations

from typing import List, Mapping, Optional

from gradwire.launch.detect.detected import Detected, Host
from gradwire.launch.detect.util import EnvReader


def _all_hosts(r: EnvReader) -> List[str]:
    tasks = sorted(k[3:-6] for k in r.env if k.startswith("VC_") and k.endswith("_HOSTS"))
    tasks.sort(key=lambda t: t != "MASTER")
    hosts: List[str] = []
    for t in tasks:
        hosts += [h.strip() for h in r.str(f"VC_{t}_HOSTS", "").split(",") if h.strip()]
    return hosts


def detect(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    r = EnvReader(env, "volcano")
    if not r.has("VC_TASK_INDEX") or not any(
        k.startswith("VC_") and k.endswith("_HOSTS") for k in env
    ):
        return None
    hosts = _all_hosts(r)
    mine = [i for i, h in enumerate(hosts) if h.split(".")[0] == host.name]
    if mine:
        node_rank = mine[0]
    else:
        node_rank = r.int("VC_TASK_INDEX")  # one task: the index is the node rank
    d = Detected(
        source="volcano",
        launcher_rank=node_rank,
        launchers=len(hosts),
        node_rank=node_rank,
        nnodes=len(hosts),
        master_addr=hosts[0],
        master_port=None,
    )
    d.used = r.used
    d.notes.append(f"Volcano hosts in rank order: {', '.join(hosts)}")
    if not mine:
        d.notes.append(
            f"this host ({host.name}) is not in the VC_*_HOSTS lists; used VC_TASK_INDEX"
        )
    return d
