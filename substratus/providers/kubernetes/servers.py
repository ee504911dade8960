"""Long-running workloads: a ModelServer's Deployment + Service, a Notebook's Pod + Service.

``rollout`` applies the params ConfigMap, the Deployment and the Service and waits until the
rollout is available: the controller has seen the new generation, every replica runs the new
template and is available, and no old pod is left. A new model version changes the pod template
(its digest annotation and mounts), so it rolls out in place; ``replicas: 0`` scales to zero.
A pod that cannot pull its image, keeps crashing or stays unschedulable past the grace period
fails the apply with the reason — the old pods keep serving. ``ProgressDeadlineExceeded`` too.

``notebook`` makes the notebook Pod run at its digest (a pod's spec is immutable, so a pod of
another digest is deleted first), with its token Secret (created once, never printed) and
Service, and waits until it is Ready; ``suspend`` deletes the pod and keeps everything else.
Waiting stops at ``ctx.timeout`` (default 15 minutes: model servers load weights first).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from substratus.engine.runtime import Detached, RunContext, RunError
from substratus.providers.kubernetes import names
from substratus.providers.kubernetes import pods as podinfo
from substratus.providers.kubernetes.cluster import Cluster, ClusterError
from substratus.providers.kubernetes.waits import Timing, delete_and_wait

DEFAULT_TIMEOUT = 900.0


def rollout_state(dep: Mapping[str, Any]) -> tuple[bool, str]:
    """(done, progress line) of a Deployment's rollout."""
    meta, spec, st = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    seen = int(st.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    total = int(st.get("replicas") or 0)
    done = seen and updated >= want and available >= want and total == want
    return done, f"rollout: {updated}/{want} updated, {available} available"


def _deadline_exceeded(dep: Mapping[str, Any]) -> str:
    for c in (dep.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return str(c.get("message", ""))
    return ""


class _Clock:
    def __init__(self, ctx: RunContext, timing: Timing, what: str, after_fatal: str) -> None:
        self.ctx, self.timing, self.what, self.after_fatal = ctx, timing, what, after_fatal
        self.start = time.monotonic()
        self.limit = ctx.timeout or DEFAULT_TIMEOUT
        self.unschedulable_since: float | None = None
        self.last = ""

    def tick(self, line: str, found: podinfo.Problem | None) -> None:
        if self.ctx.cancelled.is_set():
            raise Detached(f"{self.what} goes on in the cluster; the next apply adopts it")
        if found is not None and found.kind == "fatal":
            raise RunError(f"{self.what}: pod {found.pod}: {found.message}", self.after_fatal)
        if found is not None:
            self.unschedulable_since = self.unschedulable_since or time.monotonic()
            waited = time.monotonic() - self.unschedulable_since
            if waited >= self.timing.unschedulable:
                raise RunError(
                    f"{self.what}: Unschedulable for {waited:.0f} s: {found.message}",
                    "No node offers what the pod asks for (GPU type and count, CPU, "
                    "memory). Check the GPU type against the cluster's node pools.",
                )
            line = f"Unschedulable: {found.message}"
        else:
            self.unschedulable_since = None
        if time.monotonic() - self.start > self.limit:
            raise RunError(
                f"{self.what} was not ready after {self.limit:.0f} s ({line})",
                "Raise --timeout, or look at the pods (kubectl describe).",
            )
        if line != self.last:
            self.ctx.phase(line)
            self.last = line
        self.ctx.cancelled.wait(self.timing.poll)


def rollout(
    cluster: Cluster,
    deployment: dict[str, Any],
    service: dict[str, Any],
    configmap: dict[str, Any],
    ctx: RunContext,
    timing: Timing,
) -> tuple[dict[str, Any], dict[str, Any]]:
    ns, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    ctx.phase(f"applying deployment {name}")
    cluster.apply(configmap)
    cluster.apply(deployment)
    svc = cluster.apply(service)
    selector = f"{names.SELECTOR},{names.ADDRESS}={deployment['metadata']['labels'][names.ADDRESS]}"
    clock = _Clock(
        ctx, timing, f"deployment {ns}/{name}", "The previous version (if any) keeps running."
    )
    while True:
        dep = cluster.get("Deployment", ns, name)
        if dep is None:
            raise RunError(f"deployment {ns}/{name} was deleted during its rollout")
        done, line = rollout_state(dep)
        if done:
            return dep, svc
        stuck = _deadline_exceeded(dep)
        if stuck:
            raise RunError(f"deployment {ns}/{name}: {stuck}", "Look at its pods' events.")
        pods = cluster.list("Pod", ns, selector)
        clock.tick(line, podinfo.problem(pods))


def _ready(pod: Mapping[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def notebook(
    cluster: Cluster,
    pod: dict[str, Any],
    service: dict[str, Any],
    configmap: dict[str, Any],
    secret: dict[str, Any],
    ctx: RunContext,
    timing: Timing,
) -> tuple[dict[str, Any], dict[str, Any]]:
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    if cluster.get("Secret", ns, secret["metadata"]["name"]) is None:
        secret["stringData"] = {"token": secrets.token_urlsafe(24)}
        cluster.create(secret)
    cluster.apply(configmap)
    existing = cluster.get("Pod", ns, name)
    digest = pod["metadata"]["annotations"][names.DIGEST]
    if existing is not None:
        stale = (existing["metadata"].get("annotations") or {}).get(names.DIGEST) != digest
        ended = (existing.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if stale or ended:
            ctx.phase(f"replacing pod {name}")
            delete_and_wait(cluster, [("Pod", ns, name)], ctx, timing)
    ctx.phase(f"applying pod {name}")
    try:
        cluster.apply(pod)
    except ClusterError as exc:
        if exc.status != 422:
            raise
        delete_and_wait(cluster, [("Pod", ns, name)], ctx, timing)  # an immutable field changed
        cluster.apply(pod)
    svc = cluster.apply(service)
    clock = _Clock(
        ctx, timing, f"notebook pod {ns}/{name}", "The notebook's pod was replaced by this one."
    )
    while True:
        current = cluster.get("Pod", ns, name)
        if current is None:
            raise RunError(f"pod {ns}/{name} was deleted while it started")
        if _ready(current):
            return current, svc
        if (current.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            raise RunError(f"notebook pod {ns}/{name} exited", podinfo.failure([current]))
        clock.tick(podinfo.progress([current]), podinfo.problem([current]))


def suspend(cluster: Cluster, namespace: str, name: str, ctx: RunContext, timing: Timing) -> None:
    ctx.phase(f"suspending: deleting pod {name}")
    delete_and_wait(cluster, [("Pod", namespace, name)], ctx, timing)
