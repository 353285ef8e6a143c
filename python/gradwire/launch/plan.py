"""Detection + command-line options -> the plan: which ranks this launcher runs, and their env.

Ranks are laid out launcher-major: launcher L runs ranks L*nproc .. L*nproc+nproc-1, so a
launcher per node (Kubernetes, --nnodes) and a launcher per task (srun -n, mpirun -n) follow
one rule. With --num-servers S, launcher 0 also runs S parameter-server processes beside the
workers (launch/ps_servers.py); every rank stays a worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

from gradwire.launch.detect import Detected
from gradwire.launch.errors import LaunchError

DEFAULT_PORT = 29500


@dataclass
class Locality:
    """Where this launcher sits among hosts: from the environment or from the rendezvous."""

    local_launcher_rank: int
    local_launchers: int
    node_rank: int
    nnodes: int

    @staticmethod
    def from_hosts(hosts: List[str], launcher_rank: int) -> Locality:
        """Hosts in launcher order -> locality; node ranks follow each host's first launcher."""
        order: List[str] = []
        for h in hosts:
            if h not in order:
                order.append(h)
        mine = hosts[launcher_rank]
        same = [i for i, h in enumerate(hosts) if h == mine]
        return Locality(same.index(launcher_rank), len(same), order.index(mine), len(order))


@dataclass
class Plan:
    source: str
    launcher_rank: int
    launchers: int
    nproc: int
    master_addr: str
    master_port: int  # 0: any free port (a single launcher)
    num_servers: int = 0
    max_restarts: int = 0
    passthrough: bool = False
    local_launcher_rank: Optional[int] = 0
    local_launchers: Optional[int] = 1
    node_rank: Optional[int] = 0
    nnodes: Optional[int] = 1

    @property
    def world_size(self) -> int:
        return self.launchers * self.nproc

    def ranks(self) -> List[int]:
        return [self.launcher_rank * self.nproc + i for i in range(self.nproc)]

    def locality(self) -> Optional[Locality]:
        """The environment's locality, or None when only the rendezvous can tell."""
        vals = (self.local_launcher_rank, self.local_launchers, self.node_rank, self.nnodes)
        if any(v is None for v in vals):
            return None
        return Locality(*vals)

    def rank_env(self, i: int, loc: Locality) -> Dict[str, str]:
        """torchrun's variables for local worker i, plus gradwire's role variables. Every rank
        is a worker (parameter servers are separate processes, not ranks)."""
        rank = self.launcher_rank * self.nproc + i
        world = self.world_size
        env = {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(loc.local_launcher_rank * self.nproc + i),
            "LOCAL_WORLD_SIZE": str(loc.local_launchers * self.nproc),
            "GROUP_RANK": str(loc.node_rank),
            "GROUP_WORLD_SIZE": str(loc.nnodes),
            "GRADWIRE_ROLE": "worker",
            "GRADWIRE_ROLE_RANK": str(rank),
            "GRADWIRE_ROLE_WORLD_SIZE": str(world),
            "GRADWIRE_NUM_SERVERS": str(self.num_servers),
        }
        if self.num_servers:
            env.update({"GRADWIRE_PS_WORKER_ID": str(rank), "GRADWIRE_PS_NUM_WORKERS": str(world)})
        return env


def nproc_from(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise LaunchError(f"--nproc-per-node {value}: expected a positive integer or 'auto'")
    return n


def make_plan(opts, d: Detected, env: Mapping[str, str]) -> Plan:
    """`opts` carries nproc_per_node, nnodes, node_rank, master_addr, master_port, num_servers,
    max_restarts (argparse names); command-line values win over the environment's."""
    nproc = nproc_from(opts.nproc_per_node) or d.nproc_per_node or 1
    launchers, launcher_rank = d.launchers, d.launcher_rank
    p = Plan(
        source=d.source,
        launcher_rank=launcher_rank,
        launchers=launchers or 0,
        nproc=nproc,
        master_addr="",
        master_port=0,
        num_servers=opts.num_servers,
        max_restarts=opts.max_restarts,
        passthrough=d.passthrough,
        local_launcher_rank=d.local_launcher_rank,
        local_launchers=d.local_launchers,
        node_rank=d.node_rank,
        nnodes=d.nnodes,
    )
    _apply_node_options(p, opts, d)
    if p.passthrough and nproc != 1:
        raise LaunchError(
            "torchrun already started one process per rank: drop --nproc-per-node, or run "
            "`gradwire run` instead of torchrun"
        )
    p.master_addr = opts.master_addr or env.get("MASTER_ADDR") or d.master_addr or ""
    if not p.master_addr:
        if p.launchers > 1:
            raise LaunchError(
                f"{d.source}: the job has {p.launchers} launchers but nothing names the host of "
                "launcher 0: pass --master-addr HOST (or set MASTER_ADDR)"
            )
        p.master_addr = "127.0.0.1"
    port = opts.master_port or env.get("MASTER_PORT") or d.master_port
    p.master_port = int(port) if port else (DEFAULT_PORT if p.launchers > 1 else 0)
    if p.num_servers < 0:
        raise LaunchError(f"--num-servers {p.num_servers}: must be >= 0")
    if opts.max_restarts < 0:
        raise LaunchError("--max-restarts must be >= 0")
    return p


def _apply_node_options(p: Plan, opts, d: Detected) -> None:
    nnodes, node_rank = opts.nnodes, opts.node_rank
    if d.source == "local":
        if nnodes is not None:
            p.launchers = p.nnodes = nnodes
        if node_rank is not None:
            p.launcher_rank = p.node_rank = node_rank
        if p.launcher_rank >= p.launchers:
            raise LaunchError(f"--node-rank {p.launcher_rank} must be below --nnodes {p.launchers}")
        return
    if nnodes is not None:
        if d.launchers is None:  # the environment knows this launcher's index, not the count
            p.launchers = nnodes
            if d.nnodes is None and d.local_launchers is None:  # one launcher per node
                p.nnodes, p.node_rank = nnodes, p.launcher_rank
                p.local_launcher_rank, p.local_launchers = 0, 1
            elif d.nnodes is None:
                p.nnodes = nnodes
        elif d.nnodes is not None and d.nnodes != nnodes:
            raise LaunchError(f"--nnodes {nnodes}: the environment ({d.source}) says {d.nnodes}")
    if node_rank is not None and d.node_rank is not None and node_rank != d.node_rank:
        raise LaunchError(
            f"--node-rank {node_rank}: the environment ({d.source}) says {d.node_rank}"
        )
    if not p.launchers:
        raise LaunchError(
            f"{d.source}: the environment does not say how many nodes the job has: pass --nnodes"
        )
    if not 0 <= p.launcher_rank < p.launchers:
        raise LaunchError(
            f"{d.source}: launcher index {p.launcher_rank} is out of range for {p.launchers}"
        )
