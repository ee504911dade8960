"""Removing what apply made: ``delete`` (destroy) and ``collect_garbage`` (after an apply).

``delete`` removes a resource's objects — every Job of a build/Dataset/Model (all its digests),
a server's Deployment, Service and ConfigMap, a notebook's Pod, Service, ConfigMap and token
Secret — waits until they are gone, then the artifact versions the state created
(``DeleteRequest.versions``, not those another state holds) unless ``retain_artifacts`` (a Model
that only names a ``url`` keeps it: those weights are not ours). ``collect_garbage`` deletes the
Jobs and artifact versions of a state's garbage; it is best effort and tries again after the
next apply.
"""

from __future__ import annotations

from collections.abc import Sequence

from substratus.engine.runtime import DeleteRequest, Garbage, Owner, RunContext, RunError
from substratus.providers import holds
from substratus.providers.kubernetes import artifacts, names
from substratus.providers.kubernetes.cluster import Cluster, ClusterError
from substratus.providers.kubernetes.volumes import Store
from substratus.providers.kubernetes.waits import Timing, delete_and_wait
from substratus.providers.kubernetes.workloads import JOB_KINDS, is_job


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
    if kind == "notebook":
        where = [store.notebook(ns, name).url]
    else:
        held = artifacts.others_holds(store.url, request.owner)
        where = [
            store.version(ns, kind, name, v).url
            for v in request.versions
            if holds.key(ns, kind, name, v) not in held
        ]
    for url in where:
        ctx.phase(f"removing artifacts {url}")
        if not artifacts.remove(url):
            ctx.phase(f"artifacts at {url} are not reachable from here; remove them yourself")


def collect_garbage(
    cluster: Cluster, store: Store, owner: Owner, garbage: Sequence[Garbage]
) -> set[tuple[str, str]]:
    """Remove the Jobs and artifact versions of the given versions (a state's garbage), except
    versions another state holds. Best effort: what fails now is tried after the next apply."""
    if not garbage:
        return set()
    try:
        held = artifacts.others_holds(store.url, owner)
    except RunError:
        return set()
    removed: set[tuple[str, str]] = set()
    for g in garbage:
        try:
            if g.kind in ("build", *JOB_KINDS):
                cluster.delete("Job", g.namespace, names.job_name(g.kind, g.name, g.version))
            if g.kind in JOB_KINDS:
                if holds.key(g.namespace, g.kind, g.name, g.version) in held:
                    continue
                artifacts.remove(store.version(g.namespace, g.kind, g.name, g.version).url)
        except (ClusterError, RunError):
            continue
        removed.add((g.address, g.version))
    return removed
