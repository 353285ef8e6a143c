"""Convergence of DDP training with compressed gradients: does a codec keep the accuracy?

Trains an MLP on scikit-learn's digits (ships with the package; nothing is downloaded) with 2 and
4 ranks on this host, once per variant (see training.py): same initial weights, data order,
steps and seeds, only the gradient exchange differs. Writes results.json (per-step loss averaged
over ranks, per-epoch test accuracy on rank 0), results.md (final accuracy and its difference to
dense) and convergence.png (loss and accuracy curves).

    python bench/compression/convergence.py [--worlds 2,4] [--variants dense,int8,...]
        [--out bench/results/compression-<date>]

Codec variants need gradwire's compression engine; with a build that has none they are
recorded as skipped, with the reason, and the dense and torch-hook variants still run.
"""

from __future__ import annotations

import argparse
import json
import sys

import runs
from report import write_report
from training import add_training_args, training_argv

DEFAULT_VARIANTS = "dense,torch-fp16,fp16,int8,int4,sign,topk:0.01,randomk:0.01,powersgd:4"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_training_args(p)
    p.add_argument("--worlds", default="2,4", help="rank counts to run (default 2,4)")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"default: {DEFAULT_VARIANTS}")
    p.add_argument("--out", help="results directory (default bench/results/compression-<date>)")
    p.add_argument("--run-timeout", type=float, default=600.0, help="seconds per run")
    p.add_argument("--no-plot", action="store_true", help="JSON and table only")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    title = (
        f"DDP on digits, MLP {args.hidden}, {args.global_batch} samples/step, SGD lr {args.lr} "
        f"momentum {args.momentum} cosine decay, {args.warmup} dense warm-up steps"
    )
    results, outdir, plan = runs.start_sweep(
        "convergence", "bench/compression/convergence.py", "compression", title, args, argv
    )
    for world in [int(w) for w in args.worlds.split(",")]:
        per_world = results["runs"].setdefault(str(world), {})
        for v, skip in plan:
            if skip:
                per_world[v.text] = {"skipped": skip}
                continue
            print(f"== {world} ranks, {v.text}", file=sys.stderr, flush=True)
            per_world[v.text] = runs.run_world(
                lambda d, v=v, world=world: runs.local_commands(
                    world, v.text, training_argv(args), d
                ),
                args.run_timeout,
                label=f"{world} ranks {v.text}",
            )
            if "evals" in per_world[v.text]:
                e = per_world[v.text]["evals"][-1]
                print(
                    f"   final test acc {e['test_acc']:.2f}%, train {e['train_s']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    results["load_end"] = runs.machine()["loadavg"]
    (outdir / "results.json").write_text(json.dumps(results))
    print(write_report(results, outdir, plot=not args.no_plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
