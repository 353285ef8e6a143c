"""Errors the benchmark reports to its user without a traceback."""

from __future__ import annotations


class BenchUsageError(ValueError):
    """Bad command-line input or an environment that cannot run the requested benchmark
    (the message says what to change)."""


class BenchRunError(RuntimeError):
    """A benchmark world failed or timed out (the message carries the ranks' output)."""
