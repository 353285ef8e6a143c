"""`gradwire run --num-servers S` starts S parameter-server shards beside the workers."""

from pathlib import Path

import pytest
from launch_helpers import clean_env, run

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
