"""Tables (Markdown) and plots (PNG) of the compression sweeps' results.json files.

python bench/compression/report.py bench/results/compression-<date>   # redraw from the JSON
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

from runs import wire_ratio


def _fmt(v: Optional[float], spec: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _label(name: str, run: Dict) -> str:
    fell = run.get("fallback_buckets")
    return f"{name} (buckets {fell} fell back to dense)" if fell else name


def final_acc(run: Dict) -> Optional[float]:
    return run["evals"][-1]["test_acc"] if run.get("evals") else None


def time_to_target(run: Dict, target: float) -> Optional[Dict]:
    """The first evaluation at or above `target` percent: its step and training seconds."""
    for e in run.get("evals", []):
        if e["test_acc"] >= target:
            return e
    return None


def convergence_table(results: Dict) -> str:
    lines = [
        "| ranks | variant | final test acc (%) | vs dense (points) | best acc (%) | final loss "
        "| median step (ms) | wire ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for world, runs in results["runs"].items():
        dense = final_acc(runs.get("dense", {})) if "error" not in runs.get("dense", {}) else None
        for name, run in runs.items():
            if "error" in run or "skipped" in run:
                why = run.get("skipped") or run["error"]
                lines.append(f"| {world} | {name} | not run: {why} | | | | | |")
                continue
            acc = final_acc(run)
            delta = None if dense is None or acc is None else acc - dense
            best = max(e["test_acc"] for e in run["evals"])
            tail = run["loss"][-max(1, run["steps_per_epoch"]) :]
            lines.append(
                f"| {world} | {_label(name, run)} | {_fmt(acc)} | {_fmt(delta, '+.2f')} | {_fmt(best)} "
                f"| {_fmt(sum(tail) / len(tail), '.4f')} | {_fmt(run['median_step_s'] * 1e3, '.1f')} "
                f"| {_fmt(wire_ratio(run), '.1f')} |"
            )
    return "\n".join(lines)


def _smooth(values: List[float], window: int) -> List[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def convergence_plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = list(results["runs"])
    fig, axes = plt.subplots(len(worlds), 2, figsize=(13, 4.2 * len(worlds)), squeeze=False)
    for row, world in enumerate(worlds):
        runs = {n: r for n, r in results["runs"][world].items() if "evals" in r}
        ax_loss, ax_acc = axes[row]
        for i, (name, run) in enumerate(runs.items()):
            style = dict(color=f"C{i % 10}", lw=2.0 if name == "dense" else 1.2)
            style["ls"] = "-" if i < 10 else "--"
            window = max(1, run["steps_per_epoch"])
            ax_loss.plot(_smooth(run["loss"], window), label=name, **style)
            ev = run["evals"]
            ax_acc.plot([e["epoch"] for e in ev], [e["test_acc"] for e in ev], label=name, **style)
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("training loss (moving mean over one epoch)")
        ax_loss.set_title(f"{world} ranks: training loss")
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylabel("test accuracy (%)")
        ax_acc.set_title(f"{world} ranks: test accuracy")
        accs = [e["test_acc"] for r in runs.values() for e in r["evals"]]
        if accs:
            ax_acc.set_ylim(max(0.0, min(90.0, sorted(accs)[len(accs) // 10]) - 2), 100.5)
        ax_acc.grid(alpha=0.3)
        ax_loss.grid(alpha=0.3, which="both")
        ax_acc.legend(fontsize=8, loc="lower right")
    fig.suptitle(results.get("title", "compression convergence"), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def speed_table(results: Dict) -> str:
    """Step time and time to the target accuracy per variant (medians over rounds; the time to
    target counts only rounds that all reached it), with speed-ups vs the baseline."""
    target = results["target_acc"]
    base = results["runs"].get(results.get("baseline", "gloo/dense"), {})
    lines = [
        f"| variant | median step (ms) | step speed-up vs {results.get('baseline')} "
        f"| steps to {target:g}% | time to {target:g}% (s) | speed-up to {target:g}% "
        "| last acc (%) | wire ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in results["runs"].items():
        if "evals" not in run:
            why = run.get("skipped") or run.get("error")
            lines.append(f"| {name} | not run: {why} | | | | | | |")
            continue
        step_up = base["median_step_s"] / run["median_step_s"] if "evals" in base else None
        tta, base_tta = run.get("tta_s"), base.get("tta_s")
        tta_up = base_tta / tta if tta and base_tta else None
        reached = f"{run.get('rounds_reaching_target', 0)}/{len(run.get('rounds', [run]))}"
        lines.append(
            f"| {_label(name, run)} | {_fmt(run['median_step_s'] * 1e3, '.0f')} | {_fmt(step_up, '.2f')}x "
            f"| {_fmt(run.get('tta_step'), 'g') if tta else 'not reached (' + reached + ')'} "
            f"| {_fmt(tta, '.1f')} | {_fmt(tta_up, '.2f')}x | {_fmt(final_acc(run))} "
            f"| {_fmt(wire_ratio(run), '.1f')} |"
        )
    return "\n".join(lines)


def speed_plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {n: r for n, r in results["runs"].items() if "evals" in r}
    fig, (ax_acc, ax_step) = plt.subplots(1, 2, figsize=(13, 4.5))
    for i, (name, run) in enumerate(runs.items()):
        ev = run["evals"]
        ax_acc.plot(
            [e["train_s"] for e in ev],
            [e["test_acc"] for e in ev],
            "o-",
            ms=3,
            color=f"C{i}",
            label=name,
        )
    ax_acc.axhline(
        results["target_acc"], color="grey", ls=":", label=f"target {results['target_acc']:g}%"
    )
    ax_acc.set_xlabel("training time (s, evaluation excluded)")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("test accuracy vs wall-clock training time")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8, loc="lower right")
    names = list(runs)
    ax_step.bar(
        range(len(names)),
        [runs[n]["median_step_s"] * 1e3 for n in names],
        color=[f"C{i}" for i in range(len(names))],
    )
    ax_step.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax_step.set_ylabel("median step time (ms, slowest rank)")
    ax_step.set_title("DDP step time")
    ax_step.grid(alpha=0.3, axis="y")
    fig.suptitle(results.get("title", "compression speed"), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine(m: Dict) -> str:
    return f"{m['cores']} cores, {m['os']}, Python {m['python']}, torch {m['torch']}"


def _load(avg) -> str:
    return "/".join(f"{v:.2f}" for v in avg)


def write_report(results: Dict, outdir: Path, plot: bool = True) -> str:
    """results.md and (with `plot`) the PNG next to results.json; returns the Markdown."""
    convergence = results["experiment"] == "convergence"
    table = convergence_table(results) if convergence else speed_table(results)
    png = "convergence.png" if convergence else "speed.png"
    if plot:
        (convergence_plot if convergence else speed_plot)(results, outdir / png)
    md = "\n".join(
        [
            f"# {results.get('title', results['experiment'])}",
            "",
            f"Command: `{results['command']}`",
            "",
            f"Machine: {_machine(results['machine'])}; load average (1/5/15 min) "
            f"{_load(results['load_start'])} at the start, {_load(results['load_end'])} at the "
            f"end. Code: commit {results['commit']} (gradwire {results.get('engine', '?')}).",
            "",
            table,
            "",
            f"![{results['experiment']}]({png})" if plot else "",
            "",
        ]
    )
    (outdir / "results.md").write_text(md)
    return md


def main(argv: List[str]) -> int:
    for d in argv or []:
        outdir = Path(d)
        print(write_report(json.loads((outdir / "results.json").read_text()), outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
