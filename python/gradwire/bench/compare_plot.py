"""The ratio plot of a comparison: gradwire/peer against size, one panel per world size and
collective, one line per pair; the bands the targets are stated in are shaded."""

from __future__ import annotations

import textwrap
from typing import Dict, List, Tuple

from gradwire.bench.aggregate import Ratio
from gradwire.bench.compare_report import BANDWIDTH_BAND, LATENCY_BAND
from gradwire.bench.plot import plain_log_y, pyplot, size_axis


def plot_ratios(rats: List[Ratio], path: str, note: str = "") -> None:
    plt = pyplot()
    panels: Dict[Tuple[int, str, str], Dict[Tuple[str, str], List[Ratio]]] = {}
    for r in rats:
        panels.setdefault((r.world, r.op, r.dtype), {}).setdefault((r.fast, r.peer), []).append(r)
    keys = sorted(panels)
    fig, axes = plt.subplots(
        len(keys), 1, figsize=(11, 4.6 * len(keys)), squeeze=False, constrained_layout=True
    )
    for (world, op, dtype), ax in zip(keys, axes[:, 0]):
        sizes = []
        for (fast, peer), rs in sorted(panels[(world, op, dtype)].items()):
            rs = sorted(rs, key=lambda r: r.nbytes)
            sizes += [r.nbytes for r in rs]
            ax.plot([r.nbytes for r in rs], [r.ratio for r in rs], marker="o", ms=4,
                    label=f"{fast} vs {peer}")  # fmt: skip
        ax.axhline(1.0, color="black", lw=1, ls="--")
        for (lo, hi), color, what in (
            (LATENCY_BAND, "tab:green", "latency"),
            (BANDWIDTH_BAND, "tab:blue", "bandwidth"),
        ):
            lo, hi = max(lo, min(sizes)), min(hi, max(sizes))  # shade only where there is data
            if lo < hi:
                ax.axvspan(lo, hi, color=color, alpha=0.07, label=f"{what} target band")
        size_axis(ax, sizes)
        plain_log_y(ax)
        ax.set_ylabel("peer time / gradwire time")
        ax.set_title(f"{op} {dtype}, {world} ranks: above 1 = gradwire faster")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if note:
        fig.suptitle(textwrap.fill(note, 110), fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
