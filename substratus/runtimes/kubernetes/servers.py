"""A ModelServer's Deployment + Service, and the clock long-running workloads wait with.

``rollout`` checks the params Secret, the Deployment and the Service first — one that exists
and is not the state's is refused before anything is written (``guard``) — then applies them and
waits until the rollout is available: the controller has seen the new generation, every replica
runs the new template and is available, and no old pod is left. A new model version changes the
pod template (its digest label and mounts), so it rolls out in place; a requested replacement
(``restart``: the run's version) sets the template's ``substratus.ai/restart`` annotation, so it
rolls even at the same digest (any other run keeps the annotation's value); ``replicas: 0``
scales to zero. An existing Deployment keeps its selector (immutable). The answer to the
Deployment's write is the rollout's first observation (no read right after the write). A pod
that cannot pull its image, keeps crashing or stays unschedulable past the grace period fails
the apply with the reason — the old pods keep serving. ``ProgressDeadlineExceeded`` too.
Waiting stops at ``ctx.timeout`` (default 15 minutes: model servers load weights first).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from substratus.engine.failure import Failure
from substratus.engine.runtime import Detached, Owner, RunContext
from substratus.runtimes.kubernetes import guard, names
from substratus.runtimes.kubernetes import pods as podinfo
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.waits import Timing

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


class Clock:
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
            raise Failure(f"{self.what}: pod {found.pod}: {found.message}", self.after_fatal)
        if found is not None:
            self.unschedulable_since = self.unschedulable_since or time.monotonic()
            waited = time.monotonic() - self.unschedulable_since
            if waited >= self.timing.unschedulable:
                raise Failure(
                    f"{self.what}: Unschedulable for {waited:.0f} s: {found.message}",
                    "No node offers what the pod asks for (GPU type and count, CPU, "
                    "memory). Check the GPU type against the cluster's node pools.",
                )
            line = f"Unschedulable: {found.message}"
        else:
            self.unschedulable_since = None
        if time.monotonic() - self.start > self.limit:
            raise Failure(
                f"{self.what} was not ready after {self.limit:.0f} s ({line})",
                "Raise --timeout, or look at the pods (kubectl describe).",
            )
        if line != self.last:
            self.ctx.phase(line)
            self.last = line
        self.ctx.cancelled.wait(self.timing.poll)


def _carry(deployment: dict[str, Any], live: Mapping[str, Any] | None, restart: str) -> None:
    """Keep what an existing Deployment has that this apply must not change: its selector and,
    unless this run restarts the pods, the template's restart annotation."""
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    before = ((live or {}).get("spec") or {}).get("template", {}).get("metadata", {})
    previous = (before.get("annotations") or {}).get(names.RESTART)
    if restart or previous:
        annotations[names.RESTART] = restart or previous
    if live is not None:
        deployment["spec"]["selector"] = live["spec"]["selector"]


def rollout(
    cluster: Cluster,
    deployment: dict[str, Any],
    service: dict[str, Any],
    params: dict[str, Any],
    ctx: RunContext,
    timing: Timing,
    owner: Owner,
    recorded: bool = False,
    restart: str = "",
) -> tuple[dict[str, Any], dict[str, Any]]:
    ns, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    address = str(deployment["metadata"]["annotations"][names.ADDRESS])
    objs = [params, deployment, service]
    live = guard.check(cluster, objs, owner, address, recorded)
    _carry(deployment, live[1], restart)
    ctx.phase(f"applying deployment {name}")
    applied = [
        guard.put(cluster, o, found, owner, address, recorded)
        for o, found in zip(objs, live, strict=True)
    ]
    uid, svc = applied[1]["metadata"]["uid"], applied[2]
    selector = names.owner_selector(address, owner)
    clock = Clock(
        ctx, timing, f"deployment {ns}/{name}", "The previous version (if any) keeps running."
    )
    dep: dict[str, Any] | None = applied[1]  # the write's answer is the first observation
    while True:
        if dep is None or dep["metadata"].get("uid") != uid:
            raise Failure(f"deployment {ns}/{name} was deleted during its rollout")
        done, line = rollout_state(dep)
        if done:
            return dep, svc
        stuck = _deadline_exceeded(dep)
        if stuck:
            raise Failure(f"deployment {ns}/{name}: {stuck}", "Look at its pods' events.")
        pods = cluster.list("Pod", ns, selector)
        clock.tick(line, podinfo.problem(pods))
        dep = cluster.get("Deployment", ns, name)
