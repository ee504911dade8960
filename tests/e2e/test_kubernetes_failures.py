"""Failure paths of apply on a cluster, which kwok alone cannot produce (kwok never fails a pod).

Each test adds a GPU node that kwok does NOT manage (``FakeKubelet``): it carries the GKE label
of an NVIDIA T4 and the usual ``nvidia.com/gpu`` taint, so only workloads asking for GPU type
``nvidia-t4`` on ``cloud: gcp`` land there, while everything else runs on kwok's node. The
scheduler binds pods to it and nothing runs them: a thread of the test plays its kubelet — it
keeps the node's Ready heartbeat fresh, writes each new pod's status as the test scripts it (an
``OOMKilled`` container, an image that cannot be pulled, a missing Secret key…) and removes the
pods being deleted, as a kubelet does once their containers stopped. Unless it is given a log
to serve (then it answers the API server's ``/containerLogs`` requests over TLS, as a kubelet
does), the node has no address and the API server cannot fetch any log from it.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.test_kubernetes import Cluster, KubeProject, tiny_project, uuid_suffix
from tests.support.kube import ControlPlane, node_manifest
from tests.support.waiting import wait_for

T4_LABEL = "nvidia-tesla-t4"  # what GKE puts on a node of GPU type nvidia-t4
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
HEARTBEAT = 5.0  # seconds; the node lifecycle controller gives up on a silent node in 40-50 s

Status = dict[str, Any]
Script = Callable[[dict[str, Any]], Status | None]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _container_status(pod: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    container = pod["spec"]["containers"][0]
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": state,
    }


def oom_killed(pod: dict[str, Any]) -> Status:
    """The container used more than its memory limit: the kernel killed it (exit 137)."""
    term = {"reason": "OOMKilled", "exitCode": 137, "startedAt": _now(), "finishedAt": _now()}
    return {"phase": "Failed", "containerStatuses": [_container_status(pod, {"terminated": term})]}


def succeeded(pod: dict[str, Any]) -> Status:
    term = {"reason": "Completed", "exitCode": 0, "startedAt": _now(), "finishedAt": _now()}
    return {
        "phase": "Succeeded",
        "containerStatuses": [_container_status(pod, {"terminated": term})],
    }


def image_pull_back_off(pod: dict[str, Any]) -> Status:
    image = pod["spec"]["containers"][0]["image"]
    waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
    return {"phase": "Pending", "containerStatuses": [_container_status(pod, {"waiting": waiting})]}


def exits(code: int) -> Script:
    def script(pod: dict[str, Any]) -> Status:
        term = {"reason": "Error", "exitCode": code, "startedAt": _now(), "finishedAt": _now()}
        state = {"terminated": term}
        return {"phase": "Failed", "containerStatuses": [_container_status(pod, state)]}

    return script


def missing_secret_key(pod: dict[str, Any]) -> Status:
    ns = pod["metadata"]["namespace"]
    waiting = {
        "reason": "CreateContainerConfigError",
        "message": f"couldn't find key HF_TOKEN in Secret {ns}/ai",
    }
    return {"phase": "Pending", "containerStatuses": [_container_status(pod, {"waiting": waiting})]}


class FakeKubelet:
    """A T4 node kwok does not manage, and the test's stand-in for its kubelet (see the module
    docstring). ``script(pod)`` gives the status to write for each new pod bound to the node
    (``None``: leave it pending); it may be swapped while the node runs. With ``log``, every
    container's log is that text, served to the API server (``log_requests`` records the
    paths it asked for)."""

    def __init__(
        self, plane: ControlPlane, name: str, script: Script, log: str | None = None
    ) -> None:
        self.plane, self.name, self.script, self.log = plane, name, script, log
        self.handled: dict[str, str] = {}  # pod uid -> "ns/name" whose status was written
        self.errors: list[str] = []
        self.log_requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"kubelet-{name}", daemon=True)
        self._server: ThreadingHTTPServer | None = None

    def _serve_logs(self) -> int:
        """Answer ``GET /containerLogs/NS/POD/CONTAINER?tailLines=N`` over TLS (the API server
        does not verify a kubelet's certificate unless configured to: its own one will do)."""
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                kubelet.log_requests.append(self.path)
                url = urllib.parse.urlsplit(self.path)
                tail = urllib.parse.parse_qs(url.query).get("tailLines", [""])[0]
                lines = (kubelet.log or "").splitlines(keepends=True)
                body = "".join(lines[-int(tail) :] if tail else lines).encode()
                found = url.path.startswith("/containerLogs/")
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certs = self.plane.ca_file  # the apiserver's certificate, its key beside it
        tls.load_cert_chain(certs, certs.with_name("apiserver.key"))
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, name=f"logs-{self.name}", daemon=True).start()
        self._server = server
        return int(server.server_address[1])

    def _node(self) -> dict[str, Any]:
        labels = {"kubernetes.io/os": "linux", "cloud.google.com/gke-accelerator": T4_LABEL}
        node = node_manifest(self.name, labels, kwok=False)  # this test plays its kubelet
        node["spec"] = {"taints": [dict(GPU_TAINT)]}
        node["status"]["conditions"] = [self._ready()]
        return node

    def _ready(self) -> dict[str, Any]:
        now = _now()
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "the test plays this node's kubelet",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    def start(self) -> None:
        node = self._node()
        if self.log is not None:
            node["status"]["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"}]
            node["status"]["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self._serve_logs()}}
        status, body = self.plane.request("POST", "/api/v1/nodes", node)
        assert status == 201, body

        def schedulable() -> bool:
            status, node = self.plane.request("GET", f"/api/v1/nodes/{self.name}")
            assert status == 200, node
            taints = {t["key"] for t in node["spec"].get("taints") or []}
            return NOT_READY_TAINT not in taints  # removed by the node lifecycle controller

        wait_for(schedulable, f"node {self.name} to be schedulable", timeout=120)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.plane.request("DELETE", f"/api/v1/nodes/{self.name}")

    def _loop(self) -> None:
        beat = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() - beat >= HEARTBEAT:
                    self._heartbeat()
                    beat = time.monotonic()
                self._sync()
            except Exception as exc:  # reported by the test, never lost in a thread
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(0.1)

    def _heartbeat(self) -> None:
        status, body = self.plane.request(
            "PATCH",
            f"/api/v1/nodes/{self.name}/status",
            {"status": {"conditions": [self._ready()]}},
            content_type="application/strategic-merge-patch+json",
        )
        assert status == 200, body

    def pods(self) -> list[dict[str, Any]]:
        status, body = self.plane.request(
            "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{self.name}"
        )
        assert status == 200, body
        return list(body["items"])

    def _sync(self) -> None:
        for pod in self.pods():
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            if meta.get("deletionTimestamp"):  # its containers stopped: the pod can go
                gone = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
                status, body = self.plane.request("DELETE", path, gone)
                assert status in (200, 404), body
                continue
            if meta["uid"] in self.handled:
                continue
            new = self.script(pod)
            if new is not None:
                status, body = self.plane.request(
                    "PATCH",
                    path + "/status",
                    {"status": new},
                    content_type="application/merge-patch+json",
                )
                assert status == 200, body
            self.handled[meta["uid"]] = f"{meta['namespace']}/{meta['name']}"


@contextmanager
def t4_node(
    plane: ControlPlane,
    ns: str,
    script: Script,
    log: str | None = None,
    kind: type[FakeKubelet] = FakeKubelet,
) -> Iterator[FakeKubelet]:
    """A T4 node for the test of namespace ``ns`` whose kubelet the test plays (``kind``),
    deleted afterwards (a node without a kubelet heartbeat would be tainted unreachable by the
    node lifecycle controller after ~40 s)."""
    kubelet = kind(plane, f"manual-t4-{uuid_suffix(ns)}", script, log)
    kubelet.start()
    try:
        yield kubelet
    finally:
        kubelet.stop()
    assert kubelet.errors == [], kubelet.errors


def _text(out: subprocess.CompletedProcess[str]) -> str:
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    return text


def _state(project: KubeProject) -> dict[str, Any]:
    """The state as ``state pull`` prints it (the snapshot file alone lags its journal)."""
    pulled = project.sub("state", "pull", flags=False).stdout
    return dict(json.loads(pulled)["resources"])


def _trainer_jobs(cluster: Cluster) -> list[dict[str, Any]]:
    return [j for j in cluster.items("Job") if j["metadata"]["name"].startswith("tiny-model-")]


def _pods(cluster: Cluster, prefix: str) -> list[dict[str, Any]]:
    return [p for p in cluster.items("Pod") if p["metadata"]["name"].startswith(prefix)]


def test_an_oom_killed_trainer_fails_the_apply_and_the_next_apply_runs_it_anew(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-t4")
    ns = cluster.ns
    with t4_node(kube_cluster, ns, oom_killed) as node:
        out = project.sub("apply", "--auto-approve", check=1)
        text = _text(out)
        [job] = _trainer_jobs(cluster)
        name = job["metadata"]["name"]
        [pod] = _pods(cluster, name)
        assert pod["spec"]["nodeName"] == node.name and pod["status"]["phase"] == "Failed"
        assert job["spec"]["backoffLimit"] == 0  # no spec.retries: not retried
        assert f"job {ns}/{name} failed" in text
        assert (
            f"pod {pod['metadata']['name']} container model: OOMKilled, exit code 137 "
            "(the container ran out of memory: raise resources.memory)"
        ) in text
        # no kubelet to read the log from: the message says how to read it later
        assert f"kubectl logs -n {ns} {pod['metadata']['name']} -c model" in text
        assert "last 30 lines of the log" not in text
        assert "not applied: upstream model.tiny failed" in text  # the server waits for it
        assert cluster.get("Deployment", "tiny-server") is None
        assert cluster.get("Pod", "lab-notebook") is not None  # independent: applied
        # the failed Job stays for inspection; the model is recorded tainted, without a version
        assert [j["metadata"]["name"] for j in _trainer_jobs(cluster)] == [name]
        state = _state(project)
        assert state["model.tiny"]["status"] == "tainted" and not state["model.tiny"].get("digest")
        assert "modelserver.tiny" not in state
        assert {"dataset.squad", "notebook.lab"} <= set(state)

        plan = _text(project.sub("plan", "--detailed-exitcode", check=2))
        assert "model.tiny will be created" in plan
        assert "model.tiny is tainted: its first apply failed" in plan
        assert "modelserver.tiny will be created" in plan
        assert "dataset.squad" not in plan.split("Plan:")[0]

        # memory raised (here: the node behaves): the next apply replaces the failed Job
        node.script = succeeded
        again = _text(project.sub("apply", "--auto-approve"))
        assert "Apply complete!" in again
        [rerun] = _trainer_jobs(cluster)
        assert rerun["metadata"]["name"] == name  # same digest, same name…
        assert rerun["metadata"]["uid"] != job["metadata"]["uid"]  # …but a new Job
        assert rerun["status"]["succeeded"] == 1
        dep = cluster.get("Deployment", "tiny-server")
        assert dep is not None and dep["status"]["availableReplicas"] == 1
        assert "No changes." in project.sub("plan").stdout
        project.sub("destroy", "--auto-approve")
        assert cluster.items("Job") == [] and cluster.items("Pod") == []


def test_a_failed_trainer_reports_its_exit_code_and_the_tail_of_its_log(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-t4")
    ns = cluster.ns
    log = "".join(f"step {i}: loss {1 / i:.3f}\n" for i in range(1, 41))
    log += "ValueError: the dataset has no column 'text'\n"
    with t4_node(kube_cluster, ns, exits(3), log=log) as node:
        out = project.sub("apply", "--auto-approve", "--target", "model.tiny", check=1)
        text = _text(out)
        [job] = _trainer_jobs(cluster)
        name = job["metadata"]["name"]
        [pod] = [p.split("/", 1)[1] for p in node.handled.values()]
        assert f"job {ns}/{name} failed" in text
        assert f"pod {pod} container model: Error, exit code 3" in text
        assert "ran out of memory" not in text
    # the last 30 lines, read through the API server from the node's kubelet
    assert node.log_requests == [f"/containerLogs/{ns}/{pod}/model?tailLines=30"], text
    assert f"last 30 lines of the log of {pod}/model:" in text
    assert "ValueError: the dataset has no column 'text'" in text
    assert "step 12: loss" in text and "step 11: loss" not in text
    assert "kubectl logs" not in text


def test_a_job_whose_image_cannot_be_pulled_fails_at_once_and_is_deleted(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-t4")
    ns = cluster.ns
    with t4_node(kube_cluster, ns, image_pull_back_off) as node:
        # fatal at once: no grace period (600 s by default, longer than the CLI's 180 s limit)
        out = project.sub("apply", "--auto-approve", "--target", "model.tiny", check=1)
        text = _text(out)
        [handled] = node.handled.values()
        pod_name = handled.split("/", 1)[1]
        job_name = pod_name.rsplit("-", 1)[0]
        assert (
            f"job {ns}/{job_name}: pod {pod_name}: the image cannot be pulled (ImagePullBackOff): "
            'Back-off pulling image "trainer:1"'
        ) in text
        assert f"kubectl logs -n {ns} {pod_name} -c model" in text
        # the Job is deleted (it cannot start later by surprise), its pod and params Secret too
        assert _trainer_jobs(cluster) == []
        assert node.pods() == []
        params = f"{job_name}-params"  # owned by the Job: garbage-collected after it
        wait_for(lambda: cluster.get("Secret", params) is None, f"Secret {params} to go", 10)
        assert _state(project)["model.tiny"]["status"] == "tainted"
        project.sub("destroy", "--auto-approve")
        assert cluster.items("Job") == [] and cluster.items("Pod") == []


SERVER = """\
kind: Project
spec:
  runtime: kubernetes
  cloud: gcp
  artifacts: {artifacts}
  registry: localhost:5000/team
---
kind: Model
name: base
spec:
  url: {artifacts}/weights
---
kind: ModelServer
name: tiny
spec:
  container: {{image: server:1}}
  model: base
  resources: {{gpu: {{type: nvidia-l4, count: 1}}}}
"""


def test_a_server_update_whose_image_cannot_be_pulled_keeps_the_old_pods(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-t4")
    ns = cluster.ns
    artifacts = (tmp_path / "bucket").as_uri()
    (project.dir / "substratus.yaml").write_text(SERVER.format(artifacts=artifacts))
    project.sub("apply", "--auto-approve")
    [old] = _pods(cluster, "tiny-server-")
    assert old["spec"]["nodeName"] == "kwok-gpu-0" and old["status"]["phase"] == "Running"
    applied = _state(project)["modelserver.tiny"]

    # the new version: another image, on T4 nodes (the manual node), whose image cannot be pulled
    project.edit("substratus.yaml", "image: server:1", "image: server:2")
    project.edit("substratus.yaml", "type: nvidia-l4", "type: nvidia-t4")
    with t4_node(kube_cluster, ns, image_pull_back_off) as node:
        began = time.monotonic()
        out = project.sub("apply", "--auto-approve", "--timeout", "600", check=1)
        assert time.monotonic() - began < 600  # failed on the pod's state, not the timeout
        text = _text(out)
        [handled] = node.handled.values()
        new_pod = handled.split("/", 1)[1]
        assert (
            f"deployment {ns}/tiny-server: pod {new_pod}: the image cannot be pulled "
            '(ImagePullBackOff): Back-off pulling image "server:2"'
        ) in text
        assert "The previous version (if any) keeps running." in text

        # the old pod still serves; the Deployment holds the new template, stuck
        current = {p["metadata"]["name"]: p for p in _pods(cluster, "tiny-server-")}
        assert set(current) == {old["metadata"]["name"], new_pod}
        kept = current[old["metadata"]["name"]]
        assert (
            kept["status"]["phase"] == "Running"
            and kept["metadata"]["uid"] == old["metadata"]["uid"]
        )
        assert kept["spec"]["containers"][0]["image"] == "server:1"
        assert current[new_pod]["spec"]["nodeName"] == node.name
        dep = cluster.get("Deployment", "tiny-server")
        assert dep is not None and dep["status"]["availableReplicas"] == 1
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "server:2"
        record = _state(project)["modelserver.tiny"]
        assert record["digest"] == applied["digest"]  # the state still has the old version
        assert record["outputs"]["image"] == "server:1"
        assert record["last_run"]["outcome"] == "failed"

        plan = _text(project.sub("plan", "--detailed-exitcode", check=2))
        assert "modelserver.tiny will be updated in-place" in plan

        project.sub("destroy", "--auto-approve")
        assert cluster.items("Deployment") == [] and cluster.items("Pod") == []


NOTEBOOK = """\
kind: Project
spec:
  runtime: kubernetes
  cloud: gcp
  artifacts: {artifacts}
  registry: localhost:5000/team
---
kind: Notebook
name: lab
spec:
  container: {{image: notebook:1}}
  resources: {{gpu: {{type: nvidia-l4, count: 1}}}}
"""


def test_a_notebook_update_missing_a_secret_key_fails_with_the_reason(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = tiny_project(tmp_path, kube_cluster, gpu="nvidia-t4")
    ns = cluster.ns
    artifacts = (tmp_path / "bucket").as_uri()
    (project.dir / "substratus.yaml").write_text(NOTEBOOK.format(artifacts=artifacts))
    project.sub("apply", "--auto-approve")
    old = cluster.get("Pod", "lab-notebook")
    assert old is not None and old["spec"]["nodeName"] == "kwok-gpu-0"
    applied = _state(project)["notebook.lab"]

    # a token from a Secret key that does not exist, on a T4 (the manual node)
    project.edit(
        "substratus.yaml",
        "container: {image: notebook:1}",
        'container: {image: notebook:1, env: {HF_TOKEN: "${{ secrets.ai.HF_TOKEN }}"}}',
    )
    project.edit("substratus.yaml", "type: nvidia-l4", "type: nvidia-t4")
    with t4_node(kube_cluster, ns, missing_secret_key) as node:
        out = project.sub("apply", "--auto-approve", "--timeout", "30", check=1)
        text = _text(out)
        assert (
            f"notebook pod {ns}/lab-notebook: pod lab-notebook: the container's configuration "
            f"is incomplete (CreateContainerConfigError): couldn't find key HF_TOKEN in Secret "
            f"{ns}/ai"
        ) in text
        # a pod's spec is immutable: the old pod was deleted, the new one cannot start (so the
        # detail "The previous version (if any) keeps running." printed here is wrong: reported)
        pod = cluster.get("Pod", "lab-notebook")
        assert pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"]
        assert pod["spec"]["nodeName"] == node.name
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "ai", "key": "HF_TOKEN"}}
        record = _state(project)["notebook.lab"]
        assert record["digest"] == applied["digest"] and record["last_run"]["outcome"] == "failed"
        plan = _text(project.sub("plan", "--detailed-exitcode", check=2))
        assert "notebook.lab will be updated in-place" in plan
        project.sub("destroy", "--auto-approve")
        assert cluster.items("Pod") == [] and cluster.items("Service") == []
