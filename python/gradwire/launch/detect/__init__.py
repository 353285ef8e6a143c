"""Environment detection: which system started this `gradwire run`, and what it says.

Detectors run in order; the first that recognises its variables wins. MPI comes before SLURM
because `mpirun` inside an allocation inherits the allocation's SLURM_* variables.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional

from gradwire.launch.detect import indexed_job, kubeflow, mpi, slurm, torchrun, volcano
from gradwire.launch.detect.detected import Detected, Host
from gradwire.launch.errors import LaunchError

DETECTORS: Dict[str, Callable[[Mapping[str, str], Host], Optional[Detected]]] = {
    "torchrun": torchrun.detect,
    "openmpi": mpi.detect_openmpi,
    "pmi": mpi.detect_pmi,
    "slurm": slurm.detect,
    "pmix": mpi.detect_pmix,
    "pytorchjob": kubeflow.detect_pytorchjob,
    "trainjob": kubeflow.detect_trainjob,
    "volcano": volcano.detect,
    "indexed-job": indexed_job.detect,
}

__all__ = ["DETECTORS", "Detected", "Host", "detect"]


def local(env: Mapping[str, str]) -> Detected:
    d = Detected(source="local", master_addr="127.0.0.1")
    if env.get("SLURM_JOB_ID") and not env.get("SLURM_STEP_ID"):
        d.notes.append(
            "inside a SLURM batch script, not an srun task: this runs on this node only; "
            "use `srun gradwire run ...` to use the whole allocation"
        )
    return d


def detect(env: Mapping[str, str], host: Optional[Host] = None, source: str = "auto") -> Detected:
    """The first detector that recognises `env`, or a single local node.

    `source` forces one detector ("slurm", ...) or none at all ("none").
    """
    host = host or Host()
    if source == "none":
        return local(env)
    if source != "auto":
        if source not in DETECTORS:
            raise LaunchError(
                f"--source {source}: unknown; choose auto, none, {', '.join(DETECTORS)}"
            )
        found = DETECTORS[source](env, host)
        if found is None:
            raise LaunchError(f"--source {source}: its environment variables are not set here")
        return found
    for fn in DETECTORS.values():
        found = fn(env, host)
        if found is not None:
            return found
    return local(env)
