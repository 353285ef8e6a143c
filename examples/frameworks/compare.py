#!/usr/bin/env python3
"""Lightning and Accelerate on gloo and on gradwire: the same final weights, bit for bit?

    python examples/frameworks/compare.py [--cases lightning-ddp,accelerate] [--out DIR] [--json]

Each case trains task.py's model on 2 CPU processes under torchrun, once per backend, and the
final weights are compared with torch.equal. The scripts never import gradwire: the backend name
reaches torch.distributed through torch's device-backend autoload. A case passes when both ranks
end with the same weights, the weights moved away from their initial values, and gradwire's
weights equal gloo's; expected refusals (Accelerate's own backend check) pass when the run fails
with that message. Exit status 1 if any case fails; a framework that is not installed is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import task  # noqa: E402

# name -> (package, script, extra arguments, description)
CASES = {
    "lightning-ddp": (
        "lightning",
        "lightning_ddp.py",
        ["--strategy", "ddp"],
        'Lightning `DDPStrategy(process_group_backend="gradwire")`',
    ),
    "lightning-model-parallel": (
        "lightning",
        "lightning_ddp.py",
        ["--strategy", "model-parallel"],
        'Lightning `ModelParallelStrategy(process_group_backend="gradwire")` (FSDP2, dp=2)',
    ),
    "accelerate": (
        "accelerate",
        "accelerate_ddp.py",
        ["--route", "pre-init"],
        'Accelerate: `dist.init_process_group("gradwire")`, then `Accelerator(cpu=True)`',
    ),
    "accelerate-kwargs": (
        "accelerate",
        "accelerate_ddp.py",
        ["--route", "kwargs"],
        'Accelerate: `Accelerator(cpu=True, kwargs_handlers=[InitProcessGroupKwargs(backend="gradwire")])`',
    ),
}
# Runs on gradwire that must fail, with the text the failure must contain.
REFUSED = {"accelerate-kwargs": "Your assigned backend gradwire is not available, please use gloo"}
DEFAULT = "lightning-ddp,lightning-model-parallel,accelerate,accelerate-kwargs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(case: str, backend: str, workdir: str, timeout: float) -> dict:
    _, script, extra, _ = CASES[case]
    prefix = os.path.join(workdir, f"{case}-{backend}")
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    env.setdefault("OMP_NUM_THREADS", "1")  # 2 ranks on a small machine
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           os.path.join(HERE, script), "--backend", backend, "--out", prefix, *extra]  # fmt: skip
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, output = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        rc, output = None, f"timed out after {timeout:.0f} s\n{e.stdout or ''}{e.stderr or ''}"
    out = {"returncode": rc, "seconds": round(time.perf_counter() - t0, 1), "output": output}
    out["log_tail"] = output[-3000:]
    if rc == 0:
        out["ranks"] = []
        for rank in range(2):
            with open(f"{prefix}.rank{rank}.json") as f:
                out["ranks"].append(json.load(f))
        out["weights"] = torch.load(f"{prefix}.pt")
    return out


def _compare(case: str, runs: dict) -> dict:
    gloo, gw = runs["gloo"], runs["gradwire"]
    res = {"case": case, "description": CASES[case][3]}
    res["seconds"] = {b: r["seconds"] for b, r in runs.items()}
    problems = []
    if gloo["returncode"] != 0:
        problems.append(f"the gloo run failed (exit {gloo['returncode']}):\n{gloo['log_tail']}")
    if case in REFUSED:
        refused = gw["returncode"] not in (0, None) and REFUSED[case] in gw["output"]
        res["gradwire"] = f"refused: {REFUSED[case]!r}" if refused else "not refused"
        if gloo["returncode"] == 0:
            res["gloo_digest"] = gloo["ranks"][0]["digest"]
        if not refused:
            problems.append(f"expected the refusal {REFUSED[case]!r}:\n{gw['log_tail']}")
        res.update(ok=not problems, problems=problems)
        return res
    if gw["returncode"] != 0:
        problems.append(f"the gradwire run failed (exit {gw['returncode']}):\n{gw['log_tail']}")
    if not problems:
        initial = task.digest(task.model().state_dict())
        for backend, r in runs.items():
            digests = {rank["digest"] for rank in r["ranks"]}
            used = {(rank["backend"], rank["group_type"]) for rank in r["ranks"]}
            res[f"{backend}_digest"] = r["ranks"][0]["digest"]
            res[f"{backend}_group"] = sorted(used)
            if len(digests) != 1:
                problems.append(f"{backend}: the ranks ended with different weights")
            if initial in digests:
                problems.append(f"{backend}: the weights never changed")
            if used != {
                (backend, "ProcessGroupGradwire" if backend == "gradwire" else "ProcessGroup")
            }:
                problems.append(f"{backend}: the run used {sorted(used)}")
        w0, w1 = gloo["weights"], gw["weights"]
        res["bitwise_equal"] = w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
        if not res["bitwise_equal"]:
            diff = max((w0[k] - w1[k]).abs().max().item() for k in w0 if k in w1)
            problems.append(f"gradwire's final weights differ from gloo's (max |diff| {diff:g})")
    res.update(ok=not problems, problems=problems)
    return res


def _markdown(results, skipped) -> str:
    lines = [
        "| case | gloo | gradwire | same weights as gloo | seconds (gloo / gradwire) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        secs = f"{r['seconds'].get('gloo', '-')} / {r['seconds'].get('gradwire', '-')}"
        if "gradwire" in r:  # an expected refusal
            same, gw = "n/a", r["gradwire"]
        else:
            same = "yes, bit for bit" if r.get("bitwise_equal") else "**no**"
            gw = f"`{r.get('gradwire_digest', '-')[:12]}`"
        gloo = f"`{r['gloo_digest'][:12]}`" if "gloo_digest" in r else "failed"
        lines.append(f"| {r['description']} | {gloo} | {gw} | {same} | {secs} |")
    for case, why in skipped.items():
        lines.append(f"| {CASES[case][3]} | skipped: {why} | | | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=DEFAULT, help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--out", help="directory for results.md and results.json")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run")
    args = ap.parse_args()

    results, skipped = [], {}
    with tempfile.TemporaryDirectory() as workdir:
        for case in args.cases.split(","):
            if case not in CASES:
                ap.error(f"unknown case {case!r}; expected some of {', '.join(CASES)}")
            package = CASES[case][0]
            if importlib.util.find_spec(package) is None:
                skipped[case] = f"{package} is not installed"
                continue
            runs = {b: _run(case, b, workdir, args.timeout) for b in ("gloo", "gradwire")}
            results.append(_compare(case, runs))
            if not args.json:
                r = results[-1]
                print(f"{case}: {'ok' if r['ok'] else 'FAILED'}", flush=True)
                for p in r["problems"]:
                    print(f"  {p}", flush=True)
    versions = {"torch": torch.__version__}
    for package in ("lightning", "accelerate"):
        if importlib.util.find_spec(package) is not None:
            versions[package] = importlib.import_module(package).__version__
    report = {"versions": versions, "results": results, "skipped": skipped}
    md = _markdown(results, skipped)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}\n\n{md}")
    print(json.dumps(report) if args.json else "\n" + md)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
