"""MPI launchers: OpenMPI (OMPI_COMM_WORLD_*), MPICH / Intel MPI (PMI_*), and PMIx.

MPI starts one launcher per rank. None of them names the host of rank 0 in the environment:
a job confined to one host uses loopback, a multi-host job needs MASTER_ADDR (for example
`mpirun -x MASTER_ADDR=node01`) or --master-addr.
"""

from __future__ import annotations

from typing import Mapping, Optional

from gradwire.launch.detect.detected import Detected, Host
from gradwire.launch.detect.util import EnvReader, port_from_id

_MULTI_HOST_NOTE = (
    "{what} does not say which host runs rank 0: pass --master-addr (or set MASTER_ADDR) "
    "unless every rank is on this host"
)


def _finish(d: Detected, r: EnvReader, job_id: Optional[str], what: str) -> Detected:
    if d.local_launchers is not None and d.local_launchers == d.launchers:
        d.master_addr = "127.0.0.1"
        d.nnodes, d.node_rank = 1, 0
        d.notes.append("all ranks are on this host: rendezvous over loopback")
    else:
        d.nnodes = d.node_rank = None  # learnt at the rendezvous from the launchers' hosts
        d.notes.append(_MULTI_HOST_NOTE.format(what=what))
    if job_id:
        d.master_port = port_from_id(f"{d.source}-{job_id}")
        d.notes.append("MASTER_PORT derived from the MPI job id (override: --master-port)")
    d.used = r.used
    return d


def detect_openmpi(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    r = EnvReader(env, "openmpi")
    if not r.has("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"):
        return None
    d = Detected(
        source="openmpi",
        launcher_rank=r.int("OMPI_COMM_WORLD_RANK"),
        launchers=r.int("OMPI_COMM_WORLD_SIZE"),
        local_launcher_rank=r.int("OMPI_COMM_WORLD_LOCAL_RANK"),
        local_launchers=r.int("OMPI_COMM_WORLD_LOCAL_SIZE"),
    )
    job = (
        r.str("PMIX_NAMESPACE") or r.str("OMPI_MCA_ess_base_jobid") or r.str("OMPI_MCA_orte_jobid")
    )
    return _finish(d, r, job, "OpenMPI")


def detect_pmi(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    """MPICH's and Intel MPI's Hydra: PMI_RANK/PMI_SIZE, MPI_LOCALRANKID/MPI_LOCALNRANKS."""
    r = EnvReader(env, "pmi")
    if not r.has("PMI_RANK", "PMI_SIZE"):
        return None
    d = Detected(
        source="pmi",
        launcher_rank=r.int("PMI_RANK"),
        launchers=r.int("PMI_SIZE"),
        local_launcher_rank=r.int("MPI_LOCALRANKID"),
        local_launchers=r.int("MPI_LOCALNRANKS"),
    )
    if d.local_launcher_rank is None:
        d.local_launchers = None
    return _finish(d, r, r.str("PMI_KVSNAME") or r.str("PMI_JOBID"), "MPICH/Intel MPI (PMI)")


def detect_pmix(env: Mapping[str, str], host: Host) -> Optional[Detected]:
    """A bare PMIx launcher (prun, PRRTE): rank and namespace only; the size is not exported."""
    r = EnvReader(env, "pmix")
    if not r.has("PMIX_RANK", "PMIX_NAMESPACE"):
        return None
    d = Detected(
        source="pmix",
        launcher_rank=r.int("PMIX_RANK"),
        launchers=None,  # PMIx serves the job size through its API, not the environment
        local_launcher_rank=None,
        local_launchers=None,
    )
    d.notes.append("PMIx exports no job size: pass --nnodes N (one `gradwire run` per node)")
    return _finish(d, r, r.str("PMIX_NAMESPACE"), "PMIx")
