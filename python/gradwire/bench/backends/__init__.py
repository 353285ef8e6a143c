"""The libraries `gradwire bench --backend` can measure, by name.

    gradwire         gradwire through torch.distributed
    gloo             torch's gloo through torch.distributed (same calls, same tensors)
    gradwire-native  gradwire through gradwire.comm on numpy arrays
    mpi              MPI through mpi4py on numpy arrays (run under mpirun)

>>> backend_class("gloo").redops == frozenset({"sum", "prod", "min", "max"})
True
"""

from __future__ import annotations

import importlib
from typing import Type

from gradwire.bench.backends.base import Backend, Call
from gradwire.bench.errors import BenchUsageError

_CLASSES = {
    "gradwire": ("gradwire.bench.backends.torch_dist", "GradwireTorch"),
    "gloo": ("gradwire.bench.backends.torch_dist", "GlooTorch"),
    "gradwire-native": ("gradwire.bench.backends.native", "NativeBackend"),
    "mpi": ("gradwire.bench.backends.mpi", "MpiBackend"),
}
BACKENDS = tuple(_CLASSES)

__all__ = ["BACKENDS", "Backend", "Call", "backend_class", "open_backend"]


def backend_class(name: str) -> Type[Backend]:
    """The class measuring `name` (importing it does not initialize the library)."""
    if name not in _CLASSES:
        raise BenchUsageError(f"unknown backend '{name}' (one of {', '.join(BACKENDS)})")
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(module), cls)


def open_backend(name: str, rank: int, size: int, timeout: float) -> Backend:
    """Initialize `name` for this process. For mpi, rank and size come from MPI itself."""
    cls = backend_class(name)
    return cls() if name == "mpi" else cls(rank, size, timeout)
