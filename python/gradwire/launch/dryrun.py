"""`gradwire run --dry-run`: what the environment says and what each local rank would get."""

from __future__ import annotations

from typing import List, Mapping

from gradwire.launch import address
from gradwire.launch.detect import Detected
from gradwire.launch.errors import LaunchError
from gradwire.launch.plan import Locality, Plan


def report(d: Detected, plan: Plan, cmd: List[str], env: Mapping[str, str]) -> str:
    out: List[str] = []
    w = out.append
    w(f"environment: {d.source}")
    for k, v in d.used.items():
        w(f"  {k}={v}")
    for n in d.notes:
        w(f"  note: {n}")
    w("")
    w(
        f"launchers: {plan.launchers} (this one: {plan.launcher_rank}), "
        f"{plan.nproc} process(es) each -> world size {plan.world_size}"
    )
    port = plan.master_port or "any free port"
    w(f"rendezvous: TCPStore on {plan.master_addr}:{port}, hosted by launcher 0")
    if plan.passthrough:
        w("mode: pass-through (torchrun's rendezvous and restarts)")
    else:
        w(f"restarts: up to {plan.max_restarts}")
    if plan.num_servers:
        w(
            f"parameter servers: {plan.num_servers} `gradwire ps serve` processes beside "
            f"launcher 0's workers (GRADWIRE_PS_SERVERS)"
        )
    loc = plan.locality()
    multi = None if loc is None else loc.nnodes > 1 or plan.launchers > loc.local_launchers
    if multi is None:
        w("interface: chosen at the rendezvous, once every launcher's host is known")
    else:
        try:
            c = address.choose(plan.master_addr, multi, env)
            w(f"interface: {c.ifname} ({c.address}): {c.reason}")
        except LaunchError as e:
            w(f"interface: not decided yet: {e}")
    if env.get("GRADWIRE_AUTH_TOKEN"):
        w("auth token: GRADWIRE_AUTH_TOKEN from the environment (not shown)")
    elif plan.launchers == 1:
        w("auth token: a fresh random token for this run")
    elif plan.num_servers:
        w(
            "auth token: drawn by launcher 0 and shared through the rendezvous store for the "
            "parameter servers and workers (set GRADWIRE_AUTH_TOKEN to keep out anyone who can "
            "reach the store)"
        )
    else:
        w(
            "auth token: drawn by rank 0 and shared through the store "
            "(set GRADWIRE_AUTH_TOKEN to keep out anyone who can reach the store)"
        )
    w(f"command: {' '.join(cmd)}")
    w("")
    if loc is None:
        w(
            "per-rank settings (LOCAL_RANK, LOCAL_WORLD_SIZE and GROUP_RANK come from the "
            "rendezvous; shown as if this launcher were alone on its host):"
        )
        loc = Locality(0, 1, plan.launcher_rank, plan.launchers)
    else:
        w("per-rank settings:")
    cols = [
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "GRADWIRE_ROLE",
        "GRADWIRE_ROLE_RANK",
    ]
    w("  " + "  ".join(cols))
    for i in range(plan.nproc):
        e = plan.rank_env(i, loc)
        w("  " + "  ".join(e[c].ljust(len(c)) for c in cols))
    return "\n".join(out)
