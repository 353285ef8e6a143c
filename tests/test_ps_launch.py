"""`gradwire run --num-servers S` starts S parameter-server shards beside the workers."""

from pathlib import Path

import pytest
from gradwire.launch import address
from launch_helpers import clean_env, run, run_launchers
from world import free_port

SCRIPT = Path(__file__).parent / "data" / "launch" / "ps_train.py"


@pytest.mark.timeout(120)
def test_launcher_starts_servers_and_workers_find_them():
    r = run(
        ["--nproc-per-node", "2", "--num-servers", "2", "--ps-mode", "bsp", str(SCRIPT)],
        clean_env(),
    )
    assert r.returncode == 0, r.stderr
    assert "parameter servers: 127.0.0.1:" in r.stderr and "(bsp)" in r.stderr
    # BSP: after 3 clocks of lr-1 pushes of ones from 2 workers, every worker sees -6
    for rank in (0, 1):
        assert f"worker {rank}/2 servers 2 value -6 (2 addresses)" in r.stdout, r.stdout


@pytest.mark.timeout(180)
def test_two_launchers_without_a_token_give_servers_and_workers_one():
    """Without GRADWIRE_AUTH_TOKEN, a shard refuses to listen beyond loopback: with several
    launchers, launcher 0 draws the job's token and shares it with its shards and every
    launcher's workers. The shards listen on a real interface here (GRADWIRE_SOCKET_IFNAME)."""
    ifaces = {n: a for n, a in address.ipv4_addresses().items() if not a.startswith("127.")}
    if not ifaces:
        pytest.skip("no non-loopback IPv4 interface on this machine")
    ifname, ip = sorted(ifaces.items())[0]
    env = clean_env(GRADWIRE_SOCKET_IFNAME=ifname)
    common = ["--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
              "--nproc-per-node", "1", "--num-servers", "1", "--ps-mode", "bsp"]  # fmt: skip
    args = [*common, str(SCRIPT)]
    (rc0, out0, err0), (rc1, out1, err1) = run_launchers(args, 2, env, timeout=150)
    assert rc0 == 0 and rc1 == 0, err0 + err1
    assert f"parameter servers: {ip}:" in err0, err0
    shard_says = "gradwire-ps shard 0: authentication: GRADWIRE_AUTH_TOKEN from the environment"
    assert shard_says in err0, err0
    assert "worker 0/2 servers 1 value -6 (1 addresses)" in out0, out0
    assert "worker 1/2 servers 1 value -6 (1 addresses)" in out1, out1
