"""Exceptions raised by gradwire. Every message names the rank and the op involved."""

import builtins


class GradwireError(RuntimeError):
    """Base class of every gradwire error."""


class InvalidArgumentError(GradwireError, ValueError):
    """Bad input (dtype, op, sizes, ranks), detected before anything was sent."""


class TimeoutError(GradwireError, builtins.TimeoutError):  # noqa: A001 - deliberate shadowing
    """An op did not complete within the process-group timeout; says which ranks are missing."""


class PeerError(GradwireError):
    """A peer died, closed its connection or aborted the communicator."""


class MismatchError(GradwireError):
    """Ranks called different collectives (op, dtype, count or root) at the same point."""


class ProtocolError(GradwireError):
    """A malformed frame or a failed authentication handshake."""
