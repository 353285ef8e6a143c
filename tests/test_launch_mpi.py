"""`mpirun -n 4 gradwire run ...` with Debian's OpenMPI: one launcher per MPI rank."""

import shutil
import subprocess
import sys

import pytest
from launch_cluster import ensure_commands, need_root
from launch_helpers import TRAIN, clean_env, records

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def mpirun():
    if shutil.which("mpirun") is None:
        need_root("installing OpenMPI")
        ensure_commands({"mpirun": "openmpi-bin"})
    return shutil.which("mpirun")


def test_openmpi_four_ranks(mpirun, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "4",
           sys.executable, "-m", "gradwire.run", str(TRAIN)]  # fmt: skip
    r = subprocess.run(cmd, env=clean_env(TEST_OUT=str(out)), capture_output=True, text=True,
                       timeout=180)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    recs = records(out)
    assert sorted(recs) == [0, 1, 2, 3]
    for rank, rec in recs.items():
        assert rec["sum"] == 10.0 and rec["GRADWIRE_LAUNCH_SOURCE"] == "openmpi"
        assert rec["LOCAL_RANK"] == str(rank) and rec["LOCAL_WORLD_SIZE"] == "4"
        assert rec["MASTER_ADDR"] == "127.0.0.1" and rec["GRADWIRE_SOCKET_IFNAME"] == "lo"


def test_openmpi_two_processes_per_rank(mpirun, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "2", sys.executable, "-m",
           "gradwire.run", "--nproc-per-node", "2", "--dry-run", str(TRAIN)]  # fmt: skip
    r = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("environment: openmpi") == 2
    assert "launchers: 2 (this one: 1), 2 process(es) each -> world size 4" in r.stdout
