"""Folding repeated runs into one number per point, and gradwire-over-peer ratios.

A point is (peer, world size, collective, type, size) at the collective's primary placement.
Each run (round) gives the point a median time over its repetitions; the point's value is the
median over rounds, so one disturbed round (another job on the machine) does not move it.

The ratio of a pair (gradwire side, peer) is peer time / gradwire time, which equals gradwire
busbw / peer busbw: above 1 gradwire is faster, below 1 the peer is.

>>> from gradwire.bench.results import Row, Timing
>>> def row(label, t):
...     return Row(label, "allreduce", "float32", "sum", -1, 2, 64, 16, "in", 5, 0,
...                Timing(t, t, t, t, t), 0.0, 0.0, label)
>>> pts = fold([row("gw", 2.0), row("gw", 4.0), row("gw", 3.0), row("gloo", 6.0)])
>>> pts[("gw", 2, "allreduce", "float32", 64)].time, len(pts)
(3.0, 2)
>>> ratios(pts, [("gw", "gloo")])[0].ratio
2.0
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from gradwire.bench.collectives import COLLECTIVES
from gradwire.bench.results import Row, bandwidths

Key = Tuple[str, int, str, str, int]  # peer, world, op, dtype, nbytes


@dataclass
class Point:
    peer: str
    world: int
    op: str
    dtype: str
    nbytes: int
    count: int
    placement: str
    time: float  # median over rounds of each round's median, seconds
    rounds: List[float]  # each round's median
    algbw: float
    busbw: float
    wrong: int


@dataclass
class Ratio:
    fast: str  # the gradwire side
    peer: str
    world: int
    op: str
    dtype: str
    nbytes: int
    ratio: float  # peer time / gradwire time


def fold(rows: Sequence[Row]) -> Dict[Key, Point]:
    """One Point per key from rows of several rounds (only primary-placement rows)."""
    groups: Dict[Key, List[Row]] = {}
    for r in rows:
        if r.placement != COLLECTIVES[r.op].primary:
            continue
        groups.setdefault((r.label, r.world, r.op, r.dtype, r.nbytes), []).append(r)
    points = {}
    for key, rs in groups.items():
        per_round = [r.time.median for r in rs]
        t = statistics.median(per_round)
        alg, bus = bandwidths(key[4], t, COLLECTIVES[key[2]].busbw_factor(key[1]))
        points[key] = Point(
            *key,
            count=rs[0].count,
            placement=rs[0].placement,
            time=t,
            rounds=per_round,
            algbw=alg,
            busbw=bus,
            wrong=sum(r.wrong or 0 for r in rs),
        )
    return points


def ratios(points: Dict[Key, Point], pairs: Sequence[Tuple[str, str]]) -> List[Ratio]:
    """Every point measured by both sides of a pair."""
    out = []
    for fast, peer in pairs:
        for (name, world, op, dtype, nbytes), p in sorted(points.items()):
            other = points.get((peer, world, op, dtype, nbytes))
            if name == fast and other is not None and p.time > 0:
                out.append(Ratio(fast, peer, world, op, dtype, nbytes, other.time / p.time))
    return out


def geomean(values: Sequence[float]) -> float:
    import math

    values = [v for v in values if v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")
