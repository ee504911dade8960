"""One view of every Job being waited for in a namespace, shared by the threads that wait.

Waiting for a Job by itself costs two requests per poll (GET the Job, LIST its pods), so with
``--parallelism`` Jobs running at once the requests grew with the number of Jobs. A
``JobBoard`` (one per cluster and namespace: ``board(cluster, namespace)``) takes one
*snapshot* for all the Jobs being waited for (``waiting``): one LIST of those Jobs (label
``substratus.ai/version in (…)``, the runs being waited for; the names are then matched) and
one LIST of their pods (``batch.kubernetes.io/job-name in (…)``), in chunks of ``CHUNK`` Jobs.
``read(name, not_before)`` answers a snapshot taken for ``name`` that began at
``not_before`` (``time.monotonic()``) or later — a waiter passes the moment it began to sleep
— so it sees the cluster as fresh as when it polled alone: the last such snapshot, else the
one being taken when it waits for that, else one it takes for everybody. Waiters that slept
through the same snapshot share it.

A Job that a snapshot taken for it does not hold (deleted, or made before Jobs carried their
version label) is for the caller to read by itself (``jobs.wait`` GETs it). A failed snapshot
raises in the thread that took it; the others take the next one themselves.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from substratus.runtimes.kubernetes import names
from substratus.runtimes.kubernetes.cluster import Cluster

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CHUNK = 40  # Jobs per LIST: label selectors travel in the URL (≤ 40 × 63 characters)


@dataclass(frozen=True)
class Snapshot:
    seq: int = 0
    started: float = float("-inf")  # time.monotonic() when its first request was sent
    taken_for: frozenset[str] = frozenset()  # the Jobs it was taken for
    jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # by name
    pods: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)  # by Job name


class JobBoard:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self._cluster = weakref.ref(cluster)  # the registry below must not keep it alive
        self.namespace = namespace
        self._cond = threading.Condition()
        self._waiting: dict[str, str] = {}  # Job name -> its version label ("" if none)
        self._snap = Snapshot()
        self._taking = False

    @contextmanager
    def waiting(self, name: str, version: str) -> Iterator[None]:
        """While inside, snapshots include the Job ``name`` (labelled with ``version``)."""
        with self._cond:
            self._waiting[name] = version
        try:
            yield
        finally:
            with self._cond:
                self._waiting.pop(name, None)

    def read(self, name: str, not_before: float) -> Snapshot:
        """A snapshot taken for ``name`` that began at ``not_before`` or later (see above)."""
        with self._cond:
            while self._taking and not self._fits(name, not_before):
                self._cond.wait()
            if self._fits(name, not_before):
                return self._snap
            self._taking = True
            waiting, seq = dict(self._waiting), self._snap.seq + 1
        taken: Snapshot | None = None
        try:
            taken = self._take(seq, waiting)
            return taken
        finally:
            with self._cond:
                self._taking = False
                if taken is not None:
                    self._snap = taken
                self._cond.notify_all()

    @property
    def cluster(self) -> Cluster:
        cluster = self._cluster()
        assert cluster is not None, "a board outlived its cluster"
        return cluster

    def _fits(self, name: str, not_before: float) -> bool:
        return self._snap.started >= not_before and name in self._snap.taken_for

    def _take(self, seq: int, waiting: Mapping[str, str]) -> Snapshot:
        started = time.monotonic()
        ns, listed = self.namespace, sorted(waiting)
        jobs: dict[str, dict[str, Any]] = {}
        pods: dict[str, list[dict[str, Any]]] = {n: [] for n in listed}
        for i in range(0, len(listed), CHUNK):
            chunk = listed[i : i + CHUNK]
            versions = sorted({waiting[n] for n in chunk if waiting[n]})
            if versions:
                selector = f"{names.SELECTOR},{names.VERSION} in ({','.join(versions)})"
                for job in self.cluster.list("Job", ns, selector):
                    if job["metadata"]["name"] in waiting:
                        jobs[job["metadata"]["name"]] = job
            for pod in self.cluster.list("Pod", ns, f"{JOB_NAME_LABEL} in ({','.join(chunk)})"):
                owner = (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)
                pods.setdefault(str(owner), []).append(pod)
        return Snapshot(seq, started, frozenset(listed), jobs, pods)


_boards: weakref.WeakKeyDictionary[Cluster, dict[str, JobBoard]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def board(cluster: Cluster, namespace: str) -> JobBoard:
    """The board of ``namespace`` on ``cluster`` (made on first use)."""
    with _lock:
        per_namespace = _boards.setdefault(cluster, {})
        if namespace not in per_namespace:
            per_namespace[namespace] = JobBoard(cluster, namespace)
        return per_namespace[namespace]
