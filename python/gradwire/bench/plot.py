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


def _series(rows: List[Row]) -> Dict[Tuple[str, int], Dict[Tuple[str, str], List[Row]]]:
    """(op, world) -> (label, dtype) -> rows of the collective's primary placement (or the
    other one where only that ran), sorted by size."""
    out: Dict[Tuple[str, int], Dict[Tuple[str, str], Dict[int, Row]]] = defaultdict(dict)
    for r in rows:
        primary = COLLECTIVES[r.op].primary
        series = out[(r.op, r.world)].setdefault((r.label or r.backend, r.dtype), {})
        if r.nbytes not in series or r.placement == primary:
            series[r.nbytes] = r
    return {panel: {k: [v[s] for s in sorted(v)] for k, v in d.items()} for panel, d in out.items()}


def plot_rows(rows: List[Row], path: str) -> None:
    """Write a PNG with one row of panels per collective and world size: latency and bus
    bandwidth. A library keeps its colour in every panel; types differ by line style."""
    plt = pyplot()
    panels = _series(rows)
    if not panels:
        raise ValueError("nothing to plot: no rows")
    labels = sorted({label for d in panels.values() for label, _ in d})
    dtypes = sorted({dtype for d in panels.values() for _, dtype in d})
    color = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    style = {dtype: ("-", "--", ":", "-.")[i % 4] for i, dtype in enumerate(dtypes)}
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(13, 4.2 * len(panels)), squeeze=False, constrained_layout=True
    )
    for ((op, world), series), (ax_lat, ax_bw) in zip(sorted(panels.items()), axes):
        for (label, dtype), pts in sorted(series.items()):
            name = label if len(dtypes) == 1 else f"{label} {dtype}"
            kw = dict(marker="o", ms=3, color=color[label], ls=style[dtype], label=name)
            sizes = [p.nbytes for p in pts]
            ax_lat.plot(sizes, [p.time.median * 1e6 for p in pts], **kw)
            if COLLECTIVES[op].sized:
                ax_bw.plot(sizes, [p.busbw for p in pts], **kw)
        for ax in (ax_lat, ax_bw):
            size_axis(ax, [p.nbytes for pts in series.values() for p in pts] or [1])
        plain_log_y(ax_lat)
        ax_lat.set_ylabel("time, median (us)")
        ax_lat.set_title(f"{op}, {world} ranks: latency (lower is better)")
        ax_bw.set_ylabel("bus bandwidth (GB/s)")
        ax_bw.set_title(f"{op}, {world} ranks: bus bandwidth (higher is better)")
        ax_bw.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110)
    plt.close(fig)
