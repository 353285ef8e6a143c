"""Environment detection, fed the variables the real systems set.

The SLURM and OpenMPI sets were recorded from `srun -N3 -n6 --overcommit` on the test cluster
(../shared/cluster/slurm-cluster) and `mpirun -n 2`; the Kubernetes ones follow what the
controllers write into pods (Kubeflow training-operator's setPodEnv, Trainer's PET_* variables,
Volcano's svc/env plugins, the Job controller's JOB_COMPLETION_INDEX and pod hostnames).
"""

import pytest
from gradwire.launch.detect import Host, detect
from gradwire.launch.errors import LaunchError
from gradwire.launch.plan import Locality, make_plan
from launch_helpers import opts

HOST = Host("somehost", "somehost")

# srun -N3 -n6 --overcommit, task 4 (recorded; paths and pids left out)
SLURM_TASK4 = {
    "SLURM_CLUSTER_NAME": "gwtest", "SLURM_CPUS_ON_NODE": "1", "SLURM_GTIDS": "4,5",
    "SLURM_JOBID": "1", "SLURM_JOB_CPUS_PER_NODE": "1(x3)", "SLURM_JOB_ID": "1",
    "SLURM_JOB_NAME": "bash", "SLURM_JOB_NODELIST": "node[01-03]", "SLURM_JOB_NUM_NODES": "3",
    "SLURM_LAUNCH_NODE_IPADDR": "10.77.0.254", "SLURM_LOCALID": "0", "SLURM_NNODES": "3",
    "SLURM_NODEID": "2", "SLURM_NODELIST": "node[01-03]", "SLURM_NPROCS": "6",
    "SLURM_NTASKS": "6", "SLURM_OVERCOMMIT": "1", "SLURM_PROCID": "4", "SLURM_STEPID": "0",
    "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "node[01-03]", "SLURM_STEP_NUM_NODES": "3",
    "SLURM_STEP_NUM_TASKS": "6", "SLURM_STEP_TASKS_PER_NODE": "2(x3)",
    "SLURM_TASKS_PER_NODE": "2(x3)", "SLURM_TOPOLOGY_ADDR": "node03",
}  # fmt: skip

# the batch script of `sbatch -N2 -n4` (recorded): no step, so not a task of the job
SLURM_BATCH = {
    "SLURM_JOB_ID": "2", "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0", "SLURM_NODELIST": "node[01-02]", "SLURM_NTASKS": "4",
    "SLURM_PROCID": "0", "SLURM_TASKS_PER_NODE": "2(x2)",
}  # fmt: skip

# mpirun -n 2 on one host (recorded)
OMPI_RANK1 = {
    "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
    "OMPI_COMM_WORLD_NODE_RANK": "1", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
    "OMPI_MCA_ess_base_jobid": "1501102081", "OMPI_UNIVERSE_SIZE": "2",
    "PMIX_NAMESPACE": "1501102081", "PMIX_RANK": "1",
}  # fmt: skip


def plan_for(env, host=HOST, **kw):
    d = detect(env, host)
    return d, make_plan(opts(**kw), d, env)


def test_slurm_srun_task():
    d, p = plan_for(SLURM_TASK4)
    assert d.source == "slurm"
    assert (p.launcher_rank, p.launchers, p.nproc, p.world_size) == (4, 6, 1, 6)
    assert p.locality() == Locality(local_launcher_rank=0, local_launchers=2, node_rank=2, nnodes=3)
    assert p.master_addr == "node01"
    assert 20000 <= p.master_port < 32000
    env = p.rank_env(0, p.locality())
    assert env["RANK"] == "4" and env["LOCAL_RANK"] == "0" and env["LOCAL_WORLD_SIZE"] == "2"
    assert env["GROUP_RANK"] == "2" and env["WORLD_SIZE"] == "6"


def test_slurm_compressed_hostlist_and_tasks_per_node():
    env = dict(SLURM_TASK4)
    env.update(
        SLURM_STEP_NODELIST="node[01-04,07]", SLURM_STEP_NUM_NODES="5", SLURM_STEP_NUM_TASKS="9",
        SLURM_STEP_TASKS_PER_NODE="2(x4),1", SLURM_NODEID="4", SLURM_PROCID="8",
        SLURM_LOCALID="0",
    )  # fmt: skip
    d, p = plan_for(env, nproc_per_node="2")
    assert d.notes[0].startswith("nodes node01, node02, node03, node04, node07")
    assert p.locality() == Locality(0, 1, 4, 5)
    assert p.world_size == 18 and p.ranks() == [16, 17]


def test_slurm_batch_script_is_not_a_task():
    d = detect(SLURM_BATCH, HOST)
    assert d.source == "local"
    assert "srun gradwire run" in d.notes[0]


def test_slurm_bad_hostlist_is_named():
    env = dict(SLURM_TASK4, SLURM_STEP_NODELIST="node[03-01")
    with pytest.raises(LaunchError, match=r"node\[03-01"):
        detect(env, HOST)


def test_openmpi_single_host():
    d, p = plan_for(OMPI_RANK1)
    assert d.source == "openmpi"
    assert (p.launcher_rank, p.launchers, p.master_addr) == (1, 2, "127.0.0.1")
    assert p.locality() == Locality(1, 2, 0, 1)


def test_openmpi_multi_host_needs_master_addr():
    env = dict(OMPI_RANK1, OMPI_COMM_WORLD_SIZE="4", OMPI_COMM_WORLD_RANK="3")
    with pytest.raises(LaunchError, match="--master-addr"):
        plan_for(env)
    d, p = plan_for(dict(env, MASTER_ADDR="node01"))
    assert p.master_addr == "node01" and p.locality() is None  # learnt at the rendezvous


def test_openmpi_wins_over_the_surrounding_slurm_allocation():
    assert detect({**SLURM_TASK4, **OMPI_RANK1}, HOST).source == "openmpi"


def test_mpich_hydra_pmi():
    env = {"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "3", "MPI_LOCALNRANKS": "4",
           "PMI_FD": "7"}  # fmt: skip
    d, p = plan_for(env)
    assert d.source == "pmi"
    assert (p.launcher_rank, p.launchers, p.master_addr, p.master_port) == (
        3,
        4,
        "127.0.0.1",
        29500,
    )


def test_pmix_needs_nnodes():
    env = {"PMIX_RANK": "2", "PMIX_NAMESPACE": "prterun-node01-4242@1"}
    with pytest.raises(LaunchError, match="--nnodes"):
        plan_for(env)
    d, p = plan_for(env, nnodes=4, master_addr="node01")
    assert (p.launcher_rank, p.launchers, p.locality()) == (2, 4, Locality(0, 1, 2, 4))


def test_torchrun_is_passed_through():
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
           "GROUP_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500",
           "TORCHELASTIC_RUN_ID": "none", "TORCHELASTIC_USE_AGENT_STORE": "True"}  # fmt: skip
    d, p = plan_for(env)
    assert d.source == "torchrun" and p.passthrough
    assert p.rank_env(0, p.locality())["RANK"] == "5"
    with pytest.raises(LaunchError, match="torchrun"):
        plan_for(env, nproc_per_node="2")


# Kubeflow training-operator, PyTorchJob with 1 master + 3 workers and nprocPerNode: "2";
# this is worker 1 (pod rank 2)
PYTORCHJOB_WORKER1 = {
    "PYTHONUNBUFFERED": "0", "MASTER_PORT": "23456", "MASTER_ADDR": "ptj-master-0",
    "WORLD_SIZE": "8", "RANK": "2", "PET_NPROC_PER_NODE": "2", "PET_NODE_RANK": "2",
    "PET_NNODES": "4",
}  # fmt: skip


def test_pytorchjob_rank_is_the_pod_index_not_a_process_rank():
    d, p = plan_for(PYTORCHJOB_WORKER1)
    assert d.source == "pytorchjob"
    assert (p.launcher_rank, p.launchers, p.nproc, p.world_size) == (2, 4, 2, 8)
    assert (p.master_addr, p.master_port) == ("ptj-master-0", 23456)
    envs = [p.rank_env(i, p.locality()) for i in range(2)]
    assert [e["RANK"] for e in envs] == ["4", "5"]  # not the pod's RANK=2
    assert all(e["WORLD_SIZE"] == "8" and e["GROUP_RANK"] == "2" for e in envs)


def test_pytorchjob_elastic_range_is_refused():
    with pytest.raises(LaunchError, match="elastic"):
        plan_for(dict(PYTORCHJOB_WORKER1, PET_NNODES="1:4"))


def test_trainjob_pet_variables():
    env = {"PET_NNODES": "3", "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": "1",
           "PET_MASTER_ADDR": "tj-node-0-0.tj", "PET_MASTER_PORT": "29400"}  # fmt: skip
    d, p = plan_for(env)
    assert d.source == "trainjob"
    assert (p.launcher_rank, p.launchers, p.master_addr, p.master_port) == (
        1, 3, "tj-node-0-0.tj", 29400)  # fmt: skip


def test_volcano_hosts_order_master_task_first():
    env = {"VC_MASTER_HOSTS": "vj-master-0.vj", "VC_MASTER_NUM": "1",
           "VC_WORKER_HOSTS": "vj-worker-0.vj,vj-worker-1.vj", "VC_WORKER_NUM": "2",
           "VC_TASK_INDEX": "1", "VK_TASK_INDEX": "1"}  # fmt: skip
    d, p = plan_for(env, Host("vj-worker-1", "vj-worker-1.vj.default.svc.cluster.local"))
    assert d.source == "volcano"
    assert (p.launcher_rank, p.launchers, p.master_addr, p.master_port) == (
        2, 3, "vj-master-0.vj", 29500)  # fmt: skip


def test_indexed_job_master_from_pod_fqdn():
    host = Host("train-2", "train-2.train.team-a.svc.cluster.local")
    env = {"JOB_COMPLETION_INDEX": "2"}
    with pytest.raises(LaunchError, match="--nnodes"):
        plan_for(env, host)
    d, p = plan_for(env, host, nnodes=4, nproc_per_node="2")
    assert d.source == "indexed-job"
    assert p.master_addr == "train-0.train.team-a.svc.cluster.local"
    assert (p.launcher_rank, p.world_size, p.ranks()) == (2, 8, [4, 5])


def test_jobset_pod_names():
    # JobSet pods: <jobset>-<replicated job>-<job index>-<pod index>, subdomain <jobset>
    host = Host("bert-node-0-3", "bert-node-0-3.bert.default.svc.cluster.local")
    d, p = plan_for({"JOB_COMPLETION_INDEX": "3"}, host, nnodes=4)
    assert p.master_addr == "bert-node-0-0.bert.default.svc.cluster.local"
    assert (p.launcher_rank, p.world_size) == (3, 4)


def test_indexed_job_without_subdomain_says_so():
    d = detect({"JOB_COMPLETION_INDEX": "1"}, Host("train-1", "train-1"))
    assert d.master_addr is None and "subdomain" in d.notes[0]
    with pytest.raises(LaunchError, match="--master-addr"):
        make_plan(opts(nnodes=2), d, {})


def test_command_line_wins_and_conflicts_are_named():
    with pytest.raises(LaunchError, match="--nnodes 2: the environment .slurm. says 3"):
        plan_for(SLURM_TASK4, nnodes=2)
    d, p = plan_for(SLURM_TASK4, master_port=4000, master_addr="head")
    assert (p.master_addr, p.master_port) == ("head", 4000)


def test_source_none_and_unknown_source():
    assert detect(SLURM_TASK4, HOST, source="none").source == "local"
    with pytest.raises(LaunchError, match="unknown"):
        detect({}, HOST, source="lsf")
    with pytest.raises(LaunchError, match="not set here"):
        detect({}, HOST, source="slurm")


def test_parameter_servers_are_extra_processes_every_rank_a_worker():
    d = detect({}, HOST)
    p = make_plan(opts(nproc_per_node="4", num_servers=2), d, {})
    envs = [p.rank_env(i, p.locality()) for i in range(4)]
    assert [e["GRADWIRE_ROLE"] for e in envs] == ["worker"] * 4
    assert [e["GRADWIRE_PS_WORKER_ID"] for e in envs] == ["0", "1", "2", "3"]
    assert {e["GRADWIRE_PS_NUM_WORKERS"] for e in envs} == {"4"}
    assert {e["GRADWIRE_NUM_SERVERS"] for e in envs} == {"2"}
    with pytest.raises(LaunchError, match="must be >= 0"):
        make_plan(opts(nproc_per_node="2", num_servers=-1), d, {})


def test_locality_from_hosts():
    hosts = ["b", "b", "a", "c", "a"]
    assert Locality.from_hosts(hosts, 4) == Locality(1, 2, 1, 3)
    assert Locality.from_hosts(hosts, 3) == Locality(0, 1, 2, 3)
