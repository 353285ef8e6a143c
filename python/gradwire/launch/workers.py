"""This launcher's workers: spawn, watch, signal, stop.

Each worker gets its own session (process group), so a signal to the launcher's terminal
group reaches the workers once, through the launcher, and stopping a worker also stops what
it started. Each worker also dies with the launcher itself (orphan_guard), however it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from gradwire.launch.output import Output


@dataclass
class Exit:
    rank: int
    code: int  # shell convention: 128 + N for death by signal N

    def describe(self) -> str:
        if self.code > 128:
            try:
                name = signal.Signals(self.code - 128).name
            except ValueError:
                name = f"signal {self.code - 128}"
            return f"rank {self.rank} was killed by {name} (exit code {self.code})"
        return f"rank {self.rank} exited with code {self.code}"


def _code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class WorkerGroup:
    def __init__(
        self, cmd: List[str], envs: Dict[int, Dict[str, str]], output: Output, attempt: int
    ):
        self.cmd, self.envs, self.output, self.attempt = cmd, envs, output, attempt
        self.procs: Dict[int, subprocess.Popen] = {}
        self.exits: List[Exit] = []  # in the order they were noticed

    def start(self) -> None:
        # Must run on the thread that outlives the workers (the agent's main thread): the death
        # signal set by orphan_guard fires when the thread that forked the worker exits.
        guard = [sys.executable, "-m", "gradwire.launch.orphan_guard"]
        for rank, env in self.envs.items():
            p = subprocess.Popen(
                guard + self.cmd,
                env=dict(env, GRADWIRE_LAUNCHER_PID=str(os.getpid())),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self.procs[rank] = p
            self.output.attach(rank, self.attempt, p.stdout, p.stderr)

    def poll(self) -> None:
        done = {e.rank for e in self.exits}
        for rank, p in sorted(self.procs.items()):
            if rank not in done and p.poll() is not None:
                self.exits.append(Exit(rank, _code(p.returncode)))

    def first_failure(self) -> Optional[Exit]:
        return next((e for e in self.exits if e.code != 0), None)

    def all_succeeded(self) -> bool:
        return len(self.exits) == len(self.procs) and self.first_failure() is None

    def running(self) -> List[int]:
        return [r for r, p in self.procs.items() if p.poll() is None]

    def send(self, sig: int) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """Send `sig`, wait up to `grace` seconds, then SIGKILL what is left."""
        self.send(sig)
        deadline = time.monotonic() + grace
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running():
            self.send(signal.SIGKILL)
        for p in self.procs.values():
            p.wait()
        self.poll()
        self.output.drain()
