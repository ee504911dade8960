"""The real test control plane (``tests/support/kube.py``) behaves like the clusters the
Kubernetes provider targets: Jobs complete, Deployments become available, bare Pods become
Ready, GPU pods schedule onto the fake L4 node (and not onto missing H100s), RBAC denies the
restricted user, and foreground deletion removes pods. Everything goes through the official
``kubernetes`` client and the fixture's kubeconfigs (TLS verified). Each test uses its own
namespace; every wait is a bounded poll.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped, unused-ignore]
from kubernetes.client import ApiException  # type: ignore[import-untyped, unused-ignore]

from tests.support.kube import ACCELERATOR_LABEL, FAKE_NODE, GPU_RESOURCE, ControlPlane
from tests.support.waiting import wait_for

TIMEOUT = 120.0  # a bound for a loaded machine: every wait ends as soon as it can


def _poll(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    return wait_for(check, what, timeout, interval=0.1)


@pytest.fixture(scope="module")
def api(kube_cluster: ControlPlane) -> Iterator[Any]:
    with kube_cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(kube_cluster: ControlPlane, request: pytest.FixtureRequest) -> str:
    return kube_cluster.new_namespace(request.node.name.removeprefix("test_").replace("_", "-"))


# Typed as Any: the manifests below are plain dicts, which the client accepts at run time while
# its annotations ask for model classes.
def _core(api_client: Any) -> Any:
    return client.CoreV1Api(api_client)


def _batch(api_client: Any) -> Any:
    return client.BatchV1Api(api_client)


def _apps(api_client: Any) -> Any:
    return client.AppsV1Api(api_client)


def _container(**resources: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.invalid/app:1"}
    if resources:
        container["resources"] = {"limits": resources, "requests": resources}
    return container


def _pod(name: str, node_selector: dict[str, str] | None = None, **resources: str) -> Any:
    spec: dict[str, Any] = {"containers": [_container(**resources)]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [_container()]}},
        },
    }


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [_container()]}},
        },
    }


def _condition(obj: Any, kind: str) -> Any:
    for condition in obj.status.conditions or []:
        if condition.type == kind:
            return condition
    return None


def test_fixture_is_the_pinned_version_over_verified_tls(kube_cluster: ControlPlane) -> None:
    assert kube_cluster.server.startswith("https://127.0.0.1:")
    with kube_cluster.api_client() as api_client:
        assert api_client.configuration.verify_ssl
        version = client.VersionApi(api_client).get_code()
        node = _core(api_client).read_node(FAKE_NODE)
    assert version.git_version == "v1.37.2"
    assert kube_cluster.startup_seconds < 30
    assert node.status.allocatable[GPU_RESOURCE] == "64"
    assert node.metadata.labels[ACCELERATOR_LABEL] == "nvidia-l4"


def test_job_completes(api: Any, namespace: str) -> None:
    batch = _batch(api)
    batch.create_namespaced_job(namespace, _job("one"))
    job = _poll(
        "the Job to succeed",
        lambda: (j := batch.read_namespaced_job_status("one", namespace)).status.succeeded and j,
    )
    assert job.status.succeeded == 1
    complete = _condition(job, "Complete")
    assert complete is not None and complete.status == "True"


def test_deployment_becomes_available(api: Any, namespace: str) -> None:
    apps = _apps(api)
    apps.create_namespaced_deployment(namespace, _deployment("web", 2))

    def available() -> Any:
        deployment = apps.read_namespaced_deployment_status("web", namespace)
        condition = _condition(deployment, "Available")
        ok = deployment.status.available_replicas == 2 and condition and condition.status
        return deployment if ok == "True" else None

    deployment = _poll("the Deployment to be available", available)
    assert deployment.status.ready_replicas == 2


def test_bare_pod_becomes_ready(api: Any, namespace: str) -> None:
    core = _core(api)
    core.create_namespaced_pod(namespace, _pod("solo"))

    def ready() -> Any:
        pod = core.read_namespaced_pod_status("solo", namespace)
        condition = _condition(pod, "Ready")
        return (
            pod
            if pod.status.phase == "Running" and condition and condition.status == "True"
            else None
        )

    pod = _poll("the Pod to be Running and Ready", ready)
    assert pod.spec.node_name == FAKE_NODE


def test_gpu_pod_schedules_on_the_l4_node(api: Any, namespace: str) -> None:
    core = _core(api)
    core.create_namespaced_pod(
        namespace, _pod("l4", {ACCELERATOR_LABEL: "nvidia-l4"}, **{GPU_RESOURCE: "1"})
    )
    pod = _poll(
        "the GPU pod to be bound",
        lambda: (p := core.read_namespaced_pod("l4", namespace)).spec.node_name and p,
    )
    assert pod.spec.node_name == FAKE_NODE


def test_pod_for_a_missing_accelerator_stays_pending(api: Any, namespace: str) -> None:
    core = _core(api)
    core.create_namespaced_pod(
        namespace, _pod("h100", {ACCELERATOR_LABEL: "nvidia-h100"}, **{GPU_RESOURCE: "1"})
    )

    def unschedulable() -> Any:
        pod = core.read_namespaced_pod_status("h100", namespace)
        condition = _condition(pod, "PodScheduled")
        return condition if condition and condition.status == "False" else None

    condition = _poll("the scheduler to give up on the pod", unschedulable)
    assert condition.reason == "Unschedulable"
    pod = core.read_namespaced_pod("h100", namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def test_restricted_user_cannot_create_a_job(kube_cluster: ControlPlane, namespace: str) -> None:
    with kube_cluster.api_client(user=True) as user_api, pytest.raises(ApiException) as caught:
        _batch(user_api).create_namespaced_job(namespace, _job("denied"))
    assert caught.value.status == 403
    assert "substratus-user" in str(caught.value.body)


def test_foreground_delete_of_a_deployment_removes_its_pods(api: Any, namespace: str) -> None:
    apps, core = _apps(api), _core(api)
    apps.create_namespaced_deployment(namespace, _deployment("gone", 2))
    _poll(
        "the Deployment's pods to run",
        lambda: (
            len(
                [
                    p
                    for p in core.list_namespaced_pod(namespace).items
                    if p.status.phase == "Running"
                ]
            )
            == 2
        ),
    )
    apps.delete_namespaced_deployment("gone", namespace, propagation_policy="Foreground")
    _poll(
        "the Deployment and its pods to be gone",
        lambda: (
            not apps.list_namespaced_deployment(namespace).items
            and not core.list_namespaced_pod(namespace).items
        ),
    )
