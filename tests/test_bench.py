"""gradwire bench, end to end on small sizes: tables, JSON and plot have their structure, every
backend's results are right (#wrong == 0), bad input fails fast with a clear message.
No timing assertions: this machine's speed is not a test result."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys

import gradwire.bench
import pytest
from gradwire.bench.env import world_from_env

ALL = "allreduce,broadcast,reduce,allgather,reduce_scatter,alltoall,barrier,sendrecv"
SMALL = ["-b", "64", "-e", "4K", "-f", "8", "-n", "2", "-w", "1", "--no-progress"]


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gradwire.bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows_of(path) -> list:
    data = json.loads(path.read_text())
    assert data["schema"] == "gradwire-bench/1"
    assert data["meta"]["machine"]["cores"] >= 1
    return data["rows"]


def check_rows(rows: list, backend: str, ops: set, worlds: set) -> None:
    assert {r["op"] for r in rows} == ops
    assert {r["world"] for r in rows} == worlds
    for r in rows:
        assert r["backend"] == backend
        assert r["placement"] in ("out", "in")
        assert set(r["time"]) == {"median", "mean", "min", "max", "p99"}
        assert r["time"]["min"] <= r["time"]["median"] <= r["time"]["max"]
        assert r["iters"] == 2
        if r["op"] == "barrier":
            assert r["wrong"] is None and r["nbytes"] == 0
        else:
            assert r["wrong"] == 0, r
            assert r["nbytes"] > 0 and r["count"] > 0 and r["busbw"] >= 0


@pytest.mark.timeout(300)
def test_gradwire_all_collectives_table_json_and_plot(tmp_path):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    p = bench(ALL, *SMALL, "--np", "2", "--json", str(out), "--plot", str(png))
    assert p.returncode == 0, p.stderr
    assert "out-of-place" in p.stdout and "in-place" in p.stdout
    assert "#wrong" in p.stdout and "busbw" in p.stdout
    assert "OSU-style latency" in p.stdout and "P99(us)" in p.stdout
    assert "# #wrong total : 0" in p.stdout
    check_rows(rows_of(out), "gradwire", set(ALL.split(",")), {2})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["gloo", "gradwire-native"])
def test_peer_backends_are_right(tmp_path, backend):
    out = tmp_path / "r.json"
    p = bench(ALL, *SMALL, "--np", "2", "--backend", backend, "--json", str(out))
    assert p.returncode == 0, p.stderr
    check_rows(rows_of(out), backend, set(ALL.split(",")), {2})


@pytest.mark.timeout(300)
def test_types_reductions_and_world_sizes(tmp_path):
    out = tmp_path / "r.json"
    args = ["allreduce,reduce_scatter", "-d", "float16,bfloat16,int8,int64", "-o", "max"]
    p = bench(*args, *SMALL, "--np", "1,3", "--json", str(out), "-q")
    assert p.returncode == 0, p.stderr
    rows = rows_of(out)
    check_rows(rows, "gradwire", {"allreduce", "reduce_scatter"}, {1, 3})
    assert {r["dtype"] for r in rows} == {"float16", "bfloat16", "int8", "int64"}
    assert {r["redop"] for r in rows} == {"max"}


@pytest.fixture(scope="module")
def mpi_ready():
    """OpenMPI and mpi4py, installed when missing (Debian packages need root)."""
    if shutil.which("mpirun") is None and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "openmpi-bin", "libopenmpi-dev"],
        ):
            subprocess.run(cmd, env=env, capture_output=True, timeout=900)
    if shutil.which("mpirun") is None:
        pytest.skip("OpenMPI is not installed (apt-get install openmpi-bin libopenmpi-dev)")
    probe = [sys.executable, "-c", "from mpi4py import MPI"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("mpi4py is not importable (pip install mpi4py)")


@pytest.mark.timeout(300)
def test_mpi_backend_under_its_own_mpirun(tmp_path, mpi_ready):
    out = tmp_path / "r.json"
    p = bench(ALL, *SMALL, "--np", "2", "--backend", "mpi", "--json", str(out))
    assert p.returncode == 0, p.stderr
    check_rows(rows_of(out), "mpi", set(ALL.split(",")), {2})


@pytest.mark.parametrize(
    "args, message",
    [
        (["-b", "1M", "-e", "4K"], "larger than maximum size"),
        (["--backend", "nccl"], "unknown backend 'nccl'"),
        (["allfoo"], "unknown collective 'allfoo'"),
        (["-d", "float128"], "unknown data type"),
        (["-b", "12Q"], "cannot read size"),
        (["-o", "avg", "--backend", "gloo"], "no 'avg' reduction"),
        (["-d", "float16", "--backend", "mpi", "--np", "2"], "cannot move float16"),
        (["broadcast", "-r", "5", "--np", "2"], "root 5 is outside a world of 2"),
        (["--np", "two"], "--np takes numbers"),
    ],
)
def test_bad_input_is_a_clear_error(args, message):
    p = bench(*args, timeout=60)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr


def test_launcher_environments():
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    assert world_from_env({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}) == (0, 2)
    assert world_from_env({"MASTER_ADDR": "x"}) is None


def test_docstring_examples():
    for info in pkgutil.walk_packages(gradwire.bench.__path__, "gradwire.bench."):
        module = importlib.import_module(info.name)
        failed, _ = doctest.testmod(module)
        assert failed == 0, info.name


@pytest.mark.timeout(300)
def test_compare_writes_tables_ratios_and_plots(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "compare")
    args = ["--name", "t", "--out", str(tmp_path), "--peers", "gradwire,gloo", "--rounds", "2"]
    args += ["-b", "64", "-e", "1K", "-f", "16", "-n", "2", "-w", "1", "--note", "test run"]
    env = dict(os.environ, PYTHON=sys.executable)
    p = subprocess.run([script, *args], capture_output=True, text=True, timeout=280, env=env)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "t"
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "gradwire-compare/1" and data["meta"]["failures"] == []
    assert len(data["meta"]["runs"]) == 4  # 2 peers x 2 rounds
    points = data["points"]
    assert {(pt["peer"], pt["nbytes"]) for pt in points} == {
        (peer, size) for peer in ("gradwire", "gloo") for size in (64, 1024)
    }
    assert all(len(pt["rounds"]) == 2 and pt["wrong"] == 0 for pt in points)
    assert {(r["fast"], r["peer"]) for r in data["ratios"]} == {("gradwire", "gloo")}
    md = (out / "results.md").read_text()
    assert "## Targets summary" in md and "gradwire vs gloo" in md and "> **test run**" in md
    for png in ("ratios.png", "absolute.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def _interleaved(tmp_path, pairs):
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "interleaved.py")
    args = [
        "--pairs",
        pairs,
        "--out",
        str(tmp_path),
        "-b",
        "4K",
        "-e",
        "64K",
        "-f",
        "16",
        "-n",
        "3",
    ]
    p = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stderr
    return json.loads((tmp_path / "results.json").read_text())["results"]


def _check_interleaved(rows, ours, theirs):
    assert [r["nbytes"] for r in rows] == [4096, 65536]
    for r in rows:
        assert r[ours]["wrong_max_rank"] == 0 and r[theirs]["wrong_max_rank"] == 0
        assert r[ours]["median_us"] > 0 and r[theirs]["median_us"] > 0
        assert r["median_paired_ratio"] > 0 and r["iters"] == 3


@pytest.mark.timeout(300)
def test_interleaved_torch_pair_checks_and_times_both(tmp_path):
    res = _interleaved(tmp_path, "torch")
    _check_interleaved(res["torch"]["2"], "gradwire", "gloo")
    md = (tmp_path / "results.md").read_text()
    assert "## torch.distributed all_reduce, 2 ranks" in md


@pytest.mark.timeout(300)
def test_interleaved_native_pair_under_mpirun(tmp_path, mpi_ready):
    res = _interleaved(tmp_path, "native")
    _check_interleaved(res["native"]["2"], "gradwire-native", "mpi-shm")
