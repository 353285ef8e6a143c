"""`bench/compare`: gradwire and its peers side by side, in one run, over the same sizes.

Each round runs every peer at every world size once (`gradwire bench ... --json`), peers
interleaved so that load from other work on the machine spreads over all of them; the results
are the median over rounds of each run's median time. Writes, into OUT/NAME/:

    results.md      tables (time, bus bandwidth, gradwire/peer ratios) and the targets summary
    results.json    every point with its per-round medians, every ratio, machine and commands
    ratios.png      gradwire/peer ratio against size (above 1: gradwire faster)
    absolute.png    latency and bus bandwidth of every peer
    raw/            each run's own JSON (and its log when it failed)

    bench/compare --name smoke -e 1M --rounds 1
    bench/compare --preset targets --name baseline
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import List, Optional

from gradwire.bench.errors import BenchRunError, BenchUsageError
from gradwire.bench.peers import DEFAULT_PAIRS, PEERS, Peer, parse_pairs, parse_peers, usable_pairs
from gradwire.bench.results import Row, read_json

# The comparisons the "fast collectives" issue sets as targets: 2 ranks (1 MB-256 MB bandwidth,
# 4 B-4 KB latency) and 4 ranks oversubscribed on this machine's cores.
PRESETS = {
    "targets": dict(np="2,4", collectives="allreduce", minbytes="4", maxbytes="256M", factor=4.0),
    "smoke": dict(np="2", collectives="allreduce", minbytes="4", maxbytes="1M", factor=16.0),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/compare",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--name", default=None, help="results folder name (default: UTC date and time)")
    a("--out", default=os.path.join("bench", "results"), help="parent folder of the results")
    a("--preset", choices=sorted(PRESETS), default=None, help="a named set of the options below")
    a("--np", default=None, help="world sizes, comma-separated (default 2)")
    a("--collectives", default=None, help="comma-separated (default allreduce)")
    a("-b", "--minbytes", default=None, help="smallest size (default 4)")
    a("-e", "--maxbytes", default=None, help="largest size (default 256M)")
    a("-f", "--stepfactor", type=float, default=None, help="size factor (default 4)")
    a("-d", "--datatype", default="float32", help="element type (default float32)")
    a("--peers", default=",".join(PEERS), help=f"comma-separated (default {','.join(PEERS)})")
    a(
        "--pairs",
        default=",".join(f"{x}/{y}" for x, y in DEFAULT_PAIRS),
        help="gradwire-side/peer pairs for ratios (default: %(default)s)",
    )
    a("--rounds", type=int, default=3, help="runs of every peer; results are medians (default 3)")
    a("-n", "--iters", type=int, default=20, help="timed repetitions per size (default 20)")
    a("-w", "--warmup-iters", type=int, default=3, help="warm-up repetitions (default 3)")
    a("--budget", type=float, default=2.0, help="seconds per size before fewer reps (default 2)")
    a("--timeout", type=float, default=1800.0, help="seconds one run may take (default 1800)")
    a("--note", default="", help="a line for results.md, e.g. what else loaded the machine")
    return p


def _settings(args) -> dict:
    """Options after the preset, then explicit flags, then defaults."""
    base = dict(np="2", collectives="allreduce", minbytes="4", maxbytes="256M", factor=4.0)
    base.update(PRESETS.get(args.preset or "", {}))
    explicit = dict(
        np=args.np,
        collectives=args.collectives,
        minbytes=args.minbytes,
        maxbytes=args.maxbytes,
        factor=args.stepfactor,
    )
    base.update({k: v for k, v in explicit.items() if v is not None})
    return base


def bench_args(s: dict, args, peer: Peer, world: int) -> List[str]:
    """The `gradwire bench` arguments of one run (the runner adds --json FILE)."""
    cmd = [
        s["collectives"], "-b", s["minbytes"], "-e", s["maxbytes"], "-f", f"{s['factor']:g}",
        "-d", args.datatype, "-n", str(args.iters), "-w", str(args.warmup_iters),
        "--budget", f"{args.budget:g}", "--placement", "primary", "--backend", peer.backend,
        "--np", str(world), "--label", peer.name, "--timeout", f"{args.timeout:g}",
        "--quiet", "--no-progress",
    ]  # fmt: skip
    if peer.mpi_args:
        cmd += ["--mpi-args", peer.mpi_args]
    return cmd


def run_one(cmd: List[str], json_path: str, log_path: str, timeout: float) -> None:
    """One `gradwire bench` world; its output goes to log_path (kept only if it fails)."""
    with open(log_path, "w") as log:
        try:
            p = subprocess.run(
                [sys.executable, "-m", "gradwire.bench", *cmd, "--json", json_path],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout + 60,
            )
        except subprocess.TimeoutExpired:
            raise BenchRunError(
                f"run did not finish in {timeout + 60:g}s; see {log_path}"
            ) from None
    if p.returncode != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-5:]).strip()
        raise BenchRunError(f"exit code {p.returncode}: {tail}")
    os.remove(log_path)


def source_revision() -> str:
    """The git commit of the working tree the comparison ran in ("+dirty" with local changes)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        s = _settings(args)
        peers = parse_peers(args.peers)
        pairs = usable_pairs(parse_pairs(args.pairs), peers)
        worlds = [int(x) for x in str(s["np"]).split(",") if x.strip()]
        if args.rounds < 1 or not peers or not worlds:
            raise BenchUsageError("need --rounds >= 1, at least one peer and one world size")
        name = args.name or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
        out_dir = os.path.join(args.out, name)
        raw_dir = os.path.join(out_dir, "raw")
        os.makedirs(raw_dir, exist_ok=True)
    except (BenchUsageError, ValueError) as e:
        print(f"bench/compare: error: {e}", file=sys.stderr)
        return 2

    from gradwire.bench.machine import describe

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = describe()
    rows: List[Row] = []
    runs, failures = [], []
    total, done = args.rounds * len(worlds) * len(peers), 0
    t_start = time.monotonic()
    for rnd in range(1, args.rounds + 1):
        for world in worlds:
            for peer in peers:
                done += 1
                stem = f"{peer.name}-np{world}-r{rnd}"
                json_path = os.path.join(raw_dir, stem + ".json")
                cmd = bench_args(s, args, peer, world)
                runs.append({"peer": peer.name, "world": world, "round": rnd,
                             "command": f"gradwire bench {shlex.join(cmd)} --json raw/{stem}.json"})  # fmt: skip
                print(f"[{done}/{total}] {time.monotonic() - t_start:7.1f}s round {rnd} "
                      f"np={world} {peer.name}", file=sys.stderr, flush=True)  # fmt: skip
                try:
                    run_one(cmd, json_path, os.path.join(raw_dir, stem + ".log"), args.timeout)
                except BenchRunError as e:
                    failures.append(f"{stem}: {e}")
                    print(f"    failed: {e}", file=sys.stderr)
                    continue
                rows += read_json(json_path)[0]

    from gradwire.bench.compare_report import write_outputs

    meta = {
        "name": name,
        "started_utc": started,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "source": source_revision(),
        "note": args.note,
        "command": "bench/compare " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "settings": {
            **s,
            "datatype": args.datatype,
            "rounds": args.rounds,
            "iters": args.iters,
            "warmup": args.warmup_iters,
            "budget_s": args.budget,
        },  # fmt: skip
        "peers": {
            p.name: {"backend": p.backend, "mpi_args": p.mpi_args, "about": p.about} for p in peers
        },  # fmt: skip
        "pairs": pairs,
        "runs": runs,
        "failures": failures,
    }
    write_outputs(out_dir, rows, meta)
    print(f"results in {out_dir}/ (results.md, results.json, ratios.png, absolute.png)",
          file=sys.stderr)  # fmt: skip
    return 1 if failures else 0
