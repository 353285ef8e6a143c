#!/usr/bin/env python3
"""What gradwire's torch.backends entry point adds to `import torch`.

    bench/import_time.py [-n 60] [--python LABEL=PATH ...]

Every repetition starts fresh interpreters, one per configuration in turn (interleaved, so a
drifting machine slows all of them alike), and times `import torch` inside each one, as wall
time and as CPU time of the process (steadier on a loaded machine). The configurations are this
interpreter with torch's device-backend autoload on (the default) and off
(TORCH_DEVICE_BACKEND_AUTOLOAD=0), plus every --python given, e.g. the interpreter of an
environment without gradwire. Autoload off also skips torch's scan of the installed packages for
entry points, which torch does whether or not gradwire is installed, so on-minus-off bounds
gradwire's share from above.

gradwire's own share is measured directly too, two ways: `import gradwire` timed right after
`import torch` with the autoload off (the same modules and the same registration the entry
point runs), and `python -X importtime -c "import torch"` with the autoload on (self time of the
gradwire modules, summed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

_TIME = (
    "import time; import {pre}; w, c = time.perf_counter(), time.process_time(); import {mod}; "
    "w, c = time.perf_counter() - w, time.process_time() - c; "
    "import torch.distributed as d; print(w * 1e3, c * 1e3, 'GRADWIRE' in d.Backend._plugins)"
)


def _env(autoload: bool):
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    if not autoload:
        env["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"
    return env


def _timed_import(python: str, autoload: bool, mod: str = "torch", pre: str = "os"):
    """(wall ms, CPU ms) of `import mod` after `import pre`, and whether "gradwire" is registered."""
    out = subprocess.run(
        [python, "-c", _TIME.format(pre=pre, mod=mod)],
        env=_env(autoload),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return float(out[0]), float(out[1]), out[2] == "True"


def _gradwire_self_us(python: str) -> float:
    """Self time of gradwire's modules in one `python -X importtime -c 'import torch'`."""
    err = subprocess.run(
        [python, "-X", "importtime", "-c", "import torch"],
        env=_env(True),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stderr
    total = 0.0
    for line in err.splitlines():
        # "import time:  self [us] | cumulative | imported package"
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip().startswith("gradwire"):
            total += float(parts[0].split(":")[1])
    return total


def _row(label, reg, samples, base=None) -> None:
    ws, cs = sorted(s[0] for s in samples), sorted(s[1] for s in samples)
    w, c = statistics.median(ws), statistics.median(cs)
    p10, p90 = ws[len(ws) // 10], ws[(len(ws) * 9) // 10]
    cells = [label] + ([reg] if reg is not None else [])
    cells += [f"{w:.1f}", f"{p10:.1f} - {p90:.1f}", f"{c:.1f}"]
    if base is not None:
        cells += [f"{w - base[0]:+.1f}", f"{c - base[1]:+.1f}"]
    print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=60, help="repetitions per configuration")
    ap.add_argument("--python", action="append", default=[], metavar="LABEL=PATH")
    args = ap.parse_args()

    configs = [
        ("autoload on (default)", sys.executable, True),
        ("TORCH_DEVICE_BACKEND_AUTOLOAD=0", sys.executable, False),
    ]
    for spec in args.python:
        label, _, path = spec.partition("=")
        configs.append((label, path, True))
    samples = {c[0]: [] for c in configs}
    registered = {}
    direct = []
    for _ in range(args.n):
        for label, python, autoload in configs:
            w, c, registered[label] = _timed_import(python, autoload)
            samples[label].append((w, c))
        direct.append(_timed_import(sys.executable, False, mod="gradwire", pre="torch")[:2])
    selfs = sorted(_gradwire_self_us(sys.executable) for _ in range(max(5, args.n // 4)))

    print(f"`import torch` in fresh interpreters, {args.n} per configuration, interleaved (ms)\n")
    print("| configuration | registers gradwire | wall median | wall p10 - p90 | CPU median "
          "| wall - autoload on | CPU - autoload on |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    base = (statistics.median(s[0] for s in samples[configs[0][0]]),
            statistics.median(s[1] for s in samples[configs[0][0]]))  # fmt: skip
    for label, *_ in configs:
        _row(label, "yes" if registered[label] else "no", samples[label], base)
    print("\ngradwire's own share (ms):\n")
    print("| measurement | wall median | wall p10 - p90 | CPU median |")
    print("|---|---:|---:|---:|")
    _row("`import gradwire` after `import torch`, autoload off", None, direct)
    print(
        f"| gradwire modules in `-X importtime -c 'import torch'` ({len(selfs)} runs, self time) "
        f"| {statistics.median(selfs) / 1e3:.2f} | {selfs[len(selfs) // 10] / 1e3:.2f} - "
        f"{selfs[(len(selfs) * 9) // 10] / 1e3:.2f} | |"
    )


if __name__ == "__main__":
    main()
