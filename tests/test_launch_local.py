"""`gradwire run` on this machine: real launcher processes, real workers on the gradwire backend."""

import os
import signal
import subprocess
import sys
import time

import pytest
from launch_helpers import GRADWIRE, TRAIN, clean_env, records, run
from world import free_port

pytestmark = pytest.mark.timeout(120)


def test_local_ranks_agree_with_labels_and_logs(tmp_path):
    out, logs = tmp_path / "out", tmp_path / "logs"
    out.mkdir()
    r = run(["--nproc-per-node", "3", "--log-dir", str(logs), str(TRAIN)],
            clean_env(TEST_OUT=str(out)))  # fmt: skip
    assert r.returncode == 0, r.stderr
    recs = records(out)
    assert sorted(recs) == [0, 1, 2]
    for rank, rec in recs.items():
        assert rec["sum"] == 6.0
        assert rec["RANK"] == rec["LOCAL_RANK"] == str(rank)
        assert rec["WORLD_SIZE"] == rec["LOCAL_WORLD_SIZE"] == "3"
        assert rec["GROUP_RANK"] == "0" and rec["GRADWIRE_ROLE"] == "worker"
        assert rec["GRADWIRE_SOCKET_IFNAME"] == "lo" and rec["GRADWIRE_LAUNCH_SOURCE"] == "local"
        assert f"[rank{rank}] rank {rank}/3 sum 6" in r.stdout
        assert f"rank {rank}/3 sum 6" in (logs / "attempt0" / f"rank{rank}.log").read_text()
    assert "\x1b[" not in r.stdout  # not a terminal: no colour codes
    assert "all 3 ranks finished" in r.stderr


def test_exit_code_of_the_first_failure(tmp_path):
    r = run(
        ["--nproc-per-node", "2", str(TRAIN)], clean_env(TEST_EXIT_RANK="1", TEST_EXIT_CODE="7")
    )
    assert r.returncode == 7, r.stderr
    assert "rank 1 exited with code 7" in r.stderr and "no restarts left" in r.stderr


def test_killed_worker_is_restarted_and_the_job_completes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = clean_env(TEST_KILL_RANK="1", TEST_OUT=str(out))
    r = run(["--nproc-per-node", "2", "--max-restarts", "2", str(TRAIN)], env)
    assert r.returncode == 0, r.stderr
    assert "rank 1 was killed by SIGKILL" in r.stderr and "restart 1 of 2" in r.stderr
    recs = records(out)
    assert [recs[i]["GRADWIRE_RESTART_COUNT"] for i in (0, 1)] == ["1", "1"]
    assert all(rec["sum"] == 3.0 for rec in recs.values())
    # without restarts the job fails with the killed rank's code
    r = run(["--nproc-per-node", "2", str(TRAIN)], env)
    assert r.returncode == 128 + signal.SIGKILL, r.stderr


def test_two_launchers_restart_together_after_a_remote_failure(tmp_path):
    """Node 1 loses a worker: node 0's workers restart too, in the same new round."""
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    env = clean_env(TEST_KILL_RANK="3", TEST_OUT=str(out))
    common = ["--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port),
              "--nproc-per-node", "2", "--max-restarts", "1"]  # fmt: skip
    procs = [
        subprocess.Popen(GRADWIRE + common + ["--node-rank", str(n), str(TRAIN)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in (0, 1)
    ]  # fmt: skip
    try:
        results = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "rank 3 was killed by SIGKILL" in err and "restart 1 of 1" in err
    recs = records(out)
    assert sorted(recs) == [0, 1, 2, 3]
    assert {rec["GROUP_RANK"] for rec in recs.values()} == {"0", "1"}
    assert all(rec["sum"] == 10.0 and rec["GRADWIRE_RESTART_COUNT"] == "1" for rec in recs.values())


def test_sigterm_is_forwarded_to_the_workers(tmp_path):
    env = clean_env(TEST_SIGTERM_DIR=str(tmp_path))
    p = subprocess.Popen(GRADWIRE + ["--nproc-per-node", "2", str(TRAIN)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{r}").exists() for r in (0, 1)):
            assert time.monotonic() < deadline and p.poll() is None, "workers never started"
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "received SIGTERM" in err
    assert [(tmp_path / f"term{r}").read_text() for r in (0, 1)] == ["SIGTERM", "SIGTERM"]


def test_workers_die_with_a_sigkilled_launcher(tmp_path):
    env = clean_env(TEST_SIGTERM_DIR=str(tmp_path))
    p = subprocess.Popen(GRADWIRE + ["--nproc-per-node", "2", str(TRAIN)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    pids = []
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{r}").exists() and (tmp_path / f"ready{r}").read_text()
                      for r in (0, 1)):  # fmt: skip
            assert time.monotonic() < deadline and p.poll() is None, "workers never started"
            time.sleep(0.1)
        pids = [int((tmp_path / f"ready{r}").read_text()) for r in (0, 1)]
        p.kill()  # no chance to stop its workers itself
        p.communicate(timeout=30)
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and
                     "zombie" not in open(f"/proc/{pid}/status").read()]  # fmt: skip
            time.sleep(0.1)
        assert not alive, f"workers {alive} outlived their SIGKILLed launcher"
    finally:
        p.kill()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_losing_launcher_0_is_a_clear_error(tmp_path):
    """Launcher 0 hosts the store; if it dies, the others stop their workers and say so."""
    port = free_port()
    common = ["--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    env = clean_env(TEST_SIGTERM_DIR=str(tmp_path))
    procs = [subprocess.Popen(GRADWIRE + common + ["--node-rank", str(n), str(TRAIN)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in (0, 1)]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{r}").exists() for r in (0, 1)):
            assert time.monotonic() < deadline, "workers never started"
            time.sleep(0.1)
        time.sleep(0.2)  # the pid is written
        procs[0].kill()  # launcher 0 vanishes without a word; its worker is orphaned
        _, err = procs[1].communicate(timeout=60)
    finally:
        for p in procs:
            p.kill()
        orphan = tmp_path / "ready0"
        if orphan.exists() and orphan.read_text():
            try:
                os.kill(int(orphan.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert procs[1].returncode == 1, err
    assert f"lost the rendezvous store at 127.0.0.1:{port}" in err
    assert (tmp_path / "term1").read_text() == "SIGTERM"  # its worker was stopped


def test_unreachable_rendezvous_is_a_clear_error():
    port = free_port()
    t0 = time.monotonic()
    r = run(["--nnodes", "2", "--node-rank", "1", "--master-addr", "127.0.0.1",
             "--master-port", str(port), "--rdzv-timeout", "3", str(TRAIN)])  # fmt: skip
    assert r.returncode == 1
    assert f"cannot reach the rendezvous endpoint 127.0.0.1:{port} after waiting 3s" in r.stderr
    assert time.monotonic() - t0 < 30


def test_roles_for_parameter_server_jobs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = run(
        ["--nproc-per-node", "3", "--num-servers", "1", str(TRAIN)], clean_env(TEST_OUT=str(out))
    )
    assert r.returncode == 0, r.stderr
    roles = {
        rank: (rec["GRADWIRE_ROLE"], rec["GRADWIRE_ROLE_RANK"])
        for rank, rec in records(out).items()
    }
    # parameter servers are extra processes (tests/test_ps_launch.py): every rank is a worker
    assert roles == {0: ("worker", "0"), 1: ("worker", "1"), 2: ("worker", "2")}


def test_dry_run_prints_environment_and_per_rank_settings():
    env = clean_env(SLURM_JOB_ID="7", SLURM_STEP_ID="0", SLURM_PROCID="3", SLURM_NTASKS="4",
                    SLURM_LOCALID="1", SLURM_NODEID="1", SLURM_NNODES="2",
                    SLURM_JOB_NODELIST="gpu[07-08]", SLURM_TASKS_PER_NODE="2(x2)")  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "gradwire.cli", "run", "--dry-run",
                        "--nproc-per-node", "2", "train.py"], env=env, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "environment: slurm" in r.stdout and "SLURM_JOB_NODELIST=gpu[07-08]" in r.stdout
    assert "TCPStore on gpu07:" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("  ")]
    table = rows[rows.index(["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                             "GRADWIRE_ROLE", "GRADWIRE_ROLE_RANK"]) + 1:]  # fmt: skip
    assert table == [
        ["6", "2", "8", "4", "1", "worker", "6"],
        ["7", "3", "8", "4", "1", "worker", "7"],
    ]


def test_under_torchrun_the_script_runs_with_torchruns_rendezvous(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "-m", "gradwire.run", str(TRAIN)]  # fmt: skip
    r = subprocess.run(torchrun, env=clean_env(TEST_OUT=str(out)), capture_output=True, text=True,
                       timeout=90)  # fmt: skip
    assert r.returncode == 0, r.stderr
    recs = records(out)
    assert sorted(recs) == [0, 1]
    assert all(
        rec["GRADWIRE_LAUNCH_SOURCE"] == "torchrun" and rec["sum"] == 3.0 for rec in recs.values()
    )


def test_bad_options_are_named():
    r = run(["--nproc-per-node", "zero", str(TRAIN)])
    assert r.returncode == 2 and "--nproc-per-node zero" in r.stderr
    r = run(["--nnodes", "2", "--node-rank", "2", str(TRAIN)])
    assert r.returncode == 2 and "--node-rank 2 must be below --nnodes 2" in r.stderr
    assert os.path.exists(TRAIN)
