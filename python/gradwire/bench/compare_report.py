"""The files of a comparison: results.md for people, results.json for machines, two plots."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Dict, List, Optional, Sequence, Tuple

from gradwire.bench.aggregate import Key, Point, Ratio, fold, geomean, ratios
from gradwire.bench.results import Row, Timing
from gradwire.bench.sizes import format_size

# The size bands the "fast collectives" issue states its targets in.
LATENCY_BAND = (4, 4 << 10)
BANDWIDTH_BAND = (1 << 20, 256 << 20)

METHOD = (
    "Each point is the median over rounds of one run's median time over its repetitions; a "
    "repetition's time is that of the slowest rank, a barrier precedes each, warm-up runs first. "
    "Placement is each collective's primary one (in place for allreduce, broadcast and reduce; "
    "out of place otherwise), so every library runs the same call. Bus bandwidth follows "
    "nccl-tests. **Ratio = peer time / gradwire time (= gradwire busbw / peer busbw): above 1 "
    "gradwire is faster, below 1 the peer is.**"
)


def _fmt_ratio(r: Optional[float]) -> str:
    return "—" if r is None else f"{r:.2f}x"


def _band(rs: Sequence[Ratio], band: Tuple[int, int]) -> Tuple[List[float], str]:
    """Ratios of the sizes inside the band, and a note naming the sizes measured when they
    do not reach both ends of the band."""
    inside = [r for r in rs if band[0] <= r.nbytes <= band[1]]
    if not inside:
        return [], ""
    lo, hi = min(r.nbytes for r in inside), max(r.nbytes for r in inside)
    note = "" if (lo, hi) == band else f" ({format_size(lo)}–{format_size(hi)} only)"
    return [r.ratio for r in inside], note


def _summary(rats: List[Ratio]) -> List[str]:
    lines = [
        "| ranks | collective | type | gradwire side vs peer | at 4 B | geomean 4 B–4 KB "
        "| geomean 1 MB–256 MB | worst 1 MB–256 MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: Dict[tuple, List[Ratio]] = {}
    for r in rats:
        groups.setdefault((r.world, r.op, r.dtype, r.fast, r.peer), []).append(r)
    for (world, op, dtype, fast, peer), rs in sorted(groups.items()):
        smallest = min(rs, key=lambda r: r.nbytes)
        at4 = smallest.ratio if smallest.nbytes == LATENCY_BAND[0] else None
        (lat, lat_note), (bw, bw_note) = _band(rs, LATENCY_BAND), _band(rs, BANDWIDTH_BAND)
        cells = [
            _fmt_ratio(at4),
            _fmt_ratio(geomean(lat) if lat else None) + lat_note,
            _fmt_ratio(geomean(bw) if bw else None) + bw_note,
            _fmt_ratio(min(bw) if bw else None) + bw_note,
        ]
        lines.append(f"| {world} | {op} | {dtype} | {fast} vs {peer} | " + " | ".join(cells) + " |")
    return lines


def _tables(points: Dict[Key, Point], rats: List[Ratio], peers: List[str], pairs) -> List[str]:
    out: List[str] = []
    groups = sorted({(k[1], k[2], k[3]) for k in points})
    ratio_of = {(r.fast, r.peer, r.world, r.op, r.dtype, r.nbytes): r.ratio for r in rats}
    for world, op, dtype in groups:
        sizes = sorted({k[4] for k in points if k[1:4] == (world, op, dtype)})
        have = [p for p in peers if any((p, world, op, dtype, s) in points for s in sizes)]
        out += [f"### {world} ranks: {op} {dtype}", ""]
        head = ["size"] + [f"{p} (us)" for p in have] + [f"{a} vs {b}" for a, b in pairs]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in sizes:
            cells = [format_size(s)]
            for p in have:
                pt = points.get((p, world, op, dtype, s))
                cells.append("—" if pt is None else f"{pt.time * 1e6:.1f}")
            for a, b in pairs:
                cells.append(_fmt_ratio(ratio_of.get((a, b, world, op, dtype, s))))
            out.append("| " + " | ".join(cells) + " |")
        out += ["", "Bus bandwidth (GB/s):", ""]
        head = ["size"] + have
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in sizes:
            cells = [format_size(s)]
            for p in have:
                pt = points.get((p, world, op, dtype, s))
                cells.append("—" if pt is None else f"{pt.busbw:.3f}")
            out.append("| " + " | ".join(cells) + " |")
        wrong = sum(p.wrong for k, p in points.items() if k[1:4] == (world, op, dtype))
        out += ["", f"#wrong over all runs: {wrong}", ""]
    return out


def markdown(points: Dict[Key, Point], rats: List[Ratio], meta: dict) -> str:
    m = meta["machine"]
    peers = list(meta["peers"])
    pairs = [tuple(p) for p in meta["pairs"]]
    lines = [f"# Comparison `{meta['name']}`", ""]
    if meta.get("note"):
        lines += [f"> **{meta['note']}**", ""]
    lines += [
        f"- measured {meta['started_utc']} to {meta['finished_utc']} (UTC)",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, {m['os']}; load average "
        f"at start {m.get('loadavg_at_start')}",
        f"- software: Python {m['python']}, torch {m.get('torch')}, numpy {m['numpy']}, "
        f"gradwire {m['gradwire']} (source {meta.get('source', 'not recorded')})",
        f"- command: `{meta['command']}`",
        f"- settings: {json.dumps(meta['settings'])}",
        "",
        METHOD,
        "",
        "| peer | what | mpirun arguments |",
        "|---|---|---|",
    ]
    for name, p in meta["peers"].items():
        lines.append(f"| {name} | {p['about']} | `{p['mpi_args']}` |" if p["mpi_args"] else
                     f"| {name} | {p['about']} | |")  # fmt: skip
    lines += ["", "## Targets summary", ""] + _summary(rats) + ["", "## Results", ""]
    lines += _tables(points, rats, peers, pairs)
    if meta.get("failures"):
        lines += ["## Failed runs", ""] + [f"- {f}" for f in meta["failures"]] + [""]
    lines += ["## Commands of one round", "", "```"]
    first = meta["runs"][0]["round"] if meta["runs"] else 1
    lines += [r["command"] for r in meta["runs"] if r["round"] == first] + ["```", ""]
    return "\n".join(lines)


def point_rows(points: Dict[Key, Point]) -> List[Row]:
    """Points as Rows (time = median over rounds), for the per-run plotter."""
    rows = []
    for p in points.values():
        t = Timing(p.time, p.time, min(p.rounds), max(p.rounds), max(p.rounds))
        rows.append(Row(p.peer, p.op, p.dtype, "", -1, p.world, p.nbytes, p.count, p.placement,
                        len(p.rounds), p.wrong, t, p.algbw, p.busbw, p.peer))  # fmt: skip
    return rows


def write_outputs(out_dir: str, rows: List[Row], meta: dict) -> None:
    from gradwire.bench.compare_plot import plot_ratios
    from gradwire.bench.plot import plot_rows

    points = fold(rows)
    rats = ratios(points, [tuple(p) for p in meta["pairs"]])
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(points, rats, meta))
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        data = {
            "schema": "gradwire-compare/1",
            "meta": meta,
            "points": [asdict(p) for p in points.values()],
            "ratios": [asdict(r) for r in rats],
        }
        json.dump(data, f, indent=1)
        f.write("\n")
    if points:
        plot_rows(point_rows(points), os.path.join(out_dir, "absolute.png"))
    if rats:
        plot_ratios(rats, os.path.join(out_dir, "ratios.png"), meta.get("note", ""))
