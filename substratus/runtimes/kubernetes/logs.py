"""The output of runs on a cluster: ``KubeLogs.logs``, the ``LogSource`` of the Kubernetes
runtime, read from the pods through the API server (``GET …/pods/NAME/log``, the request
``kubectl logs`` makes).

The pods of a run: a Job's (build, loader, trainer: the Job the run's outputs or intent name,
else the one its version names; label ``batch.kubernetes.io/job-name``), a ModelServer's (the
pods of the state's Deployment: ``names.owner_selector``), a Notebook's pod. The log is the
main container's (``manifests.CONTAINER_NAMES``). When more than one pod is read (every pod of
a Job that retried, every replica of a server) each line is prefixed ``[POD] `` — ``[rank I] ``
for the ranks of a run on more than one node (an Indexed Job's completion index, ``indexed``);
pods are read oldest first.

Without ``follow`` each pod's log is read as it is (``tailLines`` when ``tail``). With
``follow`` one ``follow=true`` stream per pod (a thread each) is merged as lines arrive, until
every stream has ended: a kubelet ends one when its container terminates; a stream whose pod
is gone or whose container has terminated (polled every ``poll`` seconds) is also closed
after ``grace`` seconds, so a node that keeps a finished container's stream open (kwok does)
does not keep it open forever. A container that has not started yet is waited for. A Job's
run is followed until the Job has ended: the pod of a new attempt (``spec.retries``) is
listed as it comes and followed from its first line (the lines of a job that retries are
prefixed from the start). A run on more than one node retried as one is a new Job: following
ends with the failed one's.

It imports no ``kubernetes`` module: it makes its requests with the connected client of
``Cluster.api()``. Nothing to read raises ``NoLog``; other errors are ``Failure``s.
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from substratus.engine import kinds
from substratus.engine.failure import Failure
from substratus.engine.runtime import LogRequest, NoLog
from substratus.runtimes.kubernetes import indexed, names
from substratus.runtimes.kubernetes.board import JOB_NAME_LABEL
from substratus.runtimes.kubernetes.cluster import RBAC_HINT, Cluster
from substratus.runtimes.kubernetes.jobs import state as job_state
from substratus.runtimes.kubernetes.manifests import CONTAINER_NAMES

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0  # a log read without follow
Item = tuple[str, str | Exception | None]  # (pod, a line | error | None: its stream ended)


def _created(pod: Mapping[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def _container_state(pod: Mapping[str, Any] | None, container: str) -> str:
    """``gone``, ``waiting``, ``running`` or ``terminated`` (the pod's phase when it ended)."""
    if pod is None:
        return "gone"
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return "terminated"
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == container:
            state = cs.get("state") or {}
            if state.get("terminated"):
                return "terminated"
            return "running" if state.get("running") else "waiting"
    return "waiting"


def _tags(pods: list[dict[str, Any]]) -> dict[str, str]:
    """The prefix of each pod's lines: ``rank I`` for the pods of an Indexed Job (a run on more
    than one node; ``rank I, POD`` when a rank has more than one pod), else the pod's name."""
    ranks = {str(p["metadata"]["name"]): indexed.rank_of(p) for p in pods}
    seen = collections.Counter(r for r in ranks.values() if r is not None)
    return {
        pod: pod if rank is None else f"rank {rank}" if seen[rank] == 1 else f"rank {rank}, {pod}"
        for pod, rank in ranks.items()
    }


class KubeLogs:
    def __init__(self, cluster: Cluster, poll: float = 1.0, grace: float = 2.0) -> None:
        self.cluster, self.poll, self.grace = cluster, poll, grace

    def logs(self, request: LogRequest, cancelled: threading.Event) -> Iterator[str]:
        namespace = str(request.outputs.get("namespace") or request.namespace)
        found = sorted(self._pods(request), key=_created)
        pods = [str(p["metadata"]["name"]) for p in found]
        tags = _tags(found)
        if not pods:
            raise NoLog(
                f"{request.address}: its run {request.version} has no pods in namespace "
                f"{namespace} (not created yet, or removed). "
                + ("Use --follow to wait for them." if request.running else "Apply it again.")
            )
        container = CONTAINER_NAMES[request.kind]
        if not request.follow:
            return self._read(namespace, pods, tags, container, request.tail)
        job = self._job_of(request)
        more = _More(self, request, namespace, job) if job is not None else None
        retrying = more is not None and kinds.retries(request.kind, request.spec) > 0
        tail = request.tail
        return self._follow(
            namespace, pods, tags, container, tail, cancelled, more, len(pods) > 1 or retrying
        )

    def _job_of(self, request: LogRequest) -> str | None:
        """The Job of a build's, loader's or trainer's run (None for servers and notebooks)."""
        if kinds.workload(request.kind, request.spec) not in (
            kinds.Workload.BUILD,
            kinds.Workload.JOB,
        ):
            return None
        nodes = kinds.nodes(request.kind, request.spec)
        named = names.job_name(request.kind, request.name, request.version, nodes)
        return str(request.outputs.get("job") or named)

    # -- which pods ----------------------------------------------------------------------------

    def _pods(self, request: LogRequest) -> list[dict[str, Any]]:
        kind, outputs = request.kind, request.outputs
        namespace = str(outputs.get("namespace") or request.namespace)
        work = kinds.workload(kind, request.spec)
        job = self._job_of(request)
        if job is not None:
            return self.cluster.list("Pod", namespace, f"{JOB_NAME_LABEL}={job}")
        if outputs.get("suspended") is True or outputs.get("replicas") == 0:
            raise NoLog(
                f"{request.address} is scaled to zero (suspended or replicas: 0): no pod runs, "
                "so it has no log. Apply it running again to see its output."
            )
        if work is kinds.Workload.SERVER:
            selector = names.owner_selector(request.address, request.owner)
            return self.cluster.list("Pod", namespace, selector)
        if work is kinds.Workload.NOTEBOOK:
            pod = outputs.get("pod") or names.notebook_name(request.name, request.owner.workspace)
            found = self.cluster.get("Pod", namespace, str(pod))
            return [found] if found is not None else []
        raise NoLog(
            f"{request.address} runs no workload (a model that is only a location), so it has "
            "no log."
        )

    # -- requests ------------------------------------------------------------------------------

    def _open(self, namespace: str, pod: str, container: str, query: dict[str, str]) -> Any:
        """The unread response (urllib3) of a log request; ``NoLog`` when the API server says
        there is nothing to read (container not started, pod gone), ``Failure`` otherwise."""
        path = (
            f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods/{urllib.parse.quote(pod)}/log"
        )
        api = self.cluster.api()
        method, url, headers, _, _ = api.param_serialize(
            "GET",
            path,
            query_params=[("container", container), *query.items()],
            header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"],
        )
        self.cluster.counts.add("GET")
        follow = query.get("follow") == "true"
        timeout = (CONNECT_TIMEOUT, None if follow else READ_TIMEOUT)
        try:
            resp = api.call_api(method, url, header_params=headers, _request_timeout=timeout)
        except Exception as exc:  # the client's connection errors (urllib3, OSError)
            raise Failure(
                f"cannot reach the Kubernetes API server at {self.cluster.server}",
                f"{exc}. Check that the cluster is running and {self.cluster.where}.",
                retryable=True,
            ) from exc
        status = int(resp.status)
        if status < 300:
            return resp.response
        message = _message(resp.read())
        if status in (400, 404):
            raise NoLog(f"pod {namespace}/{pod}: {message}")
        if status == 403:
            raise Failure(f"permission denied: {message}", RBAC_HINT + " (pods/log)", status=403)
        raise Failure(f"reading the log of pod {namespace}/{pod} failed ({status}): {message}")

    def _read(
        self,
        namespace: str,
        pods: list[str],
        tags: Mapping[str, str],
        container: str,
        tail: int | None,
    ) -> Iterator[str]:
        query = {"tailLines": str(tail)} if tail is not None else {}
        texts: list[tuple[str, str]] = []
        missing: list[str] = []
        for pod in pods:
            try:
                resp = self._open(namespace, pod, container, query)
            except NoLog as exc:
                missing.append(str(exc))
                continue
            texts.append((pod, resp.read().decode(errors="replace")))
        if not texts:
            raise NoLog("; ".join(missing))
        prefix = len(pods) > 1
        return iter(
            [
                f"[{tags[pod]}] {line}" if prefix else line
                for pod, t in texts
                for line in t.splitlines()
            ]
        )

    # -- follow --------------------------------------------------------------------------------

    def _follow(
        self,
        namespace: str,
        pods: list[str],
        tags: Mapping[str, str],
        container: str,
        tail: int | None,
        cancelled: threading.Event,
        more: _More | None = None,
        prefix: bool = False,
    ) -> Iterator[str]:
        items: queue.Queue[Item] = queue.Queue()
        streams: dict[str, Any] = {}
        stop = threading.Event()

        def start(pod: str, pod_tail: int | None) -> None:
            args = (namespace, pod, container, pod_tail, items, streams, stop)
            threading.Thread(target=self._pump, args=args, daemon=True).start()

        for pod in pods:
            start(pod, tail)
        followed = _Followed(set(pods), dict(tags), prefix, more, start)
        try:
            yield from self._merge(namespace, followed, container, items, streams, cancelled)
        finally:
            stop.set()
            for resp in list(streams.values()):
                _close(resp)

    def _merge(
        self,
        namespace: str,
        followed: _Followed,
        container: str,
        items: queue.Queue[Item],
        streams: dict[str, Any],
        cancelled: threading.Event,
    ) -> Iterator[str]:
        """The lines of every stream as they arrive, until each has ended — and, for a Job's
        run, until the Job has ended too (a pod that replaces a failed one is followed from its
        first line); a stream whose container ended is closed ``grace`` seconds later."""
        open_, ended, tags = followed.open, dict[str, float](), followed.tags
        check = 0.0
        while (open_ or followed.going) and not cancelled.is_set():
            with contextlib.suppress(queue.Empty):
                pod, item = items.get(timeout=self.poll)
                if isinstance(item, Exception):
                    raise item
                if item is None:
                    open_.discard(pod)
                else:
                    yield f"[{tags[pod]}] {item}" if followed.prefix else item
            now = time.monotonic()
            if now < check:
                continue
            check = now + self.poll
            followed.look()
            for pod in sorted(open_):
                if pod in ended:
                    if now - ended[pod] > self.grace:
                        _close(streams.get(pod))
                elif _container_state(self._get(namespace, pod), container) in (
                    "terminated",
                    "gone",
                ):
                    ended[pod] = now

    def _get(self, namespace: str, pod: str) -> dict[str, Any] | None:
        return self.cluster.get("Pod", namespace, pod)

    def _pump(
        self,
        namespace: str,
        pod: str,
        container: str,
        tail: int | None,
        items: queue.Queue[Item],
        streams: dict[str, Any],
        stop: threading.Event,
    ) -> None:
        """One pod's stream into ``items`` (then None), once its container has started."""
        try:
            resp = self._started_stream(namespace, pod, container, tail, stop)
            if resp is not None:
                streams[pod] = resp
                for line in _lines(resp):
                    items.put((pod, line))
        except Exception as exc:  # reported by the reader, in its thread
            if not stop.is_set():
                items.put((pod, exc))
        items.put((pod, None))

    def _started_stream(
        self, namespace: str, pod: str, container: str, tail: int | None, stop: threading.Event
    ) -> Any:
        """The ``follow`` stream of the container once it has started (None: the pod went
        away before it did, or the reader stopped)."""
        query = {"follow": "true", **({"tailLines": str(tail)} if tail is not None else {})}
        while not stop.is_set():
            state = _container_state(self._get(namespace, pod), container)
            if state == "gone":
                return None
            if state != "waiting":
                try:
                    return self._open(namespace, pod, container, query)
                except NoLog:
                    if state == "terminated":
                        return None
            stop.wait(self.poll)
        return None


class _More:
    """The pods of a Job's run as it goes on (a failed attempt's pod is replaced), and whether
    the Job still runs (a Job that is gone has ended)."""

    def __init__(self, logs: KubeLogs, request: LogRequest, namespace: str, job: str) -> None:
        self.logs, self.request, self.namespace, self.job = logs, request, namespace, job

    def pods(self) -> list[dict[str, Any]]:
        return sorted(self.logs._pods(self.request), key=_created)

    def running(self) -> bool:
        found = self.logs.cluster.get("Job", self.namespace, self.job)
        return found is not None and job_state(found) == "running"


class _Followed:
    """What ``_merge`` follows: the open streams, each pod's prefix, and — for a Job's run —
    the pods that come (``look``: started from their first line) while the Job runs."""

    def __init__(
        self,
        open_: set[str],
        tags: dict[str, str],
        prefix: bool,
        more: _More | None,
        start: Callable[[str, int | None], None],
    ) -> None:
        self.open, self.tags, self.prefix, self.more, self.start = open_, tags, prefix, more, start
        self.seen = set(open_)
        self.going = more is not None and more.running()

    def look(self) -> None:
        if self.more is None:
            return
        self.going = self.more.running()
        found = self.more.pods()
        new = [p for p in found if str(p["metadata"]["name"]) not in self.seen]
        if not new:
            return
        self.tags.update(_tags(found))
        self.prefix = self.prefix or len(found) > 1
        for pod in new:
            name = str(pod["metadata"]["name"])
            self.seen.add(name)
            self.open.add(name)
            self.start(name, None)


def _lines(resp: Any) -> Iterator[str]:
    """The lines of a streamed response as they arrive (a stream closed under it ends)."""
    rest = b""
    try:
        for chunk in resp.stream(4096, decode_content=True):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
    except Exception:  # closed by ``_close`` (or the connection dropped): what came is shown
        pass
    if rest:
        yield rest.decode(errors="replace")


def _close(resp: Any) -> None:
    if resp is None:
        return
    with contextlib.suppress(Exception):
        if hasattr(resp, "shutdown"):
            resp.shutdown()  # unblocks a read in another thread (urllib3 2.3+)
        resp.close()
        resp.release_conn()


def _message(data: bytes | None) -> str:
    text = (data or b"").decode(errors="replace")
    try:
        found = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "no message"
    return str(found.get("message") or text)[:500] if isinstance(found, dict) else text[:500]
