"""SLURM: `srun` starts one launcher per task; hostlists and task counts come compressed."""

from __future__ import annotations

from typing import Mapping, Optional

from gradwire.launch.detect.detected import Detected, Host
from gradwire.launch.detect.util import EnvReader, port_from_id
from gradwire.launch.errors import LaunchError


def detect(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    r = EnvReader(env, "slurm")
    if not r.has("SLURM_JOB_ID", "SLURM_PROCID"):
        return None
    if not r.has("SLURM_STEP_ID"):
        # A batch script itself (not a task of an srun step): it is one process, not a rank.
        return None
    # srun exports the step's values both as SLURM_STEP_* and the plain names; prefer the
    # step's, which describe exactly the tasks that run `gradwire run`.
    ntasks = r.int("SLURM_STEP_NUM_TASKS") or r.int("SLURM_NTASKS") or r.int("SLURM_NPROCS")
    nnodes = r.int("SLURM_STEP_NUM_NODES") or r.int("SLURM_NNODES") or r.int("SLURM_JOB_NUM_NODES")
    nodelist = (
        r.str("SLURM_STEP_NODELIST") or r.str("SLURM_JOB_NODELIST") or r.str("SLURM_NODELIST")
    )
    tasks_per_node = r.str("SLURM_STEP_TASKS_PER_NODE") or r.str("SLURM_TASKS_PER_NODE")
    try:
        import hostlist
    except ImportError:
        raise LaunchError(
            "slurm: reading SLURM's node lists needs python-hostlist (pip install python-hostlist)"
        ) from None
    if ntasks is None or nodelist is None:
        raise LaunchError(
            "slurm: SLURM_PROCID is set but SLURM_NTASKS/SLURM_JOB_NODELIST are not; "
            "run `gradwire run` through srun (or pass --source none)"
        )
    try:
        hosts = hostlist.expand_hostlist(nodelist)
        counts = hostlist.parse_slurm_tasks_per_node(tasks_per_node) if tasks_per_node else None
    except hostlist.BadHostlist as e:
        raise LaunchError(f"slurm: cannot parse the node list {nodelist!r}: {e}") from None
    node_id = r.int("SLURM_NODEID")
    d = Detected(
        source="slurm",
        launcher_rank=r.int("SLURM_PROCID"),
        launchers=ntasks,
        local_launcher_rank=r.int("SLURM_LOCALID"),
        node_rank=node_id,
        nnodes=nnodes or len(hosts),
        master_addr=hosts[0],
        master_port=port_from_id(f"slurm-{r.str('SLURM_JOB_ID')}-{r.str('SLURM_STEP_ID')}"),
    )
    if counts is not None and node_id is not None and node_id < len(counts):
        d.local_launchers = counts[node_id]
    else:
        d.local_launchers = None  # learnt at the rendezvous
    if d.local_launcher_rank is None:
        d.local_launchers = None
    d.used = r.used
    d.notes.append(f"nodes {', '.join(hosts)}; rank 0's launcher runs on {hosts[0]}")
    d.notes.append("MASTER_PORT derived from the job and step ids (override: --master-port)")
    return d
