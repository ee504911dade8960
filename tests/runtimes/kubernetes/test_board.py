"""``JobBoard`` on the real control plane: the Jobs waited for at once in a namespace are read
with one LIST of Jobs and one LIST of their pods, whatever their number; a Job the snapshot does
not hold (no version label: made before Jobs carried one) is left for its waiter to read."""

from __future__ import annotations

import threading
import time
from typing import Any

from substratus.engine.runtime import Owner
from substratus.runtimes.kubernetes import names
from substratus.runtimes.kubernetes.board import JobBoard, Snapshot
from substratus.runtimes.kubernetes.cluster import Cluster
from tests.support.kube import ControlPlane

OWNER = Owner("3f2b8c1e-7d4a-4b9e-8f10-2a6c5d9e0b11", "default")


def _job(ns: str, name: str, version: str) -> dict[str, Any]:
    labels = names.labels(f"dataset.{name}", "sha256:" + "ab" * 32, "run", OWNER)
    if version:
        labels[names.VERSION] = version
    container = {"name": "main", "image": "loader:1"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {  # suspended: nothing changes while the test reads it
            "suspend": True,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def test_one_snapshot_serves_every_job_waited_for(kube_cluster: ControlPlane) -> None:
    ns = kube_cluster.new_namespace("board")
    cluster = Cluster(None, str(kube_cluster.kubeconfig))
    jobs = {f"load-{i}": f"{i:016x}-abc123" for i in range(6)}
    jobs["old"] = ""  # made before Jobs carried their version label
    for name, version in jobs.items():
        assert cluster.apply_new(_job(ns, name, version)) is not None
    board = JobBoard(cluster, ns)
    registered = threading.Barrier(len(jobs))
    seen: dict[str, Snapshot] = {}

    def wait(name: str) -> None:
        with board.waiting(name, jobs[name]):
            registered.wait(timeout=30)  # every Job is waited for before the first read
            seen[name] = board.read(name, asked)

    before, asked = cluster.requests, time.monotonic()
    threads = [threading.Thread(target=wait, args=(n,)) for n in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert cluster.requests - before == 2  # one LIST of the Jobs, one of their pods
    assert len({id(s) for s in seen.values()}) == 1  # the same snapshot for all
    (snap,) = {id(s): s for s in seen.values()}.values()
    assert snap.taken_for == set(jobs)
    assert set(snap.jobs) == set(jobs) - {"old"}  # "old" is for its waiter to GET
    assert all(snap.jobs[n]["metadata"]["name"] == n for n in snap.jobs)
    assert snap.pods == {n: [] for n in jobs}  # suspended: no pods

    assert board.read("old", asked) is snap  # fresh enough still: no request
    with board.waiting("load-0", jobs["load-0"]):  # a newer one is taken when asked for
        again = board.read("load-0", time.monotonic())
    assert again.seq == snap.seq + 1 and again.taken_for == {"load-0"}
    assert cluster.requests - before == 4
