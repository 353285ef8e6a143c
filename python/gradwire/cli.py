"""The `gradwire` command: one entry point, one subcommand per area.

    gradwire info                 build and environment facts
    gradwire run ...              launcher (gradwire.launch)
    gradwire bench ...            microbenchmarks (gradwire.bench)
    gradwire k8s ...              Kubernetes manifests (gradwire.launch.k8s)
    gradwire ps serve ...         one parameter-server shard (gradwire.ps.server)

Each subcommand lives in its own module and receives the remaining arguments.
"""

from __future__ import annotations

import importlib
import sys
from typing import List, Optional

# subcommand -> (module, function, one-line help)
SUBCOMMANDS = {
    "run": ("gradwire.launch.cli", "main", "launch a training script on this node or a cluster"),
    "bench": ("gradwire.bench.cli", "main", "run collective microbenchmarks"),
    "k8s": ("gradwire.launch.k8s", "main", "print Kubernetes manifests for a job"),
    "ps": ("gradwire.ps.server", "main", "parameter server: `gradwire ps serve ...`"),
    "info": ("gradwire.cli", "info", "print build and environment facts"),
}


def info(argv: List[str]) -> int:
    import platform

    import gradwire
    from gradwire import _C

    print(f"gradwire {gradwire.__version__}")
    print(f"python {platform.python_version()} on {platform.machine()}")
    print(f"native core: {_C.__file__}")
    print(f"CUDA kernels compiled: {bool(getattr(_C, 'cuda_compiled', False))}")
    try:
        import torch

        from gradwire import _futures

        print(
            f"torch {torch.__version__}; typed futures for C++ comm hooks: {_futures.TYPED_FUTURES}"
        )
    except ImportError:
        print("torch: not installed (the numpy-level engine still works)")
    return 0


def _usage() -> str:
    lines = ["usage: gradwire <command> [args...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"gradwire: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = SUBCOMMANDS[name]
    try:
        fn = getattr(importlib.import_module(module), func)
    except ImportError as e:
        print(f"gradwire {name}: not available in this build ({e})", file=sys.stderr)
        return 2
    return int(fn(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
