"""Lightning and Accelerate train on gradwire to the same final weights as on gloo, bit for bit.

Each case runs examples/frameworks/compare.py: 2 CPU processes under torchrun per backend, with
scripts that never import gradwire. Skipped when the framework is not installed (`make setup`
installs both).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)

COMPARE = Path(__file__).resolve().parent.parent / "examples" / "frameworks" / "compare.py"


def _compare(case: str, package: str) -> dict:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (make setup installs it)")
    r = subprocess.run(
        [sys.executable, str(COMPARE), "--cases", case, "--json", "--timeout", "400"],
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert r.stdout.strip(), r.stderr
    (res,) = json.loads(r.stdout.strip().splitlines()[-1])["results"]
    assert res["ok"], "\n".join(res["problems"])
    assert r.returncode == 0, r.stderr
    return res


@pytest.mark.parametrize(
    "case, package", [("lightning-ddp", "lightning"), ("accelerate", "accelerate")]
)
def test_training_on_gradwire_matches_gloo_bit_for_bit(case, package):
    res = _compare(case, package)
    assert res["bitwise_equal"] is True
    assert res["gloo_group"] == [["gloo", "ProcessGroup"]]
    assert res["gradwire_group"] == [["gradwire", "ProcessGroupGradwire"]]
    assert res["gradwire_digest"] == res["gloo_digest"]


def test_accelerate_still_refuses_the_backend_in_its_own_kwargs():
    """docs/frameworks.md says so; this fails when an Accelerate release starts accepting it."""
    res = _compare("accelerate-kwargs", "accelerate")
    assert res["gradwire"].startswith("refused")
