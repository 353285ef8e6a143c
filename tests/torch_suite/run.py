#!/usr/bin/env python3
"""Run torch's distributed test suite on gloo and gradwire and tabulate the results side by side.

    tests/torch_suite/run.py                          # gloo + gradwire at 2 and 3 ranks
    tests/torch_suite/run.py --resume                 # continue an interrupted run
    tests/torch_suite/run.py --world-sizes 2 --tests test_all_reduce_sum,test_barrier
    tests/torch_suite/run.py --table-only             # rebuild the tables from what has run

One pytest run per (backend, world size) over tests/torch_suite/spawn_suite.py, then, on
gradwire, the tests gloo passes that are gated on the name "gloo" (spawn_suite.py says how).
Each finished test appends a line to <work>/<config>.jsonl; --resume keeps those lines and
runs only the tests they lack. Rank logs and the failure of each test that does not pass stay
in <work>/logs/<config>/. The tables (markdown + JSON of the latest run) go to --out.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _sibling(name: str):
    """A module of this directory, loaded by path (tests/test_torch_suite.py imports this file)."""
    spec = importlib.util.spec_from_file_location(f"torch_suite_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


load_results = _sibling("results_plugin").load_results

BACKENDS = ("gloo", "gradwire")
SYMBOL = {"passed": "pass", "failed": "FAIL", "error": "ERROR", "skipped": "skip"}
META_KEYS = (
    "backend",
    "world_size",
    "gates_as",
    "seconds",
    "start_method",
    "timeout",
    "finished",
    "engine_built",
    "engine_rebuilt_during_run",
)

# Tests gloo passes that cannot apply to another backend, with the reason (docs/torch-suite.md).
_MONITORED = (
    "torch implements monitored_barrier for gloo only: dist.monitored_barrier raises "
    "ValueError for any other backend"
)
NOT_APPLICABLE: dict[str, str] = {
    "test_monitored_barrier_gloo": _MONITORED,
    "test_monitored_barrier_gloo_subgroup": _MONITORED,
    "test_monitored_barrier_gloo_rank_0_timeout": (
        "calls ProcessGroup.monitored_barrier, which torch forwards only to its C++ gloo backend"
    ),
}


def config_name(backend: str, world_size: int, gates: str = "") -> str:
    return f"{backend}-ws{world_size}" + (f"-{gates}-gates" if gates else "")


def gated_tests(work: Path, world_size: int) -> list[str]:
    """Tests gloo passes that the gradwire run skipped: gated on the name "gloo"."""
    gloo = load_results(str(work / f"{config_name('gloo', world_size)}.jsonl"))
    ours = load_results(str(work / f"{config_name('gradwire', world_size)}.jsonl"))
    return sorted(
        t
        for t, r in gloo.items()
        if r["outcome"] == "passed" and t in ours and ours[t]["outcome"] == "skipped"
    )


def engine_built() -> str:
    """When the installed gradwire engine was built (its _C module's mtime), without importing it."""
    spec = importlib.util.find_spec("gradwire")
    if spec is None or not spec.submodule_search_locations:
        return "?"
    found = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*"))
    if not found:
        return "?"
    stamp = os.path.getmtime(found[0])
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat(
        timespec="seconds"
    )


def suite_env(
    backend: str,
    world_size: int,
    results: Path,
    *,
    log_dir: Path | None = None,
    gates: str = "",
    start_method: str = "forkserver",
    timeout: int = 180,
    resume: bool = True,
) -> dict:
    """The environment of one pytest run of spawn_suite.py (read by it and results_plugin)."""
    env = dict(os.environ)
    label = f"{backend} ws{world_size}" + (f" {gates} gates" if gates else "")
    env.update(
        BACKEND=backend,
        WORLD_SIZE=str(world_size),
        TORCH_SUITE_RESULTS=str(results),
        TORCH_SUITE_LOG_DIR=str(log_dir or ""),
        TORCH_SUITE_LABEL=label,
        TORCH_SUITE_GATES_AS=gates,
        TORCH_SUITE_RESUME="1" if resume else "0",
        TORCH_SUITE_START_METHOD=start_method,
        # The suite's own limit for one test's ranks (torch's default: 300 s).
        DISTRIBUTED_TESTS_DEFAULT_TIMEOUT=str(timeout),
        # Its hint names a script that does not exist here.
        PYTORCH_PRINT_REPRO_ON_FAILURE="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
    )
    return env


def suite_command(backend: str, tests: list[str], *, timeout: int = 180, k: str = "") -> list:
    """pytest over spawn_suite.py: every test, or the named ones."""
    cls = f"TestDistBackendWithSpawn{backend.upper()}"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "results_plugin",
        "-p",
        "no:cacheprovider",
        # torch's suite is not written for the repository's warnings-as-errors setting.
        "-o",
        "filterwarnings=default",
        # A backstop above the suite's own limit, for a runner that itself hangs.
        f"--timeout={timeout * 2 + 60}",
        "--rootdir",
        str(HERE),
    ]
    if tests:
        cmd += [f"{HERE / 'spawn_suite.py'}::{cls}::{t}" for t in tests]
    else:
        cmd.append(str(HERE / "spawn_suite.py"))
    if k:
        cmd += ["-k", k]
    return cmd


def run_config(backend: str, world_size: int, args, tests: list[str], gates: str = "") -> None:
    name = config_name(backend, world_size, gates)
    work = Path(args.work)
    results = work / f"{name}.jsonl"
    log_dir = work / "logs" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    meta_path = work / f"{name}.meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"seconds": 0.0}

    env = suite_env(
        backend,
        world_size,
        results,
        log_dir=log_dir,
        gates=gates,
        start_method=args.start_method,
        timeout=args.timeout,
    )
    cmd = suite_command(backend, tests, timeout=args.timeout, k=args.k)

    print(f"== {name}: {'all tests' if not tests else f'{len(tests)} tests'}", flush=True)
    with open(work / f"{name}.log", "a") as log:
        for attempt in range(args.attempts):
            start = time.monotonic()
            built = engine_built()
            meta.setdefault("engine_built", built)
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if line.startswith(("[", "ERROR", "INTERNALERROR")):
                    print(line, end="", flush=True)
            code = proc.wait()
            meta["seconds"] = round(meta["seconds"] + time.monotonic() - start, 1)
            if engine_built() != meta["engine_built"]:
                # Someone reinstalled gradwire meanwhile: the results mix two builds.
                meta["engine_rebuilt_during_run"] = engine_built()
            meta.update(
                backend=backend,
                world_size=world_size,
                gates_as=gates or None,
                start_method=args.start_method,
                timeout=args.timeout,
                finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            )
            meta_path.write_text(json.dumps(meta, indent=1) + "\n")
            # 0: all passed, 1: some failed, 5: nothing left to run; 2: interrupted, 4: bad
            # arguments (an unknown test name). A crash of pytest itself (3, or a signal):
            # resume after what was recorded.
            if code in (0, 1, 5):
                return
            if code not in (3,) and code > 0:
                sys.exit(f"== {name}: pytest exited with {code} (see {work / (name + '.log')})")
            print(f"== {name}: pytest exited with {code}; resuming (attempt {attempt + 2})")
    print(f"== {name}: giving up after {args.attempts} attempts", flush=True)


def _versions() -> dict:
    info = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        out = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        )
        info["torch"] = out.stdout.strip()
    except subprocess.CalledProcessError:
        pass
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    if rev.returncode == 0:
        info["gradwire_commit"] = rev.stdout.strip()
    info["cpus"] = os.cpu_count()
    return info


def _cell(record) -> str:
    return SYMBOL[record["outcome"]] if record else "-"


def build_tables(args, world_sizes: list[int]) -> None:
    work = Path(args.work)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    main_configs = [config_name(b, ws) for ws in world_sizes for b in BACKENDS]
    main_configs = [c for c in main_configs if (work / f"{c}.jsonl").exists()]
    gate_configs = [config_name("gradwire", ws, "gloo") for ws in world_sizes]
    gate_configs = [c for c in gate_configs if (work / f"{c}.jsonl").exists()]
    configs = main_configs + gate_configs
    results = {c: load_results(str(work / f"{c}.jsonl")) for c in configs}
    metas = {}
    for c in configs:
        path = work / f"{c}.meta.json"
        metas[c] = json.loads(path.read_text()) if path.exists() else {}
    names = sorted({t for c in main_configs for t in results[c]})

    summary = {}
    for c in configs:
        counts = {k: 0 for k in SYMBOL}
        for record in results[c].values():
            counts[record["outcome"]] += 1
        summary[c] = {k: metas[c].get(k) for k in META_KEYS}
        summary[c]["counts"] = counts

    # gloo passes, gradwire does not: what the issue asks to be empty. With each, what the
    # test does on gradwire when it is let through a gate on the name "gloo".
    gaps = {}
    for ws in world_sizes:
        g, w = config_name("gloo", ws), config_name("gradwire", ws)
        lifted = config_name("gradwire", ws, "gloo")
        if g not in results or w not in results:
            continue
        for t in names:
            gr, wr = results[g].get(t), results[w].get(t)
            if gr and gr["outcome"] == "passed" and (wr is None or wr["outcome"] != "passed"):
                entry = gaps.setdefault(t, {})
                entry[w] = wr or {"outcome": "not run", "message": ""}
                if lifted in results and t in results[lifted]:
                    entry[lifted] = results[lifted][t]
        for t, entry in gaps.items():
            if t in NOT_APPLICABLE:
                entry["not_applicable"] = NOT_APPLICABLE[t]

    doc = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "suite": "torch.testing._internal.distributed.distributed_test.DistributedTest._DistTestBase",
        "environment": _versions(),
        "configs": summary,
        "gloo_pass_gradwire_not": gaps,
        "tests": {t: {c: results[c][t] for c in configs if t in results[c]} for t in names},
    }
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")

    env = doc["environment"]
    lines = [
        "# torch's distributed suite: gloo vs gradwire",
        "",
        f"Generated {doc['generated']} by `tests/torch_suite/run.py` (`make torch-suite`); "
        f"how to read it: docs/torch-suite.md. torch {env.get('torch', '?')}, repository at "
        f"{env.get('gradwire_commit', '?')}, "
        f"Python {env.get('python')}, {env.get('cpus')} CPUs, "
        'no GPU. `*-gloo-gates`: gradwire on the tests gated on the name "gloo" only, '
        "let through those gates.",
        "",
        "| configuration | tests | pass | fail | error | skip | wall time | ranks started by "
        "| gradwire engine built |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in configs:
        sm = summary[c]
        n = sm["counts"]
        lines.append(
            f"| {c} | {sum(n.values())} | {n['passed']} | {n['failed']} | {n['error']} "
            f"| {n['skipped']} | {(sm['seconds'] or 0) / 60:.1f} min | {sm['start_method']} "
            f"| {_built(sm)} |"
        )
    lines += ["", "## gloo passes, gradwire does not", ""]
    if gaps:
        cols = [
            c
            for ws in world_sizes
            for c in (config_name("gradwire", ws), config_name("gradwire", ws, "gloo"))
            if c in configs
        ]
        lines += [
            "| test | " + " | ".join(cols) + " | why |",
            "|---|" + "---|" * len(cols) + "---|",
        ]
        for t, entry in gaps.items():
            why = entry.get("not_applicable") or ""
            if not why:
                msgs = []
                for c in cols:
                    r = entry.get(c)
                    if r and r["outcome"] != "passed" and r["message"] not in msgs:
                        msgs.append(r["message"])
                why = "; ".join(msgs)
            cells = [_cell(entry.get(c)) for c in cols]
            lines.append(f"| `{t}` | " + " | ".join(cells) + f" | {_md(why)} |")
    else:
        lines.append("None.")
    lines += [
        "",
        "## Every test",
        "",
        "Skip reasons and failure messages are in the last column, with the configurations "
        "they apply to when not all.",
        "",
        "| test | " + " | ".join(configs) + " | notes |",
        "|---|" + "---|" * len(configs) + "---|",
    ]
    for t in names:
        cells, notes = [], {}
        for c in configs:
            r = results[c].get(t)
            cells.append(_cell(r))
            if r and r["outcome"] != "passed" and r["message"]:
                notes.setdefault(_md(r["message"]), []).append(c)
        ran = [c for c in configs if t in results[c]]
        note = "; ".join(
            m if len(cs) == len(ran) else f"{', '.join(cs)}: {m}" for m, cs in notes.items()
        )
        lines.append(f"| `{t}` | " + " | ".join(cells) + f" | {note} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(f"== tables: {out / 'README.md'}, {out / 'results.json'}")
    for c in configs:
        n = summary[c]["counts"]
        print(
            f"   {c}: {n['passed']} pass, {n['failed']} fail, {n['error']} error, "
            f"{n['skipped']} skip ({(summary[c]['seconds'] or 0) / 60:.1f} min)"
        )
    if gaps:
        print(f"   gloo passes, gradwire does not: {len(gaps)} tests")


def _built(meta: dict) -> str:
    if meta.get("backend") != "gradwire":
        return ""
    built = meta.get("engine_built") or "?"
    if meta.get("engine_rebuilt_during_run"):
        built += f", reinstalled {meta['engine_rebuilt_during_run']} during the run"
    return built


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--world-sizes", default="2,3")
    parser.add_argument("--tests", default="", help="comma-separated test names (default: all)")
    parser.add_argument("-k", default="", help="pytest -k expression")
    parser.add_argument("--timeout", type=int, default=180, help="seconds for one test's ranks")
    parser.add_argument("--start-method", choices=("forkserver", "spawn"), default="forkserver")
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--work", default=str(REPO / "build" / "torch-suite"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "torch-suite"))
    parser.add_argument(
        "--resume", action="store_true", help="keep earlier results, run only what they lack"
    )
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--no-table", action="store_true")
    parser.add_argument(
        "--no-gloo-gates",
        action="store_true",
        help="do not rerun on gradwire the tests gated on the name gloo",
    )
    args = parser.parse_args()

    world_sizes = [int(x) for x in args.world_sizes.split(",") if x]
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r} (choose from {', '.join(BACKENDS)})")
    for ws in world_sizes:
        if ws < 2:
            parser.error(f"world size {ws}: the suite needs at least 2 ranks")
    tests = [t for t in args.tests.split(",") if t]
    Path(args.work).mkdir(parents=True, exist_ok=True)

    if not args.table_only:
        total = time.monotonic()
        work = Path(args.work)
        for ws in world_sizes:
            names = [config_name(b, ws) for b in backends]
            if "gradwire" in backends and not args.no_gloo_gates:
                names.append(config_name("gradwire", ws, "gloo"))
            if not args.resume:
                for name in names:
                    for suffix in (".jsonl", ".meta.json", ".log"):
                        (work / f"{name}{suffix}").unlink(missing_ok=True)
                    shutil.rmtree(work / "logs" / name, ignore_errors=True)
            for b in backends:
                run_config(b, ws, args, tests)
            if "gradwire" in backends and not args.no_gloo_gates:
                gated = [t for t in gated_tests(work, ws) if not tests or t in tests]
                if gated:
                    run_config("gradwire", ws, args, gated, gates="gloo")
        print(f"== all runs: {(time.monotonic() - total) / 60:.1f} min", flush=True)
    if not args.no_table:
        build_tables(args, world_sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
