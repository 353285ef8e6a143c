"""gradwire: native-accelerated collective communication for PyTorch.

``import gradwire`` registers the torch.distributed backend "gradwire"; then::

    dist.init_process_group("gradwire")

runs every standard collective through gradwire's engine.
"""

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

try:
    import torch  # noqa: F401
except ImportError:  # the engine also serves numpy users without torch
    _HAS_TORCH = False
else:
    _HAS_TORCH = True
    from gradwire.backend import ProcessGroupGradwire, register

    register()
    from gradwire import compression, hooks
    from gradwire.compression import Options

    __all__ += ["ProcessGroupGradwire", "Options", "compression", "hooks"]


def stats(group=None) -> dict:
    """Ops and bytes moved by a gradwire process group on this rank (default: the world)."""
    import torch.distributed as dist

    pg = group if group is not None else dist.distributed_c10d._get_default_group()
    if not isinstance(pg, ProcessGroupGradwire):
        raise TypeError(f"group {pg!r} is not a gradwire process group")
    return pg.stats()
