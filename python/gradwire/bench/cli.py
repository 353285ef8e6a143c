"""`gradwire bench`: nccl-tests-style collective benchmarks for gradwire and its peers.

gradwire bench allreduce -b 4 -e 256M -f 2 --np 2            # gradwire via torch.distributed
gradwire bench allreduce,allgather -d float32,float16 --np 2,4 --json r.json --plot r.png
gradwire bench all -b 1K -e 1M --backend gloo --np 2          # the same calls on gloo
gradwire bench allreduce --backend gradwire-native --np 2     # gradwire.comm on numpy
gradwire bench allreduce --backend mpi --np 2 --mpi-args "--mca btl tcp,self"
torchrun --nproc-per-node 2 -m gradwire.bench allreduce -e 1M # under any launcher
mpirun -n 2 python -m gradwire.bench allreduce --backend mpi
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from typing import List, Optional

from gradwire.bench.backends import BACKENDS, backend_class
from gradwire.bench.collectives import parse_collectives
from gradwire.bench.dtypes import parse_dtypes
from gradwire.bench.env import world_from_env
from gradwire.bench.errors import BenchRunError, BenchUsageError
from gradwire.bench.launch import CHILD_ENV, JSON_ENV, launch_local, launch_mpi
from gradwire.bench.options import Options
from gradwire.bench.results import Row, read_json, write_json
from gradwire.bench.sizes import parse_size, size_range

DEFAULT_NP = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gradwire bench",
        description="Collective microbenchmarks: nccl-tests-style bandwidth tables, OSU-style "
        "latency tables, JSON and plots, for gradwire and its peers (gloo, MPI).",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a(
        "collectives",
        nargs="?",
        default="allreduce",
        help="comma-separated: allreduce, broadcast, reduce, allgather, reduce_scatter, alltoall, "
        "barrier, sendrecv, or all (default: allreduce)",
    )
    a("-b", "--minbytes", default="4", help="smallest size (default 4); K, M, G suffixes")
    a("-e", "--maxbytes", default="64M", help="largest size (default 64M)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-f", "--stepfactor", type=float, default=None, help="size factor (default 2)")
    g.add_argument("-i", "--stepbytes", default=None, help="size increment instead of a factor")
    a("-d", "--datatype", default="float32", help="comma-separated types, or all (default float32)")
    a("-o", "--op", default="sum", help="reduction: sum, prod, min, max, avg (default sum)")
    a("-r", "--root", type=int, default=0, help="root of broadcast and reduce (default 0)")
    a("-n", "--iters", type=int, default=20, help="timed repetitions per row (default 20)")
    a("-w", "--warmup-iters", type=int, default=5, help="untimed repetitions first (default 5)")
    a(
        "--warmup-time",
        type=float,
        default=0.1,
        help="fast rows warm up for at least this many seconds, at most 1000 calls (default 0.1)",
    )
    a(
        "--budget",
        type=float,
        default=None,
        help="seconds per row: fewer repetitions for slow rows (at least --min-iters)",
    )
    a("--min-iters", type=int, default=5, help="repetitions a --budget keeps (default 5)")
    a("-c", "--check", type=int, choices=(0, 1), default=1, help="count wrong results (default 1)")
    a(
        "--placement",
        default="out,in",
        help="out, in, out,in (default), or primary: the one every backend has (in-place for "
        "allreduce, broadcast, reduce; out-of-place for the others)",
    )
    a("--backend", default="gradwire", help=f"one of {', '.join(BACKENDS)} (default gradwire)")
    a(
        "--np",
        default=None,
        help="start this many local ranks (comma-separated for several world sizes); without it, "
        "under a launcher, use the launcher's world; otherwise 2",
    )
    a("--mpi-args", default="", help="extra mpirun arguments for --backend mpi --np N")
    a(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds a world may run, and each collective may take (default 600)",
    )
    a(
        "--codec",
        default=None,
        help="gradwire compression spec (int8, topk:0.01, ...; see docs/compression.md): "
        "reports wire bytes, ratio and effective busbw; turns the result check off",
    )
    a("--json", default=None, metavar="FILE", help="write every row as JSON")
    a("--plot", default=None, metavar="FILE.png", help="plot latency and bus bandwidth")
    a("--label", default="", help="name for this run's rows in JSON and plots")
    a("--no-progress", action="store_true", help="no progress bar on stderr")
    a("-q", "--quiet", action="store_true", help="no tables on stdout")
    return p


def build_options(args: argparse.Namespace) -> Options:
    lo, hi = parse_size(args.minbytes), parse_size(args.maxbytes)
    step = parse_size(args.stepbytes) if args.stepbytes is not None else None
    factor = args.stepfactor if args.stepfactor is not None else (None if step else 2.0)
    opts = Options(
        collectives=parse_collectives(args.collectives),
        sizes=size_range(lo, hi, factor=factor, step=step),
        dtypes=parse_dtypes(args.datatype),
        backend=args.backend,
        redop=args.op.lower(),
        root=args.root,
        iters=args.iters,
        warmup=args.warmup_iters,
        warmup_time=args.warmup_time,
        min_iters=args.min_iters,
        budget=args.budget,
        check=bool(args.check),
        placements=tuple(p.strip() for p in args.placement.split(",") if p.strip()),
        timeout=args.timeout,
        label=args.label,
        progress=not args.no_progress,
        tables=not args.quiet,
        codec=args.codec,
    ).validate()
    cls = backend_class(opts.backend)
    for coll in opts.collectives:
        for dtype in opts.dtypes:
            cls.check_supported(dtype, opts.redop if coll.reduces else "sum")
    return opts


def _world_sizes(text: str) -> List[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BenchUsageError(f"--np takes numbers like 2 or 2,4; got '{text}'") from None
    if not sizes or any(n < 1 for n in sizes):
        raise BenchUsageError(f"--np needs world sizes of at least 1; got '{text}'")
    return sizes


def _check_mpi_available() -> None:
    if importlib.util.find_spec("mpi4py") is None:
        from gradwire.bench.backends.mpi import INSTALL_HINT

        raise BenchUsageError(INSTALL_HINT)


def _launch_all(args, opts: Options, argv: List[str], world_sizes: List[int]) -> None:
    """Start one world per size, then merge their rows into --json/--plot."""
    rows: List[Row] = []
    meta: dict = {}
    with tempfile.TemporaryDirectory(prefix="gradwire-bench-") as tmp:
        for n in world_sizes:
            opts.check_world(n)
            path = os.path.join(tmp, f"np{n}.json")
            if opts.backend == "mpi":
                launch_mpi(argv, n, opts.timeout, path, args.mpi_args)
            else:
                launch_local(argv, n, opts.timeout, path)
            world_rows, meta = read_json(path)
            rows += world_rows
    meta["argv"] = ["gradwire", "bench", *argv]
    if args.json:
        write_json(args.json, rows, meta)
    if args.plot:
        from gradwire.bench.plot import plot_rows

        plot_rows(rows, args.plot)
        print(f"# plot written to {args.plot}", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of `gradwire bench` and `python -m gradwire.bench`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        opts = build_options(args)
        if os.environ.get(CHILD_ENV):  # one rank of a world this command started
            from gradwire.bench.worker import run_worker

            rank, size = world_from_env() or (0, 1)
            run_worker(opts, rank, size, os.environ.get(JSON_ENV), None)
            return 0
        world = world_from_env()
        if opts.backend == "mpi":
            _check_mpi_available()
        if args.np is None and world is not None:  # under torchrun, mpirun, gradwire run
            from gradwire.bench.worker import run_worker

            opts.extra["argv"] = ["gradwire", "bench", *argv]
            run_worker(opts, world[0], world[1], args.json, args.plot)
            return 0
        if args.np is not None and world is not None:
            raise BenchUsageError("--np starts ranks itself; under a launcher leave it out")
        if args.np is None:
            if opts.backend == "mpi":
                raise BenchUsageError("--backend mpi runs under mpirun, or pass --np N")
            print(
                f"# no launcher found: starting {DEFAULT_NP} local ranks (--np to change)",
                file=sys.stderr,
            )
        _launch_all(args, opts, argv, _world_sizes(args.np or str(DEFAULT_NP)))
        return 0
    except BenchUsageError as e:
        print(f"gradwire bench: error: {e}", file=sys.stderr)
        return 2
    except BenchRunError as e:
        print(f"gradwire bench: {e}", file=sys.stderr)
        return 1
