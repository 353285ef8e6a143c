"""`gradwire run`: launch a training script on a laptop, a SLURM or MPI allocation, or Kubernetes.

The pieces, one per module:

    detect/       what the environment says (torchrun, SLURM, MPI, Kubernetes flavours, Volcano)
    plan.py       detection + command-line options -> who runs which ranks
    rendezvous.py the launchers meet in a torch TCPStore; rounds, failures, restarts
    address.py    which interface this node's workers advertise
    workers.py    spawning the node's workers, signals, termination
    output.py     per-rank labelled (coloured) output and log files
    agent.py      the loop that ties them together
    dryrun.py     `gradwire run --dry-run`
    k8s.py        `gradwire k8s manifest` (manifests.py builds the objects)

See docs/launching.md.
"""
