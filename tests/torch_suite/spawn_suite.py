"""torch's own distributed test suite (DistributedTest._DistTestBase) against one backend.

The same test class upstream's test/distributed/test_distributed_spawn.py builds, for the backend
named by BACKEND (gloo or gradwire) at WORLD_SIZE ranks: every test starts WORLD_SIZE fresh rank
processes that rendezvous through a file store, run the test body and report back. The suite is
the one shipped in the installed torch wheel; nothing of it is copied or edited here.

Not collected by ``pytest tests`` (the file name does not match test_*.py). Run it through
``tests/torch_suite/run.py`` (``make torch-suite``) or directly::

    BACKEND=gradwire WORLD_SIZE=2 python -m pytest tests/torch_suite/spawn_suite.py -k all_reduce

Rank processes load the test class from this module, so the imports below run in every rank:
``import gradwire`` registers the backend there too.

How ranks start (TORCH_SUITE_START_METHOD):
  forkserver (default)  a clean server process imports torch, gradwire and this module once and
                        forks every rank of every test from it: fresh processes that never saw
                        the test runner's state, like spawn, without re-importing torch and
                        torch._dynamo (~8 CPU-seconds a rank) for each of them.
  spawn                 exactly upstream's way: a new interpreter per rank.
Either way each rank gets the runner's environment as it is when the test starts (TEMP_DIR
and MASTER_ADDR are set per test).
"""

import functools
import os
import unittest

import gradwire  # noqa: F401 - registers the "gradwire" torch.distributed backend in every rank
import torch
from torch.testing._internal.common_distributed import DistTestCases

if "BACKEND" not in os.environ or "WORLD_SIZE" not in os.environ:
    raise RuntimeError(
        "torch's distributed suite needs BACKEND (gloo or gradwire) and WORLD_SIZE (>= 2) "
        "in the environment"
    )

# The suite decides which tests apply to a backend from these sets when distributed_test is
# imported, so gradwire is listed before that import. gloo is in gpu/cuda/ddp/subgroup; gradwire
# claims the same (CPU collectives, CUDA tensors staged through host memory, subgroups, DDP).
# "plugin" is how require_backend_is_available() accepts a backend registered with
# dist.Backend.register_backend. Tests gated on the literal name "gloo" stay skipped.
GRADWIRE_FEATURES = ("plugin", "gpu", "cuda", "ddp", "subgroup")
for _feature in GRADWIRE_FEATURES:
    DistTestCases.backend_feature.setdefault(_feature, set()).add("gradwire")

# TORCH_SUITE_GATES_AS=gloo runs tests as gloo sees them on a gradwire process group: the
# suite's decorators and the test bodies read BACKEND as "gloo", the ranks initialize BACKEND.
# Some tests of generic features (all_reduce_coalesced, batch_isend_irecv on CPU, get_future,
# DDP's no_sync...) are gated on the literal name "gloo", or have no code path for any other
# name, which no plugin list reaches; this shows what they do on gradwire. The runner uses it
# only for tests gloo passes and the gradwire run skips, and reports those results apart.
GATES_AS = os.environ.get("TORCH_SUITE_GATES_AS", "")
_backend = os.environ["BACKEND"]
if GATES_AS:
    os.environ["BACKEND"] = GATES_AS
try:
    from torch.testing._internal.distributed import distributed_test
    from torch.testing._internal.distributed.distributed_test import (
        DistributedTest,
        TestDistBackend,
    )
finally:
    os.environ["BACKEND"] = _backend
# What TestDistBackend._run initializes (and, without GATES_AS, what the bodies compare).
distributed_test.BACKEND = _backend

START_METHOD = os.environ.get("TORCH_SUITE_START_METHOD", "forkserver")
if START_METHOD not in ("forkserver", "spawn"):
    raise RuntimeError(
        f"TORCH_SUITE_START_METHOD must be forkserver or spawn, not {START_METHOD!r}"
    )

# A rank that raises unittest.SkipTest only reports a generic exit code to the runner; rank 0
# writes the reason to this file in the test's TEMP_DIR so the results can name it.
_SKIP_REASON_FILE = "skip_reason"
_GENERIC_SKIP = "Test skipped at subprocess level"


class TestDistBackendWithSpawn(TestDistBackend, DistributedTest._DistTestBase):
    def setUp(self):
        super().setUp()
        self._spawn_processes()

    def _spawn_processes(self):
        ctx = torch.multiprocessing.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            ctx.set_forkserver_preload([__name__])
        self._start_processes(ctx.Process)

    def _start_processes(self, proc):
        # As upstream's, plus the environment: a forkserver child would otherwise see the
        # server's environment, not this test's TEMP_DIR.
        self.processes = []
        env = dict(os.environ)
        for rank in range(int(self.world_size)):
            parent_conn, child_conn = torch.multiprocessing.Pipe()
            process = proc(
                target=type(self)._run,
                name=f"process {rank}",
                args=(rank, self._current_test_name(), self.file_name, child_conn),
                kwargs={"env": env},
            )
            process.start()
            self.pid_to_pipe[process.pid] = parent_conn
            self.processes.append(process)

    @classmethod
    def _run(cls, rank, test_name, file_name, pipe, env=None, **kwargs):
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
            # What a spawned rank reads when it imports the suite: this test's init file.
            distributed_test.INIT_METHOD = os.environ.get("INIT_METHOD", "env://")
        log_dir = os.environ.get("TORCH_SUITE_LOG_DIR")
        if log_dir:
            # Each rank's output in its own file (the runner keeps those of tests that fail).
            fd = os.open(
                os.path.join(log_dir, f"{test_name}.rank{rank}.log"),
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                0o644,
            )
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        super()._run(rank, test_name, file_name, pipe, **kwargs)

    def run_test(self, test_name, parent_pipe):
        # Called by TestDistBackend._run once the process group is up.
        if not GATES_AS:
            return super().run_test(test_name, parent_pipe)
        distributed_test.BACKEND = GATES_AS
        try:
            return super().run_test(test_name, parent_pipe)
        finally:
            distributed_test.BACKEND = _backend

    def join_or_run(self, fn):
        inner = super().join_or_run(fn)

        @functools.wraps(fn)
        def run():
            try:
                return inner()
            except unittest.SkipTest as skip:
                if self.rank == 0:
                    path = os.path.join(os.environ["TEMP_DIR"], _SKIP_REASON_FILE)
                    with open(path, "w") as f:
                        f.write(str(skip))
                raise

        return run

    def _check_return_codes(self, fn, elapsed_time):
        try:
            super()._check_return_codes(fn, elapsed_time)
        except unittest.SkipTest as skip:
            path = os.path.join(os.environ["TEMP_DIR"], _SKIP_REASON_FILE)
            if str(skip).startswith(_GENERIC_SKIP) and os.path.exists(path):
                with open(path) as f:
                    reason = f.read().strip()
                raise unittest.SkipTest(reason or str(skip)) from None
            raise


# Upstream names the class after the backend; so do the results (test ids stay comparable).
_name = f"TestDistBackendWithSpawn{_backend.upper()}"
TestDistBackendWithSpawn.__name__ = TestDistBackendWithSpawn.__qualname__ = _name
globals()[_name] = TestDistBackendWithSpawn
del TestDistBackendWithSpawn
