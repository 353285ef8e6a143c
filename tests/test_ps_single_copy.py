"""Same-host single copy of parameter-server payloads (GRADWIRE_PS_SINGLE_COPY_MIN_BYTES): large
requests and replies travel as references read with process_vm_readv, and dense read replies
are written straight into the worker's tensor (GRADWIRE_PS_REPLY_IN_PLACE). The values a worker
trains must equal those over sockets bit for bit, each path must really be taken, only a
worker's newest connection is written in place, a failed in-place operation keeps its tensors
alive, and a worker the server cannot read (another pid namespace) falls back to sockets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gradwire.ps as ps
import gradwire.ps.client as ps_client
import pytest
import torch

WORKER = str(Path(__file__).with_name("ps_single_copy_worker.py"))


def _run(single_copy_min: str, prefix=(), server_env=None, mode="bsp", **extra):
    env = dict(os.environ, GRADWIRE_PS_SINGLE_COPY_MIN_BYTES=single_copy_min, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    with ps.start_local_servers(2, 1, mode=mode, env=server_env or env) as servers:
        p = subprocess.run(
            list(prefix) + [sys.executable, WORKER, ",".join(servers.addresses)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["bsp", "asp"])  # asp answers push_pull from the update itself
def test_single_copy_trains_the_same_values_as_sockets(mode):
    in_place, _ = _run("256K", mode=mode)
    lent, _ = _run("256K", mode=mode, GRADWIRE_PS_REPLY_IN_PLACE="0")
    sockets, _ = _run("0", mode=mode)
    assert sockets["single_copy"] == 0 and sockets["in_place"] == 0
    # dense pushes and replies, pull_rows replies: far more than one pass of the tensor
    assert lent["single_copy"] > 4 * 1_200_000 and lent["in_place"] == 0
    # 4 push_pull replies and the final pull of the 1.2 MB tensor were written in place
    assert in_place["in_place"] == 5 * 1_200_000
    for k in ("push_pull_last", "w", "w_first", "emb", "emb_abs"):
        assert in_place[k] == sockets[k], k
        assert lent[k] == sockets[k], k
    assert in_place["emb_abs"] > 0


@pytest.mark.timeout(60)
def test_only_the_newest_connection_of_a_worker_is_written_in_place():
    # Two clients with one worker id (a restarted worker whose old process still holds its
    # connection): the older one's replies must come the ordinary way, still correct.
    n = 300_000
    with ps.start_local_servers(2, 1, mode="asp") as servers:
        old = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=30)
        old.register_dense("w", torch.arange(n, dtype=torch.float32), optimizer=ps.SGD(lr=1.0))
        new = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=30)
        new.register_dense("w", torch.zeros(n), optimizer=ps.SGD(lr=1.0))
        a, b = torch.empty(n), torch.empty(n)
        old.push_pull("w", torch.ones(n), a)  # the fused ASP answer, falling back
        new.pull("w", b)
        expect = torch.arange(n, dtype=torch.float32) - 1
        assert torch.equal(a, expect) and torch.equal(b, expect)
        assert old.in_place_bytes == 0 and old.single_copy_bytes >= 2 * 4 * n
        assert new.in_place_bytes == 4 * n
        old.pull("w", a)
        assert torch.equal(a, expect) and old.in_place_bytes == 0
        old.close()
        new.close()


@pytest.mark.timeout(60)
def test_a_failed_in_place_read_keeps_its_tensor_alive():
    # A BSP pull that times out stays parked on the server, which writes the value into the
    # worker's tensor once the read may be served: the tensor must outlive the failed op.
    n = 300_000
    with ps.start_local_servers(1, 2, mode="bsp") as servers:
        w0 = ps.connect(servers.addresses, worker_id=0, num_workers=2, timeout=1.5)
        w0.register_dense("w", torch.full((n,), 3.0))
        w0.clock()  # worker 1 has not advanced: the pull at clock 1 waits for it
        out = torch.zeros(n)
        with pytest.raises(TimeoutError, match="pull\\('w'\\) did not complete"):
            w0.pull("w", out)
        assert any(t is out for kept in ps_client._IN_FLIGHT_FOREVER for t in kept)
        w1 = ps.connect(servers.addresses, worker_id=1, num_workers=2, timeout=30)
        w1.register_dense("w", torch.zeros(n))
        w1.clock()  # now the parked read is served: into `out`, after its op failed
        deadline = time.monotonic() + 20
        while not torch.equal(out, torch.full((n,), 3.0)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert torch.equal(out, torch.full((n,), 3.0))
        w0.close()
        w1.close()


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


@pytest.mark.timeout(90)
def test_logged_single_copy_pushes_replay_after_a_kill(tmp_path):
    # With a log the server reads a by-reference push whole into the request (the record needs
    # its bytes); a restarted shard must replay those records to the same value.
    n = 300_000
    with ps.start_local_servers(1, 1, mode="asp", checkpoint_dir=str(tmp_path)) as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=30)
        c.register_dense("w", torch.arange(n, dtype=torch.float32), optimizer=ps.SGD(lr=0.5))
        out = torch.empty(n)
        for step in range(3):
            c.push_pull("w", torch.full((n,), float(step + 1)), out)
        assert c.single_copy_bytes >= 2 * 3 * 4 * n
        servers.kill(0)
        servers.restart(0)
        after = c.pull("w", torch.empty(n))
        assert torch.equal(after, out)
        assert torch.equal(out, torch.arange(n, dtype=torch.float32) - 3.0)
        c.close()


@pytest.mark.timeout(60)
def test_a_failed_by_reference_push_keeps_its_gradient_alive():
    # The stopped server holds a reference to the gradient; once it runs again it may read it.
    n = 300_000
    with ps.start_local_servers(1, 1, mode="asp") as servers:
        c = ps.connect(servers.addresses, worker_id=0, num_workers=1, timeout=1.5)
        c.register_dense("w", torch.zeros(n), optimizer=ps.SGD(lr=1.0))
        grad = torch.ones(n)
        os.kill(servers.procs[0].pid, signal.SIGSTOP)
        try:
            with pytest.raises(TimeoutError, match="push\\('w'\\) did not complete"):
                c.push("w", grad)
        finally:
            os.kill(servers.procs[0].pid, signal.SIGCONT)
        kept = [t.data_ptr() for held in ps_client._IN_FLIGHT_FOREVER for t in held]
        assert grad.data_ptr() in kept  # the client's tensor is a view of the same storage
        c.close()
