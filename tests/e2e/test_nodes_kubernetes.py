"""A job on ``resources.nodes: N`` on the real control plane (``tests/support/kube.py``), through
the CLI (issue #15): an Indexed Job of N pods — one per kwok node — with a headless Service so
that rank 0 has a stable DNS name, every pod with the rank variables; apply finishes when every
rank has; destroy removes the Service with the Job. And the plan-time capacity check counts
nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_kubernetes import tiny_project
from tests.e2e.test_kubernetes_capacity import gpu_nodes, kwok_node  # noqa: F401  (fixture)
from tests.support.kube import ControlPlane
from tests.support.waiting import wait_for

INDEX = "batch.kubernetes.io/job-completion-index"


@pytest.fixture
def second_l4_node(kube_cluster: ControlPlane) -> Iterator[str]:
    """A kwok node like ``kwok-gpu-0`` (nvidia-l4 by its GKE label), so two ranks find two
    nodes; removed afterwards."""
    name = f"kwok-rank-{uuid.uuid4().hex[:6]}"
    body = kwok_node(name, {"cloud.google.com/gke-accelerator": "nvidia-l4"}, 8)
    status, answer = kube_cluster.request("POST", "/api/v1/nodes", body)
    assert status == 201, answer
    try:
        yield name
    finally:
        kube_cluster.request("DELETE", f"/api/v1/nodes/{name}")


def _on_nodes(project_dir: Path, nodes: int) -> None:
    path = project_dir / "substratus.yaml"
    text = path.read_text()
    old = "resources: {gpu: {type: nvidia-l4, count: 1}}"
    assert old in text
    path.write_text(text.replace(old, f"resources: {{nodes: {nodes}, gpu: {{type: nvidia-l4}}}}"))


def test_an_indexed_job_runs_one_rank_per_node_behind_a_headless_service(
    tmp_path: Path, kube_cluster: ControlPlane, second_l4_node: str
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    _on_nodes(project.dir, 2)
    plan = project.sub("plan").stdout
    assert "2 nodes × (1 × nvidia-l4, 2 vCPU, 10 GB)" in plan
    project.sub("apply", "--auto-approve")

    [job] = [j for j in cluster.items("Job") if "-model-" in j["metadata"]["name"]]
    name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert spec["backoffLimit"] == 0
    assert int(job["status"]["succeeded"]) == 2  # apply waited for every rank

    [service] = [s for s in cluster.items("Service") if s["metadata"]["name"] == name]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    assert service["metadata"]["labels"]["substratus.ai/address"] == "model.tiny"
    [owner] = service["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("Job", job["metadata"]["uid"])

    pods = [
        p
        for p in cluster.items("Pod")
        if p["metadata"]["labels"].get("batch.kubernetes.io/job-name") == name
    ]
    assert sorted(p["metadata"]["annotations"][INDEX] for p in pods) == ["0", "1"]
    assert len({p["spec"]["nodeName"] for p in pods}) == 2  # one rank per node
    assert second_l4_node in {p["spec"]["nodeName"] for p in pods}
    for pod in pods:
        index = pod["metadata"]["annotations"][INDEX]
        assert pod["spec"]["hostname"] == f"{name}-{index}"
        assert pod["spec"]["subdomain"] == name
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["MASTER_ADDR"]["value"] == f"{name}-0.{name}.{ns}.svc"
        assert env["MASTER_PORT"]["value"] == "29500"
        assert env["WORLD_SIZE"]["value"] == "2"
        for var in ("RANK", "NODE_RANK"):
            path = env[var]["valueFrom"]["fieldRef"]["fieldPath"]
            assert path == f"metadata.annotations['{INDEX}']"
        assert env["CONTENT_DIR"]["value"] == "/content"  # the rest of the contract as ever

    assert "No changes." in project.sub("plan").stdout
    project.sub("destroy", "--auto-approve")
    wait_for(lambda: cluster.get("Service", name) is None, "the rank Service to be deleted")
    assert cluster.get("Job", name) is None


def test_the_capacity_check_counts_the_nodes(
    tmp_path: Path,
    kube_cluster: ControlPlane,
    gpu_nodes: tuple[str, str],  # noqa: F811
) -> None:
    _t4, a100 = gpu_nodes
    project, _cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-h100")  # cloud: gcp
    path = project.dir / "substratus.yaml"
    old = "resources: {gpu: {type: nvidia-h100, count: 1}}"
    text = path.read_text()
    assert old in text
    path.write_text(
        text.replace(old, "resources: {nodes: 3, gpu: {type: nvidia-a100-80gb, count: 8}}")
    )
    plan = project.sub("plan").stdout
    assert (
        "Warning: model.tiny asks for 3 nodes with 8 × nvidia-a100-80gb each, but only 1 node "
        "has that" in plan
    )
    assert f"8 × nvidia-a100-80gb on {a100}" in plan
    assert "lower resources.nodes to at most 1" in plan
    path.write_text(
        text.replace(old, "resources: {nodes: 1, gpu: {type: nvidia-a100-80gb, count: 8}}")
    )
    assert "asks for" not in project.sub("plan", "--strict").stdout
