"""Where a Job's ``params.json`` comes from (``manifests.params_inline``, ``jobs.run``), against
the real control plane, by counting the write requests a run makes and the objects it leaves:
plain params travel in the pod template — one create, no Secret, nothing suspended — while
sensitive params get the params Secret (owned by the Job, applied before the Job is released),
and a suspended Job an earlier version of substratus left reading a Secret is given its Secret
and released when it is adopted."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import pytest

from substratus.engine.runtime import Owner, RunContext
from substratus.runtimes.kubernetes import jobs, manifests, names
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.manifests import Workload
from substratus.runtimes.kubernetes.waits import Timing
from tests.support.kube import ControlPlane

OURS = Owner("5d0c2a9e-1b7f-4c3a-9e21-7a4b6c8d0f12", "default")
TIMING = Timing(poll=0.1, delete=20)
VERSION = "cdcdcdcdcdcdcdcd-1a2b3c"


@pytest.fixture
def cluster(kube_cluster: ControlPlane) -> Cluster:
    return Cluster(None, str(kube_cluster.kubeconfig))


@pytest.fixture
def ns(kube_cluster: ControlPlane, cluster: Cluster, request: pytest.FixtureRequest) -> str:
    namespace = kube_cluster.new_namespace(request.node.name.removeprefix("test_")[:30])
    cluster.create(manifests.service_account(namespace, names.SERVICE_ACCOUNTS["dataset"]))
    return namespace


def loader(ns: str, **changes: Any) -> Workload:
    w = Workload(
        address="dataset.squad",
        kind="dataset",
        namespace=ns,
        name="squad",
        digest="sha256:" + "cd" * 32,
        image="loader:1",
        cloud="kind",
        params={"url": "http://data/squad.jsonl", "limit": 10, "nested": {"a": [1, 2]}},
        owner=OURS,
        version=VERSION,
    )
    return dataclasses.replace(w, **changes)


def run(
    cluster: Cluster, w: Workload, recorded: bool = False
) -> tuple[dict[str, Any], Counter[str]]:
    """The finished Job of ``w``'s run and the write requests (by verb) the run made."""
    name = names.job_name(w.kind, w.name, w.version)
    secret = manifests.params_secret(w, names.params_name(name))
    before = Counter(cluster.by_verb)
    done = jobs.run(cluster, manifests.job(w, name), secret, RunContext(), TIMING, OURS, recorded)
    writes = Counter(cluster.by_verb)
    writes.subtract(before)
    del writes["GET"]
    return done, +writes


def secrets(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return cluster.list("Secret", ns, names.SELECTOR)


def test_plain_params_are_in_the_pod_template_and_the_job_is_one_request(
    cluster: Cluster, ns: str
) -> None:
    w = loader(ns)
    assert manifests.params_inline(w)
    job, writes = run(cluster, w)
    assert jobs.state(job) == "succeeded"
    assert writes == {"PATCH": 1}  # the create-only apply: no Secret, no release
    assert not job["spec"].get("suspend")
    assert secrets(cluster, ns) == []
    template = job["spec"]["template"]
    text = template["metadata"]["annotations"][names.PARAMS]
    assert json.loads(text) == w.params
    assert manifests.mounted_secrets(job) == set()
    (params,) = [v for v in template["spec"]["volumes"] if v["name"] == "params"]
    (item,) = params["downwardAPI"]["items"]
    assert item == {
        "path": "params.json",
        "fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{names.PARAMS}']"},
    }


def test_sensitive_params_get_the_secret_before_the_job_is_released(
    cluster: Cluster, ns: str
) -> None:
    w = loader(ns, params={"token": "hunter2", "limit": 10}, sensitive=frozenset({"token"}))
    assert not manifests.params_inline(w)
    job, writes = run(cluster, w)
    assert jobs.state(job) == "succeeded"
    assert writes == {"PATCH": 3}  # the suspended Job, its Secret, the release
    (secret,) = secrets(cluster, ns)
    assert secret["metadata"]["name"] == names.params_name(job["metadata"]["name"])
    assert [o["uid"] for o in secret["metadata"]["ownerReferences"]] == [job["metadata"]["uid"]]
    assert "hunter2" not in json.dumps(job)
    assert names.PARAMS not in job["spec"]["template"]["metadata"]["annotations"]


def test_params_too_large_for_an_annotation_go_to_the_secret(ns: str) -> None:
    big = "x" * manifests.INLINE_PARAMS_BYTES
    w = loader(ns, params={"blob": big})
    assert not manifests.params_inline(w)
    name = names.job_name(w.kind, w.name, w.version)
    job = manifests.job(w, name)
    assert manifests.mounted_secrets(job) == {names.params_name(name)}
    assert names.PARAMS not in job["spec"]["template"]["metadata"]["annotations"]


def test_a_suspended_job_of_an_earlier_version_gets_its_secret_and_is_released(
    cluster: Cluster, ns: str
) -> None:
    """Earlier versions put every Job's params in a Secret and created the Job suspended; one
    left so by an interrupted apply is adopted (same uid), given its Secret and released."""
    w = loader(ns)
    name = names.job_name(w.kind, w.name, w.version)
    earlier = manifests.job(dataclasses.replace(w, sensitive=frozenset({"url"})), name)
    earlier["spec"]["suspend"] = True
    made = cluster.apply_new(earlier)
    assert made is not None and manifests.mounted_secrets(made) == {names.params_name(name)}
    job, writes = run(cluster, w, recorded=True)
    assert job["metadata"]["uid"] == made["metadata"]["uid"]  # adopted, not made anew
    assert jobs.state(job) == "succeeded"
    assert writes == {"PATCH": 3}  # the refused create, the Secret, the release
    (secret,) = secrets(cluster, ns)
    assert [o["uid"] for o in secret["metadata"]["ownerReferences"]] == [job["metadata"]["uid"]]
