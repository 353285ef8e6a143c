"""`gradwire run [options] script.py args...`: the launcher's command line."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import List, Optional

from gradwire.launch.detect import DETECTORS, detect
from gradwire.launch.errors import LaunchError
from gradwire.launch.plan import make_plan

USAGE_EPILOG = """\
With no node options, the environment says how the job is laid out: torchrun, SLURM (srun),
OpenMPI / MPICH / Intel MPI / PMIx (mpirun), Kubeflow PyTorchJob and TrainJob, Volcano, or a
Kubernetes Indexed Job; otherwise the job is this machine alone. Run with --dry-run to see what
was detected and what every local rank gets. See docs/launching.md.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gradwire run",
        description="Launch a training script on this node or a cluster.",
        epilog=USAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def opt(*names, **kw):
        # torchrun spells options with underscores; accept both.
        extra = [
            "--" + n[2:].replace("-", "_") for n in names if n.startswith("--") and "-" in n[2:]
        ]
        p.add_argument(*names, *extra, **kw)

    opt("--nproc-per-node", metavar="N", help="worker processes per launcher: N or 'auto' (cores)")
    opt("--nnodes", type=int, metavar="N", help="number of nodes (one launcher each)")
    opt("--node-rank", type=int, metavar="R", help="this node's index, 0..nnodes-1")
    opt("--master-addr", metavar="HOST", help="host of node 0 (the rendezvous store)")
    opt("--master-port", type=int, metavar="PORT", help="rendezvous port (default 29500)")
    opt("--standalone", action="store_true", help="this machine alone; ignore the environment")
    opt(
        "--source",
        default="auto",
        choices=["auto", "none", *DETECTORS],
        help="which environment to read (default: detect)",
    )
    opt(
        "--max-restarts",
        type=int,
        default=0,
        metavar="K",
        help="restart the workers up to K times after a failure (default 0)",
    )
    opt(
        "--num-servers",
        type=int,
        default=0,
        metavar="S",
        help="also run S parameter-server shards beside launcher 0's workers; workers find "
        "them in GRADWIRE_PS_SERVERS (docs/parameter-server.md)",
    )
    opt(
        "--ps-mode",
        choices=["bsp", "asp", "ssp"],
        default="asp",
        help="parameter-server consistency mode (default asp)",
    )
    opt("--ps-staleness", type=int, default=0, metavar="K", help="SSP staleness bound")
    opt("--ps-checkpoint-dir", default="", metavar="DIR", help="parameter-server checkpoints")
    opt(
        "--ps-checkpoint-every",
        type=float,
        default=0.0,
        metavar="SEC",
        help="parameter-server checkpoint period (default: on demand only)",
    )
    opt(
        "--log-dir",
        metavar="DIR",
        help="also write each rank's output to DIR/attempt<k>/rank<r>.log",
    )
    opt(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour the rank labels (default: when writing to a terminal)",
    )
    opt(
        "--rdzv-timeout",
        type=float,
        default=300.0,
        metavar="SEC",
        help="how long to wait for the rendezvous and the other launchers (default 300)",
    )
    opt(
        "--term-timeout",
        type=float,
        default=15.0,
        metavar="SEC",
        help="after forwarding SIGTERM, wait this long before SIGKILL (default 15)",
    )
    opt(
        "--dry-run",
        action="store_true",
        help="print the detected environment and per-rank settings",
    )
    opt("-m", "--module", action="store_true", help="run the script as a module (python -m)")
    opt("--no-python", action="store_true", help="run the command directly, not through python")
    p.add_argument("script", help="the training script (or module / command)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return p


def command(opts) -> List[str]:
    if opts.no_python:
        return [opts.script, *opts.args]
    if opts.module:
        return [sys.executable, "-m", opts.script, *opts.args]
    return [sys.executable, opts.script, *opts.args]


def main(argv: Optional[List[str]] = None) -> int:
    opts = parser().parse_args(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    try:
        d = detect(env, source="none" if opts.standalone else opts.source)
        plan = make_plan(opts, d, env)
        cmd = command(opts)
        if opts.dry_run:
            from gradwire.launch.dryrun import report

            print(report(d, plan, cmd, env))
            return 0
        from gradwire.launch.agent import Agent

        return Agent(plan, cmd, opts, env, socket.gethostname()).run()
    except LaunchError as e:
        print(f"gradwire run: error: {e}", file=sys.stderr)
        return e.exit_code
