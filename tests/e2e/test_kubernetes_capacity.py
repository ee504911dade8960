"""Plan-time GPU capacity on the real control plane (``tests/support/kube.py``), through the CLI.

The session's cluster always has ``kwok-gpu-0`` (64 × nvidia-l4 by its GKE accelerator label);
each test adds what it needs — kwok nodes labelled the GKE way or the GPU-feature-discovery way,
the autoscaler's status ConfigMap, the optional ClusterRole — and removes it afterwards, so the
assertions hold whatever else the session's cluster offers. Nothing is applied to the cluster
except where a test says so; plans only read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ROOT
from tests.e2e.test_kubernetes import KubeProject, tiny_project
from tests.support.kube import ControlPlane, node_manifest

RBAC = ROOT / "examples" / "kubernetes" / "rbac.yaml"
STATUS_PATH = "/api/v1/namespaces/kube-system/configmaps"


def kwok_node(name: str, labels: dict[str, str], gpus: int) -> dict[str, Any]:
    return node_manifest(name, {"type": "kwok", **labels}, gpus=gpus, cpu="32", memory="256Gi")


@pytest.fixture
def gpu_nodes(kube_cluster: ControlPlane) -> Iterator[tuple[str, str]]:
    """One node with 1 × T4 (GKE label) and one with 8 × A100 80GB (GPU feature discovery)."""
    suffix = uuid.uuid4().hex[:6]
    t4, a100 = f"kwok-cap-t4-{suffix}", f"kwok-cap-a100-{suffix}"
    nodes = [
        kwok_node(t4, {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, 1),
        kwok_node(a100, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, 8),
    ]
    try:
        for body in nodes:
            status, answer = kube_cluster.request("POST", "/api/v1/nodes", body)
            assert status == 201, answer
        yield t4, a100
    finally:
        for body in nodes:
            kube_cluster.request("DELETE", f"/api/v1/nodes/{body['metadata']['name']}")


def gpu(project: KubeProject, gtype: str, count: int) -> None:
    path = project.dir / "substratus.yaml"
    text = path.read_text()
    start = text.index("resources: {gpu: {")
    end = text.index("\n", start)
    line = f"resources: {{gpu: {{type: {gtype}, count: {count}}}}}"
    path.write_text(text[:start] + line + text[end:])


def test_a_gpu_no_node_offers_is_a_warning_and_an_error_with_strict(
    tmp_path: Path, kube_cluster: ControlPlane, gpu_nodes: tuple[str, str]
) -> None:
    t4, a100 = gpu_nodes
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-h100")  # cloud: gcp
    line = 1 + project.dir.joinpath("substratus.yaml").read_text().splitlines().index(
        "    resources: {gpu: {type: nvidia-h100, count: 1}}"
    )
    plan = project.sub("plan").stdout
    summary = (
        "model.tiny asks for 1 × nvidia-h100, but no node offers nvidia-h100 (the cluster offers: "
    )
    assert f"Warning: {summary}" in plan
    offered = plan.split(summary, 1)[1].split(")", 1)[0]
    assert f"8 × nvidia-a100-80gb on {a100}" in offered  # nvidia.com/gpu.product
    assert f"1 × nvidia-t4 on {t4}" in offered  # cloud.google.com/gke-accelerator
    assert "64 × nvidia-l4 on kwok-gpu-0" in offered
    assert f"on substratus.yaml:{line}, model.tiny, spec.trainer.resources.gpu" in plan
    assert "Plan: 4 to add" in plan  # a warning: the plan is still made

    for strict in (
        project.sub("plan", "--strict", check=1),
        project.sub("plan", check=1, env={"SUBSTRATUS_STRICT": "1"}),
        project.sub("apply", "--auto-approve", "--strict", check=1),
    ):
        assert f"Error: {summary}" in strict.stderr
        assert "Traceback" not in strict.stdout + strict.stderr
    assert cluster.items("Job") == [] and cluster.items("Deployment") == []  # nothing ran

    assert "asks for" not in project.sub("plan", "--no-refresh", "--strict").stdout

    gpu(project, "nvidia-t4", 4)  # the type exists, but one T4 per node
    plan = project.sub("plan").stdout
    assert (
        "Warning: model.tiny asks for 4 × nvidia-t4 on one node, but no node has more than "
        "1 × nvidia-t4" in plan
    )
    assert "ask for at most 1 × nvidia-t4" in plan

    gpu(project, "nvidia-a100-80gb", 8)  # fits the feature-discovery node
    assert "asks for" not in project.sub("plan", "--strict").stdout


def test_a_user_without_the_cluster_role_gets_one_note_and_with_it_the_check(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(
        tmp_path, kube_cluster, gpu="nvidia-h100", kubeconfig=kube_cluster.user_kubeconfig
    )
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    plural = {
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
    }
    for doc in docs:
        if not doc["kind"].startswith("Cluster"):
            path = f"{rbac}/namespaces/{cluster.ns}/{plural[doc['kind']]}"
            status, body = kube_cluster.request("POST", path, doc)
            assert status == 201, body
    out = project.sub("plan")
    assert (
        out.stdout.count("Warning: GPU types and counts were not checked against the cluster") == 1
    )
    assert "Listing the cluster's nodes is not allowed (permission denied:" in out.stdout
    assert "examples/kubernetes/rbac.yaml" in out.stdout
    assert "asks for" not in out.stdout

    granted = [d for d in docs if d["kind"].startswith("Cluster")]
    assert [d["kind"] for d in granted] == ["ClusterRole", "ClusterRoleBinding"]
    try:
        for doc in granted:
            status, body = kube_cluster.request("POST", f"{rbac}/{plural[doc['kind']]}", doc)
            assert status == 201, body
        out = project.sub("plan")
        assert "not checked" not in out.stdout
        assert "Warning: model.tiny asks for 1 × nvidia-h100, but no node offers" in out.stdout
    finally:
        for kind in ("clusterrolebindings", "clusterroles"):
            kube_cluster.request("DELETE", f"{rbac}/{kind}/substratus-capacity")


def test_a_node_pool_scaled_to_zero_in_the_autoscaler_status_rules_nothing_out(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, _ = tiny_project(tmp_path, kube_cluster, gpu="nvidia-h100")
    assert "no node offers nvidia-h100" in project.sub("plan").stdout
    status_doc = (
        "autoscalerStatus: Running\n"
        "nodeGroups:\n"
        "- name: gke-c-a3-pool-1a2b-grp\n"
        "  health: {status: Healthy, nodeCounts: {registered: {total: 0}}, "
        "cloudProviderTarget: 0, minSize: 0, maxSize: 2}\n"
    )
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-autoscaler-status"},
        "data": {"status": status_doc},
    }
    status, body = kube_cluster.request("POST", STATUS_PATH, configmap)
    assert status == 201, body
    try:
        plan = project.sub("plan", "--strict").stdout
        assert "asks for" not in plan  # that pool may offer H100s: its shape is not visible
        assert "Plan: 4 to add" in plan
    finally:
        kube_cluster.request("DELETE", f"{STATUS_PATH}/cluster-autoscaler-status")


def test_spot_needs_a_spot_node_and_runs_on_one(
    tmp_path: Path, kube_cluster: ControlPlane, gpu_nodes: tuple[str, str]
) -> None:
    """``resources.spot``: held against the spot nodes alone; once a spot node pool exists the
    plan is clean and the trainer's pod lands there (the spot taint tolerated)."""
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-t4")  # cloud: gcp
    project.edit(
        "substratus.yaml",
        "resources: {gpu: {type: nvidia-t4, count: 1}}",
        "resources: {gpu: {type: nvidia-t4, count: 1}, spot: true}",
    )
    plan = project.sub("plan").stdout
    assert (
        "Warning: model.tiny asks for spot capacity (resources.spot), but no node is a spot "
        "node (labelled cloud.google.com/gke-spot=true" in plan
    )
    assert "model.tiny, spec.trainer.resources" in plan
    project.sub("plan", "--strict", check=1)

    name = f"kwok-cap-spot-{uuid.uuid4().hex[:6]}"
    labels = {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
        "cloud.google.com/gke-spot": "true",
    }
    node = kwok_node(name, labels, 1)
    node["spec"] = {
        "taints": [{"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}]
    }
    status, answer = kube_cluster.request("POST", "/api/v1/nodes", node)
    assert status == 201, answer
    try:
        assert "asks for" not in project.sub("plan", "--strict").stdout
        project.sub("apply", "--auto-approve", "--target", "model.tiny")
        [pod] = [p for p in cluster.items("Pod") if p["metadata"]["name"].startswith("tiny-model")]
        assert pod["spec"]["nodeName"] == name
        assert pod["spec"]["nodeSelector"]["cloud.google.com/gke-spot"] == "true"
        project.sub("destroy", "--auto-approve")
    finally:
        kube_cluster.request("DELETE", f"/api/v1/nodes/{name}")
