"""Exec wrapper for workers: a worker dies with its launcher, even a SIGKILLed one.

The launcher starts each worker as ``python -m gradwire.launch.orphan_guard CMD...``: this asks
the kernel to SIGKILL the process when its parent (the launcher) exits (PR_SET_PDEATHSIG, kept
across exec), checks the launcher did not exit already, and then becomes CMD. Without it, a
launcher killed by the OOM killer or a SIGKILL would leave its workers running on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m gradwire.launch.orphan_guard CMD [ARGS...]")
    launcher = int(os.environ.get("GRADWIRE_LAUNCHER_PID", "0") or 0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no guard, the launcher's signals still apply
        pass
    if launcher and os.getppid() != launcher:
        os._exit(1)  # the launcher died before the guard was armed
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
