"""Install paths and the declared Python range, checked by building the package for real.

* `pip wheel` of the source tree with pip's default build isolation, in a build directory of its
  own, must contain the torch adapter, and torch's built-in C++ FP16_COMPRESS hook must train
  with the installed wheel;
* an adapter built against another torch is detected and reported, not loaded;
* on the oldest and newest Python that pyproject.toml declares, `pip install .` without torch
  fails at install time saying what to run, and with GRADWIRE_TORCH_ADAPTER=OFF installs a
  numpy-only package whose `import gradwire`, `gradwire info` and gradwire.comm collectives
  across real processes work;
* `gradwire info` lists the optional parts and why one is missing.

Each build takes minutes (about one CPU-minute per Python module, more on a fresh machine):
when ccache exists, compiled objects are shared between the builds (the objects of the engine
core do not depend on Python or torch), and all builds use the CMake of this environment (the one
`make setup` built with), so that their compile commands, and ccache's keys, are the same.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("install_worker.py")
BUILD_TIMEOUT = 1500  # seconds; a cold build on a busy 2-core machine took 8 minutes

pytestmark = [pytest.mark.install, pytest.mark.timeout(3600)]


def declared_pythons() -> tuple:
    """(oldest, newest) Python that pyproject.toml declares: requires-python's floor and the
    newest version classifier, which must be below requires-python's cap if it has one."""
    text = (REPO / "pyproject.toml").read_text()
    spec = re.search(r'^requires-python\s*=\s*">=(3\.\d+)(?:,\s*<(3\.\d+))?"', text, re.M)
    classified = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)
    assert spec and classified, "pyproject.toml must declare requires-python and classifiers"
    minor = [int(v.split(".")[1]) for v in classified]
    oldest, newest = f"3.{min(minor)}", f"3.{max(minor)}"
    assert oldest == spec.group(1), "the oldest classifier must be requires-python's floor"
    if spec.group(2):
        assert max(minor) < int(spec.group(2).split(".")[1]), "a classifier above the cap"
    return oldest, newest


OLDEST, NEWEST = declared_pythons()


def cmake_binary() -> Optional[str]:
    """The CMake binary of the `cmake` package in this environment (make setup builds with it),
    or None. Not the bin/cmake entry point: that is a Python script, which cannot import its
    package under pip's build isolation."""
    try:
        import cmake
    except ImportError:
        return None
    exe = Path(cmake.CMAKE_BIN_DIR) / "cmake"
    return str(exe) if exe.exists() else None


def build_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_REQUIRE"))}
    env.pop("GRADWIRE_TORCH_ADAPTER", None)
    if shutil.which("ccache"):
        env["CMAKE_CXX_COMPILER_LAUNCHER"] = "ccache"
    cmake = cmake_binary()
    if cmake:
        env["CMAKE_EXECUTABLE"] = cmake
    env.update(extra)
    return env


def run(cmd: List[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw
    )


def tail(r: subprocess.CompletedProcess, n: int = 4000) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-n:]}\n--- stderr\n{r.stderr[-n:]}"


def python_version_of(exe: str) -> Optional[str]:
    try:
        r = run([exe, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def find_python(version: str, scratch: Path) -> str:
    """An interpreter for `version`: on PATH, from pyenv, or from uv (found, else installed by
    uv, which itself comes from PyPI). Fails, listing what it tried, when there is none."""
    tried = []

    def good(exe) -> bool:
        found = python_version_of(str(exe))
        tried.append(f"{exe}: {found or 'unusable'}")
        return found == version

    exe = shutil.which(f"python{version}")
    if exe and good(exe):
        return exe
    roots = [os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv")]
    if shutil.which("pyenv"):
        roots.insert(0, run(["pyenv", "root"]).stdout.strip())
    for root in filter(None, roots):
        pattern = os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")
        for exe in sorted(glob.glob(pattern), reverse=True):
            if good(exe):
                return exe
    uv = shutil.which("uv")
    if uv is None:
        target = scratch / "uv"
        r = run([sys.executable, "-m", "pip", "install", "-q", "--target", target, "uv"], 600)
        tried.append(f"pip install uv: exit {r.returncode} {r.stderr[-300:]}")
        uv = str(target / "bin" / "uv")
    if os.path.exists(uv):
        for cmd in (["python", "find", version], ["python", "install", version]):
            r = run([uv, *cmd], 900)
            tried.append(f"uv {' '.join(cmd)}: exit {r.returncode} {r.stderr.strip()[-300:]}")
            if cmd[1] == "install" and r.returncode == 0:
                r = run([uv, "python", "find", version])
            exe = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout else ""
            if exe and good(exe):
                return exe
    pytest.fail(f"no Python {version} interpreter found; tried:\n  " + "\n  ".join(tried))


def run_ranks(cmds: List[list], env: Dict[str, str], timeout: float = 120) -> None:
    """Start one process per command (rank 0, 1, ...) and wait for all; a hang is a failure."""
    procs = [
        subprocess.Popen(
            [str(c) for c in cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for cmd in cmds
    ]
    failures = []
    try:
        for rank, p in enumerate(procs):
            out, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                failures.append(f"rank {rank} exit {p.returncode}:\n{err.decode()[-3000:]}")
    finally:
        for p in procs:
            p.kill()
    assert not failures, "\n".join(failures)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the isolated build of the source tree, with torch in the target environment ----


@pytest.fixture(scope="module")
def isolated_wheel(tmp_path_factory) -> Path:
    """`pip wheel .` as a user runs it (build isolation on), with a build directory of its own,
    installed with `pip install --target` into a directory of its own."""
    tmp = tmp_path_factory.mktemp("isolated")
    r = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp / "wheel",
         "--config-settings", f"build-dir={tmp / 'build'}", REPO],
        timeout=BUILD_TIMEOUT, env=build_env(), cwd=tmp,
    )  # fmt: skip
    assert r.returncode == 0, tail(r)
    (wheel,) = (tmp / "wheel").glob("gradwire-*.whl")
    r = run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", tmp / "site", wheel])
    assert r.returncode == 0, tail(r)
    return tmp


def test_isolated_build_wheel_has_the_torch_adapter(isolated_wheel):
    import zipfile

    import torch

    (wheel,) = (isolated_wheel / "wheel").glob("gradwire-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if re.fullmatch(r"gradwire/_torch_future\..*\.so", n)], names
    record = zipfile.ZipFile(wheel).read("gradwire/_build_info.py").decode()
    assert f'TORCH_VERSION = "{torch.__version__}"' in record, record


def test_isolated_build_trains_with_builtin_fp16_hook(isolated_wheel, tmp_path):
    """torch's built-in C++ FP16_COMPRESS hook on the installed wheel's backend: the same
    parameters on both ranks, and the same as gloo's with the same hook."""
    site = isolated_wheel / "site"
    env = build_env(PYTHONPATH=str(site))
    results = {}
    for backend in ("gradwire", "gloo"):
        port = free_port()
        outs = [tmp_path / f"{backend}{r}.json" for r in range(2)]
        run_ranks(
            [[sys.executable, WORKER, "ddp", r, 2, port, backend, outs[r]] for r in (0, 1)], env
        )
        results[backend] = [json.loads(o.read_text()) for o in outs]
    ours, gloo = results["gradwire"], results["gloo"]
    for r in ours:
        assert r["gradwire"].startswith(str(site)), r["gradwire"]  # the wheel, not the dev install
        assert r["typed_futures"] is True
    assert ours[0]["params"] == ours[1]["params"], "parameters differ across ranks"
    assert ours[0]["params"] != ours[0]["init"], "the model did not train"
    worst = max(abs(a - b) for a, b in zip(ours[0]["params"], gloo[0]["params"]))
    assert worst < 2e-3, f"gradwire vs gloo with the FP16 hook: max difference {worst}"


def test_adapter_built_for_another_torch_is_reported_not_loaded(isolated_wheel, tmp_path):
    """The build records the torch it compiled against; a different torch at run time (torch
    upgraded after install) is named by `gradwire info` and a warning, with what to run."""
    site = tmp_path / "site"
    shutil.copytree(isolated_wheel / "site", site, symlinks=True)
    record = site / "gradwire" / "_build_info.py"
    text = record.read_text()
    text = re.sub(r'TORCH_VERSION = ".*"', 'TORCH_VERSION = "2.12.0+cpu"', text)
    text = re.sub(r'TORCH_GIT_VERSION = ".*"', 'TORCH_GIT_VERSION = "0123abcd"', text)
    record.write_text(text)
    env = build_env(PYTHONPATH=str(site))
    r = run([sys.executable, "-m", "gradwire.cli", "info"], env=env)
    assert r.returncode == 0, tail(r)
    assert str(site) in r.stdout  # the copy under test, not the dev install
    line = next(ln for ln in r.stdout.splitlines() if "torch adapter:" in ln)
    assert "MISSING: built against torch 2.12.0+cpu, but this process runs torch" in line, line
    assert "pip install --force-reinstall --no-deps --no-cache-dir" in line, line
    probe = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from gradwire import _futures\n"
        "import sys\n"
        "print(_futures.TYPED_FUTURES, 'gradwire._torch_future' in sys.modules)\n"
        "print([str(x.message) for x in w if x.category is RuntimeWarning])\n"
    )
    r = run([sys.executable, "-c", probe], env=env)
    assert r.returncode == 0, tail(r)
    loaded, warned = r.stdout.splitlines()
    assert loaded == "False False", loaded  # the mismatched module was never loaded
    assert "built against torch 2.12.0+cpu" in warned and "_register_builtin_comm_hook" in warned


# ---- gradwire info in this environment ----


def test_info_lists_optional_parts():
    import torch

    r = run([sys.executable, "-m", "gradwire.cli", "info"])
    assert r.returncode == 0, tail(r)
    listed = r.stdout.split("optional parts:\n", 1)[1].splitlines()
    parts = dict(ln.strip().split(": ", 1) for ln in listed if ": " in ln)
    assert parts["torch adapter"] == f"present (built against torch {torch.__version__})"
    assert "CUDA kernels" in parts and "mpi4py" in parts, parts
    assert parts["mpi4py"].startswith("present" if _has("mpi4py") else "not installed: ")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---- the declared Python range, numpy-only ----


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_declared_python_builds_and_runs_without_torch(version, tmp_path):
    python = find_python(version, tmp_path)
    venv = tmp_path / "venv"
    r = run([python, "-m", "venv", venv], timeout=300)
    assert r.returncode == 0, tail(r)
    vpy = venv / "bin" / "python"
    pip_install = [vpy, "-m", "pip", "install", "--config-settings",
                   f"build-dir={tmp_path / 'build'}", REPO]  # fmt: skip
    if version == OLDEST:
        # Without torch, the default build fails at install time and says what to run instead.
        r = run(pip_install, timeout=BUILD_TIMEOUT, env=build_env())
        assert r.returncode != 0, tail(r)
        out = r.stdout + r.stderr
        assert "torch is not importable by" in out, tail(r)
        assert "GRADWIRE_TORCH_ADAPTER=OFF pip install ." in out, tail(r)
    r = run(pip_install, timeout=BUILD_TIMEOUT, env=build_env(GRADWIRE_TORCH_ADAPTER="OFF"))
    assert r.returncode == 0, tail(r)

    env = build_env()
    r = run([vpy, "-c", "import gradwire; print(gradwire.__file__)"], env=env, cwd=tmp_path)
    assert r.returncode == 0, tail(r)
    assert r.stdout.startswith(str(venv)), r.stdout
    r = run([venv / "bin" / "gradwire", "info"], env=env, cwd=tmp_path)
    assert r.returncode == 0, tail(r)
    assert f"python {version}." in r.stdout, r.stdout
    assert "torch: not installed" in r.stdout, r.stdout
    assert "torch adapter: not built (GRADWIRE_TORCH_ADAPTER=OFF at build time)" in r.stdout

    store = tmp_path / "store"
    store.mkdir()
    outs = [tmp_path / f"rank{r}.json" for r in range(3)]
    run_ranks([[vpy, WORKER, "numpy", r, 3, store, outs[r]] for r in range(3)], env)
    for out in outs:
        res = json.loads(out.read_text())
        assert res["python"] == version and res["gradwire"].startswith(str(venv))
        assert res["allreduce"] == [6.0] and res["max"] == [2]
        assert res["bcast"] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert res["gather"] == [0, 0, 1, 1, 2, 2]
