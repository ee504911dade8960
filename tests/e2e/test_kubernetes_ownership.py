"""On Kubernetes, apply and destroy touch only the objects of their own state (DESIGN §8), end to
end through the CLI against the real control plane of ``tests/support/kube.py``:

- an object someone else made under one of our names is reported by ``plan`` (exit 1, the
  object named, what to do) and ``apply`` refuses before anything runs; the object is left
  exactly as it was — also when a plan without refresh lets apply get that far;
- two workspaces of one project, and two projects sharing a namespace and a ``gs://`` store
  (fake-gcs-server), live side by side: destroying one leaves every object and artifact version
  of the other, whose next plan is "No changes."; the second project's server of the same name
  is a plan-time collision, not a takeover;
- an object replaced by a same-named one between plan and destroy is not deleted;
- ``--replace`` really runs again: a new Job, restarted server pods, a recreated notebook pod.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_kubernetes import (
    BUCKET,
    Cluster,
    KubeProject,
    gcs_objects,
    tiny_project,
)
from tests.support.gcs import GcsServer
from tests.support.kube import ControlPlane
from tests.support.waiting import wait_for

THEIRS = {"app": "theirs"}


def foreign(kind: str, name: str) -> dict[str, Any]:
    """An object another team made, with nothing of substratus on it."""
    meta = {"name": name, "labels": dict(THEIRS)}
    container = {"name": "main", "image": "theirs:1"}
    spec: dict[str, Any] = {
        "Deployment": {
            "replicas": 1,
            "selector": {"matchLabels": dict(THEIRS)},
            "template": {"metadata": {"labels": dict(THEIRS)}, "spec": {"containers": [container]}},
        },
        "Service": {"selector": dict(THEIRS), "ports": [{"port": 9999}]},
    }
    version = "apps/v1" if kind == "Deployment" else "v1"
    obj: dict[str, Any] = {"apiVersion": version, "kind": kind, "metadata": meta}
    if kind in spec:
        obj["spec"] = spec[kind]
    elif kind == "Secret":
        obj["stringData"] = {"token": "known-to-whoever-made-it"}
    else:
        obj["data"] = {"params.json": '{"theirs": true}\n'}
    return obj


def create(plane: ControlPlane, cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    status, body = plane.request("POST", cluster.path(obj["kind"]), obj)
    assert status == 201, body
    return dict(body)


CONTROLLER = "kube-controller-manager"


def unchanged(obj: dict[str, Any]) -> dict[str, Any]:
    """What nobody but its maker changes: for a Deployment, whose status and revision annotation
    the controller keeps up to date (so its resourceVersion moves), all but those."""
    meta = obj["metadata"]
    keep = {k: meta.get(k) for k in ("uid", "generation", "labels")}
    keep["annotations"] = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k != "deployment.kubernetes.io/revision"
    }
    if obj["kind"] != "Deployment":
        keep["resourceVersion"] = meta["resourceVersion"]
    managers = {m["manager"] for m in meta.get("managedFields") or []}
    keep["managers"] = sorted(managers - {CONTROLLER})
    return {**keep, **{k: obj.get(k) for k in ("spec", "data", "stringData")}}


def live(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    found = cluster.get(kind, name)
    assert found is not None, f"{kind} {name} is gone"
    return found


def text_of(out: Any) -> str:
    return str(out.stdout) + str(out.stderr)


FOREIGN = {
    "server": [("Deployment", "tiny-server"), ("Service", "tiny-server")],
    "params": [("Secret", "tiny-server-params")],
    "token": [("Secret", "lab-notebook-token")],
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_an_object_someone_else_made_is_never_taken_over(
    case: str, tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    before = [unchanged(create(kube_cluster, cluster, foreign(*o))) for o in FOREIGN[case]]
    for command in (["plan"], ["apply", "--auto-approve"]):
        out = project.sub(*command, check=1)
        text = text_of(out)
        for kind, name in FOREIGN[case]:
            assert f"{kind} {cluster.ns}/{name} already exists and is not this state's" in text
            assert f"kubectl delete -n {cluster.ns} {kind.lower()} {name}" in text
        assert "not made by substratus" in text and "Traceback" not in text
        assert "Apply complete" not in text
    # nothing ran, nothing was recorded, and their objects are exactly as they were
    assert cluster.items("Job") == [] and cluster.items("Pod") == []
    assert not project.state_file.exists()
    assert [unchanged(live(cluster, *o)) for o in FOREIGN[case]] == before
    assert all(b["managers"] and "substratus" not in b["managers"] for b in before)


def test_apply_refuses_a_foreign_token_secret_even_without_the_plan_check(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    theirs = unchanged(create(kube_cluster, cluster, foreign("Secret", "lab-notebook-token")))
    args = ("--auto-approve", "--no-refresh", "--target", "notebook.lab")
    text = text_of(project.sub("apply", *args, check=1))
    assert f"Secret {cluster.ns}/lab-notebook-token already exists and is not this state's" in text
    assert "Traceback" not in text
    assert unchanged(live(cluster, "Secret", "lab-notebook-token")) == theirs
    assert cluster.get("Pod", "lab-notebook") is None  # it never ran with their token
    project.sub("destroy", "--auto-approve")
    assert unchanged(live(cluster, "Secret", "lab-notebook-token")) == theirs


OBJECTS = [
    ("Deployment", "{s}-server"),
    ("Service", "{s}-server"),
    ("Secret", "{s}-server-params"),
    ("Pod", "{n}-notebook"),
    ("Service", "{n}-notebook"),
    ("Secret", "{n}-notebook-params"),
    ("Secret", "{n}-notebook-token"),
]


def objects_of(cluster: Cluster, workspace: str = "") -> dict[str, str]:
    """``kind/name → uid`` of a workspace's server and notebook objects, and of its Jobs."""
    suffix = f"-{workspace}" if workspace else ""
    out = {}
    for kind, pattern in OBJECTS:
        name = pattern.format(s=f"tiny{suffix}", n=f"lab{suffix}")
        out[f"{kind}/{name}"] = live(cluster, kind, name)["metadata"]["uid"]
    for job in cluster.items("Job"):
        annotations = job["metadata"]["annotations"]
        if annotations.get("substratus.ai/workspace") == (workspace or "default"):
            out[f"Job/{job['metadata']['name']}"] = job["metadata"]["uid"]
    return out


def test_two_workspaces_of_a_project_live_side_by_side_on_one_namespace(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "model-server",
            "annotations": {"iam.gke.io/gcp-service-account": "server@p.iam.gserviceaccount.com"},
        },
    }
    admins = unchanged(create(kube_cluster, cluster, account))
    project.sub("apply", "--auto-approve")
    staging = ("--workspace", "staging")
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in project.sub("plan", *staging).stdout
    project.sub("apply", "--auto-approve", *staging)
    other, default = objects_of(cluster, "staging"), objects_of(cluster)
    assert len(default) == len(other) == len(OBJECTS) + 2  # + the dataset's and model's Jobs
    assert not set(default) & set(other)
    # each Service selects its own workspace's pods only
    for name in ("tiny-server", "tiny-staging-server"):
        selector = live(cluster, "Service", name)["spec"]["selector"]
        pods = [
            p["metadata"]["name"]
            for p in cluster.items("Pod")
            if selector.items() <= p["metadata"]["labels"].items()
        ]
        assert len(pods) == 1 and pods[0].startswith(f"{name}-"), (name, pods)
    assert "No changes." in project.sub("plan").stdout
    assert "No changes." in project.sub("plan", *staging).stdout

    project.sub("destroy", "--auto-approve", *staging)
    assert objects_of(cluster) == default  # every object of the default workspace is intact
    assert all(cluster.get(*k.split("/", 1)) is None for k in other)
    assert "No changes." in project.sub("plan", "--detailed-exitcode").stdout
    project.sub("destroy", "--auto-approve")
    assert cluster.items("Job") == [] and cluster.items("Deployment") == []
    # the shared ServiceAccount an admin made was used as it is and is never deleted
    assert unchanged(live(cluster, "ServiceAccount", "model-server")) == admins


JOBS = """\
kind: Project
spec:
  runtime: kubernetes
  cloud: gcp
  artifacts: {store}
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
    resources: {{gpu: {{type: nvidia-l4, count: 1}}}}
"""
SERVER = """\
---
kind: ModelServer
name: tiny
spec:
  container: {image: server:1}
  model: tiny
"""


def state(project: KubeProject) -> dict[str, Any]:
    return dict(json.loads(project.sub("state", "pull", flags=False).stdout))


def versions(project: KubeProject) -> dict[str, list[str]]:
    """The versions each resource of the project's state created (``versions``)."""
    found = state(project)["resources"].items()
    return {a: list(r["versions"]) for a, r in found if r.get("versions")}


def markers(gcs: GcsServer, ns: str, found: dict[str, list[str]]) -> set[str]:
    """The completion markers of these versions that exist in the store."""
    wanted = {
        f"{ns}/{ns}/{a.split('.')[0]}s/{a.split('.')[1]}/{v}/.substratus-complete"
        for a, vs in found.items()
        for v in vs
    }
    return wanted & set(gcs_objects(gcs, f"{ns}/"))


def test_two_projects_share_a_namespace_and_a_store_without_touching_each_other(
    tmp_path: Path, kube_cluster: ControlPlane, gcs_server: GcsServer
) -> None:
    ns = kube_cluster.new_namespace("two-projects")
    gcs_objects(gcs_server, "")  # the bucket
    cluster = Cluster(kube_cluster, ns)
    projects = []
    for name, extra in (("a", SERVER), ("b", "")):
        p = KubeProject(tmp_path / name)
        p.dir.mkdir()
        (p.dir / "substratus.yaml").write_text(JOBS.format(store=f"gs://{BUCKET}/{ns}") + extra)
        p.env = {"KUBECONFIG": str(kube_cluster.kubeconfig), "SUBSTRATUS_K8S_POLL": "0.2"}
        p.env.update(gcs_server.env)
        p.flags = ["--namespace", ns]
        projects.append(p)
    a, b = projects
    a.sub("apply", "--auto-approve")
    a_objects, a_versions = objects_in(cluster, ""), versions(a)  # all there is: a's
    a_markers = markers(gcs_server, ns, a_versions)
    assert len(a_markers) == 2 and len(a_objects["Job"]) == 2
    b.sub("apply", "--auto-approve")  # the same Dataset and Model names: no collision
    (b_first,) = versions(b)["dataset.squad"]
    for _ in range(2):  # b runs squad twice more: its garbage collection removes its oldest
        b.sub("apply", "--auto-approve", "--replace", "dataset.squad")
    assert b_first not in versions(b)["dataset.squad"]
    assert markers(gcs_server, ns, {"dataset.squad": [b_first]}) == set()
    assert markers(gcs_server, ns, a_versions) == a_markers
    assert a_objects["Job"].items() <= objects_in(cluster, "")["Job"].items()

    # b declares a server of the same name: a plan-time collision with a's, not a takeover
    (b.dir / "substratus.yaml").write_text((b.dir / "substratus.yaml").read_text() + SERVER)
    text = text_of(b.sub("plan", check=1))
    lineage = state(a)["lineage"]
    assert f"Deployment {ns}/tiny-server already exists and is not this state's" in text
    assert f"made by another substratus state (lineage {lineage}, workspace 'default')" in text
    assert "Traceback" not in text
    b.edit("substratus.yaml", SERVER, "")

    b_versions = versions(b)
    b.sub("destroy", "--auto-approve")
    assert objects_in(cluster, "") == a_objects  # a's Jobs and server, the very same; no b's
    assert objects_in(cluster, lineage) == a_objects  # each carrying a's identity
    assert markers(gcs_server, ns, a_versions) == a_markers
    assert markers(gcs_server, ns, b_versions) == set()
    assert "No changes." in a.sub("plan", "--detailed-exitcode").stdout
    a.sub("destroy", "--auto-approve")
    assert markers(gcs_server, ns, a_versions) == set()
    assert cluster.items("Job") == [] and cluster.items("Deployment") == []


def objects_in(cluster: Cluster, lineage: str) -> dict[str, dict[str, str]]:
    """``kind → name → uid`` of the Jobs, Deployments and Services of the state ``lineage``
    (every state's with "")."""
    return {
        kind: {
            o["metadata"]["name"]: o["metadata"]["uid"]
            for o in cluster.items(kind)
            if lineage in ("", o["metadata"]["labels"].get("substratus.ai/lineage"))
        }
        for kind in ("Job", "Deployment", "Service")
    }


def test_destroy_leaves_an_object_replaced_after_the_plan_alone(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    project.sub("apply", "--auto-approve", "--target", "modelserver.tiny")
    project.sub("plan", "--destroy", "--out", "destroy.json")
    status, _ = kube_cluster.request("DELETE", cluster.path("Deployment", "tiny-server"))
    assert status == 200
    wait_for(lambda: cluster.get("Deployment", "tiny-server") is None, "our deployment to go")
    theirs = unchanged(create(kube_cluster, cluster, foreign("Deployment", "tiny-server")))
    out = project.sub("apply", "destroy.json", flags=False)
    assert "Destroy complete!" in out.stdout
    assert unchanged(live(cluster, "Deployment", "tiny-server")) == theirs
    assert cluster.get("Service", "tiny-server") is None  # ours: deleted
    assert cluster.items("Job") == [] and cluster.items("Deployment") == []


def _pods(cluster: Cluster, prefix: str) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in cluster.items("Pod")
        if p["metadata"]["name"].startswith(prefix) and not p["metadata"].get("deletionTimestamp")
    }


def _job_pods(cluster: Cluster, prefix: str) -> list[str]:
    status, body = cluster.plane.request("GET", cluster.path("Pod"))
    assert status == 200, body
    return sorted(
        p["metadata"]["name"]
        for p in body["items"]
        if p["metadata"]["labels"].get("batch.kubernetes.io/job-name", "").startswith(prefix)
        and p["status"].get("phase") == "Succeeded"
        and p["spec"].get("nodeName") == "kwok-gpu-0"
    )


def test_replace_runs_a_new_job_restarts_the_server_and_recreates_the_notebook(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster)
    project.sub("apply", "--auto-approve")
    jobs = [j["metadata"]["name"] for j in cluster.items("Job")]
    assert len(_job_pods(cluster, "squad-data-")) == 1

    plan = project.sub("plan", "--replace", "dataset.squad").stdout
    assert "dataset.squad must be replaced" in plan and "replacement requested" in plan
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan
    out = project.sub("apply", "--auto-approve", "--json", "--replace", "dataset.squad").stdout
    assert "adopt" not in out
    new = [j["metadata"]["name"] for j in cluster.items("Job") if j["metadata"]["name"] not in jobs]
    assert len(new) == 1 and new[0].startswith("squad-data-")  # one new run: a new Job
    assert len(_job_pods(cluster, "squad-data-")) == 2  # whose pod ran on the node

    servers, notebook = _pods(cluster, "tiny-server-"), _pods(cluster, "lab-notebook")
    events = project.sub("plan", "--json", "--replace", "modelserver.tiny").stdout
    changes = [json.loads(x)["change"] for x in events.splitlines() if '"planned_change"' in x]
    (server,) = [c for c in changes if c["address"] == "modelserver.tiny"]
    assert [r["code"] for r in server["reasons"]] == ["requested"]
    out = project.sub("apply", "--auto-approve", "--json", "--replace", "modelserver.tiny").stdout
    assert "adopt" not in out
    restarted = _pods(cluster, "tiny-server-")
    assert len(restarted) == 1 and not set(restarted.values()) & set(servers.values())
    template = live(cluster, "Deployment", "tiny-server")["spec"]["template"]["metadata"]
    assert "substratus.ai/restart" in template["annotations"]
    assert len(cluster.items("Job")) == len(jobs) + 1  # no Job ran for the server

    out = project.sub("apply", "--auto-approve", "--json", "--replace", "notebook.lab").stdout
    assert "adopt" not in out
    assert _pods(cluster, "lab-notebook").keys() == notebook.keys()
    assert set(_pods(cluster, "lab-notebook").values()).isdisjoint(notebook.values())
    assert _pods(cluster, "tiny-server-") == restarted  # the server was not restarted again
    assert "No changes." in project.sub("plan", "--detailed-exitcode").stdout
    project.sub("destroy", "--auto-approve")
