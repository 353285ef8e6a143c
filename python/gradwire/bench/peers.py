"""The libraries a comparison runs side by side, and which pairs it sets against each other.

gradwire is compared at the API level its peer offers: through torch.distributed against gloo
(same calls, same tensors), and through gradwire.comm (numpy) against MPI via mpi4py. MPI runs
twice: over shared memory (OpenMPI's vader BTL) and over TCP on loopback, both with the ob1
PML so the BTL named is the one that carries the data.

>>> parse_pairs("gradwire/gloo")
[('gradwire', 'gloo')]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from gradwire.bench.errors import BenchUsageError


@dataclass(frozen=True)
class Peer:
    name: str
    backend: str  # gradwire bench --backend
    mpi_args: str = ""
    about: str = ""


PEERS: Dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("gradwire", "gradwire", about="gradwire through torch.distributed"),
        Peer("gloo", "gloo", about="torch's gloo through torch.distributed"),
        Peer("gradwire-native", "gradwire-native", about="gradwire through gradwire.comm (numpy)"),
        Peer(
            "mpi-shm",
            "mpi",
            "--mca pml ob1 --mca btl self,vader",
            "OpenMPI shared memory (vader) through mpi4py",
        ),
        Peer(
            "mpi-tcp",
            "mpi",
            "--mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo",
            "OpenMPI TCP on loopback through mpi4py",
        ),
    )
}

DEFAULT_PAIRS: List[Tuple[str, str]] = [
    ("gradwire", "gloo"),
    ("gradwire-native", "mpi-shm"),
    ("gradwire-native", "mpi-tcp"),
]


def parse_peers(text: str) -> List[Peer]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in PEERS:
            raise BenchUsageError(f"unknown peer '{n}' (one of {', '.join(PEERS)})")
    return [PEERS[n] for n in names]


def parse_pairs(text: str) -> List[Tuple[str, str]]:
    """'a/b,c/d' -> [(a, b), (c, d)]: ratio = b's time / a's time."""
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        a, sep, b = part.partition("/")
        if not sep or a not in PEERS or b not in PEERS:
            raise BenchUsageError(f"pair '{part}' must be PEER/PEER with peers from {list(PEERS)}")
        pairs.append((a, b))
    return pairs


def usable_pairs(pairs: Sequence[Tuple[str, str]], peers: Sequence[Peer]):
    names = {p.name for p in peers}
    return [(a, b) for a, b in pairs if a in names and b in names]
