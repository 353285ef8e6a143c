"""Every environment variable the Python side of the parameter server reads, in one place
(docs/configuration.md has the table). The launcher sets them for workers."""

from __future__ import annotations

import os
from typing import List, Mapping, Optional

SERVERS = "GRADWIRE_PS_SERVERS"  # comma-separated host:port of shard 0, 1, ...
WORKER_ID = "GRADWIRE_PS_WORKER_ID"  # else RANK
NUM_WORKERS = "GRADWIRE_PS_NUM_WORKERS"  # else WORLD_SIZE


def servers(env: Optional[Mapping[str, str]] = None) -> Optional[List[str]]:
    v = (env if env is not None else os.environ).get(SERVERS, "")
    return [s.strip() for s in v.split(",") if s.strip()] or None


def _int(env: Mapping[str, str], *names: str) -> Optional[int]:
    for n in names:
        v = env.get(n)
        if v not in (None, ""):
            try:
                return int(v)
            except ValueError:
                raise ValueError(f"{n}={v!r} is not an integer") from None
    return None


def worker_id(env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    return _int(env if env is not None else os.environ, WORKER_ID, "RANK")


def num_workers(env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    return _int(env if env is not None else os.environ, NUM_WORKERS, "WORLD_SIZE")
