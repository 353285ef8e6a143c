"""The parameter-server experiments (bench/ps/) run end to end at tiny sizes, with gradwire.ps
and with the torch.distributed.rpc baseline, and write well-formed results. No timing is
checked: the numbers that matter come from the full-size runs under bench/results/."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "ps")


def _has_gradwire_ps() -> bool:
    try:
        import gradwire.ps as ps
    except ImportError:
        return False
    return hasattr(ps, "start_local_servers") and hasattr(ps, "ShardedEmbedding")


def _systems():
    return ["rpc", "gradwire"] if _has_gradwire_ps() else ["rpc"]


def _run(script: str, args, tmp_path, timeout: float):
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, script), *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def _outputs(tmp_path, stem: str):
    for ext in ("json", "md", "png"):
        path = tmp_path / f"{stem}.{ext}"
        assert path.is_file() and path.stat().st_size > 0, f"{path.name} missing or empty"
    return json.loads((tmp_path / f"{stem}.json").read_text())


@pytest.mark.timeout(60)
def test_throughput_benchmark_runs_both_systems(tmp_path):
    systems = _systems()
    _run(
        "throughput.py",
        [
            "--systems",
            ",".join(systems),
            "--rounds",
            "1",
            "--reps",
            "2",
            "--warmup",
            "1",
            "--iters",
            "1",
            "--dense-mb",
            "0.0625",
            "--rows",
            "5000",
            "--batch",
            "256",
            "--dim",
            "16",
            "--servers",
            "1",
            "--workers",
            "1",
        ],
        tmp_path,
        timeout=55,
    )
    result = _outputs(tmp_path, "throughput")
    assert [c["name"] for c in result["cases"]] == ["dense-0.0625M", "sparse-d16-b256"]
    assert result["command"].startswith("bench/ps/throughput.py --systems")
    assert len(result["load"]) == len(systems) and "load average" in result["load"][0]["before"]
    for s in systems:
        for c in result["cases"]:
            row = result["systems"][s][c["name"]]
            assert row["reps"] == 2 and row["metric"] > 0, (s, c["name"], row)
    if len(systems) == 2:
        assert set(result["ratios"]) == {c["name"] for c in result["cases"]}


@pytest.mark.timeout(90)
def test_recsys_workload_learns_on_both_systems(tmp_path):
    systems = _systems()
    _run(
        "recsys.py",
        [
            "--systems",
            ",".join(["reference", *systems]),
            "--samples",
            "20000",
            "--users",
            "300",
            "--items",
            "100",
            "--categories",
            "10",
            "--epochs",
            "2",
            "--eval-every",
            "10",
            "--servers",
            "2",
            "--workers",
            "2",
        ],
        tmp_path,
        timeout=85,
    )
    result = _outputs(tmp_path, "recsys")
    assert result["oracle_auc"] > 0.7
    for name in ["reference", *systems]:
        run = result["runs"][name]
        assert run["final_auc"] > 0.6, (name, run["final_auc"])
        assert len(run["curve"]) >= 3 and run["curve"][-1][2] == run["final_auc"]
        assert run["updates"] > 0
    assert set(result["auc_gap_to_reference"]) == set(systems)
