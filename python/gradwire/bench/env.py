"""Where this process sits in a world started by a launcher: torchrun and `gradwire run` set
RANK/WORLD_SIZE, mpirun sets OMPI_COMM_WORLD_RANK/SIZE (MPICH and Slurm PMI_RANK/PMI_SIZE).

>>> world_from_env({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"})
(1, 2)
>>> world_from_env({}) is None
True
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Tuple

from gradwire.bench.errors import BenchUsageError

_PAIRS = (
    ("RANK", "WORLD_SIZE"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
)
DEFAULT_PORT = 29500


def world_from_env(env: Optional[Mapping[str, str]] = None) -> Optional[Tuple[int, int]]:
    """(rank, world size) from the first launcher convention present, or None."""
    env = os.environ if env is None else env
    for rank_key, size_key in _PAIRS:
        if rank_key in env and size_key in env:
            try:
                rank, size = int(env[rank_key]), int(env[size_key])
            except ValueError:
                raise BenchUsageError(
                    f"{rank_key}={env[rank_key]!r} / {size_key}={env[size_key]!r} are not integers"
                ) from None
            if not 0 <= rank < size:
                raise BenchUsageError(f"{rank_key}={rank} is outside a world of {size}")
            return rank, size
    return None


def export_torch_env(rank: int, size: int) -> None:
    """torch.distributed's env:// rendezvous needs RANK/WORLD_SIZE/MASTER_*; an MPI launcher
    sets none of them, so fill in what is missing (master on this host by default)."""
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("WORLD_SIZE", str(size))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(DEFAULT_PORT))
