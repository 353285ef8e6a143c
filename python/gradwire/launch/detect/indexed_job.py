"""Kubernetes Indexed Job (also what JobSet runs): JOB_COMPLETION_INDEX and pod DNS names.

A pod of an Indexed Job is named <job>-<index>; with `subdomain: <headless service>` its
FQDN is <job>-<index>.<service>.<namespace>.svc.<cluster domain>, and every pod can resolve
the others' names. The node count is not in the environment: the manifest passes --nnodes.
"""

from __future__ import annotations

from typing import Mapping, Optional

from gradwire.launch.detect.detected import Detected, Host
from gradwire.launch.detect.util import EnvReader


def master_from_fqdn(fqdn: str, index: int) -> Optional[str]:
    """<job>-<index>.<rest> -> <job>-0.<rest>; None when the name does not have that shape."""
    first, dot, rest = fqdn.partition(".")
    suffix = f"-{index}"
    if not dot or not first.endswith(suffix):
        return None
    return f"{first[: -len(suffix)]}-0.{rest}"


def detect(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    r = EnvReader(env, "indexed-job")
    if not r.has("JOB_COMPLETION_INDEX"):
        return None
    index = r.int("JOB_COMPLETION_INDEX")
    d = Detected(
        source="indexed-job",
        launcher_rank=index,
        launchers=None,  # --nnodes
        node_rank=index,
        nnodes=None,
        master_addr=master_from_fqdn(host.fqdn, index),
    )
    d.used = r.used
    d.used["(pod FQDN)"] = host.fqdn
    if d.master_addr is None:
        d.notes.append(
            f"pod FQDN {host.fqdn!r} is not <job>-{index}.<service>...: set the pod's "
            "subdomain to a headless Service, or pass --master-addr"
        )
    return d
