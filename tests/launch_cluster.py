"""Real systems for the launcher's end-to-end tests: packages, the virtual hosts of
../shared/cluster/vcluster, and "pods" simulated on them.

Tests that need root skip when not root; as root they install what is missing (Debian
packages) and remove what they started.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
from launch_helpers import REPO

CLUSTER = REPO.parent / "shared" / "cluster"
VCLUSTER = CLUSTER / "vcluster"
SLURM_CLUSTER = CLUSTER / "slurm-cluster"


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (network namespaces, package installs)")


def apt_install(*packages: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, timeout=600,
                   env=env, stdout=subprocess.DEVNULL)  # fmt: skip


def ensure_commands(packages: Dict[str, str]) -> None:
    """{command: Debian package}: install the packages of the commands that are missing."""
    missing = sorted({pkg for cmd, pkg in packages.items() if shutil.which(cmd) is None})
    if missing:
        apt_install(*missing)


def sh(*cmd, timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}"
    return r


# Virtual nodes (slurm-cluster, simulated pods) get private /tmp and /dev/shm: a checkout or
# interpreter there is invisible to the processes they start.
_NODE_PRIVATE = ("/tmp/", "/dev/shm/")


def cluster_scripts() -> None:
    if not VCLUSTER.exists():
        pytest.skip(f"the cluster scripts are not beside the repository ({CLUSTER})")
    for what, path in (("repository", REPO.resolve()), ("interpreter", Path(sys.prefix).resolve())):
        if str(path).startswith(_NODE_PRIVATE) or str(path) in ("/tmp", "/dev/shm"):
            pytest.skip(
                f"the {what} is under {path}, which virtual nodes cannot see (their /tmp and "
                "/dev/shm are private); run from a checkout elsewhere"
            )


def _vcluster_busy() -> str:
    """Why the virtual hosts look in use by another run ('' when they are free or stale)."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    hosts = re.findall(r"^(gwh\d+)", ns, re.M)
    for h in hosts:
        pids = subprocess.run(["ip", "netns", "pids", h], capture_output=True, text=True).stdout
        if pids.strip():
            return f"processes are running in {h}"
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    orphans = [n for n in re.findall(r"^\d+: (veth-gwh\d+)", links, re.M) if n[5:] not in hosts]
    if orphans:
        return f"{', '.join(orphans)} belong to hosts of another run"
    return ""


def wait_for_free_vcluster(timeout: float = 180) -> None:
    """Another test run on this machine may be using the (single, shared) virtual cluster:
    wait for it rather than tearing it down under that run; skip if it stays busy."""
    deadline = time.monotonic() + timeout
    while True:
        why = _vcluster_busy()
        if not why:
            return
        if time.monotonic() > deadline:
            pytest.skip(f"the virtual cluster is in use by another run ({why})")
        time.sleep(2)


def host_ip(i: int) -> str:
    return f"10.77.0.{i + 1}"


def pod_hosts_file(name: str, svc: str, namespace: str, index: int, pods: int) -> str:
    """/etc/hosts as the kubelet writes it for pod `index` of an Indexed Job with
    `subdomain: svc`, followed by what cluster DNS would answer for the other pods."""
    domain = f"{svc}.{namespace}.svc.cluster.local"
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::1\tip6-mcastprefix",
        f"{host_ip(index)}\t{name}-{index}.{domain}\t{name}-{index}",
        "# (simulation) what cluster DNS resolves for the headless Service's other pods",
    ]
    lines += [f"{host_ip(i)}\t{name}-{i}.{domain}" for i in range(pods) if i != index]
    return "\n".join(lines) + "\n"


def pod_command(index: int, hostname: str, hosts_file: Path, cmd: List[str]) -> List[str]:
    """Run `cmd` on vcluster host `index` with the pod's host name and /etc/hosts, in private
    mount and UTS namespaces (as slurm-cluster runs its nodes)."""
    inner = (
        f"hostname {hostname} && mount --bind {hosts_file} /etc/hosts && "
        f'mount -t tmpfs tmpfs /tmp && exec "$@"'
    )
    return [str(VCLUSTER), "exec", str(index), "unshare", "--mount", "--uts",
            "--propagation", "private", "sh", "-c", inner, "pod", *cmd]  # fmt: skip
