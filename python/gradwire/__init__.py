"""gradwire: native-accelerated collective communication for PyTorch.

The torch.distributed backend "gradwire" is registered by ``import torch`` itself (torch loads
the package's ``torch.backends`` entry point unless TORCH_DEVICE_BACKEND_AUTOLOAD=0) and by
``import gradwire``; then::

    dist.init_process_group("gradwire")

runs every standard collective through gradwire's engine.

Importing the package is cheap: it registers the name and loads the engine (gradwire._C, the
ProcessGroup, compression, hooks) when a group is created or one of those names is first used.
"""

import importlib

from gradwire import _registry
from gradwire.errors import (
    GradwireError,
    InvalidArgumentError,
    MismatchError,
    PeerError,
    ProtocolError,
    TimeoutError,
)

__version__ = "0.1.0"

__all__ = [
    "GradwireError",
    "InvalidArgumentError",
    "MismatchError",
    "PeerError",
    "ProtocolError",
    "TimeoutError",
    "stats",
    "__version__",
]

# Names loaded on first access (PEP 562): attribute -> module that defines it.
_LAZY = {
    "ProcessGroupGradwire": "gradwire.backend",
    "Options": "gradwire.compression",
}
# Submodules reachable as attributes of the package without importing them first.
_SUBMODULES = ("backend", "compression", "hooks", "comm", "ps", "work", "_C")

register = _registry.register
# The engine also serves numpy users without torch; with torch, "gradwire" is now registered.
_HAS_TORCH = register()
if _HAS_TORCH:
    __all__ += ["ProcessGroupGradwire", "Options", "compression", "hooks"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


def stats(group=None) -> dict:
    """Ops and bytes moved by a gradwire process group on this rank (default: the world)."""
    import torch.distributed as dist

    from gradwire.backend import ProcessGroupGradwire

    pg = group if group is not None else dist.distributed_c10d._get_default_group()
    if not isinstance(pg, ProcessGroupGradwire):
        raise TypeError(f"group {pg!r} is not a gradwire process group")
    return pg.stats()
