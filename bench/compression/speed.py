"""Speed of DDP training with compressed gradients across virtual hosts with 1 Gbit links.

Starts HOSTS network-namespace hosts with ../shared/cluster/vcluster (real TCP between real
addresses), limits every host's egress to RATE with tc tbf, and trains a large MLP on digits
(enough parameters that the gradient exchange dominates a step at 1 Gbit) once per variant, one
rank per host. Records the median step time (slowest rank per step), and the training time until
the test accuracy first reaches --stop-at (evaluation time excluded; the run stops there), side
by side in one run, in --rounds repetitions of alternating order.
Writes results.json, results.md and speed.png to --out.

    python bench/compression/speed.py [--rate 1gbit] [--hosts 4] [--stop-at 95] [--rounds 2]
        [--variants gloo/dense,dense,int8,topk:0.01,gloo/powersgd:4] [--out DIR]

Needs root (network namespaces) and no other virtual-host cluster running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import runs
from report import time_to_target, write_report
from training import add_training_args, training_argv

VCLUSTER = runs.HERE.parent.parent.parent / "shared" / "cluster" / "vcluster"
DEFAULT_VARIANTS = "gloo/dense,dense,int8,topk:0.01,gloo/powersgd:4"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_training_args(p)
    p.set_defaults(hidden=[4096, 4096], epochs=5, eval_every=11, warmup=5, stop_at=95.0)
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--rate", default="1gbit", help="egress limit per host (tc tbf)")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"default: {DEFAULT_VARIANTS}")
    p.add_argument("--baseline", default="gloo/dense", help="the variant speed-ups refer to")
    p.add_argument(
        "--out", help="results directory (default bench/results/compression-speed-<date>)"
    )
    p.add_argument("--rounds", type=int, default=2, help="repetitions of the sweep (medians)")
    p.add_argument("--run-timeout", type=float, default=900.0, help="seconds per run")
    return p.parse_args(argv)


def vcluster(*args: str) -> str:
    return subprocess.check_output([str(VCLUSTER), *args], text=True, timeout=120).strip()


def host_commands(args, variant: str, addrs, port: int):
    def make(outdir: Path):
        cmds = []
        for i in range(args.hosts):
            # gloo resolves this machine's hostname to a loopback address in every namespace, so
            # it needs the interface named; gradwire finds the route to MASTER_ADDR itself.
            env = dict(
                os.environ,
                RANK=str(i),
                WORLD_SIZE=str(args.hosts),
                MASTER_ADDR=addrs[0],
                MASTER_PORT=str(port),
                GLOO_SOCKET_IFNAME="eth0",
            )
            argv = [str(VCLUSTER), "exec", str(i), sys.executable, str(runs.TRAINING)]
            argv += ["--variant", variant, "--out", str(outdir / f"rank{i}.json")]
            cmds.append((argv + training_argv(args), env))
        return cmds

    return make


def summarize(rounds: List[Dict], target: float) -> Dict:
    """One record per variant over its rounds: the first round's curves (for the plot), the
    median step time over the steps of every round, and the median time to the target."""
    done = [r for r in rounds if "evals" in r]
    if not done:
        return rounds[0]
    out = dict(done[0])
    out["rounds"] = rounds
    out["median_step_s"] = statistics.median(s for r in done for s in r["step_s"])
    hits = [e for e in (time_to_target(r, target) for r in done) if e]
    out["rounds_reaching_target"] = len(hits)
    if len(hits) == len(done):
        out["tta_s"] = statistics.median(e["train_s"] for e in hits)
        out["tta_step"] = statistics.median(e["step"] for e in hits)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("speed.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    if not VCLUSTER.exists():
        print(f"speed.py: {VCLUSTER} not found", file=sys.stderr)
        return 2
    if "gwh" in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout:
        print(
            "speed.py: virtual hosts already exist (another run?); stop them first", file=sys.stderr
        )
        return 2
    title = (
        f"DDP on {args.hosts} virtual hosts, links shaped to {args.rate}: MLP {args.hidden} "
        f"on digits, {args.global_batch} samples/step"
    )
    results, outdir, plan = runs.start_sweep(
        "speed", "bench/compression/speed.py", "compression-speed", title, args, argv
    )
    results.update(target_acc=args.stop_at, baseline=args.baseline)
    try:
        vcluster("up", str(args.hosts))
        for i in range(args.hosts):
            vcluster("shape", str(i), args.rate)
        results["shaping"] = vcluster("status")
        addrs = [vcluster("ip", str(i)) for i in range(args.hosts)]
        rounds = [{} for _ in range(args.rounds)]
        for r, per_round in enumerate(rounds):
            # alternate the order so slow drifts of the shared machine's load hit all variants
            for n, (v, skip) in enumerate(plan if r % 2 == 0 else plan[::-1]):
                if skip:
                    per_round[v.text] = {"skipped": skip}
                    continue
                print(
                    f"== round {r + 1}: {v.text}, {args.hosts} hosts at {args.rate}",
                    file=sys.stderr,
                    flush=True,
                )
                load = os.getloadavg()
                port = 29900 + r * len(plan) + n
                run = runs.run_world(
                    host_commands(args, v.text, addrs, port), args.run_timeout, v.text
                )
                run["loadavg_start"] = load
                per_round[v.text] = run
                if "evals" in run:
                    print(
                        f"   median step {run['median_step_s'] * 1e3:.0f} ms, final acc "
                        f"{run['evals'][-1]['test_acc']:.2f}%",
                        file=sys.stderr,
                        flush=True,
                    )
        for v, _ in plan:
            results["runs"][v.text] = summarize([rd[v.text] for rd in rounds], args.stop_at)
    finally:
        subprocess.run([str(VCLUSTER), "down"], capture_output=True, timeout=120)
    results["load_end"] = runs.machine()["loadavg"]
    (outdir / "results.json").write_text(json.dumps(results))
    print(write_report(results, outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
