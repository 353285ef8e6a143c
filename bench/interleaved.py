#!/usr/bin/env python3
"""gradwire and a peer library in the same processes, alternating call by call.

`bench/compare` runs every library in its own processes, one after the other, and takes medians
over rounds. On a machine whose speed drifts (a shared or virtual host: here the same 4 MB
allreduce runs at 0.7 ms for a few hundred milliseconds, then at 1.5-2.5 ms), a ratio of two
such runs measures the drift as much as the libraries. This benchmark removes the drift instead
of averaging it: both libraries live in the same ranks, on the same buffer, and every repetition
times one call of each, in alternating order, after a barrier. Ratios are medians over those
paired repetitions.

    bench/interleaved.py [--np 2] [-b 1M] [-e 256M] [-f 4] [-n 20] [--out DIR]

Pairs (each launched as one world of --np ranks on this host):
  torch:  gradwire vs gloo, both through torch.distributed (`dist.all_reduce`), launched by
          `gradwire run`; gloo is a second process group over the same ranks.
  native: gradwire.comm (numpy) vs OpenMPI's shared memory (vader) through mpi4py, launched by
          mpirun; skipped with the reason when mpirun or mpi4py is missing.

Each size: both libraries' results are checked (float32 SUM of rank-dependent integers; #wrong
counts mismatching elements), then 2 warm-up calls each, then the paired repetitions on a buffer
of zeros (float additions take the same time whatever the values, and zeros never overflow).
Writes DIR/results.md and DIR/results.json (default bench/results/interleaved-<UTC date>).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = {
    "torch": ("gradwire", "gloo", "torch.distributed all_reduce"),
    "native": ("gradwire-native", "mpi-shm", "gradwire.comm vs mpi4py Allreduce (vader)"),
}
MPI_ARGS = ["--mca", "pml", "ob1", "--mca", "btl", "self,vader"]


# ---- worker side -------------------------------------------------------------------------------
def _open_pair(pair: str):
    """(rank, size, gradwire call factory, peer call factory, barrier pair, close)."""
    if pair == "torch":
        import gradwire  # noqa: F401 - registers the backend
        import torch
        import torch.distributed as dist

        dist.init_process_group("gradwire")
        gloo = dist.new_group(backend="gloo")

        def wrap(a):
            return torch.from_numpy(a)

        def ours(a):
            t = wrap(a)
            return lambda: dist.all_reduce(t)

        def theirs(a):
            t = wrap(a)
            return lambda: dist.all_reduce(t, group=gloo)

        barriers = (dist.barrier, lambda: dist.barrier(group=gloo))
        return (
            dist.get_rank(),
            dist.get_world_size(),
            ours,
            theirs,
            barriers,
            dist.destroy_process_group,
        )

    from gradwire.comm import Communicator
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(world.rank), str(world.size)
    comm = Communicator.from_env(name="interleaved")
    return (
        world.rank,
        world.size,
        lambda a: lambda: comm.allreduce(a),
        lambda a: lambda: world.Allreduce(MPI.IN_PLACE, a),
        (comm.barrier, world.Barrier),
        comm.close,
    )


def _allgather_max(pair: str, values):
    """Element-wise max over ranks of a list of floats (the slowest rank's time)."""
    if pair == "torch":
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()
    import numpy as np
    from mpi4py import MPI

    a = np.array(values, dtype=np.float64)
    MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, a, op=MPI.MAX)
    return a.tolist()


def worker(args) -> None:
    import numpy as np
    from gradwire.bench.sizes import format_size, size_range

    rank, size, ours, theirs, (bar_ours, bar_theirs), close = _open_pair(args.worker)
    names = PAIRS[args.worker][:2]
    rows = []
    for nbytes in size_range(args.minbytes, args.maxbytes, factor=args.stepfactor):
        n = nbytes // 4
        a = np.empty(n, dtype=np.float32)
        calls = (ours(a), theirs(a))
        wrong = []
        for call in calls:  # exact check: small integers sum exactly in float32
            a[:] = (np.arange(n) % 97 + rank).astype(np.float32)
            call()
            want = (np.arange(n) % 97 * size + size * (size - 1) // 2).astype(np.float32)
            wrong.append(int(np.count_nonzero(a != want)))
        a[:] = 0
        for call in calls:
            call()
            call()
        times = ([], [])
        for i in range(args.iters):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for k in order:
                (bar_ours if k == 0 else bar_theirs)()
                t0 = time.perf_counter()
                calls[k]()
                times[k].append(time.perf_counter() - t0)
        slowest = [_allgather_max(args.worker, ts) for ts in times]
        wrong = [int(w) for w in _allgather_max(args.worker, [float(w) for w in wrong])]
        med = [statistics.median(ts) for ts in slowest]
        paired = statistics.median(t / o for o, t in zip(*slowest))
        rows.append(
            {
                "nbytes": nbytes,
                "iters": args.iters,
                names[0]: {"median_us": med[0] * 1e6, "wrong_max_rank": wrong[0]},
                names[1]: {"median_us": med[1] * 1e6, "wrong_max_rank": wrong[1]},
                "ratio_of_medians": med[1] / med[0],
                "median_paired_ratio": paired,
            }
        )
        if rank == 0 and not args.quiet:
            print(
                f"  {args.worker} np={size} {format_size(nbytes):>5}: {names[0]} {med[0] * 1e3:9.3f} ms"
                f"  {names[1]} {med[1] * 1e3:9.3f} ms  ratio {paired:5.2f}x",
                file=sys.stderr,
                flush=True,
            )
    close()
    if rank == 0:
        with open(args.json, "w") as f:
            json.dump(rows, f)


# ---- driver side -------------------------------------------------------------------------------
def _launch(pair: str, args, json_path: str) -> str:
    """Runs one pair's world; returns '' or why it was skipped."""
    from gradwire.bench.errors import BenchUsageError
    from gradwire.bench.launch import free_port, mpirun_command

    me = [sys.executable, os.path.abspath(__file__), "--worker", pair, "--json", json_path]
    me += ["-b", str(args.minbytes), "-e", str(args.maxbytes), "-f", str(args.stepfactor)]
    me += ["-n", str(args.iters)]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    if pair == "torch":
        gw = shutil.which("gradwire", path=os.path.dirname(sys.executable)) or "gradwire"
        cmd = [gw, "run", "--nproc-per-node", str(args.np), "--no-python"] + me
    else:
        try:
            import mpi4py  # noqa: F401

            cmd = mpirun_command(args.np, " ".join(MPI_ARGS))
        except ImportError:
            return "mpi4py is not installed"
        except BenchUsageError as e:
            return str(e)
        cmd += ["-x", "MASTER_ADDR", "-x", "MASTER_PORT"] + me
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    subprocess.run(cmd, env=env, check=True, timeout=args.timeout)
    return ""


def _report(meta: dict, results: dict) -> str:
    from gradwire.bench.sizes import format_size

    lines = [
        f"# Interleaved comparison `{meta['name']}`",
        "",
        f"- measured {meta['start']} to {meta['end']} (UTC)",
        f"- machine: {meta['machine']}; load average at start {meta['load']}",
        f"- software: {meta['software']}, source {meta['source']}",
        f"- command: `{meta['command']}`",
        "",
        "Both libraries run in the same processes on the same buffer; every repetition times one "
        "call of each (order alternating), after a barrier; a call's time is that of the slowest "
        "rank. **Ratio = median over repetitions of (peer time / gradwire time)**: above 1 "
        "gradwire is faster. busbw follows nccl-tests (2(n-1)/n x bytes / time).",
        "",
    ]
    for pair, by_np in results.items():
        ours, theirs, what = PAIRS[pair]
        for np_, res in by_np.items():
            lines.append(f"## {what}, {np_} ranks")
            lines.append("")
            if isinstance(res, str):
                lines += [f"skipped: {res}", ""]
                continue
            lines.append(
                f"| size | {ours} (us) | {theirs} (us) | {ours} busbw (GB/s) | "
                f"{theirs} busbw (GB/s) | ratio | #wrong |"
            )
            lines.append("|---|---:|---:|---:|---:|---:|---:|")
            factor = 2 * (int(np_) - 1) / int(np_)
            for r in res:
                a, b = r[ours]["median_us"], r[theirs]["median_us"]
                w = r[ours]["wrong_max_rank"] + r[theirs]["wrong_max_rank"]
                lines.append(
                    f"| {format_size(r['nbytes'])} | {a:.1f} | {b:.1f} | "
                    f"{factor * r['nbytes'] / a / 1e3:.2f} | {factor * r['nbytes'] / b / 1e3:.2f} | "
                    f"{r['median_paired_ratio']:.2f}x | {w} |"
                )
            lines.append("")
    return "\n".join(lines)


def _use_repo_venv() -> None:
    """Run under the repository's .venv (make setup) when this Python lacks gradwire."""
    try:
        import gradwire  # noqa: F401
    except ImportError:
        venv = os.path.join(_ROOT, ".venv", "bin", "python")
        in_venv = os.path.realpath(sys.prefix) == os.path.realpath(os.path.join(_ROOT, ".venv"))
        if os.path.exists(venv) and not in_venv:
            os.execv(venv, [venv, os.path.abspath(__file__), *sys.argv[1:]])
        sys.exit(
            "bench/interleaved.py: gradwire is not installed for this Python; run 'make setup'"
        )


def main() -> int:
    _use_repo_venv()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--np", default="2", help="world sizes, comma-separated")
    p.add_argument("--pairs", default="torch,native", help="torch,native")
    p.add_argument("-b", "--minbytes", default="1M")
    p.add_argument("-e", "--maxbytes", default="256M")
    p.add_argument("-f", "--stepfactor", type=float, default=4)
    p.add_argument("-n", "--iters", type=int, default=20, help="paired repetitions per size")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per world")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None, help="default bench/results/interleaved-<date>")
    p.add_argument("--worker", choices=sorted(PAIRS), help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args()
    from gradwire.bench.sizes import parse_size

    args.minbytes, args.maxbytes = parse_size(args.minbytes), parse_size(args.maxbytes)
    if args.minbytes < 4 or args.minbytes > args.maxbytes or args.stepfactor <= 1:
        p.error("need 4 <= --minbytes <= --maxbytes and --stepfactor > 1")
    if args.worker:
        worker(args)
        return 0
    pairs = [x for x in args.pairs.split(",") if x]
    for x in pairs:
        if x not in PAIRS:
            p.error(f"unknown pair {x!r}; choose from {', '.join(PAIRS)}")
    nps = [int(x) for x in args.np.split(",")]
    start = dt.datetime.now(dt.timezone.utc)
    name = args.name or f"interleaved-{start:%Y-%m-%d}"
    out = os.path.abspath(args.out or os.path.join(_ROOT, "bench", "results", name))
    os.makedirs(out, exist_ok=True)
    os.chdir(_ROOT)  # source_revision() asks git about the working directory
    from gradwire.bench.compare import source_revision
    from gradwire.bench.machine import describe

    machine = describe()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in pairs:
            for np_ in nps:
                path = os.path.join(tmp, f"{pair}-{np_}.json")
                print(f"[interleaved] {pair}, {np_} ranks ...", file=sys.stderr, flush=True)
                args.np = np_
                why = _launch(pair, args, path)
                results.setdefault(pair, {})[str(np_)] = why or json.load(open(path))
    meta = {
        "name": name,
        "start": start.isoformat(timespec="seconds"),
        "end": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{machine.get('cpu')}, {machine.get('cores')} cores",
        "load": machine.get("loadavg_at_start"),
        "command": "bench/interleaved.py " + " ".join(sys.argv[1:]),
        "software": {k: machine.get(k) for k in ("python", "numpy", "torch", "gradwire")},
        "source": source_revision(),
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(_report(meta, results) + "\n")
    print(f"results in {out}/ (results.md, results.json)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
