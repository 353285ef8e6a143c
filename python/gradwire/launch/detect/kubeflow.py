"""Kubeflow: PyTorchJob (training-operator) and TrainJob (Trainer, on JobSet).

PyTorchJob sets RANK to the *pod* index (master 0, worker i -> i+1) and WORLD_SIZE to
pods x nprocPerNode, i.e. processes: neither is a process rank here. Recent operators also set
PET_NODE_RANK, PET_NNODES and PET_NPROC_PER_NODE. TrainJob sets only PET_* variables.
"""

from __future__ import annotations

from typing import Mapping, Optional

from gradwire.launch.detect.detected import Detected, Host
from gradwire.launch.detect.util import EnvReader
from gradwire.launch.errors import LaunchError


def _nnodes(r: EnvReader) -> Optional[int]:
    v = r.str("PET_NNODES")
    if v is not None and ":" in v:
        lo, _, hi = v.partition(":")
        if lo != hi:
            raise LaunchError(
                f"{r.source}: PET_NNODES={v} asks for an elastic node range; gradwire run "
                "needs a fixed node count (set minReplicas == maxReplicas)"
            )
        v = lo
    return int(v) if v is not None else None


def _nproc(r: EnvReader) -> Optional[int]:
    v = r.str("PET_NPROC_PER_NODE")
    return int(v) if v is not None and v.isdigit() else None


def detect_pytorchjob(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    r = EnvReader(env, "pytorchjob")
    if not r.has("MASTER_ADDR", "RANK", "WORLD_SIZE") or r.has("LOCAL_RANK"):
        return None
    if not (r.has("PET_NODE_RANK") or r.has("PET_NNODES")):
        return None
    pod_rank = r.int("RANK")
    node_rank = r.int("PET_NODE_RANK", pod_rank)
    nnodes = _nnodes(r)
    nproc = _nproc(r)
    world = r.int("WORLD_SIZE")
    if nnodes is None:
        nnodes = world // (nproc or 1)
    d = Detected(
        source="pytorchjob",
        launcher_rank=node_rank,
        launchers=nnodes,
        node_rank=node_rank,
        nnodes=nnodes,
        master_addr=r.str("MASTER_ADDR"),
        master_port=r.int("MASTER_PORT"),
        nproc_per_node=nproc,
    )
    d.used = r.used
    d.notes.append(
        f"Kubeflow PyTorchJob: pod {pod_rank} of {nnodes} (RANK is the pod index and "
        f"WORLD_SIZE={world} counts processes; workers get their own process RANK/WORLD_SIZE)"
    )
    return d


def detect_trainjob(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    r = EnvReader(env, "trainjob")
    if not r.has("PET_NNODES", "PET_NODE_RANK", "PET_MASTER_ADDR"):
        return None
    nnodes = _nnodes(r)
    node_rank = r.int("PET_NODE_RANK")
    d = Detected(
        source="trainjob",
        launcher_rank=node_rank,
        launchers=nnodes,
        node_rank=node_rank,
        nnodes=nnodes,
        master_addr=r.str("PET_MASTER_ADDR"),
        master_port=r.int("PET_MASTER_PORT"),
        nproc_per_node=_nproc(r),
    )
    d.used = r.used
    d.notes.append("Kubeflow TrainJob / JobSet (PET_* variables)")
    return d
