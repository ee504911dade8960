"""The Kubernetes runtime end to end through the CLI, against the real control plane of
``tests/support/kube.py`` (etcd, kube-apiserver, controller-manager, scheduler, kwok with one fake
GPU node): Jobs really complete, Deployments really become available, pods really get scheduled.
GCS artifacts and state live in fake-gcs-server. Nothing here is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ROOT, Project
from tests.support.gcs import GcsServer
from tests.support.kube import ControlPlane, node_manifest
from tests.support.waiting import wait_for

FALCON = ROOT / "examples" / "falcon-7b"
IMAGES_URL = "https://github.com/substratusai/images"
BUCKET = "my-bucket"  # the example's bucket, in the emulator
MANAGED = "app.kubernetes.io/managed-by%3Dsubstratus"


class Cluster:
    """Test-side reads and writes, with the admin token (as kubectl would)."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane, self.ns = plane, namespace

    def path(self, kind: str, name: str = "") -> str:
        prefix, plural = {
            "Job": ("/apis/batch/v1", "jobs"),
            "Deployment": ("/apis/apps/v1", "deployments"),
            "Pod": ("/api/v1", "pods"),
            "Service": ("/api/v1", "services"),
            "ConfigMap": ("/api/v1", "configmaps"),
            "Secret": ("/api/v1", "secrets"),
            "ServiceAccount": ("/api/v1", "serviceaccounts"),
        }[kind]
        return f"{prefix}/namespaces/{self.ns}/{plural}" + (f"/{name}" if name else "")

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        status, body = self.plane.request("GET", self.path(kind, name))
        assert status in (200, 404), body
        return body if status == 200 else None

    def items(self, kind: str) -> list[dict[str, Any]]:
        status, body = self.plane.request("GET", f"{self.path(kind)}?labelSelector={MANAGED}")
        assert status == 200, body
        return list(body["items"])

    def names(self, kind: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.items(kind))


def _git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def images_repo(root: Path) -> tuple[Path, str]:
    """A local stand-in for github.com/substratusai/images (its `dataset-loader-http`)."""
    repo = root / "images"
    (repo / "dataset-loader-http").mkdir(parents=True)
    (repo / "dataset-loader-http" / "Dockerfile").write_text("FROM python:3.11\n")
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "loader", cwd=repo)
    return repo, _git("rev-parse", "HEAD", cwd=repo)


def gcs_objects(gcs: GcsServer, prefix: str) -> list[str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="p",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs.url},
    )
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    return sorted(b.name for b in client.list_blobs(BUCKET, prefix=prefix))


class KubeProject(Project):
    """A configuration applied to one namespace of the test cluster."""

    env: dict[str, str]
    flags: list[str]

    def sub(
        self,
        *args: str,
        check: int | None = 0,
        flags: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        extra = self.flags if flags else []
        return self.run(*args, *extra, check=check, timeout=180, env={**self.env, **(env or {})})


SPOT_LABEL = "cloud.google.com/gke-spot"


def _spot_l4_node(name: str) -> dict[str, Any]:
    """A GKE spot node with L4s, tainted as GKE taints its spot nodes: the falcon trainer
    (``resources.spot``) runs only there."""
    node = _fake_node(name, "nvidia-l4")
    node["metadata"]["labels"][SPOT_LABEL] = "true"
    node["spec"] = {"taints": [{"key": SPOT_LABEL, "value": "true", "effect": "NoSchedule"}]}
    return node


@pytest.fixture
def falcon(
    tmp_path: Path, kube_cluster: ControlPlane, gcs_server: GcsServer
) -> Iterator[KubeProject]:
    """The falcon-7b example in a namespace of its own, with a spot L4 node pool of one node
    (its trainer asks for spot capacity) for the test's duration."""
    ns = kube_cluster.new_namespace("falcon")
    repo, _commit = images_repo(tmp_path)
    shutil.copytree(FALCON, tmp_path / "falcon")
    project = KubeProject(tmp_path / "falcon")
    gcs_objects(gcs_server, "")  # creates the example's bucket in the emulator once
    project.env = {
        "KUBECONFIG": str(kube_cluster.kubeconfig),
        **gcs_server.env,
        "SUBSTRATUS_K8S_POLL": "0.2",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{repo}.insteadOf",
        "GIT_CONFIG_VALUE_0": IMAGES_URL,
    }
    project.flags = [
        "--namespace",
        ns,
        "--state",
        f"gs://{BUCKET}/{ns}/state",
        "--artifacts",
        f"gs://{BUCKET}/{ns}",
    ]
    spot = f"kwok-spot-l4-{uuid_suffix(ns)}"
    status, body = kube_cluster.request("POST", "/api/v1/nodes", _spot_l4_node(spot))
    assert status == 201, body
    try:
        yield project
    finally:
        kube_cluster.request("DELETE", f"/api/v1/nodes/{spot}")


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return dict(spec["containers"][0])


def _mounts(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in _container(obj)["volumeMounts"]}


def _env(obj: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(obj)["env"]}


def _job(cluster: Cluster, prefix: str) -> dict[str, Any]:
    found = [j for j in cluster.items("Job") if j["metadata"]["name"].startswith(prefix)]
    assert len(found) == 1, [j["metadata"]["name"] for j in cluster.items("Job")]
    return found[0]


def test_falcon_7b_runs_on_a_cluster_and_a_dataset_edit_retrains_and_rolls_the_server(
    falcon: KubeProject, kube_cluster: ControlPlane, gcs_server: GcsServer
) -> None:
    ns = falcon.flags[1]
    cluster = Cluster(kube_cluster, ns)
    plan = falcon.sub("plan", "--out", "plan.json")
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in plan.stdout
    assert "asks for" not in plan.stdout  # no capacity warning: the spot L4 node is there
    applied = falcon.sub("apply", "plan.json", flags=False)
    assert "Apply complete! Resources: 6 added" in applied.stdout

    # the build: a Kaniko Job cloning the commit the plan resolved
    build = _job(cluster, "images-dataset-loader-http-bcd7da-bld-")
    spec = build["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    commit = _git("rev-parse", "HEAD", cwd=falcon.dir.parent / "images")
    registry = "us-central1-docker.pkg.dev/my-project/substratus"
    image = f"{registry}/images-dataset-loader-http-bcd7da:{commit}"
    assert f"--destination={image}" in args
    assert "--context-sub-path=dataset-loader-http" in args
    clone_env = {e["name"]: e["value"] for e in spec["initContainers"][0]["env"]}
    assert clone_env == {"GIT_URL": IMAGES_URL, "GIT_COMMIT": commit}
    assert build["status"]["succeeded"] == 1

    # the dataset loader runs the built image; the base model loader reads a Secret
    dataset = _job(cluster, "k8s-instructions-data-")
    assert _container(dataset)["image"] == image
    assert _env(dataset)["PARAM_URLS"].endswith("k8s-instructions.jsonl")
    assert not _mounts(dataset)["/content/artifacts"].get("readOnly")
    base = _job(cluster, "falcon-7b-model-")
    assert _env(base)["HUGGING_FACE_HUB_TOKEN"] == {
        "secretKeyRef": {"name": "ai", "key": "HUGGING_FACE_HUB_TOKEN"}
    }
    assert _env(base)["PARAM_NAME"] == "tiiuae/falcon-7b"

    # the trainer: GPUs on spot nodes, 3 retries counted by SUBSTRATUS_ATTEMPT around the
    # image's train.sh, read-only inputs on GCS FUSE
    trainer = _job(cluster, "falcon-7b-k8s-model-")
    tspec = trainer["spec"]["template"]["spec"]
    assert trainer["spec"]["backoffLimit"] == 3 and "podFailurePolicy" in trainer["spec"]
    command = _container(trainer)["command"]
    assert command[:2] == ["/bin/sh", "-c"] and command[-1] == "train.sh"
    assert "SUBSTRATUS_ATTEMPT" in command[2]
    res = _container(trainer)["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "4" and res["limits"]["nvidia.com/gpu"] == "4"
    assert res["requests"]["memory"] == "64Gi"
    assert tspec["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        SPOT_LABEL: "true",
    }
    assert {"key": SPOT_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"} in (
        tspec["tolerations"]
    )
    mounts = _mounts(trainer)
    assert mounts["/content/data"]["readOnly"] and mounts["/content/model"]["readOnly"]
    assert mounts["/content/data"]["subPath"].startswith(f"{ns}/{ns}/datasets/k8s-instructions/")
    assert mounts["/content/model"]["subPath"].startswith(f"{ns}/{ns}/models/falcon-7b/")
    volumes = {v["name"]: v for v in tspec["volumes"]}
    assert volumes["data"]["csi"]["volumeAttributes"]["bucketName"] == BUCKET
    assert trainer["spec"]["template"]["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
    pods = [p for p in cluster.items("Pod") if p["metadata"]["name"].startswith("falcon-7b-k8s-mo")]
    assert pods and pods[0]["spec"]["nodeName"] == f"kwok-spot-l4-{uuid_suffix(ns)}"
    # no sensitive params: params.json is the pod's annotation (downward API), no Secret
    assert cluster.get("Secret", trainer["metadata"]["name"] + "-params") is None
    text = trainer["spec"]["template"]["metadata"]["annotations"]["substratus.ai/params"]
    assert json.loads(text) == {"num_train_epochs": 1, "save_steps": 5}
    assert volumes["params"]["downwardAPI"]["items"][0]["path"] == "params.json"
    trained_version = mounts["/content/artifacts"]["subPath"]
    markers = gcs_objects(gcs_server, f"{ns}/")
    assert f"{trained_version}/.substratus-complete" in markers

    # the server rolled out, 4-bit, serving the trained version; the notebook is suspended
    dep = cluster.get("Deployment", "falcon-7b-k8s-server")
    assert dep is not None and dep["status"]["availableReplicas"] == 1
    assert _env(dep)["MODEL_LOAD_IN_4BIT"] == "true"
    assert _mounts(dep)["/content/model"]["subPath"] == trained_version
    svc = cluster.get("Service", "falcon-7b-k8s-server")
    assert svc is not None and svc["spec"]["ports"][0]["port"] == 8080
    assert cluster.get("Pod", "falcon-7b-dev-notebook") is None
    assert "No changes." in falcon.sub("plan").stdout

    # unsuspend the notebook: its pod runs with the base model and the dataset mounted
    falcon.edit("substratus.yaml", "  suspend: true", "  suspend: false")
    falcon.sub("apply", "--auto-approve")
    pod = cluster.get("Pod", "falcon-7b-dev-notebook")
    assert pod is not None and pod["status"]["phase"] == "Running"
    assert set(_mounts(pod)) >= {"/content/data", "/content/model", "/content/artifacts"}
    assert "No changes." in falcon.sub("plan").stdout

    # edit the dataset's params: dataset and trained model replaced, server and notebook rolled
    falcon.edit(
        "substratus.yaml", "raw/main/k8s-instructions.jsonl", "raw/v2/k8s-instructions.jsonl"
    )
    edited = falcon.sub("plan", "--detailed-exitcode", check=2).stdout
    assert "dataset.k8s-instructions must be replaced" in edited
    assert "model.falcon-7b-k8s must be replaced" in edited
    assert "modelserver.falcon-7b-k8s will be updated in-place" in edited
    assert "notebook.falcon-7b-dev will be updated in-place" in edited
    assert "model.falcon-7b will" not in edited and "build." not in edited.split("Plan:")[0]
    assert "Plan: 2 to add, 2 to change, 2 to destroy." in edited
    falcon.sub("apply", "--auto-approve")
    dep = cluster.get("Deployment", "falcon-7b-k8s-server")
    assert dep is not None
    new_version = _mounts(dep)["/content/model"]["subPath"]
    assert new_version != trained_version
    assert new_version.startswith(f"{ns}/{ns}/models/falcon-7b-k8s/")
    assert dep["status"]["updatedReplicas"] == dep["status"]["availableReplicas"] == 1
    assert "No changes." in falcon.sub("plan", "--detailed-exitcode").stdout

    # destroy: every object is gone, artifacts too
    falcon.sub("destroy", "--auto-approve")
    for kind in ("Job", "Deployment", "Pod", "Service", "ConfigMap", "Secret"):
        assert cluster.items(kind) == [], kind
    assert [o for o in gcs_objects(gcs_server, f"{ns}/") if "/state/" not in o] == []


TINY = """\
kind: Project
spec:
  runtime: kubernetes
  cloud: {cloud}
  artifacts: {artifacts}
  registry: localhost:5000/team
---
kind: Dataset
name: squad
spec:
  container: {{image: loader:1}}
  loader: {{params: {{urls: "http://data/squad.jsonl"}}}}
---
kind: Model
name: tiny
spec:
  container: {{image: trainer:1}}
  trainer:
    dataset: squad
    params: {{epochs: 1}}
    resources: {{gpu: {{type: {gpu}, count: 1}}}}
---
kind: ModelServer
name: tiny
spec:
  container: {{image: server:1}}
  model: tiny
---
kind: Notebook
name: lab
spec:
  container: {{image: notebook:1}}
  dataset: squad
"""


def tiny_project(
    root: Path,
    plane: ControlPlane,
    gpu: str = "nvidia-l4",
    kubeconfig: Path | None = None,
    **env: str,
) -> tuple[KubeProject, Cluster]:
    ns = plane.new_namespace(root.name[:20])
    project = KubeProject(root / "tiny")
    project.dir.mkdir()
    artifacts = (root / "bucket").as_uri()  # a host path on the (fake) node: cloud kind
    (project.dir / "substratus.yaml").write_text(
        TINY.format(cloud="gcp" if gpu != "nvidia-l4" else "kind", artifacts=artifacts, gpu=gpu)
    )
    project.env = {
        "KUBECONFIG": str(kubeconfig or plane.kubeconfig),
        "SUBSTRATUS_K8S_POLL": "0.2",
        **env,
    }
    project.flags = ["--namespace", ns]
    return project, Cluster(plane, ns)


def test_a_notebook_pod_deleted_while_it_starts_is_created_again(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    """The notebook's pod waits for a T4 node (none yet); deleted meanwhile — as when its node
    goes away — it is created again, and apply finishes once a T4 node comes."""
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-t4")
    project.edit(
        "substratus.yaml",
        "container: {image: notebook:1}",
        "container: {image: notebook:1}\n  resources: {gpu: {type: nvidia-t4, count: 1}}",
    )
    proc = project.popen(
        "apply",
        "--auto-approve",
        "--json",
        "--target",
        "notebook.lab",
        *project.flags,
        env=project.env,
    )
    node = node_manifest(
        f"kwok-nb-t4-{uuid_suffix(cluster.ns)}",
        {"type": "kwok", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
        gpus=1,
    )
    try:
        first = wait_for(lambda: cluster.get("Pod", "lab-notebook"), "the notebook pod", 120)
        status, body = kube_cluster.request("DELETE", cluster.path("Pod", "lab-notebook"))
        assert status == 200, body

        def again() -> dict[str, Any] | None:
            pod = cluster.get("Pod", "lab-notebook")
            fresh = pod is not None and pod["metadata"]["uid"] != first["metadata"]["uid"]
            return pod if fresh else None

        second = wait_for(again, "the notebook pod created again", 120)
        status, body = kube_cluster.request("POST", "/api/v1/nodes", node)
        assert status == 201, body
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        events = [json.loads(line) for line in out.splitlines()]
        said = [e.get("message", "") for e in events if e["type"] == "apply_phase"]
        assert "pod lab-notebook was deleted while it started; creating it again" in said, said
        ready = cluster.get("Pod", "lab-notebook")
        assert ready is not None and ready["metadata"]["uid"] == second["metadata"]["uid"]
        assert "No changes." in project.sub("plan", "--target", "notebook.lab").stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kube_cluster.request("DELETE", f"/api/v1/nodes/{node['metadata']['name']}")


def test_drift_is_found_on_managed_fields_and_repaired(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    project.sub("apply", "--auto-approve")
    assert "No changes." in project.sub("plan").stdout  # server-defaulted fields are not drift
    dep_path = cluster.path("Deployment", "tiny-server")
    status, _ = kube_cluster.request(
        "PATCH",
        dep_path + "/scale",
        {"spec": {"replicas": 3}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    status, _ = kube_cluster.request("DELETE", cluster.path("Pod", "lab-notebook"))
    assert status == 200
    wait_for(lambda: cluster.get("Pod", "lab-notebook") is None, "the notebook pod to go")
    plan = project.sub("plan", "--detailed-exitcode", check=2).stdout
    assert "Objects have changed outside of substratus" in plan
    assert "Deployment tiny-server was scaled to 3 outside substratus (configured 1)" in plan
    assert "pod " in plan and "lab-notebook was deleted outside substratus" in plan
    project.sub("apply", "--auto-approve")
    dep = cluster.get("Deployment", "tiny-server")
    assert dep is not None and dep["spec"]["replicas"] == 1
    assert cluster.get("Pod", "lab-notebook") is not None
    assert "No changes." in project.sub("plan").stdout

    # an edit by hand (another field manager, as kubectl edit) of a field we manage
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "server:hacked"
    del dep["metadata"]["managedFields"]
    status, body = kube_cluster.request("PUT", dep_path + "?fieldManager=kubectl-edit", dep)
    assert status == 200, body
    plan = project.sub("plan", "--detailed-exitcode", check=2).stdout
    assert "was edited outside substratus: spec.template.spec.containers[name=serve].image" in plan
    project.sub("apply", "--auto-approve")
    dep = cluster.get("Deployment", "tiny-server")
    assert dep is not None and _container(dep)["image"] == "server:1"
    assert "No changes." in project.sub("plan").stdout
    project.sub("destroy", "--auto-approve")
    assert cluster.items("Deployment") == [] and cluster.items("Pod") == []


def _fake_node(name: str, accelerator: str) -> dict[str, Any]:
    return node_manifest(name, {"type": "kwok", "cloud.google.com/gke-accelerator": accelerator})


def test_an_interrupted_apply_leaves_a_job_the_next_apply_adopts(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    # H100s are not in the cluster yet: the trainer's pod waits for a node
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-h100")
    proc = subprocess.Popen(
        [sys.executable, "-m", "substratus", "apply", "--auto-approve", *project.flags],
        cwd=project.dir,
        env={**os.environ, **project.env, "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        job = wait_for(
            lambda: next(
                (j for j in cluster.items("Job") if "-model-" in j["metadata"]["name"]), None
            ),
            "the trainer job",
            timeout=60,
        )
        name = job["metadata"]["name"]
        wait_for(  # the pod is pending: no node offers an H100
            lambda: [
                pod
                for pod in cluster.items("Pod")
                if (pod["metadata"].get("labels") or {}).get("job-name") == name
                and pod.get("status", {}).get("phase") == "Pending"
            ],
            "the trainer's pod, pending",
            timeout=120,
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    uid = job["metadata"]["uid"]
    plan = project.sub("plan", "--no-lock").stdout
    assert f"job {job['metadata']['name']} is still running; adopting it" in plan
    name = f"kwok-h100-{uuid_suffix(cluster.ns)}"
    status, body = kube_cluster.request(
        "POST", "/api/v1/nodes", _fake_node(name, "nvidia-h100-80gb")
    )
    assert status == 201, body
    try:
        project.sub("apply", "--auto-approve", "--no-lock")
        jobs = [j for j in cluster.items("Job") if "-model-" in j["metadata"]["name"]]
        assert [j["metadata"]["uid"] for j in jobs] == [uid]  # adopted, not started again
        assert jobs[0]["status"]["succeeded"] == 1
        assert "No changes." in project.sub("plan", "--no-lock").stdout
        project.sub("destroy", "--auto-approve", "--no-lock")
    finally:
        kube_cluster.request("DELETE", f"/api/v1/nodes/{name}")


def uuid_suffix(text: str) -> str:
    return text.rsplit("-", 1)[-1]


def test_an_unschedulable_gpu_fails_with_the_scheduler_reason(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(
        tmp_path, kube_cluster, gpu="nvidia-a100", SUBSTRATUS_UNSCHEDULABLE_TIMEOUT="1"
    )
    out = project.sub("apply", "--auto-approve", check=1)
    text = out.stdout + out.stderr
    assert "Unschedulable" in text
    assert "didn't match Pod's node affinity/selector" in text
    assert "Check the GPU type against the cluster's node pools" in text
    assert "Traceback" not in text
    assert [
        j["metadata"]["name"] for j in cluster.items("Job") if "-model-" in j["metadata"]["name"]
    ] == []  # deleted: it cannot start later
    assert "not applied: upstream model.tiny failed" in text  # the server waits for it
    project.sub("destroy", "--auto-approve")


def test_a_gpu_quota_stops_the_job_with_the_quota_message(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpus"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "0"}},
    }
    status, body = kube_cluster.request(
        "POST", f"/api/v1/namespaces/{cluster.ns}/resourcequotas", quota
    )
    assert status == 201, body
    out = project.sub("apply", "--auto-approve", "--target", "model.tiny", check=1)
    text = out.stdout + out.stderr
    assert "cannot create its pod" in text and "exceeded quota" in text
    assert "Raise the namespace's ResourceQuota" in text
    assert "Traceback" not in text


def test_the_example_role_is_all_a_user_needs(tmp_path: Path, kube_cluster: ControlPlane) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster, kubeconfig=kube_cluster.user_kubeconfig)
    denied = project.sub("apply", "--auto-approve", check=1)
    text = denied.stdout + denied.stderr
    assert "permission denied" in text and 'User "substratus-user" cannot' in text
    assert "examples/kubernetes/rbac.yaml" in text
    assert "Traceback" not in text
    for doc in yaml.safe_load_all((ROOT / "examples" / "kubernetes" / "rbac.yaml").read_text()):
        if doc["kind"].startswith("Cluster"):  # the optional capacity grant: not needed
            continue
        plural = {"Role": "roles", "RoleBinding": "rolebindings"}[doc["kind"]]
        path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{cluster.ns}/{plural}"
        status, body = kube_cluster.request("POST", path, doc)
        assert status == 201, body
    project.sub("apply", "--auto-approve")
    dep = cluster.get("Deployment", "tiny-server")
    assert dep is not None and dep["status"]["availableReplicas"] == 1
    assert cluster.get("Pod", "lab-notebook") is not None
    assert "No changes." in project.sub("plan").stdout
    project.sub("destroy", "--auto-approve")
    assert cluster.items("Job") == [] and cluster.items("Pod") == []


def test_cluster_access_problems_are_one_clear_message(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, _ = tiny_project(tmp_path, kube_cluster)
    wrong = project.sub("apply", "--auto-approve", "--context", "nope", check=1)
    assert "cannot use the Kubernetes configuration (context 'nope')" in wrong.stderr
    config = yaml.safe_load(Path(kube_cluster.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    out = project.sub("plan", check=1, env={"KUBECONFIG": str(dead)})
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:1" in out.stderr
    config = yaml.safe_load(Path(kube_cluster.kubeconfig).read_text())
    config["users"][0]["user"]["token"] = "not-a-token"
    stale = tmp_path / "stale.kubeconfig"
    stale.write_text(yaml.safe_dump(config))
    denied = project.sub("plan", check=1, env={"KUBECONFIG": str(stale)})
    assert "rejected the credentials of the current context (401 Unauthorized)" in denied.stderr
    for text in (wrong.stdout + wrong.stderr, out.stdout + out.stderr, denied.stderr):
        assert "Traceback" not in text
    assert not (project.dir / ".substratus" / "state" / "default.json").exists()  # no record


def test_a_local_directory_is_uploaded_once_and_built_in_the_cluster(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    loader = project.dir / "loader"
    loader.mkdir()
    (loader / "Dockerfile").write_text("FROM python:3.11\nCOPY load.py /content/\n")
    (loader / "load.py").write_text("print('loading')\n")
    (loader / ".dockerignore").write_text("*.log\n")
    (loader / "debug.log").write_text("ignored\n")
    project.edit(
        "substratus.yaml", "container: {image: loader:1}", "container: {local: {path: loader}}"
    )
    project.sub("apply", "--auto-approve", "--target", "dataset.squad")
    build = _job(cluster, "loader-bld-")
    builder = _container(build)
    context = next(a for a in builder["args"] if a.startswith("--context="))
    assert context == "--context=tar:///context/context.tar.gz"
    (host,) = [v["hostPath"]["path"] for v in build["spec"]["template"]["spec"]["volumes"]]
    tarball = Path(host) / "context.tar.gz"
    assert host.startswith(str(tmp_path / "bucket" / cluster.ns / "builds" / "loader"))
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == [".dockerignore", "Dockerfile", "load.py"]
    tag = Path(host).name
    image = next(a for a in builder["args"] if a.startswith("--destination="))
    assert image == f"--destination=localhost:5000/team/loader:{tag}"
    dataset = _job(cluster, "squad-data-")
    assert _container(dataset)["image"] == f"localhost:5000/team/loader:{tag}"
    uploaded = tarball.stat().st_mtime_ns

    # an ignored file changes nothing; a real change rebuilds from a new upload
    (loader / "debug.log").write_text("still ignored\n")
    assert "No changes." in project.sub("plan", "--target", "dataset.squad").stdout
    (loader / "load.py").write_text("print('loading v2')\n")
    plan = project.sub("plan", "--target", "dataset.squad").stdout
    assert "build.loader must be replaced" in plan and "dataset.squad must be replaced" in plan
    project.sub("apply", "--auto-approve", "--target", "dataset.squad")
    assert tarball.stat().st_mtime_ns == uploaded  # the old upload is untouched
    builds = sorted(
        j["metadata"]["name"] for j in cluster.items("Job") if "-bld-" in j["metadata"]["name"]
    )
    assert len(builds) == 2  # the previous build is kept, as the previous dataset version
    project.sub("destroy", "--auto-approve")
    assert cluster.items("Job") == []


def test_an_object_the_api_server_rejects_names_the_field(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    project.edit("substratus.yaml", "container: {image: notebook:1}", "container: {image: 'nb:1 '}")
    out = project.sub("apply", "--auto-approve", "--target", "notebook.lab", check=1)
    text = out.stdout + out.stderr
    assert "Kubernetes rejected Pod" in text and "lab-notebook" in text
    assert 'spec.containers[0].image: Invalid value: "nb:1 "' in text
    assert "Traceback" not in text
    assert cluster.get("Pod", "lab-notebook") is None


def test_an_object_changed_in_a_gs_version_is_noticed_and_the_job_runs_again(
    falcon: KubeProject, kube_cluster: ControlPlane, gcs_server: GcsServer
) -> None:
    target = ["--target", "dataset.k8s-instructions"]
    falcon.sub("apply", "--auto-approve", *target)
    cluster = Cluster(kube_cluster, falcon.flags[1])
    jobs_before = {j["metadata"]["name"] for j in cluster.items("Job")}
    assert "No changes." in falcon.sub("plan", *target).stdout
    state = json.loads(falcon.sub("state", "pull", "--state", falcon.flags[3], flags=False).stdout)
    url = state["resources"]["dataset.k8s-instructions"]["outputs"]["artifacts"]
    key = url.removeprefix(f"gs://{BUCKET}/") + "/planted.jsonl"
    gcs_server.client().bucket(BUCKET).blob(key).upload_from_string(b"{}\n")
    plan = falcon.sub("plan", "--detailed-exitcode", *target, check=2).stdout
    assert f"artifacts changed outside substratus at {url}: planted.jsonl added" in plan
    assert "# dataset.k8s-instructions must be replaced" in plan
    falcon.sub("apply", "--auto-approve", *target)
    new = {j["metadata"]["name"] for j in cluster.items("Job")} - jobs_before
    assert len([n for n in new if "-data-" in n]) == 1  # the loader ran again, once
    assert "No changes." in falcon.sub("plan", *target).stdout
