"""Launching the ranks of one training run (training.py) and merging what they report.

A run is `world` processes of training.py, started either on this host (`local_commands`) or one
per virtual host (the speed sweep builds its own commands); `run_world` waits for all of them
under a deadline, kills the rest when one fails, and returns the merged result or the failure.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

HERE = Path(__file__).resolve().parent
TRAINING = HERE / "training.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_commands(world: int, variant: str, train_argv: Sequence[str], outdir: Path):
    """(argv, env) per rank for a run on this host over loopback."""
    port = str(free_port())
    cmds = []
    for r in range(world):
        env = dict(
            os.environ,
            RANK=str(r),
            WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        argv = [
            sys.executable,
            str(TRAINING),
            "--variant",
            variant,
            "--out",
            str(outdir / f"rank{r}.json"),
        ]
        cmds.append((argv + list(train_argv), env))
    return cmds


def run_world(
    make_commands: Callable[[Path], List[tuple]], timeout: float, label: str = ""
) -> Dict:
    """Starts every rank, waits; returns merge(rank results) or {"error": ...}."""
    with tempfile.TemporaryDirectory(prefix="gw-compress-") as tmp:
        outdir = Path(tmp)
        procs = []
        for i, (argv, env) in enumerate(make_commands(outdir)):
            log = open(outdir / f"rank{i}.log", "w")  # noqa: SIM115 - closed below
            procs.append(
                (subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT), log)
            )
        deadline = time.monotonic() + timeout
        failed = None
        try:
            while any(p.poll() is None for p, _ in procs):
                bad = [i for i, (p, _) in enumerate(procs) if p.poll() not in (None, 0)]
                if bad:
                    failed = f"rank {bad[0]} exited with {procs[bad[0]][0].returncode}"
                    break
                if time.monotonic() > deadline:
                    failed = f"timed out after {timeout:.0f}s"
                    break
                time.sleep(0.2)
            bad = [i for i, (p, _) in enumerate(procs) if p.poll() not in (None, 0)]
            if failed is None and bad:
                failed = f"rank {bad[0]} exited with {procs[bad[0]][0].returncode}"
        finally:
            for p, log in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                log.close()
        if failed:
            i = bad[0] if bad else 0
            tail = (outdir / f"rank{i}.log").read_text()[-3000:]
            print(f"[{label}] FAILED: {failed}\n{tail}", file=sys.stderr, flush=True)
            return {"error": failed, "log_tail": tail}
        ranks = [json.loads((outdir / f"rank{i}.json").read_text()) for i in range(len(procs))]
    return merge(ranks)


def merge(ranks: List[Dict]) -> Dict:
    """One record per run: rank 0's evaluations, the loss averaged over ranks (each rank sees
    its shard of the global batch), the step time of the slowest rank per step."""
    head = ranks[0]
    out = {k: v for k, v in head.items() if k not in ("loss", "step_s", "wire", "rank")}
    out["loss"] = [statistics.fmean(vals) for vals in zip(*(r["loss"] for r in ranks))]
    out["step_s"] = [max(vals) for vals in zip(*(r["step_s"] for r in ranks))]
    out["median_step_s"] = statistics.median(out["step_s"])
    out["wire"] = [r["wire"] for r in ranks]
    out["loadavg_end"] = head["loadavg_end"]
    return out


def wire_ratio(run: Dict) -> float:
    """Uncompressed / compressed bytes over the run, from the engine's counters (NaN if none)."""
    comp = [w.get("compression") for w in run.get("wire", []) if w.get("compression")]
    raw = sum(c.get("raw_bytes", 0) for c in comp)
    wire = sum(c.get("wire_bytes", 0) for c in comp)
    return raw / wire if wire else float("nan")


def start_sweep(experiment: str, script: str, prefix: str, title: str, args, argv):
    """(results, outdir, plan): the header of a results.json (what ran, the exact command, where
    and when), the output directory (created), and [(variant, reason to skip it or None)]."""
    import shlex

    from training import engine_codecs_missing, parse_variant

    missing = engine_codecs_missing()
    plan = []
    for text in (v for v in args.variants.split(",") if v):
        v = parse_variant(text, args.warmup)
        plan.append((v, missing if v.needs_engine_codecs else None))
    argv = sys.argv[1:] if argv is None else argv
    host = machine()
    results = {
        "experiment": experiment,
        "title": title,
        "command": " ".join([script] + [shlex.quote(a) for a in argv]),
        "commit": git_commit(),
        "engine": engine_version(),
        "machine": host,
        "load_start": host["loadavg"],
        "config": dict(vars(args)),
        "runs": {},
    }
    return results, output_dir(args, prefix), plan


def output_dir(args, prefix: str) -> Path:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = Path(args.out or f"bench/results/{prefix}-{date}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def engine_version() -> str:
    import gradwire

    return gradwire.__version__


def machine() -> Dict:
    import platform

    import torch

    return {
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "loadavg": os.getloadavg(),
    }


def git_commit(path: Path = HERE) -> str:
    try:
        return subprocess.check_output(
            ["git", "-C", str(path), "describe", "--always", "--dirty"], text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
