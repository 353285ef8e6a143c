"""`gradwire ps serve`: one parameter-server shard in this process (the request path is C++;
Python only waits for a stop signal), and `start_local_servers` for tests and notebooks."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

READY = "gradwire-ps shard {shard} listening on {address}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gradwire ps serve", description="Run one parameter-server shard."
    )
    p.add_argument("--shard-id", type=int, required=True, metavar="I")
    p.add_argument("--num-servers", type=int, required=True, metavar="S")
    p.add_argument("--num-workers", type=int, required=True, metavar="W")
    p.add_argument("--port", type=int, default=0, metavar="P", help="0: any free port")
    p.add_argument(
        "--host",
        default="0.0.0.0",
        help="listen address (default: all; without GRADWIRE_AUTH_TOKEN only a loopback one)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="listen beyond loopback without GRADWIRE_AUTH_TOKEN: anyone who can reach the port "
        "may read and overwrite the parameters",
    )
    p.add_argument("--mode", choices=["bsp", "asp", "ssp"], default="asp")
    p.add_argument("--staleness", type=int, default=0, metavar="K", help="SSP bound")
    p.add_argument("--checkpoint-dir", default="", metavar="D")
    p.add_argument(
        "--checkpoint-every", type=float, default=0.0, metavar="SECONDS", help="0: on demand"
    )
    p.add_argument("--threads", type=int, default=4, help="request-handling threads")
    return p


def serve(argv: Optional[List[str]] = None) -> int:
    from gradwire import _C
    from gradwire.errors import GradwireError

    a = parser().parse_args(argv)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    try:
        server = _C.ps.Server(
            a.shard_id,
            a.num_servers,
            a.num_workers,
            a.mode,
            a.staleness,
            a.host,
            a.port,
            a.checkpoint_dir,
            a.checkpoint_every,
            a.threads,
            _C.ps.default_block_elems(),
            a.insecure,
        )
    except (GradwireError, ValueError) as e:
        print(f"gradwire ps serve: error: {e}", file=sys.stderr)
        return 2
    print(f"gradwire-ps shard {a.shard_id}: {server.access}", file=sys.stderr, flush=True)
    print(READY.format(shard=a.shard_id, address=server.address), flush=True)
    while not stop.wait(0.2):
        pass
    server.stop()
    return 0


def main(argv: List[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: gradwire ps serve --shard-id I --num-servers S --num-workers W ...")
        return 0
    if argv[0] != "serve":
        print(f"gradwire ps: unknown command '{argv[0]}' (expected: serve)", file=sys.stderr)
        return 2
    return serve(argv[1:])


def spawn(
    shard: int,
    num_servers: int,
    num_workers: int,
    *,
    mode: str,
    staleness: int,
    checkpoint_dir: Optional[str],
    checkpoint_every: float,
    host: str,
    port: int,
    threads: int,
    env: Optional[Dict[str, str]] = None,
    timeout: float = 60.0,
    prefix: Sequence[str] = (),
):
    """Starts `gradwire ps serve` for one shard (behind the command `prefix`, if any); returns
    (process, address) once it listens."""
    # The server never needs torch; blocking its import saves each shard seconds of start-up.
    boot = "import sys; sys.modules['torch'] = None; from gradwire.ps.server import main; "
    boot += "sys.exit(main(sys.argv[1:]))"
    cmd = [*prefix, sys.executable, "-c", boot, "serve"]
    cmd += ["--shard-id", str(shard), "--num-servers", str(num_servers)]
    cmd += ["--num-workers", str(num_workers), "--mode", mode, "--staleness", str(staleness)]
    cmd += ["--host", host, "--port", str(port), "--threads", str(threads)]
    if checkpoint_dir:
        cmd += ["--checkpoint-dir", checkpoint_dir, "--checkpoint-every", str(checkpoint_every)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True
    )
    line: List[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not line or not line[0].startswith("gradwire-ps"):
        proc.kill()
        proc.wait()
        raise RuntimeError(
            f"parameter server shard {shard} did not start (exit code {proc.returncode}; "
            "see its stderr above)"
        )
    return proc, line[0].rsplit(" ", 1)[1].strip()


class LocalServers:
    """Real server processes on this machine. ``addresses`` lists shard 0, 1, ...;
    ``kill(shard)`` SIGKILLs one, ``restart(shard)`` starts it again on the same port (it
    resumes from its checkpoint + write-ahead log), ``stop()`` ends them all."""

    def __init__(self, num_servers: int, num_workers: int, **opts):
        self.num_servers, self.num_workers, self._opts = num_servers, num_workers, opts
        self.procs: Dict[int, subprocess.Popen] = {}
        self.addresses: List[str] = [""] * num_servers
        try:
            for s in range(num_servers):
                self._start(s, 0)
        except BaseException:
            self.stop()
            raise

    def _start(self, shard: int, port: int) -> None:
        proc, address = spawn(shard, self.num_servers, self.num_workers, port=port, **self._opts)
        self.procs[shard], self.addresses[shard] = proc, address

    def kill(self, shard: int) -> None:
        p = self.procs[shard]
        p.kill()
        p.wait()
        p.stdout.close()

    def restart(self, shard: int) -> None:
        if self.procs[shard].poll() is None:
            self.kill(shard)
        port = int(self.addresses[shard].rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while True:  # the old listener's port may take a moment to be free again
            try:
                self._start(shard, port)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if not p.stdout.closed:
                p.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_local_servers(
    num_servers: int,
    num_workers: int,
    mode: str = "asp",
    staleness: int = 0,
    checkpoint_dir: Optional[str] = None,
    checkpoint_every: float = 0.0,
    threads: int = 2,
    host: str = "127.0.0.1",
    env: Optional[Dict[str, str]] = None,
) -> LocalServers:
    """Start ``num_servers`` real server processes for a job of ``num_workers`` workers.

    Example::

        with gradwire.ps.start_local_servers(2, num_workers=1, mode="asp") as servers:
            client = gradwire.ps.connect(servers.addresses, worker_id=0, num_workers=1)
    """
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
    return LocalServers(
        num_servers,
        num_workers,
        mode=mode,
        staleness=staleness,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        host=host,
        threads=threads,
        env=env,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
