"""Starting a benchmark world ourselves: N local processes (torch-style env rendezvous) or
`mpirun -n N` for the MPI backend. Each rank re-runs `python -m gradwire.bench` with the same
arguments; GRADWIRE_BENCH_CHILD tells it that it is a rank, GRADWIRE_BENCH_JSON where rank 0
saves its rows.

Nothing hangs: a world that outlives its deadline is killed and reported, and when one rank
fails the others get a short grace period to fail on their own before they are killed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence

from gradwire.bench.errors import BenchRunError, BenchUsageError

CHILD_ENV = "GRADWIRE_BENCH_CHILD"
JSON_ENV = "GRADWIRE_BENCH_JSON"
_GRACE = 10.0  # seconds the other ranks get after one rank failed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _module_cmd(argv: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", "gradwire.bench", *argv]


def launch_local(argv: Sequence[str], np_: int, timeout: float, json_path: str) -> None:
    """Run `np_` ranks on this host; rank 0 shares our stdout/stderr, the others' stderr is kept
    and shown if the world fails."""
    port = free_port()
    procs, logs = [], []
    try:
        for rank in range(np_):
            env = dict(os.environ)
            env.update(
                {
                    CHILD_ENV: "1",
                    JSON_ENV: json_path,
                    "RANK": str(rank),
                    "LOCAL_RANK": str(rank),
                    "WORLD_SIZE": str(np_),
                    "LOCAL_WORLD_SIZE": str(np_),
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port),
                }
            )
            log = None if rank == 0 else tempfile.TemporaryFile(mode="w+")
            logs.append(log)
            out = None if rank == 0 else subprocess.DEVNULL
            procs.append(subprocess.Popen(_module_cmd(argv), env=env, stdout=out, stderr=log))
        _wait(procs, timeout, f"local world of {np_} ranks")
    except BenchRunError as e:
        details = []
        for rank, log in enumerate(logs):
            if log is not None:
                log.seek(0)
                text = log.read().strip()
                if text:
                    details.append(f"--- rank {rank} stderr (last lines) ---\n" + _tail(text))
        raise BenchRunError("\n".join([str(e)] + details)) from None
    finally:
        for p in procs:
            _kill(p)
        for log in logs:
            if log is not None:
                log.close()


def mpirun_command(np_: int, extra: str = "") -> List[str]:
    """mpirun for a local world that may have more ranks than cores."""
    exe = shutil.which("mpirun")
    if exe is None:
        from gradwire.bench.backends.mpi import INSTALL_HINT

        raise BenchUsageError(f"mpirun not found; {INSTALL_HINT}")
    cmd = [exe, "-n", str(np_), "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd + shlex.split(extra)


def launch_mpi(argv: Sequence[str], np_: int, timeout: float, json_path: str, extra: str) -> None:
    """Run the ranks under mpirun (which forwards every rank's output; only rank 0 prints)."""
    env = dict(os.environ, **{CHILD_ENV: "1", JSON_ENV: json_path})
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # let MPI say who is who
        env.pop(key, None)
    proc = subprocess.Popen(mpirun_command(np_, extra) + _module_cmd(argv), env=env)
    try:
        _wait([proc], timeout, f"mpirun world of {np_} ranks")
    finally:
        _kill(proc)


def _wait(procs: List[subprocess.Popen], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    failed_at = None
    while True:
        codes: Dict[int, int] = {r: p.poll() for r, p in enumerate(procs)}
        running = [r for r, c in codes.items() if c is None]
        bad = {r: c for r, c in codes.items() if c not in (None, 0)}
        if not running:
            if bad:
                raise BenchRunError(f"{what} failed: exit codes {bad}")
            return
        now = time.monotonic()
        if bad and failed_at is None:
            failed_at = now
        if failed_at is not None and now - failed_at > _GRACE:
            raise BenchRunError(f"{what} failed: exit codes {bad}; ranks {running} were killed")
        if now > deadline:
            raise BenchRunError(
                f"{what} did not finish within {timeout:g}s (--timeout); ranks {running} "
                "were still running and were killed"
            )
        time.sleep(0.05)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])
