"""Futures for Work objects.

torch's C++ comm hooks (``_register_builtin_comm_hook``) read a Work's future as a typed
``Future[List[Tensor]]``; a ``torch.futures.Future`` completed from Python holds an opaque Python
object instead. The optional native helper ``gradwire._torch_future`` (built against the installed
torch) creates typed futures; without it we fall back to Python futures, which serve everything
except those C++ hooks.
"""

from __future__ import annotations

from typing import Callable, List

import torch

try:  # built only when torch was importable at build time
    from gradwire import _torch_future as _native
except ImportError:  # pragma: no cover - depends on the build
    _native = None

TYPED_FUTURES = _native is not None


def new_future() -> torch.futures.Future:
    """An incomplete future whose value will be a list of tensors."""
    if _native is not None:
        return _native.new_tensor_list_future()
    return torch.futures.Future()


def complete(fut: torch.futures.Future, tensors: List[torch.Tensor]) -> None:
    """Complete with a result; callbacks run inline on the calling thread."""
    if _native is not None:
        _native.complete(fut, tensors)
    else:
        fut.set_result(tensors)


def fail(fut: torch.futures.Future, error: BaseException) -> None:
    """Complete with an error; ``fut.wait()`` raises it (as its own type with the native helper)."""
    if _native is not None:
        _native.fail(fut, error)
    else:
        fut.set_exception(error)


def completed(tensors: List[torch.Tensor]) -> torch.futures.Future:
    fut = new_future()
    complete(fut, tensors)
    return fut


OnDone = Callable[[BaseException | None], None]
