"""Text tables for people: nccl-tests' bandwidth table and OSU's latency table.

The nccl-tests layout, one line per size with out-of-place and in-place side by side::

    #       size         count      type   redop    root     time   algbw   busbw #wrong ...
    #        (B)    (elements)                               (us)  (GB/s)  (GB/s)        ...
         1048576        262144   float32     sum      -1    512.3    2.05    2.05      0 ...

`n/a` marks a placement the library's API cannot express; `N/A` in #wrong means the check was
off. The OSU layout lists avg/min/max/p99 latency of the primary placement per size.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from gradwire.bench.collectives import IN_PLACE, OUT_OF_PLACE, PLACEMENTS
from gradwire.bench.results import Row

_LEFT = f"{'size':>12} {'count':>13} {'type':>9} {'redop':>7} {'root':>7}"
_LEFT_UNITS = f"{'(B)':>12} {'(elements)':>13} {'':>9} {'':>7} {'':>7}"
_SIDE = f"{'time':>9} {'algbw':>7} {'busbw':>7} {'#wrong':>6}"
_SIDE_UNITS = f"{'(us)':>9} {'(GB/s)':>7} {'(GB/s)':>7} {'':>6}"


def title(op: str, dtype: str, redop: str, backend: str, api: str, world: int, how: str) -> str:
    return (
        f"# {op} {dtype} redop={redop} | backend {backend} via {api} | {world} ranks | {how}\n"
        f"# time: median over repetitions of the slowest rank's time; a barrier precedes each\n"
    )


def nccl_header() -> str:
    pad, w = " " * (len(_LEFT) - 1), len(_SIDE)
    return (
        f"#{pad} {'out-of-place':^{w}} {'in-place':^{w}}\n"
        f"#{_LEFT[1:]} {_SIDE} {_SIDE}\n"
        f"#{_LEFT_UNITS[1:]} {_SIDE_UNITS} {_SIDE_UNITS}"
    )


def _side(row: Optional[Row]) -> str:
    if row is None:
        return f"{'n/a':>9} {'n/a':>7} {'n/a':>7} {'n/a':>6}"
    wrong = "N/A" if row.wrong is None else str(row.wrong)
    return f"{_us(row.time.median):>9} {row.algbw:>7.3f} {row.busbw:>7.3f} {wrong:>6}"


def _us(seconds: float) -> str:
    """Microseconds in at most 9 characters: 12.34, 12345.6, 1234567."""
    us = seconds * 1e6
    return f"{us:.2f}" if us < 1e5 else f"{us:.1f}" if us < 1e6 else f"{us:.0f}"


def nccl_line(by_placement: Dict[str, Row]) -> str:
    """One size: {"out": Row, "in": Row}, either may be missing."""
    r = next(iter(by_placement.values()))
    left = f"{r.nbytes:>12} {r.count:>13} {r.dtype:>9} {r.redop:>7} {r.root:>7}"
    return " ".join([left] + [_side(by_placement.get(p)) for p in PLACEMENTS])


def nccl_footer(rows: Iterable[Row], primary: str) -> str:
    rows = list(rows)
    main = [r for r in rows if r.placement == primary] or rows
    wrong = sum(r.wrong or 0 for r in rows)
    checked = any(r.wrong is not None for r in rows)
    avg = sum(r.busbw for r in main) / len(main) if main else 0.0
    place = "in-place" if primary == IN_PLACE else "out-of-place"
    lines = [f"# Avg bus bandwidth ({place}) : {avg:.3f} GB/s"]
    lines.append(f"# #wrong total : {wrong}" if checked else "# #wrong : check disabled")
    return "\n".join(lines)


def compression_table(rows: List[Row], primary: str) -> str:
    """Wire bytes and compression ratio per size; busbw counts the uncompressed bytes."""
    main = [r for r in rows if r.placement == primary] or rows
    codec = main[0].codec if main else "?"
    lines = [
        f"# codec {codec}: wire bytes are per rank and call; effective busbw = uncompressed "
        "bytes / time",
        f"# {'size (B)':>12} {'wire (B)':>14} {'ratio':>8} {'eff. busbw (GB/s)':>18}",
    ]
    for r in main:
        wire = f"{r.wire_bytes:14.0f}" if r.wire_bytes is not None else f"{'-':>14}"
        ratio = f"{r.ratio:8.2f}" if r.ratio is not None else f"{'-':>8}"
        lines.append(f"  {r.nbytes:>12} {wire} {ratio} {r.busbw:18.3f}")
    return "\n".join(lines)


def osu_table(rows: List[Row], primary: str) -> str:
    """Latency per size (one placement: `primary` when it ran, else the other)."""
    by_size: Dict[int, Row] = {}
    for r in rows:
        if r.nbytes not in by_size or r.placement == primary:
            by_size[r.nbytes] = r
    if not by_size:
        return ""
    chosen = {r.placement for r in by_size.values()}
    place = (
        "in-place"
        if chosen == {IN_PLACE}
        else "out-of-place"
        if chosen == {OUT_OF_PLACE}
        else "mixed"
    )
    r0 = next(iter(by_size.values()))
    lines = [
        f"# OSU-style latency: {r0.op} {r0.dtype} ({place}); statistics over repetitions of "
        "the slowest rank",
        f"# {'Size(B)':<10} {'Avg(us)':>12} {'Min(us)':>12} {'Max(us)':>12} {'P99(us)':>12}"
        f" {'Iterations':>11}",
    ]
    for size in sorted(by_size):
        t = by_size[size].time
        stats = " ".join(f"{_us(x):>12}" for x in (t.mean, t.min, t.max, t.p99))
        lines.append(f"  {size:<10} {stats} {by_size[size].iters:>11}")
    return "\n".join(lines)
