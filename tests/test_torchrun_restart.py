"""torchrun --max-restarts: a restarted attempt connects within seconds, although torchrun keeps
its store (and the dead attempt's keys in it) across attempts."""

from __future__ import annotations

import json
import subprocess
import sys

from launch_helpers import DATA, clean_env
from world import free_port

WORKER = DATA / "torchrun" / "restart_worker.py"
PG_TIMEOUT = 60  # a restarted attempt stuck on stale keys would wait this long


def test_restarted_attempt_ignores_the_dead_attempts_keys(tmp_path):
    for run in range(3):  # the worker makes the stale read happen every time; repeat anyway
        out = tmp_path / f"run{run}"
        out.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--max-restarts", "1", "--master-port", str(free_port()), str(WORKER)]  # fmt: skip
        env = clean_env(TEST_OUT=str(out), PG_TIMEOUT=str(PG_TIMEOUT), RANK0_DELAY="2")
        env.pop("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", None)  # the default: one shared store
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT + 60)
        assert r.returncode == 0, r.stderr[-3000:]
        recs = {p.stem: json.loads(p.read_text()) for p in out.glob("attempt1-*.json")}
        assert sorted(recs) == ["attempt1-rank0", "attempt1-rank1"], r.stderr[-3000:]
        for rec in recs.values():
            assert rec["sum"] == 6 * 3.0
            # rank 0 started 2 s late; everything else is connection set-up
            assert rec["setup_seconds"] < 20, rec
