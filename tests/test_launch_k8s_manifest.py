"""`gradwire k8s manifest`: every flavour validates against the real schemas.

Core kinds go through PyPI's `kubernetes-validate --strict`; custom resources through their
CRD schemas (tests/data/crds), with their embedded pod/job templates through the core schema.
"""

import contextlib
import copy
import io
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from gradwire.launch import k8s
from launch_helpers import DATA

K8S_VERSION = "1.33.0"
CRDS = {
    ("kubeflow.org/v1", "PyTorchJob"): "kubeflow.org_pytorchjobs.yaml",
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobset.x-k8s.io_jobsets.yaml",
}


def manifest(*args: str) -> subprocess.CompletedProcess:
    """`gradwire k8s manifest ARGS`, in this process (the dispatch test runs the command)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = k8s.main(["manifest", *args])
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def docs_for(flavor: str, nodes: int = 3, *extra: str):
    r = manifest("--name", "bert", "--nodes", str(nodes), "--nproc-per-node", "2", "--image",
                 "registry.example/gradwire:0.1", "--flavor", flavor, "--servers", "1", "--cpu",
                 "2", "--memory", "8Gi", "--gpus", "1", *extra, "train.py", "--epochs", "3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return list(yaml.safe_load_all(r.stdout))


def strict(schema):
    """Reject properties the schema does not list (kubectl --validate=strict), except where
    the schema preserves unknown fields."""
    s = copy.deepcopy(schema)
    if isinstance(s, dict):
        if s.get("type") == "object" and "properties" in s and "additionalProperties" not in s:
            if not s.get("x-kubernetes-preserve-unknown-fields"):
                s["additionalProperties"] = False
        for k, v in list(s.items()):
            if k == "properties":
                s[k] = {name: strict(sub) for name, sub in v.items()}
            elif isinstance(v, (dict, list)):
                s[k] = strict(v)
    elif isinstance(s, list):
        s = [strict(x) for x in s]
    return s


def crd_schema(api_version: str, kind: str):
    crd = yaml.safe_load((DATA / "crds" / CRDS[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert crd["spec"]["names"]["kind"] == kind
    return strict(v["schema"]["openAPIV3Schema"])


def validate_custom(doc):
    jsonschema.validate(doc, crd_schema(doc["apiVersion"], doc["kind"]))
    # The embedded templates, against the core schema they have upstream.
    if doc["kind"] == "PyTorchJob":
        for name, rs in doc["spec"]["pytorchReplicaSpecs"].items():
            pt = {"apiVersion": "v1", "kind": "PodTemplate",
                  "metadata": {"name": f"{name.lower()}"}, "template": rs["template"]}  # fmt: skip
            kubernetes_validate.validate(pt, K8S_VERSION, strict=True)
    if doc["kind"] == "JobSet":
        for rj in doc["spec"]["replicatedJobs"]:
            job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": rj["name"]},
                   "spec": rj["template"]["spec"]}  # fmt: skip
            kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def validate_core_with_cli(docs, tmp_path: Path):
    f = tmp_path / "core.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    exe = Path(sys.executable).parent / "kubernetes-validate"
    r = subprocess.run([str(exe), "--strict", "-k", K8S_VERSION, str(f)], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.parametrize("flavor", ["indexed-job", "pytorchjob", "jobset"])
def test_every_flavor_validates(flavor, tmp_path):
    docs = docs_for(flavor)
    core = [d for d in docs if (d["apiVersion"], d["kind"]) not in CRDS]
    custom = [d for d in docs if (d["apiVersion"], d["kind"]) in CRDS]
    validate_core_with_cli(core, tmp_path)
    for d in custom:
        validate_custom(d)
    kinds = [d["kind"] for d in docs]
    assert kinds == {"indexed-job": ["Secret", "Service", "Job"], "pytorchjob":
                     ["Secret", "PyTorchJob"], "jobset": ["Secret", "JobSet"]}[flavor]  # fmt: skip


def _pod_templates(doc):
    if doc["kind"] == "Job":
        return [doc["spec"]["template"]]
    if doc["kind"] == "PyTorchJob":
        return [rs["template"] for rs in doc["spec"]["pytorchReplicaSpecs"].values()]
    return [rj["template"]["spec"]["template"] for rj in doc["spec"]["replicatedJobs"]]


@pytest.mark.parametrize("flavor", ["indexed-job", "pytorchjob", "jobset"])
def test_pods_run_the_launcher_with_the_secret_and_resources(flavor):
    docs = docs_for(flavor)
    secret = docs[0]
    assert secret["kind"] == "Secret" and len(secret["stringData"]["token"]) == 64
    workload = docs[-1]
    for tmpl in _pod_templates(workload):
        (c,) = tmpl["spec"]["containers"]
        cmd = c["command"]
        assert cmd[:2] == ["gradwire", "run"] and cmd[-3:] == ["train.py", "--epochs", "3"]
        assert cmd[cmd.index("--nproc-per-node") + 1] == "2"
        assert cmd[cmd.index("--num-servers") + 1] == "1"
        assert ("--nnodes" in cmd) == (flavor != "pytorchjob")  # PyTorchJob's env says it
        ref = c["env"][0]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": "token"}
        assert c["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"},
                                  "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"}}  # fmt: skip
    if flavor == "indexed-job":
        svc, job = docs[1], docs[2]
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
        assert job["spec"]["template"]["spec"]["subdomain"] == svc["metadata"]["name"]
    if flavor == "pytorchjob":
        spec = workload["spec"]["pytorchReplicaSpecs"]
        assert spec["Master"]["replicas"] == 1 and spec["Worker"]["replicas"] == 2
        assert workload["spec"]["nprocPerNode"] == "2"
    if flavor == "jobset":
        rj = workload["spec"]["replicatedJobs"][0]
        assert rj["template"]["spec"]["completions"] == 3
        assert workload["spec"]["network"]["enableDNSHostnames"]


def test_the_validators_can_fail(tmp_path):
    job = docs_for("indexed-job")[2]
    job["spec"]["completionz"] = 3
    with pytest.raises(Exception, match="completionz"):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    js = docs_for("jobset")[1]
    js["spec"]["network"]["enableDNSHostname"] = True
    with pytest.raises(jsonschema.ValidationError, match="enableDNSHostname"):
        validate_custom(js)
    ptj = docs_for("pytorchjob")[1]
    ptj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imag"] = "x"
    with pytest.raises(Exception, match="imag"):
        validate_custom(ptj)


def test_single_node_pytorchjob_has_only_a_master():
    spec = docs_for("pytorchjob", 1)[1]["spec"]["pytorchReplicaSpecs"]
    assert list(spec) == ["Master"]


def test_bad_input_is_named():
    r = manifest("--name", "Bad_Name", "--nodes", "2", "--image", "x", "train.py")
    assert r.returncode == 2 and "--name 'Bad_Name'" in r.stderr
    r = manifest("--name", "ok", "--nodes", "1", "--image", "x", "--servers", "1", "train.py")
    assert r.returncode == 2 and "--servers 1" in r.stderr
    r = manifest("--name", "ok", "--nodes", "1", "--image", "x")
    assert r.returncode == 2 and "training script" in r.stderr


def test_the_gradwire_command_dispatches_to_it():
    r = subprocess.run([sys.executable, "-m", "gradwire.cli", "k8s", "manifest", "--name", "a",
                        "--nodes", "2", "--image", "x", "t.py"], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [d["kind"] for d in yaml.safe_load_all(r.stdout)] == ["Secret", "Service", "Job"]
