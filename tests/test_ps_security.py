"""Who may talk to a parameter-server shard: `gradwire ps serve` refuses to listen beyond this
host without GRADWIRE_AUTH_TOKEN (unless told --insecure), says at start-up which case applies,
refuses clients without the job's token while serving the right ones, and does not give a
thread to every connection that has not authenticated yet. Real server processes, real
sockets, real worker processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import pytest

# As ps.server.spawn: the shard never needs torch, so keep it from importing it.
BOOT = (
    "import sys; sys.modules['torch'] = None; from gradwire.ps.server import main; "
    "sys.exit(main(sys.argv[1:]))"
)
HANDSHAKE_CAP = 64  # connections a shard lets sit in their handshake (ServerOptions)


def _env(token: Optional[str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADWIRE_")}
    if token is not None:
        env["GRADWIRE_AUTH_TOKEN"] = token
    return env


class Shard:
    """One `gradwire ps serve` process; its stderr is collected as it runs."""

    def __init__(self, args: List[str], token: Optional[str] = None):
        cmd = [sys.executable, "-c", BOOT, "serve", "--shard-id", "0", "--num-servers", "1"]
        cmd += ["--num-workers", "1", "--port", "0", "--threads", "2", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(token),
            text=True,
        )
        self._err: List[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        ready: List[str] = []
        t = threading.Thread(target=lambda: ready.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(60)
        self.ready = ready[0] if ready else ""
        self.address = self.ready.rsplit(" ", 1)[-1].strip() if self.ready else ""

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._err.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_for_stderr(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def stop(self) -> str:
        """Ends the shard (SIGTERM, then SIGKILL); returns all it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        self.proc.stdout.close()
        return self.stderr


# A worker process: pushes a gradient of ones (SGD, lr 1) and prints what it then pulls.
WORKER = """
import sys, torch, gradwire.ps as ps
try:
    c = ps.connect([sys.argv[1]], worker_id=0, num_workers=1, timeout=20)
    c.register_dense("w", torch.zeros(8), optimizer=ps.SGD(lr=1.0))
    c.push("w", torch.ones(8))
    print("value", c.pull("w", torch.empty(8)).tolist(), flush=True)
    c.close()
except Exception as e:
    print(f"{type(e).__name__}: {e}", flush=True)
    sys.exit(1)
"""


def _worker(address: str, token: Optional[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WORKER, address],
        env=_env(token),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(60)
def test_no_token_on_a_non_loopback_address_is_refused_with_the_reason():
    shard = Shard(["--host", "0.0.0.0"])
    err = shard.stop()
    assert shard.ready == "", f"the shard started: {shard.ready!r}"
    assert shard.proc.returncode == 2, err
    assert (
        "gradwire ps serve: error: refusing to listen on 0.0.0.0 without GRADWIRE_AUTH_TOKEN; set it "
        "(the same on every worker), bind to 127.0.0.1 with --host, or pass --insecure"
    ) in err, err


@pytest.mark.timeout(60)
def test_insecure_starts_open_and_says_so():
    shard = Shard(["--host", "0.0.0.0", "--insecure"])
    try:
        assert shard.ready.startswith("gradwire-ps shard 0 listening on "), shard.stop()
        assert shard.wait_for_stderr("--insecure"), shard.stderr
        assert "without GRADWIRE_AUTH_TOKEN: open to anyone who can reach port" in shard.stderr
        # what it means: a process with no token at all is served
        r = _worker("127.0.0.1:" + shard.address.rsplit(":", 1)[1], None)
        assert r.returncode == 0 and "value [-1.0," in r.stdout, r.stdout + r.stderr
    finally:
        shard.stop()


@pytest.mark.timeout(60)
def test_loopback_without_token_starts_and_says_it_is_local_only():
    shard = Shard(["--host", "127.0.0.1"])
    try:
        assert shard.ready.startswith("gradwire-ps shard 0 listening on 127.0.0.1:"), shard.stop()
        assert shard.wait_for_stderr("loopback"), shard.stderr
        assert "no GRADWIRE_AUTH_TOKEN: listening on 127.0.0.1 (loopback) only" in shard.stderr
    finally:
        shard.stop()


@pytest.mark.timeout(120)
def test_token_refuses_wrong_and_missing_tokens_and_serves_the_worker():
    shard = Shard(["--host", "127.0.0.1"], token="the-job-secret")
    try:
        assert shard.ready, shard.stop()
        assert shard.wait_for_stderr("token"), shard.stderr
        assert "authentication: GRADWIRE_AUTH_TOKEN from the environment" in shard.stderr
        for bad in ("not-the-job-secret", None):
            r = _worker(shard.address, bad)
            assert r.returncode == 1, r.stdout + r.stderr
            assert "ProtocolError" in r.stdout and "refused our authentication" in r.stdout
        # the refusals are logged with the address they came from
        assert shard.wait_for_stderr("refused a connection from 127.0.0.1:"), shard.stderr
        assert "wrong or missing GRADWIRE_AUTH_TOKEN" in shard.stderr
        # nothing of theirs reached the shard: the worker's value starts from its own zeros
        r = _worker(shard.address, "the-job-secret")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "value [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]" in r.stdout, r.stdout
        assert shard.proc.poll() is None
    finally:
        shard.stop()


@pytest.mark.timeout(120)
def test_idle_unauthenticated_connections_do_not_get_a_thread_each():
    shard = Shard(["--host", "127.0.0.1"], token="the-job-secret")
    idle: List[socket.socket] = []
    try:
        assert shard.ready, shard.stop()
        host, port = shard.address.rsplit(":", 1)
        base = shard.threads()
        for _ in range(100):
            idle.append(socket.create_connection((host, int(port)), timeout=5))
        # Let the shard accept them all (each one gets the server's HELLO once it is taken up).
        most = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            most = max(most, shard.threads())
            time.sleep(0.05)
        assert most < base + HANDSHAKE_CAP + 8, (base, most)
        assert shard.wait_for_stderr("in their handshake"), shard.stderr
        # With all 100 still open, the real worker gets in and is served.
        r = _worker(shard.address, "the-job-secret")
        assert r.returncode == 0, r.stdout + r.stderr + shard.stderr
        assert "value [-1.0," in r.stdout, r.stdout
        assert shard.threads() < base + HANDSHAKE_CAP + 8
    finally:
        for s in idle:
            s.close()
        shard.stop()
