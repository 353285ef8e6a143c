"""The launcher's main loop: meet the other launchers, run this node's workers, watch them,
restart them in a new round when any rank of the job fails (up to --max-restarts), forward
SIGTERM/SIGINT, and exit with the code of the job's first failure.
"""

from __future__ import annotations

import secrets
import signal
import time
from typing import Dict, List, Mapping, Optional

from torch.distributed import DistError

from gradwire.launch import address, ps_servers
from gradwire.launch.errors import LaunchError
from gradwire.launch.output import Output, say
from gradwire.launch.plan import Locality, Plan
from gradwire.launch.ps_servers import ServerGroup
from gradwire.launch.rendezvous import POLL, Rendezvous, Stopped
from gradwire.launch.workers import WorkerGroup


class Signals:
    """SIGTERM/SIGINT/SIGHUP set a flag that every wait loop checks."""

    HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self):
        self.signum: Optional[int] = None
        self._old = {}

    def __enter__(self):
        for s in self.HANDLED:
            self._old[s] = signal.signal(s, self._set)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def _set(self, signum, frame):
        self.signum = signum

    def is_set(self) -> bool:
        return self.signum is not None


def auth_token(env: Mapping[str, str], plan: Plan) -> Optional[str]:
    """The job secret: the environment's (a Kubernetes Secret, ...), or a fresh one when this
    launcher is the whole job. Otherwise the engine's rank 0 draws one and shares it through
    the store (or, for a parameter-server job, launcher 0: ps_servers.job_token)."""
    if env.get("GRADWIRE_AUTH_TOKEN"):
        return env["GRADWIRE_AUTH_TOKEN"]
    return secrets.token_hex(32) if plan.launchers == 1 else None


def worker_env(
    base: Mapping[str, str],
    plan: Plan,
    loc: Locality,
    i: int,
    rnd: int,
    store_port: int,
    ifname: str,
    token: Optional[str],
) -> Dict[str, str]:
    env = dict(base)
    env.update(plan.rank_env(i, loc))
    env.update(
        {
            "MASTER_ADDR": plan.master_addr,
            "MASTER_PORT": str(store_port),
            # torch's env:// rendezvous then only connects to the store launcher 0 hosts.
            "TORCHELASTIC_USE_AGENT_STORE": "True",
            "TORCHELASTIC_RESTART_COUNT": str(rnd),
            "TORCHELASTIC_MAX_RESTARTS": str(plan.max_restarts),
            "GRADWIRE_RESTART_COUNT": str(rnd),
            "GRADWIRE_MAX_RESTARTS": str(plan.max_restarts),
            "GRADWIRE_SOCKET_IFNAME": ifname,
            "GRADWIRE_LAUNCH_SOURCE": plan.source,
        }
    )
    if token:
        env["GRADWIRE_AUTH_TOKEN"] = token
    env.setdefault("PYTHONUNBUFFERED", "1")
    if plan.nproc * loc.local_launchers > 1:
        env.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: no oversubscribed thread pools
    return env


class Agent:
    def __init__(self, plan: Plan, cmd: List[str], opts, env: Mapping[str, str], hostname: str):
        self.plan, self.cmd, self.opts, self.env, self.hostname = plan, cmd, opts, env, hostname
        self.output = Output(opts.color, opts.log_dir)
        self.group: Optional[WorkerGroup] = None
        self.servers: Optional[ServerGroup] = None
        self.signals = Signals()

    def run(self) -> int:
        with self.signals:
            try:
                if self.plan.passthrough:
                    return self._passthrough()
                return self._rounds()
            except Stopped:
                return self._stopped()
            except LaunchError:
                self._stop_group()
                raise
            except DistError as e:  # a torch store call failed: launcher 0 is gone
                self._stop_group()
                raise LaunchError(
                    f"lost the rendezvous store at {self.plan.master_addr}:"
                    f"{self.plan.master_port} (did launcher 0 exit?): {str(e).splitlines()[0]}",
                    exit_code=1,
                ) from None
            finally:
                if self.servers is not None:
                    self.servers.stop(self.opts.term_timeout)

    # ---- normal operation ----------------------------------------------------------------
    def _rounds(self) -> int:
        p = self.plan
        rdzv = Rendezvous(
            p.master_addr,
            p.master_port,
            p.launcher_rank,
            p.launchers,
            self.opts.rdzv_timeout,
            self.signals.is_set,
        )
        config = {"launchers": p.launchers, "nproc_per_node": p.nproc, "num_servers": p.num_servers}
        rnd = rdzv.connect(config)
        self.rdzv = rdzv
        token = auth_token(self.env, p)
        if token is None and p.num_servers:
            token = ps_servers.job_token(rdzv, p.launcher_rank)
        choice = None
        ps_addresses: Optional[str] = None
        while True:
            hosts = rdzv.join(rnd, self.hostname)
            loc = p.locality() or Locality.from_hosts(hosts, p.launcher_rank)
            if choice is None:
                choice = address.choose(p.master_addr, len(set(hosts)) > 1, self.env)
                if p.launcher_rank == 0 or loc.local_launcher_rank == 0:
                    say(
                        f"{p.source}: {p.world_size} ranks on {loc.nnodes} node(s); this node "
                        f"({self.hostname}) advertises {choice.address} on {choice.ifname} "
                        f"({choice.reason})"
                    )
            store_port = rdzv.worker_port(rnd)
            if p.num_servers and ps_addresses is None:
                if p.launcher_rank == 0:
                    env = dict(self.env, GRADWIRE_SOCKET_IFNAME=choice.ifname)
                    if token:
                        env["GRADWIRE_AUTH_TOKEN"] = token
                    self.servers = ServerGroup(p.num_servers, p.world_size, choice.address,
                                               self.opts, env)  # fmt: skip
                    self.servers.start()
                ps_addresses = ps_servers.share(rdzv, self.servers)
            envs = {
                p.launcher_rank * p.nproc + i: worker_env(
                    self.env, p, loc, i, rnd, store_port, choice.ifname, token
                )
                for i in range(p.nproc)
            }
            if ps_addresses:
                for e in envs.values():
                    e["GRADWIRE_PS_SERVERS"] = ps_addresses
            self.group = WorkerGroup(self.cmd, envs, self.output, rnd)
            self.group.start()
            fail = self._watch(rdzv, rnd)
            self.group = None
            if fail is None:
                rdzv.leave(rnd)
                if p.launcher_rank == 0:
                    say(f"all {p.world_size} ranks finished")
                return 0
            where = f"launcher {fail['launcher']} on {fail['host']}"
            if rnd < p.max_restarts:
                rnd += 1
                say(
                    f"{fail['what']} ({where}); restarting this node's workers "
                    f"(restart {rnd} of {p.max_restarts})"
                )
                continue
            say(f"{fail['what']} ({where}); no restarts left (--max-restarts {p.max_restarts})")
            rdzv.leave(rnd, linger=10.0)
            return int(fail["code"]) or 1

    def _watch(self, rdzv: Rendezvous, rnd: int) -> Optional[dict]:
        """Until the round ends: None when every rank of the job succeeded, else its failure."""
        g = self.group
        while True:
            g.poll()
            if self.servers is not None:
                self.servers.revive()
            f = g.first_failure()
            if f is not None:
                info = {
                    "launcher": self.plan.launcher_rank,
                    "host": self.hostname,
                    "rank": f.rank,
                    "code": f.code,
                    "what": f.describe(),
                }
                first = rdzv.report_failure(rnd, info)
                g.stop(grace=self.opts.term_timeout)
                return first
            if g.all_succeeded():
                g.output.drain()
                return rdzv.finish(rnd)
            if self.signals.is_set():
                raise Stopped()
            remote = rdzv.failure(rnd)
            if remote is not None:
                g.stop(grace=self.opts.term_timeout)
                return remote
            time.sleep(POLL)

    def _stopped(self) -> int:
        sig = self.signals.signum or signal.SIGTERM
        name = signal.Signals(sig).name
        say(f"received {name}: forwarding it to the workers")
        self._stop_group(sig)
        rdzv = getattr(self, "rdzv", None)
        if rdzv is not None and rdzv.store is not None and not self.plan.passthrough:
            try:
                rnd = int(rdzv.store.get("gw/round").decode())
                rdzv.report_failure(
                    rnd,
                    {
                        "launcher": self.plan.launcher_rank,
                        "host": self.hostname,
                        "rank": -1,
                        "code": 128 + sig,
                        "what": f"a launcher received {name}",
                    },
                )
            except RuntimeError:
                pass
        return 128 + sig

    def _stop_group(self, sig: int = signal.SIGTERM) -> None:
        if self.group is not None:
            self.group.stop(sig, grace=self.opts.term_timeout)
            self.group = None

    # ---- under torchrun ------------------------------------------------------------------
    def _passthrough(self) -> int:
        p = self.plan
        loc = p.locality() or Locality(0, 1, 0, 1)
        multi_host = loc.local_launchers < p.launchers
        choice = address.choose(p.master_addr, multi_host, self.env)
        env = dict(self.env)
        env.update(p.rank_env(0, loc))
        env["GRADWIRE_SOCKET_IFNAME"] = env.get("GRADWIRE_SOCKET_IFNAME") or choice.ifname
        env["GRADWIRE_LAUNCH_SOURCE"] = p.source
        attempt = int(self.env.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
        self.group = WorkerGroup(self.cmd, {p.launcher_rank: env}, self.output, attempt)
        self.group.start()
        while True:
            self.group.poll()
            if self.group.exits:
                self.group.output.drain()
                return self.group.exits[0].code
            if self.signals.is_set():
                raise Stopped()
            time.sleep(POLL)
