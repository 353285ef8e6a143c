"""Collectives between processes on different virtual hosts (network namespaces with their own
addresses, made by ../shared/cluster/vcluster): real TCP between real addresses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
VCLUSTER = HERE.parent.parent / "shared" / "cluster" / "vcluster"
HOSTS = 4

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not VCLUSTER.exists(), reason=f"{VCLUSTER} not found"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 (ip) is not installed"),
]


@pytest.fixture(scope="module")
def cluster():
    subprocess.run([str(VCLUSTER), "up", str(HOSTS)], check=True, capture_output=True, timeout=60)
    try:
        yield [
            subprocess.check_output([str(VCLUSTER), "ip", str(i)], text=True).strip()
            for i in range(HOSTS)
        ]
    finally:
        subprocess.run([str(VCLUSTER), "down"], capture_output=True, timeout=60)


def _run_job(addrs, extra_env=None, timeout=120):
    env = dict(os.environ, MASTER_ADDR=addrs[0], MASTER_PORT="29731", WORLD_SIZE=str(HOSTS))
    env.update(extra_env or {})
    procs = []
    for i in range(HOSTS):
        cmd = [str(VCLUSTER), "exec", str(i), sys.executable, str(HERE / "multihost_worker.py")]
        procs.append(
            subprocess.Popen(
                cmd,
                env=dict(env, RANK=str(i)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"host {i} failed ({p.returncode}):\n{err[-3000:]}"
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results


def test_collectives_across_hosts_use_routable_addresses(cluster):
    results = _run_job(cluster)
    for i, r in enumerate(results):
        assert r["errors"] == [], r
        host = r["address"].rsplit(":", 1)[0]
        assert host == cluster[i], (
            f"rank {i} advertised {r['address']}, expected its host address {cluster[i]}"
        )


def test_socket_ifname_selects_the_interface(cluster):
    results = _run_job(cluster, {"GRADWIRE_SOCKET_IFNAME": "eth0"})
    assert all(r["errors"] == [] for r in results)
    assert [r["address"].rsplit(":", 1)[0] for r in results] == cluster


def test_unknown_interface_is_a_clear_error(cluster):
    env = dict(
        os.environ,
        MASTER_ADDR=cluster[0],
        MASTER_PORT="29732",
        WORLD_SIZE="1",
        RANK="0",
        GRADWIRE_SOCKET_IFNAME="nosuch0",
    )
    p = subprocess.run(
        [str(VCLUSTER), "exec", "0", sys.executable, str(HERE / "multihost_worker.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode != 0
    assert "GRADWIRE_SOCKET_IFNAME=nosuch0" in p.stderr and "eth0" in p.stderr, p.stderr[-2000:]
