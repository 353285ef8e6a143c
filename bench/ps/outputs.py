"""Where the parameter-server experiments write, and what every result records besides its
numbers: the date, the exact command, the machine and the load (`uptime`)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def out_dir(requested: Optional[str]) -> str:
    """--out, or bench/results/ps-<UTC date> (relative: the recorded command names no path)."""
    path = requested or os.path.join("bench", "results", f"ps-{today()}")
    os.makedirs(path, exist_ok=True)
    return path


def command(script: str, argv: Optional[List[str]]) -> str:
    return " ".join([f"bench/ps/{script}"] + (argv if argv is not None else sys.argv[1:]))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def machine() -> Dict[str, Any]:
    """The machine, plus the commit of the working tree the run used."""
    from gradwire.bench import machine as m

    info = m.describe()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        info["commit"] = head.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = "unknown"
    return info


def save(
    directory: str,
    stem: str,
    result: Dict[str, Any],
    markdown: Callable[[Dict[str, Any]], str],
    plot: Callable[[Dict[str, Any], str], None],
) -> str:
    """Writes <stem>.json, <stem>.md and <stem>.png; returns the markdown."""
    with open(os.path.join(directory, f"{stem}.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = markdown(result)
    with open(os.path.join(directory, f"{stem}.md"), "w") as f:
        f.write(md)
    plot(result, os.path.join(directory, f"{stem}.png"))
    return md


def add_out_args(p, name: str) -> None:
    """--out and --replot, shared by the experiment scripts."""
    p.add_argument("--out", default=None, help="directory (default bench/results/ps-<date>)")
    p.add_argument(
        "--replot",
        action="store_true",
        help=f"only rewrite the table and plot from the {name}.json in --out",
    )


def replot(requested: Optional[str], name: str, markdown: Callable, plot: Callable) -> None:
    """Rewrites <name>.md and <name>.png from the <name>.json in the results directory."""
    directory = out_dir(requested)
    with open(os.path.join(directory, f"{name}.json")) as f:
        print(save(directory, name, json.load(f), markdown, plot))
