"""Sensitive params on the real control plane (#13): after an apply through the CLI, no
ConfigMap, no pod spec and no other readable object of the namespace holds a sensitive value —
the params Secret does, and the pods' ``PARAM_*`` variables refer to it (``secretKeyRef``);
destroy removes it. And the params ConfigMap an earlier version made for a server is deleted
once the server runs on its Secret (the state's only). Searches go through the API (admin
token), every wait is a bounded poll."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.plan import Action
from substratus.engine.runtime import Owner, RunContext, RunRequest
from substratus.runtimes.kubernetes import KubernetesRuntime, manifests, names
from substratus.runtimes.kubernetes.manifests import Workload
from substratus.runtimes.kubernetes.waits import Timing
from tests.e2e.test_kubernetes import Cluster, KubeProject
from tests.support.kube import ControlPlane
from tests.support.waiting import wait_for

CONFIG = """\
kind: Project
spec:
  runtime: kubernetes
  cloud: kind
  artifacts: {artifacts}
  registry: localhost:5000/team
---
kind: Dataset
name: squad
spec:
  container: {{image: loader:1}}
  loader: {{params: {{urls: "http://data/squad.jsonl", token: "{secret}-dataset"}}}}
sensitive: [spec.loader.params.token]
---
kind: Model
name: tiny
spec:
  container: {{image: trainer:1}}
  trainer:
    dataset: squad
    params: {{epochs: 1, api_key: "{secret}-model"}}
sensitive: [spec.trainer.params.api_key]
---
kind: ModelServer
name: tiny
spec:
  container: {{image: server:1}}
  model: tiny
  params: {{key: "{secret}-server"}}
sensitive: [spec.params.key]
---
kind: Notebook
name: lab
spec:
  container: {{image: notebook:1}}
  dataset: squad
  params: {{hf: "{secret}-notebook"}}
sensitive: [spec.params.hf]
"""
# Every readable kind of the namespace an object with a pod spec or data could be
PLAIN = {
    "configmaps": "/api/v1",
    "pods": "/api/v1",
    "services": "/api/v1",
    "jobs": "/apis/batch/v1",
    "deployments": "/apis/apps/v1",
    "replicasets": "/apis/apps/v1",
    "events": "/api/v1",
}
# kind of resource -> (the start of its params Secret's name, the variable of its sensitive param)
WORKLOADS = {
    "dataset": ("squad-data-", "PARAM_TOKEN"),
    "model": ("tiny-model-", "PARAM_API_KEY"),
    "server": ("tiny-server", "PARAM_KEY"),
    "notebook": ("lab-notebook", "PARAM_HF"),
}


def _all(plane: ControlPlane, ns: str, plural: str) -> list[dict[str, Any]]:
    status, body = plane.request("GET", f"{PLAIN[plural]}/namespaces/{ns}/{plural}")
    assert status == 200, body
    return list(body["items"])


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return list(spec["containers"])


def _env(obj: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for c in _containers(obj) for e in c.get("env") or []}


def _params(cluster: Cluster, prefix: str) -> dict[str, str]:
    """The decoded data of the params Secret of the workload whose objects start with
    ``prefix``."""
    (secret,) = [
        s
        for s in cluster.items("Secret")
        if s["metadata"]["name"].startswith(prefix)
        if s["metadata"]["name"].endswith("-params")
    ]
    assert secret["type"] == "Opaque"
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


@pytest.fixture
def project(tmp_path: Path, kube_cluster: ControlPlane) -> tuple[KubeProject, Cluster, str]:
    ns = kube_cluster.new_namespace("sensitive")
    project = KubeProject(tmp_path / "p")
    project.dir.mkdir()
    secret = f"s3cr3t-{secrets.token_hex(8)}"
    artifacts = (tmp_path / "bucket").as_uri()
    text = CONFIG.format(artifacts=artifacts, secret=secret)
    (project.dir / "substratus.yaml").write_text(text)
    project.env = {"KUBECONFIG": str(kube_cluster.kubeconfig), "SUBSTRATUS_K8S_POLL": "0.2"}
    project.flags = ["--namespace", ns]
    return project, Cluster(kube_cluster, ns), secret


def test_sensitive_params_are_only_in_the_params_secrets(
    project: tuple[KubeProject, Cluster, str], kube_cluster: ControlPlane
) -> None:
    cli, cluster, secret = project
    out = cli.sub("apply", "--auto-approve")
    assert secret not in out.stdout + out.stderr
    ns = cluster.ns
    for plural in PLAIN:  # nothing anyone with "get configmaps/pods/…" reads holds it
        found = [o["metadata"]["name"] for o in _all(kube_cluster, ns, plural)]
        text = json.dumps(_all(kube_cluster, ns, plural))
        assert found or plural in ("configmaps", "events", "replicasets"), plural
        assert secret not in text, plural
    workloads: dict[str, list[dict[str, Any] | None]] = {
        "dataset": [j for j in cluster.items("Job") if "-data-" in j["metadata"]["name"]],
        "model": [j for j in cluster.items("Job") if "-model-" in j["metadata"]["name"]],
        "server": [cluster.get("Deployment", "tiny-server")],
        "notebook": [cluster.get("Pod", "lab-notebook")],
    }
    for kind, (prefix, var) in WORKLOADS.items():
        (obj,) = workloads[kind]
        assert obj is not None, kind
        params = _params(cluster, prefix)
        assert params[var] == f"{secret}-{kind}", kind
        assert json.loads(params["params.json"])[var.removeprefix("PARAM_").lower()] == (
            f"{secret}-{kind}"
        )
        env = _env(obj)[var]
        ref = {"name": f"{obj['metadata']['name']}-params", "key": var}
        assert env == {"name": var, "valueFrom": {"secretKeyRef": ref}}, kind
    assert "No changes." in cli.sub("plan").stdout

    cli.sub("destroy", "--auto-approve")
    wait_for(  # a Job's params Secret goes with the Job (garbage collector)
        lambda: cluster.items("Secret") == [], "the params Secrets to be deleted", 60
    )
    assert all(secret not in json.dumps(_all(kube_cluster, ns, p)) for p in PLAIN)


LINEAGE = "3f2b8c1e-7d4a-4b9e-8f10-2a6c5d9e0b11"
OURS = Owner(LINEAGE, "default")


def _legacy_configmap(ns: str, owner: Owner) -> dict[str, Any]:
    """The params ConfigMap versions before params moved to Secrets made for a server."""
    w = Workload(
        "modelserver.api",
        "modelserver",
        ns,
        "api",
        "sha256:" + "ab" * 32,
        "server:1",
        "kind",
        params={"key": "in-plain-text"},
        owner=owner,
    )
    meta = manifests.metadata(w, "api-server-params")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {"params.json": "{}"},
    }


@pytest.mark.parametrize("owner", [OURS, Owner("another-lineage", "default")])
def test_a_server_made_before_params_secrets_loses_its_configmap(
    tmp_path: Path, kube_cluster: ControlPlane, owner: Owner
) -> None:
    ns = kube_cluster.new_namespace("legacy")
    runtime = KubernetesRuntime(
        artifacts_url=(tmp_path / "bucket").as_uri(),
        cloud="kind",
        kubeconfig=str(kube_cluster.kubeconfig),
        timing=Timing(poll=0.1, delete=30),
    )
    made = runtime.cluster.apply_new(_legacy_configmap(ns, owner))
    assert made is not None
    model = (tmp_path / "bucket" / "model").as_uri()
    request = RunRequest(
        address="modelserver.api",
        kind="modelserver",
        namespace=ns,
        name="api",
        digest="sha256:" + "cd" * 32,
        spec={"container": {"image": "server:1"}, "params": {"key": "v"}, "replicas": 1},
        inputs={"model": {"artifacts": model}},
        action=Action.UPDATE,
        prior_outputs={"deployment": "api-server", "service": "api-server"},  # no "params"
        owner=OURS,
        sensitive=frozenset({"spec.params.key"}),
    )
    outputs = runtime.apply(request, RunContext())
    assert outputs["params"] == "api-server-params"
    live = runtime.cluster.get("ConfigMap", ns, "api-server-params")
    if owner == OURS:
        assert live is None  # the state's: deleted once the server runs on its Secret
    else:
        assert live is not None and live["metadata"]["uid"] == made["metadata"]["uid"]
    secret = runtime.cluster.get("Secret", ns, "api-server-params")
    assert secret is not None and secret["metadata"]["labels"][names.LINEAGE] == LINEAGE
