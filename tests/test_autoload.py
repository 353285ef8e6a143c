"""The backend without `import gradwire`: torch's device-backend autoload registers the name.

`import torch` loads every entry point of the `torch.backends` group (unless
TORCH_DEVICE_BACKEND_AUTOLOAD=0). gradwire's entry point only registers "gradwire" with a creator
that imports the engine when the first group is made; these tests check that in fresh
interpreters, under torchrun and under the spawn helper.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from world import free_port, run_world

pytestmark = pytest.mark.timeout(180)

DATA = Path(__file__).resolve().parent / "data" / "autoload"
ENGINE = ["gradwire._C", "gradwire.backend", "gradwire.compression", "gradwire.hooks"]

# Printed by every probe: what is registered and which parts of gradwire are loaded.
_REPORT = """
import json, sys
import torch.distributed as dist
B = dist.Backend
print(json.dumps({
    "registered": "GRADWIRE" in B._plugins,
    "available": dist.is_backend_available("gradwire"),
    "listed": B.backend_list.count("gradwire"),
    "extended_api": B._plugins["GRADWIRE"].extended_api if "GRADWIRE" in B._plugins else None,
    "capability": B.backend_capability.get("gradwire"),
    "defaults": {d: B.default_device_backend_map.get(d) for d in ("cpu", "cuda")},
    "package": "gradwire" in sys.modules,
    "engine": sorted(m for m in ENGINE if m in sys.modules),
}))
"""


def _env(autoload=None):
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}
    if autoload is not None:
        env["TORCH_DEVICE_BACKEND_AUTOLOAD"] = autoload
    return env


def _probe(code: str, autoload=None) -> dict:
    """Run `code` then the report in a fresh interpreter (warnings are errors there)."""
    r = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"{code}\nENGINE = {ENGINE!r}\n{_REPORT}"],
        env=_env(autoload),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_torch_registers_gradwire_without_loading_the_engine():
    rep = _probe("import torch\n")
    assert rep["registered"] and rep["available"], rep
    assert rep["engine"] == [], f"import torch loaded gradwire's engine: {rep['engine']}"
    # the same registration `import gradwire` makes, and torch's own defaults are untouched
    assert rep["extended_api"] is True and rep["capability"] == ["cpu", "cuda"]
    assert rep["listed"] == 1
    assert rep["defaults"] == {"cpu": "gloo", "cuda": "nccl"}


def test_autoload_off_leaves_the_backend_to_import_gradwire():
    rep = _probe("import torch\n", autoload="0")
    assert not rep["registered"] and not rep["package"], rep
    rep = _probe("import torch, gradwire\n", autoload="0")
    assert rep["registered"] and rep["extended_api"] is True, rep


def test_import_gradwire_is_cheap_and_every_public_name_still_resolves():
    rep = _probe("import gradwire\n", autoload="0")
    assert rep["registered"] and rep["engine"] == [], rep
    code = """
import gradwire
from gradwire import *  # noqa
import torch.distributed as dist
assert gradwire.ProcessGroupGradwire.__module__ == "gradwire.backend"
assert isinstance(gradwire.Options(), gradwire.compression.Options)
assert gradwire.compression("int8").codec.kind == "int8"
assert callable(gradwire.hooks.compressed) and callable(gradwire.register)
assert gradwire.backend.ProcessGroupGradwire is ProcessGroupGradwire
assert {"ProcessGroupGradwire", "Options", "compression", "hooks", "stats"} <= set(dir(gradwire))
try:
    gradwire.no_such_name
except AttributeError as e:
    assert "no_such_name" in str(e)
else:
    raise AssertionError("gradwire.no_such_name resolved")
"""
    rep = _probe(code)
    assert rep["registered"] and rep["listed"] == 1, rep
    assert set(rep["engine"]) == set(ENGINE)


@pytest.mark.parametrize(
    "code",
    [
        "import gradwire\nimport torch\n",  # gradwire's import triggers torch's autoload of it
        "import torch\nimport gradwire\n",
        "import torch\nimport gradwire.backend as b\nb.register()\nimport gradwire\n"
        "gradwire.register()\n",
    ],
    ids=["gradwire-first", "torch-first", "explicit-register"],
)
def test_autoload_and_import_register_once_in_any_order(code):
    rep = _probe(code)
    assert rep["registered"] and rep["listed"] == 1 and rep["extended_api"] is True, rep
    assert rep["defaults"] == {"cpu": "gloo", "cuda": "nccl"}


def test_unmodified_script_runs_on_gradwire_under_torchrun():
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
         str(DATA / "allreduce.py")],
        env=_env(), capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    recs = sorted(
        (json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")),
        key=lambda rec: rec["rank"],
    )
    assert [rec["rank"] for rec in recs] == [0, 1], r.stdout
    for rec in recs:
        assert rec["engine_after_import_torch"] == []
        assert rec["backend"] == "gradwire" and rec["group_type"] == "ProcessGroupGradwire"
        assert rec["sum"] == [3.0] * 5


def test_unmodified_worker_runs_on_gradwire_under_the_spawn_helper(monkeypatch):
    monkeypatch.delenv("TORCH_DEVICE_BACKEND_AUTOLOAD", raising=False)
    from autoload_worker import allreduce_without_import

    for out in run_world(allreduce_without_import, 2, timeout=120):
        assert out["engine_before_init"] == [], out
        assert {"gradwire._C", "gradwire.backend"} <= set(out["engine_after_init"])
        assert out["group_type"] == "ProcessGroupGradwire"
        assert out["sum"] == [0.0, 3.0, 6.0, 9.0]
