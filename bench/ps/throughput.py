#!/usr/bin/env python3
"""gradwire.ps vs the torch.distributed.rpc parameter server, side by side in one run.

    .venv/bin/python bench/ps/throughput.py [--servers 2 --workers 2 --rounds 2 ...]

Cases (every worker runs them concurrently, same process layout for both systems):
  dense-1M / dense-16M   push_pull of a float32 tensor of 1 MB / 16 MB (server applies SGD);
                         throughput = push_pulls per second over all workers
  sparse-d64-b4096       pull_rows then push_rows of 4,096 ids drawn uniformly from a table of
                         1M rows x 64 floats (server applies Adagrad); rows/s over all workers

A repetition is: barrier, every worker issues `--iters` operations back to back, barrier; its
time is worker 0's time from the first barrier's release to the second's. Warm-up operations
come first. Systems alternate (gradwire, rpc, gradwire, ...) for `--rounds` rounds, each with
fresh servers; a case's figure is the median over all its repetitions. `uptime` is recorded
before and after each round. Writes throughput.{json,md,png} under --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

import outputs  # noqa: E402
import systems  # noqa: E402
import torch  # noqa: E402


def cases(args) -> List[Dict[str, Any]]:
    out = []
    for mb in args.dense_mb:
        out.append(
            {
                "name": f"dense-{mb:g}M",
                "kind": "dense",
                "bytes": int(mb * (1 << 20)),
                "iters": max(1, round(args.iters * min(4.0, 16.0 / mb))),
            }
        )
    out.append(
        {
            "name": f"sparse-d{args.dim}-b{args.batch}",
            "kind": "sparse",
            "dim": args.dim,
            "batch": args.batch,
            "rows": args.rows,
            "iters": args.iters,
        }
    )
    return out


def bench_worker(worker_id: int, ep: systems.Endpoint, barrier, spec: Dict[str, Any]):
    torch.set_num_threads(1)
    client = systems.connect(ep, worker_id)
    m = systems.optim_module(ep.system)
    gen = torch.Generator().manual_seed(1000 + worker_id)
    out: Dict[str, List[float]] = {}
    for case in spec["cases"]:
        if case["kind"] == "dense":
            numel = case["bytes"] // 4
            name = case["name"]
            client.register_dense(name, torch.zeros(numel), optimizer=m.SGD(lr=1e-3))
            grad = torch.randn(numel, generator=gen) * 1e-3
            dst = torch.empty(numel)

            def op(name=name, grad=grad, dst=dst):
                client.push_pull(name, grad, dst)

        else:
            table = case["name"]
            client.register_sparse(
                table,
                case["rows"],
                case["dim"],
                init=m.Normal(std=0.01),
                optimizer=m.Adagrad(lr=0.01),
            )
            batches = [
                torch.randint(case["rows"], (case["batch"],), generator=gen) for _ in range(8)
            ]
            grads = torch.randn(case["batch"], case["dim"], generator=gen) * 1e-3
            step = [0]

            def op(table=table, batches=batches, grads=grads, step=step):
                ids = batches[step[0] % len(batches)]
                step[0] += 1
                client.pull_rows(table, ids)
                client.push_rows(table, ids, grads)

        barrier.wait()
        for _ in range(spec["warmup"]):
            op()
        times = []
        for _ in range(spec["reps"]):
            barrier.wait()
            t0 = time.perf_counter()
            for _ in range(case["iters"]):
                op()
            barrier.wait()
            times.append(time.perf_counter() - t0)
        out[case["name"]] = times
    barrier.wait()
    client.close()
    return out


def median(xs: List[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def summarise(case: Dict[str, Any], times: List[float], workers: int) -> Dict[str, Any]:
    t = median(times)
    ops = workers * case["iters"]
    row = {"median_rep_s": t, "reps": len(times), "ops_per_rep": ops, "rep_times_s": times}
    if case["kind"] == "dense":
        row["push_pulls_per_s"] = ops / t
        row["payload_GBps"] = ops * 2 * case["bytes"] / t / 1e9  # pushed + pulled bytes
        row["metric"] = row["push_pulls_per_s"]
    else:
        row["rows_per_s"] = ops * case["batch"] / t
        row["metric"] = row["rows_per_s"]
    return row


def markdown(result: Dict[str, Any]) -> str:
    lines = [
        f"# Parameter-server throughput: gradwire.ps vs torch.distributed.rpc PS "
        f"({result['date']})",
        "",
        f"Command: `{result['command']}`",
        f"Layout: {result['servers']} server processes x {result['workers']} worker processes "
        f"on one machine ({result['machine'].get('cores')} cores), {result['rounds']} rounds "
        f"alternating systems, {result['reps']} repetitions per case per round, "
        f"{result['warmup']} warm-up operations.",
        "",
        "| case | metric | gradwire | torch RPC | gradwire / RPC |",
        "|---|---|---:|---:|---:|",
    ]
    for c in result["cases"]:
        name = c["name"]
        g = result["systems"].get("gradwire", {}).get(name)
        r = result["systems"].get("rpc", {}).get(name)
        unit = "push_pull/s" if c["kind"] == "dense" else "rows/s"
        gv = f"{g['metric']:,.0f}" if g else "-"
        rv = f"{r['metric']:,.0f}" if r else "-"
        ratio = f"{g['metric'] / r['metric']:.2f}x" if g and r else "-"
        lines.append(f"| {name} | {unit} | {gv} | {rv} | {ratio} |")
    lines += [
        "",
        "Median time of one repetition per round, ms (the spread shows how much the load of "
        "other jobs moved the figures):",
        "",
        "| case | system | " + " | ".join(f"round {i + 1}" for i in range(result["rounds"])) + " |",
        "|---|---|" + "---:|" * result["rounds"],
    ]
    for c in result["cases"]:
        for sysname, per_case in result["systems"].items():
            t = per_case[c["name"]]["rep_times_s"]
            n = len(t) // result["rounds"]
            cells = [f"{median(t[i * n : (i + 1) * n]) * 1e3:.1f}" for i in range(result["rounds"])]
            lines.append(f"| {c['name']} | {sysname} | " + " | ".join(cells) + " |")
    lines += ["", "Load (`uptime`) around each round:", ""]
    for entry in result["load"]:
        lines.append(
            f"- {entry['system']} round {entry['round']}: before `{entry['before']}`, "
            f"after `{entry['after']}`"
        )
    return "\n".join(lines) + "\n"


def plot(result: Dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c["name"] for c in result["cases"]]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6))
    if len(names) == 1:
        axes = [axes]
    for ax, c in zip(axes, result["cases"]):
        vals, labels, colors = [], [], []
        for sysname, color in (("gradwire", "tab:blue"), ("rpc", "tab:orange")):
            row = result["systems"].get(sysname, {}).get(c["name"])
            if row:
                vals.append(row["metric"])
                labels.append("gradwire.ps" if sysname == "gradwire" else "torch RPC PS")
                colors.append(color)
        ax.bar(labels, vals, color=colors)
        for i, v in enumerate(vals[:2]):
            ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
        title = c["name"]
        if len(vals) == 2:
            title += f"  ({vals[0] / vals[1]:.1f}x)"
            ax.axhline(3 * vals[1], color="gray", ls="--", lw=1)
            ax.text(1.45, 3 * vals[1], "3x RPC (target)", ha="right", va="bottom", fontsize=7)
            vals.append(3 * vals[1])  # keeps the target line inside the y range
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("push_pull / s (all workers)" if c["kind"] == "dense" else "rows / s")
        ax.set_ylim(0, max(vals) * 1.15 if vals else 1)
    fig.suptitle(
        f"{result['servers']} servers x {result['workers']} workers, medians over "
        f"{result['rounds'] * result['reps']} reps",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default="gradwire,rpc", help="comma-separated: gradwire,rpc")
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dense-mb", type=float, nargs="+", default=[1, 16])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--rows", type=int, default=1 << 20)
    p.add_argument(
        "--iters",
        type=int,
        default=8,
        help="operations per repetition for 16 MB and sparse; smaller dense sizes do up to 4x more",
    )
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--timeout", type=float, default=900)
    outputs.add_out_args(p, "throughput")
    args = p.parse_args(argv)
    if args.replot:
        outputs.replot(args.out, "throughput", markdown, plot)
        return 0
    names = [s for s in args.systems.split(",") if s]
    for s in names:
        if s not in systems.SYSTEMS:
            p.error(f"unknown system {s!r}; choose from {','.join(systems.SYSTEMS)}")
    out_dir = outputs.out_dir(args.out)

    spec = {"cases": cases(args), "reps": args.reps, "warmup": args.warmup}
    times: Dict[str, Dict[str, List[float]]] = {s: {} for s in names}
    load = []
    for rnd in range(args.rounds):
        for sysname in names:
            before = outputs.uptime()
            print(
                f"[round {rnd + 1}/{args.rounds}] {sysname}: {args.servers} servers x "
                f"{args.workers} workers",
                file=sys.stderr,
                flush=True,
            )
            with systems.Servers(sysname, args.servers, args.workers, mode="asp") as servers:
                per_worker = systems.run_workers(
                    bench_worker, servers.endpoint, spec, barrier=True, timeout=args.timeout
                )
            for name, ts in per_worker[0].items():
                times[sysname].setdefault(name, []).extend(ts)
            load.append(
                {"system": sysname, "round": rnd + 1, "before": before, "after": outputs.uptime()}
            )

    result: Dict[str, Any] = {
        "date": outputs.today(),
        "command": outputs.command("throughput.py", argv),
        "servers": args.servers,
        "workers": args.workers,
        "rounds": args.rounds,
        "reps": args.reps,
        "warmup": args.warmup,
        "ids": "uniform over the table",
        "cases": spec["cases"],
        "machine": outputs.machine(),
        "load": load,
        "systems": {
            s: {c["name"]: summarise(c, times[s][c["name"]], args.workers) for c in spec["cases"]}
            for s in names
        },
    }
    if "gradwire" in names and "rpc" in names:
        result["ratios"] = {
            c["name"]: result["systems"]["gradwire"][c["name"]]["metric"]
            / result["systems"]["rpc"][c["name"]]["metric"]
            for c in spec["cases"]
        }
    print(outputs.save(out_dir, "throughput", result, markdown, plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
