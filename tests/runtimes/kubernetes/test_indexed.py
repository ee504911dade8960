"""The objects of a job run on more than one node (``indexed``, issue #15): the Indexed Job and
its headless Service, valid against the Kubernetes 1.37 schema; names that keep every pod's
hostname a DNS label. The control-plane test is ``tests/e2e/test_nodes_kubernetes.py``."""

from __future__ import annotations

import dataclasses

import pytest

from substratus.engine.attempts import FailedAttempt
from substratus.runtimes.kubernetes import indexed, manifests, names
from substratus.runtimes.kubernetes import pods as podinfo
from tests.runtimes.kubernetes.test_manifests import trainer, valid

VERSION = "abababababababab-a1b2c3"


def test_an_indexed_job_and_its_headless_service() -> None:
    w = trainer()
    name = names.job_name("model", w.name, VERSION, nodes=4)
    job = manifests.job(w, name)
    service = valid(indexed.spread(job, 4))
    valid(job)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert spec["backoffLimit"] == 0  # one failed rank fails the run
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] == name
    [term] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"] == {"matchLabels": {"batch.kubernetes.io/job-name": name}}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MASTER_ADDR"]["value"] == f"{name}-0.{name}.team-a.svc"
    assert (env["MASTER_PORT"]["value"], env["WORLD_SIZE"]["value"]) == ("29500", "4")
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == index
    assert env["NODE_RANK"] == {**env["RANK"], "name": "NODE_RANK"}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ai"  # the rest as ever
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    assert service["metadata"]["labels"] == job["metadata"]["labels"]  # the state's identity
    owned = indexed.owned_by(service, {"metadata": {"name": name, "uid": "u-1"}})
    assert owned["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert "ownerReferences" not in service["metadata"]


@pytest.mark.parametrize("resource", ["r" * 50, "7b-" + "x" * 47, "short"])
def test_every_rank_s_hostname_is_a_dns_label(resource: str) -> None:
    single, multi = (names.job_name("model", resource, VERSION, n) for n in (1, 2))
    assert len(single) <= 63 and len(multi) <= 63 - len("-1023")
    assert names.job_names("model", resource, VERSION) == {single, multi}
    w = dataclasses.replace(trainer(), name=resource)
    service = valid(indexed.spread(manifests.job(w, multi), 1024))
    assert service["metadata"]["name"][0].isalpha()
    assert len(f"{multi}-1023") <= 63


def test_one_node_is_the_job_as_it_was() -> None:
    w = trainer()
    assert names.job_name("model", w.name, VERSION, 1) == names.job_name("model", w.name, VERSION)


def _rank_pod(rank: int, code: int, finished: str) -> dict[str, object]:
    term = {"exitCode": code, "reason": "Error", "finishedAt": finished}
    return {
        "metadata": {
            "name": f"job-{rank}-x",
            "annotations": {"batch.kubernetes.io/job-completion-index": str(rank)},
        },
        "status": {"containerStatuses": [{"name": "model", "state": {"terminated": term}}]},
    }


def test_a_failed_run_names_the_rank_that_failed_first() -> None:
    pods = [
        _rank_pod(0, 143, "2026-12-03T00:00:09Z"),  # stopped by the Job controller
        _rank_pod(1, 3, "2026-12-03T00:00:05Z"),
        _rank_pod(2, 143, "2026-12-03T00:00:08Z"),
    ]
    assert podinfo.main_container_of(pods) == ("job-1-x", "model")
    assert "pod job-1-x (rank 1) container model: Error, exit code 3" in podinfo.failure(pods)


def test_the_first_failed_rank_is_one_nobody_stopped_whatever_the_clock_says() -> None:
    stopped = _rank_pod(0, 143, "2026-12-03T00:00:05Z")  # the same second as rank 1's exit
    stopped["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:05Z"  # type: ignore[index]
    pods = [stopped, _rank_pod(1, 3, "2026-12-03T00:00:05Z")]
    assert podinfo.main_container_of(pods) == ("job-1-x", "model")
    pods[1]["status"]["phase"] = "Failed"  # type: ignore[index]
    assert podinfo.failed_rank(pods, 2) == (
        "rank 1 of 2: exit code 3; the other ranks were stopped"
    )


def test_each_attempt_of_a_run_on_nodes_is_a_job_that_knows_the_attempts_before_it() -> None:
    w = dataclasses.replace(trainer(), retries=2, command=["python3", "train.py"])
    name = names.job_name("model", w.name, VERSION, nodes=2)
    first = manifests.job(w, name)
    indexed.spread(first, 2)
    assert indexed.attempt_of(first) == (1, [])
    earlier = [
        FailedAttempt(1, "rank 1 of 2: exit code 3; the other ranks were stopped"),
        FailedAttempt(2, "preempted or evicted: TerminationByKubelet", counted=False),
    ]
    job = manifests.job(w, name)
    indexed.spread(job, 2, 3, earlier)
    valid(job)
    assert indexed.attempt_of(job) == (3, earlier)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python3", "train.py"]  # not wrapped to count starts
    env = {e["name"]: e for e in container["env"]}
    assert env["SUBSTRATUS_ATTEMPT"] == {"name": "SUBSTRATUS_ATTEMPT", "value": "3"}
    assert [e["name"] for e in container["env"]].count("SUBSTRATUS_ATTEMPT") == 1
    rules = job["spec"]["podFailurePolicy"]["rules"]  # a disruption is not an attempt
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert job["spec"]["backoffLimit"] == 0


def test_an_attempt_annotation_nobody_can_read_is_attempt_1() -> None:
    job = {"metadata": {"annotations": {indexed.FAILED_ANNOTATION: "{not json"}}}
    assert indexed.attempt_of(job) == (1, [])
