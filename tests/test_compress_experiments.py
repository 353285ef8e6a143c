"""The compression experiments (bench/compression/) run end to end: a few steps of the
convergence sweep on 2 local ranks, dense and (when the engine has codecs) int8, produce the
JSON, table and plot. Not a timing test: the numbers themselves live in bench/results/."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "compression"
sys.path.insert(0, str(BENCH))

from training import engine_codecs_missing, parse_variant  # noqa: E402

CODEC = "int8"


def test_variant_names_parse_and_bad_ones_are_clear_errors():
    assert parse_variant("gloo/powersgd:4").kind == "powersgd"
    assert parse_variant("gloo/powersgd:4").backend == "gloo"
    assert parse_variant("topk:0.01").spec == "topk:0.01"
    assert parse_variant("dense").backend == "gradwire"
    assert parse_variant("gloo/no-comm").kind == "no-comm"
    with pytest.raises(ValueError, match="needs the gradwire backend"):
        parse_variant("gloo/int8")
    with pytest.raises(ValueError, match="not one of"):
        parse_variant("nccl/dense")
    with pytest.raises(ValueError, match="positive rank"):
        parse_variant("powersgd:0")


@pytest.mark.timeout(120)
def test_convergence_sweep_runs_and_reports(tmp_path):
    variants = ["dense"] + ([] if engine_codecs_missing() else [CODEC])
    cmd = [sys.executable, str(BENCH / "convergence.py"), "--worlds", "2"]
    cmd += ["--variants", ",".join(variants), "--hidden", "32", "--steps", "6"]
    cmd += ["--eval-every", "3", "--warmup", "2", "--run-timeout", "60", "--out", str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=110)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]["2"]
    for name in variants:
        run = runs[name]
        assert "error" not in run, run
        assert len(run["loss"]) == 6 and all(math.isfinite(v) for v in run["loss"])
        assert [e["step"] for e in run["evals"]] == [3, 6]
        assert all(0.0 <= e["test_acc"] <= 100.0 for e in run["evals"])
    if CODEC in runs:  # the engine counted fewer bytes on the wire than it was given
        assert runs[CODEC]["wire"][0]["compression"]["ratio"] > 1.5, runs[CODEC]["wire"]
    md = (tmp_path / "results.md").read_text()
    assert "| 2 | dense |" in md and "convergence.png" in md
    assert (tmp_path / "convergence.png").stat().st_size > 10_000
