"""The image's build steps, exercised outside Docker (there is no Docker engine in CI):
docker/build-wheel.sh and docker/install-runtime.sh, then a job run by the installed wheel."""

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from launch_helpers import REPO, TRAIN, clean_env, records

pytestmark = pytest.mark.timeout(600)
DOCKER = REPO / "docker"


def test_dockerfile_structure():
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [s[1] for s in stages] == ["build", "runtime"]
    assert all(image.endswith("-slim") for image, _ in stages)
    assert "sh docker/build-wheel.sh /wheels" in text
    assert "COPY --from=build /wheels /wheels" in text
    assert "gradwire-install-runtime /wheels" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    runtime = text.split("AS runtime", 1)[1]
    assert "g++" not in runtime  # no compiler in the runtime image


def test_build_and_install_steps_outside_docker(tmp_path):
    wheels, env_dir = tmp_path / "wheels", tmp_path / "runtime"
    env = clean_env(PYTHON=sys.executable)
    r = subprocess.run(["sh", str(DOCKER / "build-wheel.sh"), str(wheels)], env=env,
                       capture_output=True, text=True, timeout=540)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = wheels.glob("gradwire-*.whl")
    # A fresh environment that sees this one's packages (torch is not downloaded again),
    # except gradwire: it must come from the wheel.
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    shared = tmp_path / "shared-site"
    shared.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not entry.name.startswith("gradwire"):
            (shared / entry.name).symlink_to(entry)
    with open(os.path.join(site, "zz-test-shared.pth"), "w") as f:
        f.write(f"{shared}\n")
    r = subprocess.run(["sh", str(DOCKER / "install-runtime.sh"), str(wheels)],
                       env=clean_env(PYTHON=str(py)), capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    where = subprocess.run([str(py), "-c", "import gradwire; print(gradwire.__file__)"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert where.startswith(str(env_dir)), where  # the wheel's gradwire, not the dev install
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([str(env_dir / "bin" / "gradwire"), "run", "--nproc-per-node", "2",
                        str(TRAIN)], env=clean_env(TEST_OUT=str(out)), capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(records(out)) == [0, 1]
