"""`gradwire run --num-servers S`: launcher 0 runs S parameter-server shards beside its workers.

The shards live for the whole job, across worker restarts (they hold the model); a shard that
dies is started again with the same shard id and port, so it resumes from its checkpoint and
write-ahead log (with --ps-checkpoint-dir) and workers reconnect to it. Their addresses reach
every launcher through the rendezvous store and every worker as GRADWIRE_PS_SERVERS.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Dict, List, Mapping, Optional

from gradwire.launch.output import say

KEY = "gw/ps/servers"
TOKEN_KEY = "gw/ps/token"


class ServerGroup:
    def __init__(self, num_servers: int, num_workers: int, host: str, opts, env: Mapping[str, str]):
        self.num_servers, self.num_workers, self.host = num_servers, num_workers, host
        self.env = dict(env, GRADWIRE_LAUNCHER_PID=str(os.getpid()))
        self.opts = dict(
            mode=opts.ps_mode,
            staleness=opts.ps_staleness,
            checkpoint_dir=opts.ps_checkpoint_dir or None,
            checkpoint_every=opts.ps_checkpoint_every,
            threads=4,
        )
        self.procs: Dict[int, object] = {}
        self.addresses: List[str] = [""] * num_servers

    def _spawn(self, shard: int, port: int) -> None:
        from gradwire.ps.server import spawn

        guard = [sys.executable, "-m", "gradwire.launch.orphan_guard"]
        proc, address = spawn(
            shard,
            self.num_servers,
            self.num_workers,
            host=self.host,
            port=port,
            env=self.env,
            prefix=guard,
            **self.opts,
        )
        self.procs[shard], self.addresses[shard] = proc, address

    def start(self) -> List[str]:
        for s in range(self.num_servers):
            self._spawn(s, 0)
        say(f"parameter servers: {', '.join(self.addresses)} ({self.opts['mode']})")
        return self.addresses

    def revive(self) -> None:
        """Restarts every shard that died, on its old port."""
        for s, p in list(self.procs.items()):
            if p.poll() is None:
                continue
            p.stdout.close()
            say(f"parameter server shard {s} exited with code {p.returncode}; restarting it")
            port = int(self.addresses[s].rsplit(":", 1)[1])
            try:
                self._spawn(s, port)
            except RuntimeError as e:
                say(f"parameter server shard {s} did not restart ({e}); will retry")

    def stop(self, grace: float = 10.0) -> None:
        import subprocess

        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if not p.stdout.closed:
                p.stdout.close()


def share(rdzv, group: Optional[ServerGroup]) -> str:
    """Launcher 0 publishes its shards' addresses; the others wait for them."""
    if group is not None:
        value = ",".join(group.addresses)
        rdzv.publish(KEY, value)
        return value
    return rdzv.lookup(KEY)


def job_token(rdzv, launcher_rank: int) -> str:
    """The job secret of a parameter-server job run by several launchers without
    GRADWIRE_AUTH_TOKEN: launcher 0 draws it and shares it through the rendezvous store (which
    keeps out other jobs, not whoever can reach the store). The shards need one to listen
    beyond loopback, and the workers the same one to reach them."""
    if launcher_rank == 0:
        token = secrets.token_hex(32)
        rdzv.publish(TOKEN_KEY, token)
        return token
    return rdzv.lookup(TOKEN_KEY)
