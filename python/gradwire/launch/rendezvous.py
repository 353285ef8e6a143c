"""The launchers meet in a torch TCPStore hosted by launcher 0; rounds make restarts safe.

Keys (all under "gw/"):
    config                  launcher 0's view of the job; every launcher checks its own against it
    round                   the current round (restart count); late joiners start there
    r<N>/host/<L>           launcher L's host name in round N
    r<N>/joined             how many launchers joined round N
    r<N>/worker_port        the round's fresh worker store (so restarted workers see no stale keys)
    r<N>/failure            the first failure of round N (first writer wins), JSON
    r<N>/done, r<N>/bye     launchers whose workers all succeeded / that are leaving

Launcher 0's process hosts the store, so it leaves last: it waits for the others' "bye".
"""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from typing import Callable, List, Optional

from torch.distributed import DistError, TCPStore

from gradwire.launch.errors import LaunchError

POLL = 0.1


class Stopped(Exception):
    """A signal arrived while waiting; the caller shuts down."""


class Rendezvous:
    def __init__(
        self,
        addr: str,
        port: int,
        launcher_rank: int,
        launchers: int,
        timeout: float,
        should_stop: Callable[[], bool] = lambda: False,
    ):
        self.addr, self.port = addr, port
        self.launcher_rank, self.launchers = launcher_rank, launchers
        self.timeout = timeout
        self.should_stop = should_stop
        self.store: Optional[TCPStore] = None
        self._worker_stores: dict = {}

    # ---- connecting ----------------------------------------------------------------------
    def connect(self, config: dict) -> int:
        """Host or reach the store, check the job config; returns the round to join."""
        if self.launcher_rank == 0:
            self.store = self._host()
            self.store.set("gw/config", json.dumps(config, sort_keys=True))
            self.store.compare_set("gw/round", "", "0")
        else:
            self.store = self._reach()
        theirs = json.loads(self._get("gw/config"))
        if theirs != config:
            diff = {k: (config.get(k), theirs.get(k)) for k in set(config) | set(theirs)}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            raise LaunchError(
                f"launcher {self.launcher_rank} and launcher 0 disagree about the job: "
                + ", ".join(f"{k}: {a} here, {b} on launcher 0" for k, (a, b) in diff.items())
            )
        return int(self._get("gw/round"))

    def _host(self) -> TCPStore:
        try:
            return TCPStore(
                self.addr,
                self.port,
                None,
                True,
                timedelta(seconds=max(self.timeout, 1)),
                wait_for_workers=False,
            )
        except Exception as e:  # noqa: BLE001 - torch raises several types here
            raise LaunchError(
                f"launcher 0 cannot host the rendezvous store on {self.addr}:{self.port}: {e} "
                "(port in use by another job? pass --master-port; is MASTER_ADDR this host?)",
                exit_code=1,
            ) from None

    def _reach(self) -> TCPStore:
        start = time.monotonic()
        deadline = start + self.timeout
        last = "no attempt made"
        while True:
            if self.should_stop():
                raise Stopped()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = time.monotonic() - start
                raise LaunchError(
                    f"cannot reach the rendezvous endpoint {self.addr}:{self.port} after waiting "
                    f"{waited:.0f}s ({last}). Launcher 0 hosts it: is it running, does "
                    f"{self.addr} name its host, and is port {self.port} open? "
                    "(--rdzv-timeout sets the wait)",
                    exit_code=1,
                )
            try:
                ip = socket.getaddrinfo(self.addr, self.port, type=socket.SOCK_STREAM)[0][4][0]
            except OSError as e:
                last = f"{self.addr} does not resolve yet: {e}"
                time.sleep(min(1.0, max(remaining, 0)))
                continue
            # Probe with a plain socket first: quiet, and bounded by our deadline (torch's
            # client logs every failed attempt and retries on its own schedule).
            try:
                with socket.create_connection((ip, self.port), timeout=min(remaining, 2.0)):
                    pass
            except OSError as e:
                last = f"resolved to {ip}; {e.strerror or e}"
                time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
                continue
            return TCPStore(
                self.addr, self.port, None, False, timedelta(seconds=max(self.timeout, 1))
            )

    def publish(self, key: str, value: str) -> None:
        """Shares a value with every launcher of the job (e.g. parameter-server addresses)."""
        self.store.set(key, value)

    def lookup(self, key: str) -> str:
        """Waits (up to the rendezvous timeout) for a value another launcher published."""
        return self._get(key)

    def _get(self, key: str) -> str:
        self._wait_for(lambda: self.store.check([key]), f"key {key}")
        return self.store.get(key).decode()

    def _wait_for(self, ready: Callable[[], bool], what: str, timeout: Optional[float] = None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not ready():
            if self.should_stop():
                raise Stopped()
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)
        return True

    # ---- rounds --------------------------------------------------------------------------
    def join(self, rnd: int, host: str) -> List[str]:
        """Wait until every launcher joined round `rnd`; returns their hosts in launcher order."""
        s = self.store
        if self.launcher_rank == 0:
            ws = TCPStore(
                self.addr,
                0,
                None,
                True,
                timedelta(seconds=max(self.timeout, 1)),
                wait_for_workers=False,
            )
            self._worker_stores = {rnd: ws}  # the previous round's store closes here
            s.set(f"gw/r{rnd}/worker_port", str(ws.port))
        s.set(f"gw/r{rnd}/host/{self.launcher_rank}", host)
        s.add(f"gw/r{rnd}/joined", 1)
        ok = self._wait_for(lambda: s.add(f"gw/r{rnd}/joined", 0) >= self.launchers, "join")
        keys = [f"gw/r{rnd}/host/{i}" for i in range(self.launchers)]
        if not ok:
            missing = [i for i, k in enumerate(keys) if not s.check([k])]
            raise LaunchError(
                f"rendezvous round {rnd}: launchers {missing} of {self.launchers} did not join "
                f"within {self.timeout:.0f}s (store {self.addr}:{self.port})",
                exit_code=1,
            )
        return [v.decode() for v in s.multi_get(keys)]

    def worker_port(self, rnd: int) -> int:
        return int(self._get(f"gw/r{rnd}/worker_port"))

    def failure(self, rnd: int) -> Optional[dict]:
        key = f"gw/r{rnd}/failure"
        if not self.store.check([key]):
            return None
        return json.loads(self.store.get(key).decode())

    def report_failure(self, rnd: int, info: dict) -> dict:
        """Record `info` unless another launcher got there first; returns the recorded one."""
        first = self.store.compare_set(f"gw/r{rnd}/failure", "", json.dumps(info)).decode()
        self.store.compare_set("gw/round", str(rnd), str(rnd + 1))
        return json.loads(first)

    def finish(self, rnd: int) -> Optional[dict]:
        """This launcher's workers all succeeded; wait for the others. Returns a failure of
        the round if one is reported meanwhile, else None."""
        s = self.store
        s.add(f"gw/r{rnd}/done", 1)
        while True:
            fail = self.failure(rnd)
            if fail is not None:
                return fail
            if s.add(f"gw/r{rnd}/done", 0) >= self.launchers:
                return None
            if self.should_stop():
                raise Stopped()
            time.sleep(POLL)

    def leave(self, rnd: int, linger: float = 30.0) -> None:
        """The last call: launcher 0 keeps the store up until the others have left."""
        try:
            if self.launcher_rank == 0:
                self._wait_for(
                    lambda: self.store.add(f"gw/r{rnd}/bye", 0) >= self.launchers - 1,
                    "bye",
                    timeout=linger,
                )
            else:
                self.store.add(f"gw/r{rnd}/bye", 1)
        except (Stopped, DistError):
            pass
