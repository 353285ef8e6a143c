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


def _build_record():
    """gradwire._build_info, written by the build; None when running from a source tree."""
    try:
        from gradwire import _build_info
    except ImportError:
        return None
    return _build_info


def _torch_adapter_line(build) -> str:
    """Whether the torch adapter (typed futures for torch's C++ comm hooks) is usable, and if not,
    why and what to run."""
    try:
        import torch
    except ImportError:
        if build is not None and build.TORCH_ADAPTER == "built":
            return f"built against torch {build.TORCH_VERSION}; unused: torch is not installed"
        return "not built (GRADWIRE_TORCH_ADAPTER=OFF at build time); torch is not installed"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reason is printed here instead
        from gradwire import _futures
    if _futures.TYPED_FUTURES:
        return f"present (built against torch {torch.__version__})"
    return (
        f"MISSING: {_futures.ADAPTER_PROBLEM}; torch's built-in C++ comm hooks "
        f"(_register_builtin_comm_hook) fail until you {_futures.REBUILD_HINT}"
    )


def _cuda_line(build) -> str:
    state = build.CUDA_KERNELS if build is not None else "unknown"
    why = {"off": "not built (GRADWIRE_CUDA=OFF, the default of pip builds)"}.get(state, state)
    return f"{why}; the backend stages CUDA tensors through host memory"


def _mpi4py_line() -> str:
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:
        return (
            "not installed: the benchmarks' OpenMPI peer (`gradwire bench --backend mpi`, "
            "bench/compare) is unavailable; to add it: apt-get install -y openmpi-bin "
            "libopenmpi-dev && pip install mpi4py"
        )
    return f"present ({importlib.metadata.version('mpi4py')})"


def info(argv: List[str]) -> int:
    import platform

    import gradwire
    from gradwire import _C

    build = _build_record()
    print(f"gradwire {gradwire.__version__}")
    print(f"python {platform.python_version()} on {platform.machine()}")
    print(f"native core: {_C.__file__}")
    try:
        import torch

        print(f"torch: {torch.__version__}")
    except ImportError:
        print("torch: not installed (the numpy-level API, gradwire.comm, still works)")
    print("optional parts:")
    print(f"  torch adapter: {_torch_adapter_line(build)}")
    print(f"  CUDA kernels: {_cuda_line(build)}")
    print(f"  mpi4py: {_mpi4py_line()}")
    if build is None:
        print("  (no build record: gradwire._build_info is missing, not an installed build)")
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
