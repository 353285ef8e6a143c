"""What each benchmarked collective moves: element counts per size, buffer layout per placement,
and the bus-bandwidth factor.

Sizes and counts follow nccl-tests: the size of a row is the bytes of the largest buffer of the
call (allgather: the gathered output; reduce_scatter: the input), `count` is the count argument
of the call (allgather, reduce_scatter, alltoall: elements per rank block). Bus bandwidth is
algorithm bandwidth (size / time) times a factor that makes it comparable to the link speed,
as defined in nccl-tests' doc/PERFORMANCE.md:

    allreduce       2(n-1)/n        allgather, reduce_scatter, alltoall   (n-1)/n
    broadcast, reduce, sendrecv     1

>>> c = COLLECTIVES["allgather"]
>>> c.layout(1024, itemsize=4, world=4)
Layout(count=64, send=64, recv=256, nbytes=1024)
>>> c.busbw_factor(4)
0.75
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Tuple

from gradwire.bench.errors import BenchUsageError

OUT_OF_PLACE, IN_PLACE = "out", "in"
PLACEMENTS = (OUT_OF_PLACE, IN_PLACE)
PRIMARY = "primary"  # as a placement choice: each collective's `primary` placement


class Layout(NamedTuple):
    count: int  # the call's count argument
    send: int  # elements of the send buffer
    recv: int  # elements of the receive buffer
    nbytes: int  # the size reported for the row


@dataclass(frozen=True)
class Collective:
    """`blocked` collectives split their large buffer into one block per rank."""

    name: str
    reduces: bool = False
    rooted: bool = False
    blocked: bool = False
    big_side: str = "both"  # which buffer holds `count * world` elements: send, recv or both
    bus_factor: str = "1"  # "1", "(n-1)/n" or "2(n-1)/n"
    sized: bool = True  # barrier moves no data
    # the placement every backend offers (torch's allreduce/broadcast/reduce are in place
    # only): the one latency tables and cross-library comparisons use
    primary: str = OUT_OF_PLACE

    def busbw_factor(self, world: int) -> float:
        n = world
        return {"1": 1.0, "(n-1)/n": (n - 1) / n, "2(n-1)/n": 2 * (n - 1) / n}[self.bus_factor]

    def layout(self, nbytes: int, itemsize: int, world: int) -> Optional[Layout]:
        """Buffers for a row of (about) `nbytes`; None when the size is too small to give every
        rank a block (nccl-tests skips those sizes too)."""
        if not self.sized:
            return Layout(0, 0, 0, 0)
        elems = nbytes // itemsize
        if not self.blocked:
            return Layout(elems, elems, elems, elems * itemsize) if elems else None
        block = elems // world
        if block == 0:
            return None
        full = block * world
        send = full if self.big_side in ("send", "both") else block
        recv = full if self.big_side in ("recv", "both") else block
        return Layout(block, send, recv, full * itemsize)

    def in_place_views(self, rank: int, layout: Layout) -> Tuple[slice, slice]:
        """(send, recv) element ranges inside the single buffer of an in-place call, as
        nccl-tests lays them out: allgather sends from its own block of the output,
        reduce_scatter receives into its own block of the input."""
        whole = slice(0, max(layout.send, layout.recv))
        own = slice(rank * layout.count, (rank + 1) * layout.count)
        if self.name == "allgather":
            return own, whole
        if self.name == "reduce_scatter":
            return whole, own
        return whole, whole


COLLECTIVES: Dict[str, Collective] = {
    c.name: c
    for c in (
        Collective("allreduce", reduces=True, bus_factor="2(n-1)/n", primary=IN_PLACE),
        Collective("broadcast", rooted=True, primary=IN_PLACE),
        Collective("reduce", reduces=True, rooted=True, primary=IN_PLACE),
        Collective("allgather", blocked=True, big_side="recv", bus_factor="(n-1)/n"),
        Collective(
            "reduce_scatter", reduces=True, blocked=True, big_side="send", bus_factor="(n-1)/n"
        ),
        Collective("alltoall", blocked=True, bus_factor="(n-1)/n"),
        Collective("barrier", sized=False),
        Collective("sendrecv"),
    )
}

_ALIASES = {"all_reduce": "allreduce", "all_gather": "allgather", "all_to_all": "alltoall"}
_ALIASES.update({"reducescatter": "reduce_scatter", "send_recv": "sendrecv", "bcast": "broadcast"})

REDOPS = ("sum", "prod", "min", "max", "avg")


def parse_collectives(text: str) -> List[Collective]:
    """A comma-separated list of collective names, or 'all'."""
    if text.strip().lower() == "all":
        return list(COLLECTIVES.values())
    out = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        name = _ALIASES.get(part, part)
        if name not in COLLECTIVES:
            raise BenchUsageError(
                f"unknown collective '{part}' (one of {', '.join(COLLECTIVES)}, or all)"
            )
        out.append(COLLECTIVES[name])
    return out
