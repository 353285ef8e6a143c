"""`gradwire run` across virtual hosts (../shared/cluster/vcluster): a real SLURM cluster and a
faithful simulation of a Kubernetes Indexed Job, plus address selection with real routes.

Each host is a network namespace with its own address on a bridge, so the launchers really
advertise, route and rendezvous across hosts. Needs root; installs what is missing.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from gradwire.launch import manifests
from launch_cluster import (
    SLURM_CLUSTER,
    VCLUSTER,
    cluster_scripts,
    ensure_commands,
    need_root,
    pod_command,
    pod_hosts_file,
    sh,
    wait_for_free_vcluster,
)
from launch_helpers import REPO, TRAIN, clean_env, records

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]
HOSTS = 3
PY = sys.executable


@pytest.fixture(scope="module")
def vcluster():
    need_root("vcluster")
    cluster_scripts()
    ensure_commands({"ip": "iproute2", "iptables": "iptables", "unshare": "util-linux"})
    wait_for_free_vcluster()
    sh(VCLUSTER, "up", HOSTS)
    try:
        yield HOSTS
    finally:
        subprocess.run([str(VCLUSTER), "down"], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def slurm(vcluster):
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        sh(SLURM_CLUSTER, "install", timeout=900)
    sh(SLURM_CLUSTER, "up", timeout=120)
    try:
        yield
    finally:
        subprocess.run([str(SLURM_CLUSTER), "down"], capture_output=True, timeout=60)


@pytest.fixture
def workdir():
    """Outside /tmp: the nodes (and pods) have private /tmp's, but share the rest."""
    base = REPO / "build"
    base.mkdir(exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="launch-test-", dir=base))
    (d / "out").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def check_world(out: Path, world: int, per_host: int, source: str, hosts):
    recs = records(out)
    assert sorted(recs) == list(range(world)), sorted(recs)
    for rank, rec in recs.items():
        assert rec["sum"] == world * (world + 1) / 2
        assert rec["WORLD_SIZE"] == str(world) and rec["LOCAL_WORLD_SIZE"] == str(per_host)
        assert rec["GRADWIRE_LAUNCH_SOURCE"] == source
        assert rec["GRADWIRE_SOCKET_IFNAME"] == "eth0"  # the interface facing the other hosts
        node = hosts.index(rec["host"])
        assert rec["GROUP_RANK"] == str(node)
        assert rank // per_host == node and rec["LOCAL_RANK"] == str(rank % per_host)
    return recs


def test_slurm_srun_six_tasks_on_three_nodes(slurm, workdir):
    env = clean_env(TEST_OUT=str(workdir / "out"))
    cmd = ["srun", "-N3", "-n6", "--overcommit", "--kill-on-bad-exit=1", "-t", "3",
           f"--chdir={workdir}", PY, "-m", "gradwire.run", str(TRAIN)]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    check_world(workdir / "out", 6, 2, "slurm", ["node01", "node02", "node03"])
    assert "slurm: 6 ranks on 3 node(s)" in r.stderr


def wait_for_job(job_id: str, timeout: float) -> str:
    """Poll the controller (sbatch --wait polls at intervals of many seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        info = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                              text=True, timeout=30).stdout  # fmt: skip
        m = re.search(r"JobState=(\S+).*?ExitCode=(\S+)", info)
        if m and m.group(1) not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return f"{m.group(1)} exit {m.group(2)}"
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], timeout=30)
            return f"still {m.group(1) if m else 'unknown'} after {timeout:.0f}s (cancelled)"
        time.sleep(0.5)


def test_slurm_sbatch_one_launcher_per_node(slurm, workdir):
    job = workdir / "job.sh"
    job.write_text(
        "#!/bin/bash\n"
        "#SBATCH -N 3\n#SBATCH --ntasks-per-node=1\n#SBATCH -t 3\n"
        f"#SBATCH -o {workdir}/slurm-%j.out\n"
        f"srun {PY} -m gradwire.run --nproc-per-node 2 {TRAIN}\n"
    )
    env = clean_env(TEST_OUT=str(workdir / "out"))
    r = subprocess.run(["sbatch", "--parsable", f"--chdir={workdir}", str(job)], env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().split(";")[0]
    state = wait_for_job(job_id, timeout=180)
    logs = "".join(p.read_text() for p in workdir.glob("slurm-*.out"))
    assert state.startswith("COMPLETED"), f"job {job_id}: {state}\n{logs}"
    check_world(workdir / "out", 6, 2, "slurm", ["node01", "node02", "node03"])


def test_kubernetes_indexed_job_simulated(vcluster, workdir):
    """Each host plays one pod of the Indexed Job that `gradwire k8s manifest` prints: the
    pod's host name and kubelet-style /etc/hosts, JOB_COMPLETION_INDEX, the Secret's token,
    and the manifest's own command."""
    spec = manifests.JobSpec(name="train", nodes=HOSTS, nproc_per_node=1, image="unused",
                             command=[str(TRAIN)], namespace="team-a")  # fmt: skip
    secret, service, job = manifests.build(spec)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    cmd = [str(Path(PY).parent / container["command"][0]), *container["command"][1:]]
    token = secret["stringData"]["token"]
    procs = []
    try:
        for i in range(HOSTS):
            hosts_file = workdir / f"hosts-{i}"
            hosts_file.write_text(pod_hosts_file("train", pod["subdomain"], "team-a", i, HOSTS))
            env = clean_env(TEST_OUT=str(workdir / "out"), JOB_COMPLETION_INDEX=str(i),
                            HOSTNAME=f"train-{i}", GRADWIRE_AUTH_TOKEN=token)  # fmt: skip
            procs.append(subprocess.Popen(pod_command(i, f"train-{i}", hosts_file, cmd), env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))  # fmt: skip
        outs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    recs = check_world(workdir / "out", HOSTS, 1, "indexed-job",
                       [f"train-{i}" for i in range(HOSTS)])  # fmt: skip
    assert {rec["MASTER_ADDR"] for rec in recs.values()} == {
        "train-0.train.team-a.svc.cluster.local"
    }
    assert service["metadata"]["name"] == pod["subdomain"]


def in_host(i: int, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VCLUSTER), "exec", str(i), PY, "-c", code], capture_output=True,
                          text=True, timeout=60, env=clean_env())  # fmt: skip


CHOOSE = (
    "import json; from gradwire.launch.address import choose; c = choose({!r}, {}, {{}}); "
    "print(json.dumps([c.ifname, c.address]))"
)


def test_address_selection_routes_to_the_master(vcluster):
    r = in_host(1, CHOOSE.format("10.77.0.1", True))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ["eth0", "10.77.0.2"]
    # on the master's own host: the interface that holds the master address, not loopback
    r = in_host(0, CHOOSE.format("10.77.0.1", True))
    assert json.loads(r.stdout) == ["eth0", "10.77.0.1"], r.stderr
    # a loopback master cannot serve remote peers
    r = in_host(1, CHOOSE.format("localhost", True))
    assert r.returncode != 0 and "resolves to loopback" in r.stderr
    assert os.geteuid() == 0
