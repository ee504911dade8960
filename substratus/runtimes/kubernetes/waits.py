"""Waiting on a cluster: polling cadence, grace periods, deletions that finish (DESIGN §6, §8).

``Timing`` holds the knobs: ``poll`` seconds between observations (``SUBSTRATUS_K8S_POLL``,
default 2), ``unschedulable`` seconds a pod may stay unschedulable before the run fails — time for
a cluster autoscaler to add a node (``SUBSTRATUS_UNSCHEDULABLE_TIMEOUT``, default 600) — and
``delete`` seconds a deletion may take. ``delete_and_wait`` deletes objects (foreground
propagation: a Job is gone only when its pods are) — each ``Ref`` with a uid only if it is still
that object (``preconditions.uid``: a same-named replacement is never deleted, and counts as
gone) — and returns when every one is gone; a cancelled wait raises ``Detached`` (the deletion
goes on in the cluster).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from substratus.engine.failure import Failure
from substratus.engine.runtime import Detached, RunContext
from substratus.runtimes.kubernetes.cluster import Cluster


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class Timing:
    poll: float = 2.0
    unschedulable: float = 600.0
    delete: float = 300.0

    @classmethod
    def from_env(cls) -> Timing:
        return cls(
            poll=_env_float("SUBSTRATUS_K8S_POLL", 2.0),
            unschedulable=_env_float("SUBSTRATUS_UNSCHEDULABLE_TIMEOUT", 600.0),
        )


@dataclass(frozen=True)
class Ref:
    """One object to delete: the one with ``uid`` (any object of that name when empty)."""

    kind: str
    namespace: str
    name: str
    uid: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def elapsed(start: float) -> str:
    secs = int(time.monotonic() - start)
    return f"{secs // 60}m{secs % 60:02d}s" if secs >= 60 else f"{secs}s"


def _present(cluster: Cluster, ref: Ref) -> bool:
    live: dict[str, Any] | None = cluster.get(ref.kind, ref.namespace, ref.name, metadata_only=True)
    return live is not None and (not ref.uid or live["metadata"].get("uid") == ref.uid)


def delete_and_wait(
    cluster: Cluster,
    objects: Sequence[Ref],
    ctx: RunContext,
    timing: Timing,
) -> None:
    """Delete ``objects`` and wait until all are gone."""
    remaining = [
        o
        for o in objects
        if cluster.delete(o.kind, o.namespace, o.name, "Foreground", o.uid) == "deleted"
    ]
    start = time.monotonic()
    while remaining:
        if ctx.cancelled.is_set():
            raise Detached(f"deleting {', '.join(o.name for o in remaining)} goes on")
        remaining = [o for o in remaining if _present(cluster, o)]
        if not remaining:
            return
        if time.monotonic() - start > timing.delete:
            names = ", ".join(str(o) for o in remaining)
            raise Failure(
                f"{names} still exist {timing.delete:.0f} s after they were deleted",
                "Look for finalizers that block them (kubectl get -o yaml) and run destroy again.",
            )
        ctx.phase(f"waiting for {len(remaining)} objects to be deleted ({elapsed(start)})")
        ctx.cancelled.wait(timing.poll)
