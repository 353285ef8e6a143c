"""The launcher's one exception type: a problem the user can fix, said in one message."""

from __future__ import annotations


class LaunchError(Exception):
    """A configuration or rendezvous problem. `exit_code` is what `gradwire run` exits with."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
