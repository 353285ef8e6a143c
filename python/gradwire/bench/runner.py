"""The measurement loop that runs on every rank.

For each collective x type x size x placement: allocate, bind the call, fill the check pattern
and run once to count wrong elements, warm up, then time repetitions, each after a barrier and
each timed around the call alone. Every rank then shares its times; a repetition's time is that
of its slowest rank (the collective is done when the last rank is), and the row reports
statistics over repetitions.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np

from gradwire.bench import buffers
from gradwire.bench.backends import Backend, Call
from gradwire.bench.check import Pattern, count_wrong, expected_fn
from gradwire.bench.collectives import IN_PLACE, PRIMARY, Collective, Layout
from gradwire.bench.dtypes import DType
from gradwire.bench.options import Options
from gradwire.bench.results import Row, Timing, bandwidths


def plan(opts: Options, backend: Backend) -> Iterator[Tuple[Collective, DType, List[int]]]:
    """(collective, type, sizes) in run order; barrier has the single size 0."""
    for coll in opts.collectives:
        for dtype in opts.dtypes if coll.sized else opts.dtypes[:1]:
            sizes = [s for s in opts.sizes if coll.layout(s, dtype.itemsize, backend.size)]
            yield coll, dtype, sizes if coll.sized else [0]


def placements(opts: Options, backend: Backend, coll: Collective) -> List[str]:
    chosen = [coll.primary if p == PRIMARY else p for p in opts.placements]
    return [p for p in dict.fromkeys(chosen) if backend.supports(coll, p)]


def count_steps(opts: Options, backend: Backend) -> int:
    return sum(
        len(sizes) * len(placements(opts, backend, c)) for c, _, sizes in plan(opts, backend)
    )


def measure_size(
    opts: Options, backend: Backend, coll: Collective, dtype: DType, nbytes: int, place: str
) -> Row:
    world = backend.size
    layout = coll.layout(nbytes, dtype.itemsize, world)
    send, recv = _buffers(backend, coll, dtype, layout, place)
    root = opts.root if coll.rooted else -1
    redop = opts.redop if coll.reduces else "none"
    call = Call(dtype, opts.redop, max(root, 0), place == IN_PLACE)
    run = backend.bind(coll, send, recv, call)

    wrong = _check(opts, backend, coll, dtype, layout, send, recv, run) if opts.check else 0
    warm = [_timed(backend, run)] if opts.warmup else []
    shared = backend.allgather_f64(np.array([wrong, warm[0] if warm else 0.0]))
    warm += [_timed(backend, run) for _ in range(_more_warm_ups(opts, float(shared[:, 1].max())))]
    typical = float(backend.allgather_f64(np.array([np.median(warm) if warm else 0.0])).max())
    for _ in range(_timed_warm_ups(opts, typical, len(warm))):
        _timed(backend, run)

    before = backend.compression_bytes()
    times = np.array([_timed(backend, run) for _ in range(_iterations(opts, typical))])
    slowest = backend.allgather_f64(times).max(axis=0)
    wire, ratio = _compression(backend, before, len(times))

    timing = Timing.of(slowest)
    alg, bus = bandwidths(layout.nbytes, timing.median, coll.busbw_factor(world))
    return Row(
        backend=backend.name,
        op=coll.name,
        dtype=dtype.name,
        redop=redop,
        root=root,
        world=world,
        nbytes=layout.nbytes,
        count=layout.count,
        placement=place,
        iters=len(times),
        wrong=int(shared[:, 0].sum()) if opts.check and coll.sized else None,
        time=timing,
        algbw=alg,
        busbw=bus,
        label=opts.label or backend.name,
        codec=backend.codec,
        wire_bytes=wire,
        ratio=ratio,
    )


def _compression(backend: Backend, before, calls: int):
    """(wire bytes per call and rank, dense/wire ratio) over the timed calls, or (None, None)."""
    if backend.codec is None or before is None or calls == 0:
        return None, None
    raw, wire = (a - b for a, b in zip(backend.compression_bytes(), before))
    per_rank = backend.allgather_f64(np.array([raw, wire], dtype=np.float64)).sum(axis=0)
    total_raw, total_wire = float(per_rank[0]), float(per_rank[1])
    mean_wire = total_wire / backend.size / calls
    return mean_wire, (total_raw / total_wire if total_wire else 1.0)


def _buffers(backend: Backend, coll: Collective, dtype: DType, layout: Layout, place: str):
    if place == IN_PLACE:
        whole = backend.alloc(max(layout.send, layout.recv), dtype)
        s, r = coll.in_place_views(backend.rank, layout)
        return whole[s], whole[r]
    return backend.alloc(layout.send, dtype), backend.alloc(layout.recv, dtype)


def _check(opts, backend, coll, dtype, layout, send, recv, run) -> int:
    """Elements of this rank's result that differ from what the pattern must give."""
    if not coll.sized:
        return 0
    pattern = Pattern(opts.redop, backend.size, dtype.exact)
    # a result the call never wrote must not pass for a right one; in place, the send pattern
    # written next overwrites this where the buffers overlap
    buffers.fill(recv, layout.recv, lambda lo, hi: np.full(hi - lo, -1, dtype=np.int64))
    buffers.fill(send, layout.send, lambda lo, hi: pattern.values(backend.rank, lo, hi))
    run()
    if coll.name == "reduce" and backend.rank != opts.root:
        return 0  # only the root's buffer is defined after a reduce
    expected = expected_fn(coll, pattern, layout, backend.rank, opts.root)
    return count_wrong(lambda lo, hi: buffers.read(recv, lo, hi), expected, layout.recv, dtype)


def _timed(backend: Backend, run: Callable[[], None]) -> float:
    """One call after a barrier; the timer surrounds the call alone."""
    backend.barrier()
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def _more_warm_ups(opts: Options, first: float) -> int:
    """Warm-up calls after the first (whose slowest-rank time is `first`): a --budget stops
    warming up slow rows early. Every rank computes the same count from the same times."""
    more = max(0, opts.warmup - 1)
    if opts.budget is not None and first > 0:
        more = min(more, int(opts.budget // first))
    return more


def _timed_warm_ups(opts: Options, typical: float, done: int) -> int:
    """Further warm-up calls so that a fast row warms up for --warmup-time (at most
    MAX_TIMED_WARM_UPS calls in all), from the median of the -w warm-ups (`typical`, slowest
    rank): a fresh world's first few dozen small calls run several times slower (torch's first
    calls through a process group, ranks still being placed on cores), and so do the first
    calls after a size change; -w alone timed that instead of the collective. The first call
    is no guide (it pays the world's start-up). Every rank computes the same count."""
    if done == 0 or typical <= 0 or opts.warmup_time <= 0:
        return 0
    return max(0, min(MAX_TIMED_WARM_UPS, int(opts.warmup_time / typical)) - done)


MAX_TIMED_WARM_UPS = 1000


def _iterations(opts: Options, typical: float) -> int:
    """-n, or under a --budget as many as fit (at least --min-iters)."""
    if opts.budget is None or typical <= 0:
        return opts.iters
    return int(min(opts.iters, max(opts.min_iters, opts.budget // typical)))


def run_all(
    opts: Options, backend: Backend, on_table: Optional[Callable] = None, progress=None
) -> List[Row]:
    """Measure everything `opts` selects; `on_table(coll, dtype, rows)` after each table."""
    rows: List[Row] = []
    for coll, dtype, sizes in plan(opts, backend):
        backend.check_supported(dtype, opts.redop if coll.reduces else "sum")
        table: List[Row] = []
        for nbytes in sizes:
            for place in placements(opts, backend, coll):
                table.append(measure_size(opts, backend, coll, dtype, nbytes, place))
                if progress is not None:
                    progress.step(f"{coll.name} {dtype.name} {nbytes}B {place}")
        if on_table is not None:
            on_table(coll, dtype, table)
        rows += table
    return rows
