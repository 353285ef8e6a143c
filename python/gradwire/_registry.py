"""The name "gradwire" in torch.distributed's backend table, without loading the engine.

Two callers: ``import gradwire`` and torch's device-backend autoload. The package declares
``autoload`` under the ``torch.backends`` entry-point group, and ``import torch`` calls every
such entry point while torch itself is still being imported (torch.distributed is complete by
then; the rest of torch may not be). So this module imports nothing of gradwire at load time,
and registration only records a creator: the engine (gradwire.backend, gradwire._C) is imported
the first time torch creates a gradwire group.

Either caller may run first, and one may run inside the other: ``import gradwire`` imports
torch, whose autoload registers before gradwire's own call, which then finds the name taken.
"""

from __future__ import annotations

NAME = "gradwire"


def _create_backend(dist_opts, pg_opts=None):
    """The creator torch calls for each new gradwire group; loads the engine on first use."""
    from gradwire.backend import _create_backend as create

    return create(dist_opts, pg_opts)


def register() -> bool:
    """Register "gradwire" with torch.distributed; True when torch.distributed is usable.

    Registering again is a no-op: the first registration (from the autoload or from
    ``import gradwire``) stays.
    """
    try:
        import torch.distributed as dist
    except ImportError:  # numpy-only installs: gradwire.comm works without torch
        return False
    if not dist.is_available():  # a torch built without distributed support
        return False
    if NAME.upper() in getattr(dist.Backend, "_plugins", {}):
        return True
    dist.Backend.register_backend(NAME, _create_backend, extended_api=True, devices=["cpu", "cuda"])
    return True


def autoload() -> None:
    """The ``torch.backends`` entry point, run by ``import torch``.

    torch turns an exception from an entry point into a failed ``import torch``; a gradwire
    problem must not cost users torch itself, so a failure here is logged and leaves the name
    unregistered (``import gradwire`` then registers it or raises the real error).
    """
    try:
        register()
    except Exception as e:  # noqa: BLE001 - see the docstring
        import logging

        logging.getLogger("gradwire").warning(
            "gradwire: torch backend autoload failed (%s: %s); `import gradwire` to register "
            "the backend explicitly",
            type(e).__name__,
            e,
        )
