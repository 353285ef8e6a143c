"""Reading integers out of the environment with errors that name the variable."""

from __future__ import annotations

import zlib
from typing import Dict, Mapping, Optional

from gradwire.launch.errors import LaunchError


class EnvReader:
    """Reads variables and remembers which ones it used (shown by --dry-run)."""

    def __init__(self, env: Mapping[str, str], source: str):
        self.env, self.source = env, source
        self.used: Dict[str, str] = {}

    def has(self, *names: str) -> bool:
        return all(self.env.get(n, "") != "" for n in names)

    def str(self, name: str, default: Optional[str] = None) -> Optional[str]:
        v = self.env.get(name, "")
        if v == "":
            return default
        self.used[name] = v
        return v

    def int(self, name: str, default: Optional[int] = None) -> Optional[int]:
        v = self.str(name)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError:
            raise LaunchError(
                f"{self.source}: {name}={v!r} is not an integer (is the environment from "
                f"another launcher?)"
            ) from None


def port_from_id(job_id: str, base: int = 20000, span: int = 12000) -> int:
    """A port derived from a job identifier that every process of the job sees.

    Jobs sharing a host then rarely pick the same port; MASTER_PORT or --master-port wins.
    The range stays below Linux's default ephemeral ports (32768+), which outgoing
    connections may hold.
    """
    return base + zlib.crc32(job_id.encode()) % span
