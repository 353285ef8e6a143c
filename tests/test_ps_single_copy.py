"""Same-host single copy of parameter-server payloads (GRADWIRE_PS_SINGLE_COPY_MIN_BYTES): large
requests and replies travel as references read with process_vm_readv. The values a worker
trains must equal those over sockets bit for bit, the path must really be taken, and a worker
the server cannot read (another pid namespace) must fall back to sockets without an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gradwire.ps as ps
import pytest

WORKER = str(Path(__file__).with_name("ps_single_copy_worker.py"))


def _run(single_copy_min: str, prefix=(), server_env=None, **extra):
    env = dict(os.environ, GRADWIRE_PS_SINGLE_COPY_MIN_BYTES=single_copy_min, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    with ps.start_local_servers(2, 1, mode="bsp", env=server_env or env) as servers:
        p = subprocess.run(
            list(prefix) + [sys.executable, WORKER, ",".join(servers.addresses)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


@pytest.mark.timeout(200)
def test_single_copy_trains_the_same_values_as_sockets():
    by_ref, _ = _run("256K")
    sockets, _ = _run("0")
    assert sockets["single_copy"] == 0
    # dense pushes and replies, pull_rows replies: far more than one pass of the tensor
    assert by_ref["single_copy"] > 4 * 1_200_000
    for k in ("push_pull_last", "w", "w_first", "emb", "emb_abs"):
        assert by_ref[k] == sockets[k], k
    assert by_ref["emb_abs"] > 0


@pytest.mark.timeout(120)
def test_a_server_without_single_copy_is_used_over_sockets():
    off = dict(os.environ, GRADWIRE_PS_SINGLE_COPY_MIN_BYTES="0")
    r, _ = _run("256K", server_env=off)
    assert r["single_copy"] == 0


@pytest.mark.timeout(120)
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_worker_in_another_pid_namespace_falls_back_to_sockets():
    ref, _ = _run("0")
    r, err = _run("256K", prefix=["unshare", "--pid", "--fork"], GRADWIRE_LOG_LEVEL="info")
    assert r["pid"] == 1  # the worker really ran in its own pid namespace
    assert r["single_copy"] == 0
    assert "no single copy from parameter server shard" in err
    for k in ("w", "emb"):
        assert r[k] == ref[k], k
