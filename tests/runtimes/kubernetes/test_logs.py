"""``KubernetesRuntime.logs`` against the real test control plane: pod logs through the API
server, answered by kwok's kubelet-like server from local CRI-format files
(``tests/support/kube_streams.py``: kwok v0.7.0 serves ``/containerLogs`` from a ``Logs`` /
``ClusterLogs`` mapping, with ``tailLines`` and ``follow`` as a kubelet does).

kwok keeps a ``follow`` stream open after the container ended (a kubelet closes it): the
runtime closes it itself once the pod has ended, which the notebook test pins by deleting its
pod. A Job's pods on the kwok node succeed at once, so its logs are those of ended pods.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client  # type: ignore[import-untyped, unused-ignore]

from substratus.engine.runtime import LogRequest, NoLog, Owner
from substratus.runtimes.kubernetes import KubernetesRuntime, names
from tests.support.kube import ControlPlane
from tests.support.kube_streams import StreamMappings, append_log
from tests.support.waiting import wait_for

TIMEOUT = 120.0  # a bound for a loaded machine: every wait ends as soon as it can
VERSION = "0123456789abcdef-a1b2c3"


@pytest.fixture
def namespace(kube_cluster: ControlPlane, request: pytest.FixtureRequest) -> str:
    return kube_cluster.new_namespace(request.node.name.removeprefix("test_").replace("_", "-"))


@pytest.fixture
def streams(kube_cluster: ControlPlane) -> Iterator[StreamMappings]:
    with StreamMappings(kube_cluster) as mappings:
        yield mappings


@pytest.fixture(scope="module")
def core(kube_cluster: ControlPlane) -> Iterator[Any]:
    with kube_cluster.api_client() as api_client:
        yield client.CoreV1Api(api_client)


@pytest.fixture
def runtime(kube_cluster: ControlPlane) -> KubernetesRuntime:
    return KubernetesRuntime(artifacts_url="gs://b/p", kubeconfig=str(kube_cluster.kubeconfig))


def request_for(
    kind: str,
    namespace: str,
    outputs: dict[str, Any],
    spec_override: dict[str, Any] | None = None,
    **kw: Any,
) -> LogRequest:
    spec: dict[str, Any] = {"loader": {}} if kind == "dataset" else {}
    spec = spec_override if spec_override is not None else spec
    return LogRequest(
        address=f"{kind}.data",
        kind=kind,
        namespace=namespace,
        name="data",
        spec=spec,
        version=VERSION,
        outputs=outputs,
        owner=Owner("lineage-1", "default"),
        **kw,
    )


def run_job(kube_cluster: ControlPlane, namespace: str, pods: int, indexed: bool = False) -> str:
    """A Job named as the runtime names the run's, with ``pods`` pods, run to completion
    (``indexed``: an Indexed Job, as a run on ``pods`` nodes is)."""
    name = names.job_name("dataset", "data", VERSION, pods if indexed else 1)
    container = {"name": "load", "image": "loader"}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": pods,
            "parallelism": pods,
            "backoffLimit": 0,
            **({"completionMode": "Indexed"} if indexed else {}),
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
    with kube_cluster.api_client() as api_client:
        batch: Any = client.BatchV1Api(api_client)
        batch.create_namespaced_job(namespace, job)
        wait_for(
            lambda: (batch.read_namespaced_job(name, namespace).status.succeeded or 0) >= pods,
            f"job {name} to complete",
            TIMEOUT,
            interval=0.1,
        )
    return name


def test_a_jobs_log_and_its_tail(
    kube_cluster: ControlPlane,
    namespace: str,
    streams: StreamMappings,
    runtime: KubernetesRuntime,
    tmp_path: Path,
) -> None:
    log = tmp_path / "load.log"
    append_log(log, [f"line {i}" for i in range(1, 6)])
    streams.logs_from(namespace, None, "load", log)  # every pod of the namespace
    job = run_job(kube_cluster, namespace, 1)
    cancelled = threading.Event()

    request = request_for("dataset", namespace, {"job": job, "namespace": namespace})
    assert list(runtime.logs(request, cancelled)) == [f"line {i}" for i in range(1, 6)]
    tail = request_for("dataset", namespace, {}, tail=2)  # the job named by the version
    assert list(runtime.logs(tail, cancelled)) == ["line 4", "line 5"]
    # follow: the pod has ended, so the stream is closed after the grace period
    follow = request_for("dataset", namespace, {"job": job}, follow=True, tail=1)
    assert list(runtime.logs(follow, cancelled)) == ["line 5"]


def test_every_pod_of_a_run_prefixed_by_its_name(
    kube_cluster: ControlPlane,
    namespace: str,
    streams: StreamMappings,
    runtime: KubernetesRuntime,
    core: Any,
    tmp_path: Path,
) -> None:
    log = tmp_path / "load.log"
    append_log(log, ["hello"])
    streams.logs_from(namespace, None, "load", log)
    job = run_job(kube_cluster, namespace, 2)
    pods = core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}")
    named = sorted(p.metadata.name for p in pods.items)
    assert len(named) == 2

    lines = list(runtime.logs(request_for("dataset", namespace, {"job": job}), threading.Event()))
    assert sorted(lines) == [f"[{pod}] hello" for pod in named]


def test_the_ranks_of_a_run_on_nodes_are_prefixed_by_rank(
    kube_cluster: ControlPlane,
    namespace: str,
    streams: StreamMappings,
    runtime: KubernetesRuntime,
    tmp_path: Path,
) -> None:
    log = tmp_path / "load.log"
    append_log(log, ["hello"])
    streams.logs_from(namespace, None, "load", log)
    run_job(kube_cluster, namespace, 2, indexed=True)
    # no job recorded: the name comes from the version and the spec's nodes
    spec = {"loader": {}, "resources": {"nodes": 2}}
    request = request_for("dataset", namespace, {}, spec_override=spec)
    lines = list(runtime.logs(request, threading.Event()))
    assert sorted(lines) == ["[rank 0] hello", "[rank 1] hello"]
    follow = request_for("dataset", namespace, {}, spec_override=spec, follow=True)
    assert sorted(runtime.logs(follow, threading.Event())) == ["[rank 0] hello", "[rank 1] hello"]


def test_follow_streams_a_notebook_until_its_pod_is_gone(
    namespace: str,
    streams: StreamMappings,
    runtime: KubernetesRuntime,
    core: Any,
    tmp_path: Path,
) -> None:
    pod = names.notebook_name("data")
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": pod},
            "spec": {
                "containers": [{"name": "notebook", "image": "jupyter"}],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod(pod, namespace).status.phase == "Running",
        f"pod {pod} Running",
        TIMEOUT,
        interval=0.1,
    )
    log = tmp_path / "notebook.log"
    append_log(log, ["started"])
    streams.logs_from(namespace, pod, "notebook", log)

    seen: queue.Queue[str | None] = queue.Queue()
    request = request_for("notebook", namespace, {"pod": pod}, follow=True)
    cancelled = threading.Event()

    def read() -> None:
        for line in runtime.logs(request, cancelled):
            seen.put(line)
        seen.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.get(timeout=TIMEOUT) == "started"
        append_log(log, ["saved a.ipynb"])  # written after the stream opened
        assert seen.get(timeout=TIMEOUT) == "saved a.ipynb"
        core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
        assert seen.get(timeout=TIMEOUT) is None  # the stream ended with the pod
    finally:
        cancelled.set()
        reader.join(timeout=TIMEOUT)


def test_no_pods_is_no_log(namespace: str, runtime: KubernetesRuntime) -> None:
    with pytest.raises(NoLog, match="has no pods"):
        runtime.logs(request_for("dataset", namespace, {}), threading.Event())
    with pytest.raises(NoLog, match="scaled to zero"):
        runtime.logs(request_for("notebook", namespace, {"suspended": True}), threading.Event())


def test_the_cli_reads_the_run_the_state_records(
    kube_cluster: ControlPlane, namespace: str, streams: StreamMappings, tmp_path: Path
) -> None:
    """``substratus logs`` with ``runtime: kubernetes``: the record's Job, found by the
    version the state names, read through the API server (no lock, no apply)."""
    from substratus.engine.statefile import ResourceRecord, StateFile

    log = tmp_path / "load.log"
    append_log(log, ["loading", "done"])
    streams.logs_from(namespace, None, "load", log)
    job = run_job(kube_cluster, namespace, 1)
    root = tmp_path / "project"
    (root / ".substratus" / "state").mkdir(parents=True)
    (root / "substratus.yaml").write_text(
        "kind: Project\nspec: {runtime: kubernetes, artifacts: gs://b/p}\n"
    )
    record = ResourceRecord(
        kind="dataset",
        namespace=namespace,
        name="data",
        spec={"loader": {}},
        digest="sha256:" + VERSION[:16] + "0" * 48,
        outputs={"job": job, "artifacts": "gs://b/p/x"},
        version=VERSION,
        versions=[VERSION],
    )
    state = StateFile(
        lineage="lineage-1", serial=1, resources={f"{namespace}/dataset.data": record}
    )
    (root / ".substratus" / "state" / "default.json").write_text(state.to_json())
    env = {**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "substratus", "logs", f"{namespace}/dataset.data", "--tail", "1"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
