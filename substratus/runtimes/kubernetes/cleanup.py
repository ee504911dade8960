"""Removing what apply made: ``delete`` (destroy) and ``collect_garbage`` (after an apply).

Only the state's objects are deleted (``ownership.is_mine``: the identity of the state in their
labels, or — made before objects carried identities — the name the state's record gives), each
with a uid precondition (``guard``), so an object of another state or workspace, one not made by
substratus, and a same-named replacement made meanwhile are never deleted; they are named on the
phase line and left alone.

``delete`` removes a resource's objects — the Jobs of a build/Dataset/Model that this state
made (one LIST of the address's Jobs, whichever state made them, kept to the state's; their
params Secrets go with them) and, when it spans nodes, the headless Services of its runs
(one LIST of the address's Services, kept to the state's), a server's Deployment, Service and
params Secret, a notebook's Pod, Service, params Secret and token Secret (named by the record's
outputs; the params ConfigMap too when a version of substratus made the record before params
moved to Secrets: its outputs name no ``params``) — waits until they are gone, then the artifact
versions the state created (``DeleteRequest.versions``, not those another state holds) unless
``retain_artifacts`` (a Model that only names a ``url`` keeps it: those weights are not ours);
a notebook's work directory only when a run of it completed (its outputs name it).
``collect_garbage`` deletes the Jobs and artifact versions of a state's garbage; it is best
effort and tries again after the next apply. ``drop_legacy_params`` deletes, once a server or
notebook runs on its params Secret, the params ConfigMap an earlier version made for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus.engine import kinds
from substratus.engine.failure import Failure
from substratus.engine.runtime import DeleteRequest, Garbage, Owner, RunContext, RunRequest
from substratus.runtimes.kubernetes import artifacts, guard, names, ownership
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.volumes import Store
from substratus.runtimes.kubernetes.waits import Ref, Timing


def _jobs(cluster: Cluster, request: DeleteRequest, ctx: RunContext) -> list[Ref]:
    """The Jobs of the resource this state made: carrying its identity, or (made before
    identities) named after one of its versions."""
    kind, ns, name = request.kind, request.namespace, request.name
    named = {n for v in request.versions for n in names.job_names(kind, name, v)}
    named |= {str(x) for x in (request.outputs.get("job"), (request.intent or {}).get("job")) if x}
    out: list[Ref] = []
    for job in cluster.list("Job", ns, names.address_selector(request.address)):
        meta = job["metadata"]
        found = ownership.whose(job, request.owner)
        if found == "ours" or (found == "unclaimed" and meta["name"] in named):
            out.append(Ref("Job", ns, meta["name"], meta["uid"]))
        else:
            what = ownership.describe("Job", ns, meta["name"])
            ctx.phase(f"left {what} alone: it was {ownership.made_by(job, request.owner)}")
    return out + _job_services(cluster, request, ctx)


def _job_services(cluster: Cluster, request: DeleteRequest, ctx: RunContext) -> list[Ref]:
    """The headless Services of the resource's runs on more than one node (``indexed``) that
    this state made (they carry its identity; none was made before identities). Looked for
    only when the recorded spec spans nodes: the Service of an older version goes with its Job
    (owner reference)."""
    ns, out = request.namespace, list[Ref]()
    if kinds.nodes(request.kind, request.spec) <= 1:
        return out
    for svc in cluster.list("Service", ns, names.address_selector(request.address)):
        meta = svc["metadata"]
        if ownership.whose(svc, request.owner) == "ours":
            out.append(Ref("Service", ns, meta["name"], meta["uid"]))
        else:
            what = ownership.describe("Service", ns, meta["name"])
            ctx.phase(f"left {what} alone: it was {ownership.made_by(svc, request.owner)}")
    return out


def _named(request: DeleteRequest) -> list[tuple[str, str, str]]:
    """The fixed-name objects of a server or notebook: as its record names them."""
    ns, name, out = request.namespace, request.name, request.outputs
    ws = request.owner.workspace
    intent = request.intent or {}
    if request.kind == "modelserver":
        server = str(out.get("deployment") or intent.get("deployment") or "")
        server = server or names.server_name(name, ws)
        return [
            ("Deployment", ns, server),
            ("Service", ns, str(out.get("service") or server)),
            *_params(out, ns, server),
        ]
    if request.kind == "notebook":
        nb = str(out.get("pod") or intent.get("pod") or "") or names.notebook_name(name, ws)
        return [
            ("Pod", ns, nb),
            ("Service", ns, str(out.get("service") or nb)),
            *_params(out, ns, nb),
            ("Secret", ns, str(out.get("token_secret") or names.token_name(name, ws))),
        ]
    return []


def _params(outputs: Mapping[str, Any], ns: str, owner: str) -> list[tuple[str, str, str]]:
    """The params Secret of a server or notebook ``owner`` and, if the record was made before
    params moved to Secrets (``made_before_secrets``), the params ConfigMap made then."""
    name = str(outputs.get("params") or names.params_name(owner))
    legacy = [("ConfigMap", ns, names.params_name(owner))]
    return [("Secret", ns, name), *(legacy if made_before_secrets([outputs]) else [])]


def made_before_secrets(records: Sequence[Mapping[str, Any] | None]) -> bool:
    """Whether a server's or notebook's record (outputs or intent) may come from a version of
    substratus that gave params in a ConfigMap: one that names no ``params`` Secret."""
    return any(r is not None and "params" not in r for r in records)


def drop_legacy_params(
    cluster: Cluster,
    namespace: str,
    owner: str,
    request: RunRequest,
    ctx: RunContext,
    timing: Timing,
) -> None:
    """After a server or notebook of ``request`` runs with its params Secret: delete the params
    ConfigMap an earlier version of substratus made for it (the state's only, uid-checked)."""
    if not made_before_secrets([request.prior_outputs, request.intent]):
        return
    recorded = request.prior_outputs is not None or request.intent is not None
    claim = request.address if recorded else None
    refs = [("ConfigMap", namespace, names.params_name(owner))]
    guard.remove(cluster, guard.mine(cluster, refs, request.owner, claim, ctx), ctx, timing)


def _artifacts(store: Store, request: DeleteRequest) -> list[str]:
    """The artifact locations to remove with the resource."""
    kind, ns, name = request.kind, request.namespace, request.name
    if request.retain_artifacts or not kinds.stores_artifacts(kind):
        return []
    if request.spec and kinds.workload(kind, request.spec) is kinds.Workload.LOCATION:
        return []  # a url model: the weights are not ours
    if kind == kinds.Kind.NOTEBOOK:
        work = request.outputs.get("artifacts")
        return [store.notebook(ns, name).url] if work else []
    held = artifacts.others_holds(store.url, request.owner)
    return [
        store.version(ns, kind, name, v).url
        for v in request.versions
        if kinds.removable(ns, kind, name, v, held)
    ]


def delete(
    cluster: Cluster, store: Store, timing: Timing, request: DeleteRequest, ctx: RunContext
) -> None:
    ctx.phase("deleting")
    if kinds.is_job_kind(request.kind):  # build, dataset, model: run as Jobs
        refs = _jobs(cluster, request, ctx)
    else:
        refs = guard.mine(cluster, _named(request), request.owner, request.address, ctx)
    guard.remove(cluster, refs, ctx, timing)
    for url in _artifacts(store, request):
        ctx.phase(f"removing artifacts {url}")
        if not artifacts.remove(url):
            ctx.phase(f"artifacts at {url} are not reachable from here; remove them yourself")


def _delete_job(cluster: Cluster, owner: Owner, g: Garbage) -> None:
    """Delete the Job of a garbage version if it is the state's (a Job made before identities
    is, by its name: the version is the state's). A run on more than one node has a shorter
    name (``names.job_names``); its Service goes with its Job (owner reference)."""
    for name in sorted(names.job_names(g.kind, g.name, g.version)):
        live: Mapping[str, Any] | None = cluster.get("Job", g.namespace, name, metadata_only=True)
        if live is not None and ownership.is_mine(live, owner, g.address):
            cluster.delete("Job", g.namespace, name, uid=str(live["metadata"]["uid"]))


def collect_garbage(
    cluster: Cluster, store: Store, owner: Owner, garbage: Sequence[Garbage]
) -> set[tuple[str, str]]:
    """Remove the Jobs and artifact versions of the given versions (a state's garbage), except
    versions another state holds. Best effort: what fails now is tried after the next apply."""
    if not garbage:
        return set()
    try:
        held = artifacts.others_holds(store.url, owner)
    except Failure:
        return set()
    removed: set[tuple[str, str]] = set()
    for g in garbage:
        try:
            if kinds.is_job_kind(g.kind):
                _delete_job(cluster, owner, g)
            if kinds.versioned(g.kind):
                if not kinds.removable(g.namespace, g.kind, g.name, g.version, held):
                    continue
                artifacts.remove(store.version(g.namespace, g.kind, g.name, g.version).url)
        except Failure:
            continue
        removed.add((g.address, g.version))
    return removed
