"""Futures for Work objects.

torch's C++ comm hooks (``_register_builtin_comm_hook``) read a Work's future as a typed
``Future[List[Tensor]]``; a ``torch.futures.Future`` completed from Python holds an opaque Python
object instead. The torch adapter ``gradwire._torch_future``, compiled against torch's C++ API,
creates typed futures. torch's C++ ABI changes between releases, so the adapter is used only when
the torch running now is the one it was built against (recorded by the build in
``gradwire._build_info``); otherwise, or when the build had it turned off, a warning says why and
what to run, and Python futures serve everything except those C++ hooks.
"""

from __future__ import annotations

import warnings
from typing import Callable, List, Optional, Tuple

import torch

REBUILD_HINT = (
    "reinstall gradwire from source with this torch installed: "
    "pip install --force-reinstall --no-deps --no-cache-dir <gradwire source directory or sdist>"
)


def _same_torch(built_version: str, built_git: str) -> bool:
    running_git = getattr(torch.version, "git_version", "") or ""
    if built_git and running_git:
        return built_git == running_git
    return built_version.split("+")[0] == torch.__version__.split("+")[0]


def _load_adapter() -> Tuple[Optional[object], Optional[str]]:
    """(the adapter module, None), or (None, why it is not used)."""
    try:
        from gradwire import _build_info as build
    except ImportError:
        build = None  # not an installed build (e.g. a source tree on sys.path): no record
    if build is not None:
        if build.TORCH_ADAPTER != "built":
            return None, "not built (GRADWIRE_TORCH_ADAPTER=OFF at build time)"
        if not _same_torch(build.TORCH_VERSION, build.TORCH_GIT_VERSION):
            return None, (
                f"built against torch {build.TORCH_VERSION}, but this process runs torch "
                f"{torch.__version__} (torch's C++ ABI differs between releases)"
            )
    try:
        from gradwire import _torch_future
    except ImportError as e:
        return None, f"cannot be loaded ({e})"
    return _torch_future, None


_native, ADAPTER_PROBLEM = _load_adapter()
TYPED_FUTURES = _native is not None
if ADAPTER_PROBLEM is not None:
    warnings.warn(
        f"gradwire's torch adapter is unusable: {ADAPTER_PROBLEM}. Until it is rebuilt, torch's "
        "built-in C++ comm hooks (DistributedDataParallel._register_builtin_comm_hook) fail on "
        f"the gradwire backend. To rebuild it, {REBUILD_HINT}",
        RuntimeWarning,
        stacklevel=2,
    )


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
