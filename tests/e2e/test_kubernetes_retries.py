"""Retries on the test control plane (issue #15): the trainer Job's ``backoffLimit`` is
``spec.retries`` and its ``podFailurePolicy`` lets a disruption go uncounted. The real Job
controller decides: a pod that exits non-zero is replaced while retries last; a running pod
evicted through the Eviction API (``DisruptionTarget``) is replaced without using one.

The trainer's pods land on a T4 node whose kubelet the test plays (``FakeKubelet`` of
``test_kubernetes_failures``: kwok never fails a pod); here it also does what a kubelet does
with an evicted pod — stops it, so it is ``Failed`` (keeping the ``DisruptionTarget`` condition
the API server added), then removes it. Attempts are counted as the pods the node was given.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tests.e2e.test_kubernetes import Cluster, KubeProject, tiny_project
from tests.e2e.test_kubernetes_failures import (
    FakeKubelet,
    Script,
    Status,
    _container_status,
    _now,
    exits,
    succeeded,
)
from tests.e2e.test_kubernetes_failures import t4_node as manual_t4_node
from tests.support.kube import ControlPlane
from tests.support.waiting import wait_for

TRAINER = "container: {image: trainer:1}\n  trainer:"
RETRYING = (
    'container: {image: trainer:1, command: ["python3", "train.py"]}\n  retries: R\n  trainer:'
)


class EvictingKubelet(FakeKubelet):
    """A ``FakeKubelet`` that stops a pod being deleted before it removes it, as a kubelet
    does: the pod ends ``Failed`` (exit 143, SIGTERM) with the conditions it has — so the Job
    controller sees a terminal pod and, for an evicted one, its ``DisruptionTarget``."""

    def _sync(self) -> None:
        for pod in self.pods():
            meta, status = pod["metadata"], pod.get("status") or {}
            if not meta.get("deletionTimestamp") or status.get("phase") in ("Failed", "Succeeded"):
                continue
            term = {"reason": "Error", "exitCode": 143, "startedAt": _now(), "finishedAt": _now()}
            stopped = {
                "phase": "Failed",
                "conditions": status.get("conditions") or [],
                "containerStatuses": [_container_status(pod, {"terminated": term})],
            }
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            code, body = self.plane.request(
                "PATCH", path, {"status": stopped}, content_type="application/merge-patch+json"
            )
            assert code in (200, 404), body
        super()._sync()


def running(pod: dict[str, Any]) -> Status:
    state = {"running": {"startedAt": _now()}}
    return {"phase": "Running", "containerStatuses": [_container_status(pod, state)]}


def in_turn(*scripts: Script) -> Script:
    """The n-th pod gets the n-th script (the last one for every pod after)."""
    given: list[str] = []

    def script(pod: dict[str, Any]) -> Status | None:
        given.append(pod["metadata"]["name"])
        return scripts[min(len(given), len(scripts)) - 1](pod)

    return script


def t4_node(plane: ControlPlane, ns: str, script: Script) -> AbstractContextManager[FakeKubelet]:
    """A T4 node whose kubelet stops evicted pods (``EvictingKubelet``)."""
    return manual_t4_node(plane, ns, script, kind=EvictingKubelet)


def _project(tmp_path: Path, plane: ControlPlane, retries: int) -> tuple[KubeProject, Cluster]:
    project, cluster = tiny_project(tmp_path, plane, gpu="nvidia-t4")
    project.edit("substratus.yaml", TRAINER, RETRYING.replace("R", str(retries)))
    return project, cluster


def _trainer_pods(cluster: Cluster) -> list[dict[str, Any]]:
    status, body = cluster.plane.request(
        "GET", f"{cluster.path('Pod')}?labelSelector=substratus.ai%2Frole%3Drun"
    )
    assert status == 200, body
    return [p for p in body["items"] if p["metadata"]["name"].startswith("tiny-model-")]


def _events(stdout: str, kind: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [d for d in docs if d["type"] == kind]


def _last_run(project: KubeProject) -> dict[str, Any]:
    pulled = json.loads(project.sub("state", "pull", flags=False).stdout)
    return dict(pulled["resources"]["model.tiny"]["last_run"])


def test_an_exit_code_uses_a_retry_and_used_up_retries_fail_the_job(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = _project(tmp_path, kube_cluster, retries=1)
    with t4_node(kube_cluster, cluster.ns, in_turn(exits(3), succeeded)) as node:
        out = project.sub("apply", "--auto-approve", "--json", "--target", "model.tiny")
        assert len(node.handled) == 2  # two pods: the first exited 3, the second succeeded
        [job] = [j for j in cluster.items("Job") if j["metadata"]["name"].startswith("tiny-model")]
        assert job["spec"]["backoffLimit"] == 1
        assert job["status"]["failed"] == 1 and job["status"]["succeeded"] == 1
        pod = job["spec"]["template"]["spec"]["containers"][0]
        assert pod["command"][:2] == ["/bin/sh", "-c"] and pod["command"][-1] == "train.py"
        [restart] = _events(out.stdout, "apply_restart")
        assert restart["address"] == "model.tiny"
        assert (restart["attempt"], restart["reason"], restart["counted"]) == (
            1,
            "exit code 3",
            True,
        )
        run = _last_run(project)
        assert run["outcome"] == "succeeded" and run["attempts"] == 2
        assert run["failed_attempts"] == [{"attempt": 1, "reason": "exit code 3"}]
        assert "No changes." in project.sub("plan", "--target", "model.tiny").stdout

        # retries used up: a new run whose every pod exits 3 fails after 1 + retries attempts
        node.script = exits(3)
        before = len(node.handled)
        failed = project.sub(
            "apply", "--auto-approve", "--target", "model.tiny", "--replace", "model.tiny", check=1
        )
        text = failed.stdout + failed.stderr
        assert len(node.handled) - before == 2, node.handled  # counted at the node
        assert "failed after 2 attempts: BackoffLimitExceeded" in text, text
        assert "Traceback" not in text
        assert _last_run(project)["attempts"] == 2


def test_an_evicted_pod_is_replaced_without_using_a_retry(
    tmp_path: Path, kube_cluster: ControlPlane
) -> None:
    project, cluster = _project(tmp_path, kube_cluster, retries=1)
    with t4_node(kube_cluster, cluster.ns, in_turn(running, running, succeeded)) as node:
        proc = project.popen(
            "apply",
            "--auto-approve",
            "--json",
            "--target",
            "model.tiny",
            *project.flags,
            env=project.env,
        )
        evicted: list[str] = []
        # two evictions with one retry: had either counted, the Job would fail
        for _ in range(2):

            def running_pod() -> str | None:
                for pod in _trainer_pods(cluster):
                    meta = pod["metadata"]
                    alive = pod["status"].get("phase") == "Running"
                    if alive and not meta.get("deletionTimestamp") and meta["name"] not in evicted:
                        return str(meta["name"])
                return None

            name = wait_for(running_pod, "a running trainer pod", timeout=120)
            eviction = {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": name, "namespace": cluster.ns},
            }
            status, body = kube_cluster.request(
                "POST", f"{cluster.path('Pod', name)}/eviction", eviction
            )
            assert status == 201, body
            evicted.append(name)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert len(node.handled) == 3  # evicted, evicted, succeeded
        [job] = [j for j in cluster.items("Job") if j["metadata"]["name"].startswith("tiny-model")]
        assert job["status"]["succeeded"] == 1 and not job["status"].get("failed")
        restarts = _events(out, "apply_restart")
        assert [r["attempt"] for r in restarts] == [1, 2], restarts
        for r in restarts:
            assert r["counted"] is False
            assert r["reason"].startswith("preempted or evicted: "), r
        run = _last_run(project)
        assert run["outcome"] == "succeeded" and run["attempts"] == 3
        assert [a.get("counted") for a in run["failed_attempts"]] == [False, False]


INDEX = "batch.kubernetes.io/job-completion-index"


def test_a_run_on_two_nodes_is_retried_as_one(tmp_path: Path, kube_cluster: ControlPlane) -> None:
    """Rank 1 exits 3 in attempt 1: the whole Indexed Job is deleted and the Job of attempt 2
    starts every rank again (counted at the nodes by rank and attempt); with retries used up,
    the run fails naming its attempts."""
    project, cluster = _project(tmp_path, kube_cluster, retries=1)
    project.edit(
        "substratus.yaml",
        "resources: {gpu: {type: nvidia-t4, count: 1}}",
        "resources: {nodes: 2, gpu: {type: nvidia-t4, count: 1}}",
    )
    given: list[tuple[str, str]] = []  # (SUBSTRATUS_ATTEMPT, rank) of every pod a node ran

    def ranks(pod: dict[str, Any]) -> Status | None:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        attempt, rank = str(env["SUBSTRATUS_ATTEMPT"]), pod["metadata"]["annotations"][INDEX]
        given.append((attempt, rank))
        if attempt == "1":
            return exits(3)(pod) if rank == "1" else running(pod)
        return succeeded(pod)

    with (
        t4_node(kube_cluster, cluster.ns, ranks) as first,
        t4_node(kube_cluster, f"{cluster.ns}b", ranks) as second,
    ):
        out = project.sub("apply", "--auto-approve", "--json", "--target", "model.tiny")
        assert ("1", "1") in given and sorted(a for a in given if a[0] == "2") == [
            ("2", "0"),
            ("2", "1"),
        ], given  # attempt 2 ran every rank once
        [job] = [j for j in cluster.items("Job") if j["metadata"]["name"].startswith("tiny-model")]
        assert job["metadata"]["annotations"]["substratus.ai/attempt"] == "2"
        assert job["spec"]["backoffLimit"] == 0 and int(job["status"]["succeeded"]) == 2
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python3", "train.py"]  # the attempt is a value
        [restart] = _events(out.stdout, "apply_restart")
        assert restart["attempt"] == 1 and restart["counted"] is True
        assert restart["reason"].startswith("rank 1 of 2: exit code 3"), restart
        run = _last_run(project)
        assert run["outcome"] == "succeeded" and run["attempts"] == 2
        assert "No changes." in project.sub("plan", "--target", "model.tiny").stdout

        # retries used up: both attempts fail, and the run with them
        first.script = second.script = exits(3)
        before = len(first.handled) + len(second.handled)
        failed = project.sub(
            "apply", "--auto-approve", "--target", "model.tiny", "--replace", "model.tiny", check=1
        )
        text = failed.stdout + failed.stderr
        assert "failed after 2 attempts" in text, text
        assert "Traceback" not in text
        assert len(first.handled) + len(second.handled) - before >= 2  # a pod per attempt at least
        run = _last_run(project)
        assert run["outcome"] == "failed" and run["attempts"] == 2
        assert [a["attempt"] for a in run["failed_attempts"]] == [1, 2]


def _set_status(plane: ControlPlane, pod: dict[str, Any], status: Status) -> None:
    """Write ``status`` on ``pod`` as its kubelet would."""
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
    code, body = plane.request(
        "PATCH", path, {"status": status}, content_type="application/merge-patch+json"
    )
    assert code == 200, body


def test_logs_follow_a_job_across_its_attempts(tmp_path: Path, kube_cluster: ControlPlane) -> None:
    """`logs --follow` started during attempt 1 goes on to the pod of attempt 2 and ends with
    the Job: every line of both pods, each prefixed with its pod."""
    project, cluster = _project(tmp_path, kube_cluster, retries=1)
    log = "hello from the trainer\n"
    with manual_t4_node(kube_cluster, cluster.ns, running, log, kind=EvictingKubelet) as node:
        apply = project.popen(
            "apply", "--auto-approve", "--target", "model.tiny", *project.flags, env=project.env
        )

        def running_pods() -> list[dict[str, Any]]:
            pods = _trainer_pods(cluster)
            return [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]

        try:
            [first] = wait_for(running_pods, "attempt 1's pod running", timeout=120)
            follow = project.popen("logs", "model.tiny", "--follow", env=project.env)
            wait_for(lambda: node.log_requests, "logs --follow to read attempt 1's log")
            failed = exits(3)(first)
            assert failed is not None
            _set_status(kube_cluster, first, failed)  # attempt 1 fails
            name = first["metadata"]["name"]

            def second_running() -> list[dict[str, Any]]:
                return [p for p in running_pods() if p["metadata"]["name"] != name]

            [second] = wait_for(second_running, "attempt 2's pod running", timeout=120)
            _set_status(kube_cluster, second, succeeded(second))
            out, err = apply.communicate(timeout=180)
            assert apply.returncode == 0, out + err
            lines, err = follow.communicate(timeout=120)  # ends with the Job
            assert follow.returncode == 0, err
            pods = [first["metadata"]["name"], second["metadata"]["name"]]
            assert sorted(lines.splitlines()) == sorted(
                f"[{pod}] hello from the trainer" for pod in pods
            )
        finally:
            for proc in (apply, locals().get("follow")):
                if isinstance(proc, subprocess.Popen) and proc.poll() is None:
                    proc.kill()
                    proc.wait()
