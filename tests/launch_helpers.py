"""Shared helpers for the launcher tests: run `gradwire run` as a real process, bounded."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
TRAIN = DATA / "launch" / "train.py"
# The gradwire command of the interpreter running the tests (the venv's).
GRADWIRE = [sys.executable, "-m", "gradwire.run"]

# Variables of launching systems that must not leak from the test runner into a launch.
_FOREIGN = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "PET_", "VC_", "TORCHELASTIC_", "GRADWIRE_")
_TORCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
          "MASTER_PORT", "JOB_COMPLETION_INDEX")  # fmt: skip


def clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN) and k not in _TORCH}
    env.update(extra)
    return env


def run(args: List[str], env: Optional[Dict[str, str]] = None, timeout: float = 90, **kw):
    """`gradwire run ARGS` to completion; a hang is a test failure, never a stuck run."""
    return subprocess.run(
        GRADWIRE + args,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def run_launchers(args: List[str], n: int, env: Dict[str, str], timeout: float = 90):
    """`gradwire run ARGS[:-1] --node-rank I ARGS[-1]` for I < n at once, as the launchers of one
    job on this host; returns each one's (returncode, stdout, stderr). Killed at the timeout."""
    procs = [
        subprocess.Popen(GRADWIRE + args[:-1] + ["--node-rank", str(i), args[-1]], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]  # fmt: skip
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def records(out_dir: Path) -> Dict[int, dict]:
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in sorted(out_dir.glob("rank*.json"))}


def opts(**kw) -> argparse.Namespace:
    """Launcher options as `gradwire run` parses them, overridden by `kw`."""
    base = dict(
        nproc_per_node=None,
        nnodes=None,
        node_rank=None,
        master_addr=None,
        master_port=None,
        num_servers=0,
        max_restarts=0,
    )
    base.update(kw)
    return argparse.Namespace(**base)
