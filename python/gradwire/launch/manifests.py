"""Kubernetes objects for a gradwire job, as plain dicts (k8s.py prints them as YAML).

Three flavours, each with a Secret holding the job's auth token:
  indexed-job  headless Service + Indexed Job (core Kubernetes only)
  pytorchjob   Kubeflow training-operator PyTorchJob (Master + Workers)
  jobset       JobSet with one replicated Indexed Job (kubernetes-sigs/jobset)

Pods run `gradwire run`, which reads its place in the job from what Kubernetes puts in the
pod (JOB_COMPLETION_INDEX and the pod's DNS name, or the operator's variables). Pods start
at different times, so the launcher waits up to RDZV_TIMEOUT for the others, and the Services
publish not-ready pods' addresses so that peers resolve before any readiness probe passes.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from gradwire.launch.errors import LaunchError

FLAVORS = ("indexed-job", "pytorchjob", "jobset")
RDZV_TIMEOUT = 900  # seconds: image pulls and scheduling delays between pods
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class JobSpec:
    name: str
    nodes: int
    nproc_per_node: int
    image: str
    command: List[str]  # script and its arguments
    flavor: str = "indexed-job"
    servers: int = 0
    cpu: Optional[str] = None
    memory: Optional[str] = None
    gpus: int = 0
    namespace: Optional[str] = None
    port: int = 29500
    max_restarts: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(32))

    def validate(self) -> None:
        # Pod host names are <name>-<index> (JobSet: <name>-node-0-<index>): DNS labels <= 63.
        if not _NAME.match(self.name) or len(self.name) > 40:
            raise LaunchError(
                f"--name {self.name!r}: use at most 40 lowercase letters, digits and '-', "
                "starting with a letter (it prefixes the pods' DNS names)"
            )
        if self.flavor not in FLAVORS:
            raise LaunchError(f"--flavor {self.flavor}: choose one of {', '.join(FLAVORS)}")
        if self.nodes < 1 or self.nproc_per_node < 1:
            raise LaunchError("--nodes and --nproc-per-node must be >= 1")
        if not 0 <= self.servers < self.nodes * self.nproc_per_node:
            raise LaunchError(f"--servers {self.servers}: must leave at least one worker rank")
        if not self.command:
            raise LaunchError("give the training script (and its arguments) after the options")

    @property
    def secret_name(self) -> str:
        return f"{self.name}-auth"


def _meta(spec: JobSpec, name: str) -> Dict:
    m: Dict = {"name": name, "labels": {"app.kubernetes.io/part-of": "gradwire",
                                         "gradwire.dev/job": spec.name}}  # fmt: skip
    if spec.namespace:
        m["namespace"] = spec.namespace
    return m


def _run_command(spec: JobSpec, with_nnodes: bool) -> List[str]:
    cmd = ["gradwire", "run", "--nproc-per-node", str(spec.nproc_per_node)]
    if with_nnodes:
        cmd += ["--nnodes", str(spec.nodes)]
    cmd += ["--master-port", str(spec.port), "--rdzv-timeout", str(RDZV_TIMEOUT)]
    if spec.max_restarts:
        cmd += ["--max-restarts", str(spec.max_restarts)]
    if spec.servers:
        cmd += ["--num-servers", str(spec.servers)]
    return cmd + list(spec.command)


def _resources(spec: JobSpec) -> Dict:
    requests: Dict[str, str] = {}
    limits: Dict[str, str] = {}
    if spec.cpu:
        requests["cpu"] = spec.cpu
    if spec.memory:
        requests["memory"] = limits["memory"] = spec.memory
    if spec.gpus:
        limits["nvidia.com/gpu"] = str(spec.gpus)
    out: Dict = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _pod_spec(spec: JobSpec, container: str, port_name: str, with_nnodes: bool) -> Dict:
    c: Dict = {
        "name": container,
        "image": spec.image,
        "command": _run_command(spec, with_nnodes),
        "env": [{"name": "GRADWIRE_AUTH_TOKEN",
                 "valueFrom": {"secretKeyRef": {"name": spec.secret_name, "key": "token"}}}],
        "ports": [{"name": port_name, "containerPort": spec.port, "protocol": "TCP"}],
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }  # fmt: skip
    res = _resources(spec)
    if res:
        c["resources"] = res
    return {
        "restartPolicy": "Never",  # restarts happen in place, by `gradwire run --max-restarts`
        "terminationGracePeriodSeconds": 30,  # SIGTERM reaches the workers through the launcher
        "containers": [c],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }


def _indexed_job_spec(spec: JobSpec, pod: Dict) -> Dict:
    return {
        "completionMode": "Indexed",
        "completions": spec.nodes,
        "parallelism": spec.nodes,
        "backoffLimit": 0,
        # an evicted pod is replaced rather than failing the job
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                }
            ]
        },
        "template": {"metadata": {"labels": _meta(spec, "")["labels"]}, "spec": pod},
    }


def secret(spec: JobSpec) -> Dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, spec.secret_name),
        "type": "Opaque",
        "stringData": {"token": spec.token},
    }


def indexed_job(spec: JobSpec) -> List[Dict]:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, spec.name),
        "spec": {
            "clusterIP": "None",  # headless: one DNS name per pod, <name>-<index>.<name>
            "publishNotReadyAddresses": True,
            "selector": {"batch.kubernetes.io/job-name": spec.name},
            "ports": [{"name": "rdzv", "port": spec.port, "targetPort": spec.port}],
        },
    }
    pod = _pod_spec(spec, "gradwire", "rdzv", with_nnodes=True)
    pod["subdomain"] = spec.name
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(spec, spec.name),
        "spec": _indexed_job_spec(spec, pod),
    }
    return [secret(spec), service, job]


def pytorchjob(spec: JobSpec) -> List[Dict]:
    # The operator finds the container named "pytorch" and its port "pytorchjob-port", and
    # sets MASTER_ADDR/MASTER_PORT, RANK (the pod index) and PET_* from them.
    pod = _pod_spec(spec, "pytorch", "pytorchjob-port", with_nnodes=False)
    template = {"metadata": {"labels": _meta(spec, "")["labels"]}, "spec": pod}
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template}}
    if spec.nodes > 1:
        replicas["Worker"] = {
            "replicas": spec.nodes - 1,
            "restartPolicy": "Never",
            "template": template,
        }
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _meta(spec, spec.name),
        "spec": {
            "nprocPerNode": str(spec.nproc_per_node),
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0},
            "pytorchReplicaSpecs": replicas,
        },
    }
    return [secret(spec), job]


def jobset(spec: JobSpec) -> List[Dict]:
    # JobSet names pods <name>-node-0-<index> in the subdomain <name> (its headless Service).
    pod = _pod_spec(spec, "gradwire", "rdzv", with_nnodes=True)
    js = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": _meta(spec, spec.name),
        "spec": {
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "failurePolicy": {"maxRestarts": 0},
            "successPolicy": {"operator": "All", "targetReplicatedJobs": ["node"]},
            "replicatedJobs": [
                {"name": "node", "replicas": 1,
                 "template": {"spec": _indexed_job_spec(spec, pod)}}
            ],
        },
    }  # fmt: skip
    return [secret(spec), js]


BUILDERS = {"indexed-job": indexed_job, "pytorchjob": pytorchjob, "jobset": jobset}


def build(spec: JobSpec) -> List[Dict]:
    spec.validate()
    return BUILDERS[spec.flavor](spec)
