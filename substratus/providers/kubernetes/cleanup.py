"""Removing what apply made: ``delete`` (destroy) and ``collect_garbage`` (after an apply).

``delete`` removes a resource's objects — every Job of a build/Dataset/Model (all its digests),
a server's Deployment, Service and ConfigMap, a notebook's Pod, Service, ConfigMap and token
Secret — waits until they are gone, then its artifacts unless ``retain_artifacts`` (a Model that
only names a ``url`` keeps it: those weights are not ours). ``collect_garbage`` deletes Jobs and
artifact versions of digests no record keeps (current, previous and pending are kept); it is best
effort and tries again after the next apply.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from substratus.engine.runtime import DeleteRequest, RunContext, RunError
from substratus.engine.statefile import ResourceRecord
from substratus.providers.kubernetes import artifacts, names
from substratus.providers.kubernetes.cluster import Cluster, ClusterError
from substratus.providers.kubernetes.volumes import Store
from substratus.providers.kubernetes.waits import Timing, delete_and_wait
from substratus.providers.kubernetes.workloads import JOB_KINDS, is_job
from substratus.providers.local.files import short_digest


def delete(
    cluster: Cluster, store: Store, timing: Timing, request: DeleteRequest, ctx: RunContext
) -> None:
    kind, ns, name = request.kind, request.namespace, request.name
    ctx.phase("deleting")
    objects: list[tuple[str, str, str]] = []
    if kind in ("build", *JOB_KINDS):
        selector = names.address_selector(request.address)
        objects += [("Job", ns, j["metadata"]["name"]) for j in cluster.list("Job", ns, selector)]
    elif kind == "modelserver":
        server = names.server_name(name)
        objects += [
            ("Deployment", ns, server),
            ("Service", ns, server),
            ("ConfigMap", ns, names.params_name(server)),
        ]
    elif kind == "notebook":
        nb = names.notebook_name(name)
        objects += [
            ("Pod", ns, nb),
            ("Service", ns, nb),
            ("ConfigMap", ns, names.params_name(nb)),
            ("Secret", ns, names.token_name(name)),
        ]
    delete_and_wait(cluster, objects, ctx, timing)
    if request.retain_artifacts or kind not in (*JOB_KINDS, "notebook"):
        return
    if kind == "model" and not is_job(kind, request.spec) and request.spec:
        return  # a url model: the weights are not ours
    where = store.notebook(ns, name) if kind == "notebook" else store.resource(ns, kind, name)
    ctx.phase(f"removing artifacts {where.url}")
    if not artifacts.remove(where.url):
        ctx.phase(f"artifacts at {where.url} are not reachable from here; remove them yourself")


def collect_garbage(cluster: Cluster, store: Store, records: Mapping[str, ResourceRecord]) -> None:
    """Old Jobs and artifact versions of Datasets/Models (current + previous are kept)."""
    by_ns: dict[str, dict[str, set[str]]] = {}
    for address, rec in records.items():
        if rec.kind not in ("build", *JOB_KINDS):
            continue
        keep = {short_digest(d) for d in (rec.digest, rec.previous_digest) if d}
        if rec.pending is not None:
            keep.add(short_digest(rec.pending.digest))
        by_ns.setdefault(rec.namespace, {})[names.label_address(address)] = keep
        if rec.kind in JOB_KINDS and is_job(rec.kind, rec.spec):
            with contextlib.suppress(RunError):  # best effort, retried after the next apply
                for url in artifacts.versions(
                    store.resource(rec.namespace, rec.kind, rec.name).url
                ):
                    if url.rsplit("/", 1)[-1] not in keep:
                        artifacts.remove(url)
    with contextlib.suppress(ClusterError):
        for ns, keeps in by_ns.items():
            for job in cluster.list("Job", ns):
                labels = job["metadata"].get("labels") or {}
                kept = keeps.get(labels.get(names.ADDRESS, ""))
                if kept is not None and labels.get(names.DIGEST) not in kept:
                    cluster.delete("Job", ns, job["metadata"]["name"])
