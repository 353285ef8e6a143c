"""Plots of a run for people: per collective, latency (log-log) and bus bandwidth against size,
one line per backend/label, type and world size. Uses matplotlib's Agg backend (no display).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Tuple

from gradwire.bench.collectives import COLLECTIVES
from gradwire.bench.results import Row
from gradwire.bench.sizes import format_size


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a clear error if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        from gradwire.bench.errors import BenchUsageError

        raise BenchUsageError("plots need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def size_axis(ax, sizes: List[int]) -> None:
    """Log2 size axis labelled 4, 64, 1K, ... (at most ~10 labels)."""
    ticks = sorted(set(sizes))
    stride = max(1, (len(ticks) + 9) // 10)
    shown = ticks[::stride]
    ax.set_xscale("log", base=2)
    ax.set_xticks(shown)
    ax.set_xticklabels([format_size(s) for s in shown], rotation=45, ha="right")
    ax.minorticks_off()
    ax.set_xlabel("message size (bytes)")
    ax.grid(True, which="major", alpha=0.3)


def plain_log_y(ax) -> None:
    """Log y axis with plain numbers (300, 1000) instead of 3x10^2."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _primary_rows(rows: List[Row]) -> Dict[str, Dict[Tuple[str, str, int], List[Row]]]:
    """op -> (label, dtype, world) -> rows of the collective's primary placement (or the
    other one where only that ran), sorted by size."""
    out: Dict[str, Dict[Tuple[str, str, int], Dict[int, Row]]] = defaultdict(dict)
    for r in rows:
        primary = COLLECTIVES[r.op].primary
        series = out[r.op].setdefault((r.label or r.backend, r.dtype, r.world), {})
        if r.nbytes not in series or r.placement == primary:
            series[r.nbytes] = r
    return {op: {k: [v[s] for s in sorted(v)] for k, v in d.items()} for op, d in out.items()}


def plot_rows(rows: List[Row], path: str) -> None:
    """Write a PNG with one row of panels per collective: latency and bus bandwidth."""
    plt = pyplot()
    by_op = _primary_rows(rows)
    if not by_op:
        raise ValueError("nothing to plot: no rows")
    fig, axes = plt.subplots(
        len(by_op), 2, figsize=(12, 4.2 * len(by_op)), squeeze=False, constrained_layout=True
    )
    for (op, series), (ax_lat, ax_bw) in zip(by_op.items(), axes):
        for (label, dtype, world), pts in sorted(series.items()):
            name = f"{label} {dtype} n={world}"
            sizes = [p.nbytes for p in pts]
            ax_lat.plot(sizes, [p.time.median * 1e6 for p in pts], marker="o", ms=3, label=name)
            if COLLECTIVES[op].sized:
                ax_bw.plot(sizes, [p.busbw for p in pts], marker="o", ms=3, label=name)
        for ax in (ax_lat, ax_bw):
            size_axis(ax, [p.nbytes for pts in series.values() for p in pts] or [1])
        plain_log_y(ax_lat)
        ax_lat.set_ylabel("time, median (us)")
        ax_lat.set_title(f"{op}: latency (lower is better)")
        ax_bw.set_ylabel("bus bandwidth (GB/s)")
        ax_bw.set_title(f"{op}: bus bandwidth (higher is better)")
        ax_lat.legend(fontsize=8)
        if ax_bw.lines:
            ax_bw.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
