"""`gradwire k8s manifest ...`: print the Kubernetes objects for a gradwire job as YAML.

    gradwire k8s manifest --name bert --nodes 4 --nproc-per-node 2 --image REG/IMG:TAG \\
        [--flavor indexed-job|pytorchjob|jobset] [--servers S] [--cpu 4 --memory 16Gi --gpus 1] \\
        train.py --epochs 3 | kubectl apply -f -
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from gradwire.launch.errors import LaunchError
from gradwire.launch.manifests import FLAVORS, JobSpec, build


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradwire k8s", description="Kubernetes manifests.")
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("manifest", help="print the YAML of a job: Secret, Service, workload")
    m.add_argument("--name", required=True, help="job name (prefixes every object and pod)")
    m.add_argument("--nodes", type=int, required=True, help="pods, one `gradwire run` each")
    m.add_argument("--nproc-per-node", type=int, default=1, help="worker processes per pod")
    m.add_argument("--image", required=True, help="container image with gradwire installed")
    m.add_argument("--flavor", choices=FLAVORS, default="indexed-job")
    m.add_argument("--servers", type=int, default=0, help="ranks reserved as servers")
    m.add_argument("--cpu", help="CPU request per pod, e.g. 4 or 3500m")
    m.add_argument("--memory", help="memory request and limit per pod, e.g. 16Gi")
    m.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu limit per pod")
    m.add_argument("--namespace", help="namespace of every object (default: kubectl's)")
    m.add_argument("--port", type=int, default=29500, help="rendezvous port")
    m.add_argument("--max-restarts", type=int, default=0, help="in-place worker restarts")
    m.add_argument("command", nargs=argparse.REMAINDER, help="the training script and its args")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    import yaml

    a = parser().parse_args(sys.argv[1:] if argv is None else argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    spec = JobSpec(
        name=a.name, nodes=a.nodes, nproc_per_node=a.nproc_per_node, image=a.image,
        command=command,
        flavor=a.flavor, servers=a.servers, cpu=a.cpu, memory=a.memory, gpus=a.gpus,
        namespace=a.namespace, port=a.port, max_restarts=a.max_restarts,
    )  # fmt: skip
    try:
        docs = build(spec)
    except LaunchError as e:
        print(f"gradwire k8s: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0
