"""What an environment says about the job: the result of every detector."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class Detected:
    """The job as one launching system describes it.

    A *launcher* is one `gradwire run` process. Kubernetes and `--nnodes` start one per node;
    SLURM (`srun -n`) and MPI (`mpirun -n`) start one per task, possibly several per host.
    Fields left as None are not in the environment: the plan takes them from the command line
    or, for host locality, from the rendezvous (where every launcher tells its host name).
    """

    source: str  # short name shown by --dry-run, e.g. "slurm"
    launcher_rank: int = 0
    launchers: Optional[int] = 1
    local_launcher_rank: Optional[int] = 0  # among launchers on this host
    local_launchers: Optional[int] = 1
    node_rank: Optional[int] = 0
    nnodes: Optional[int] = 1
    master_addr: Optional[str] = None
    master_port: Optional[int] = None
    nproc_per_node: Optional[int] = None  # what the system asked for, if it says
    passthrough: bool = False  # already one process per rank with torch's variables (torchrun)
    used: Dict[str, str] = field(default_factory=dict)  # the variables this was read from
    notes: List[str] = field(default_factory=list)


class Host:
    """This machine's names, looked up once (tests pass fixed ones)."""

    def __init__(self, name: Optional[str] = None, fqdn: Optional[str] = None):
        self._name, self._fqdn = name, fqdn

    @property
    def name(self) -> str:
        if self._name is None:
            self._name = socket.gethostname()
        return self._name

    @property
    def fqdn(self) -> str:
        if self._fqdn is None:
            self._fqdn = socket.getfqdn(self.name)
        return self._fqdn
