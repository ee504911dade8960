"""Plan-time collisions: objects a plan's runs would have to take over (``Runtime.conflicts``).

A run creates or changes objects of fixed names (``names``): a ModelServer its Deployment,
Service and params Secret; a Notebook (unless suspended: then it only deletes its own pod)
its Pod, Service, params Secret and token Secret. Jobs and their params Secrets are named per run
(a fresh version token), so nobody else's can have their names; ServiceAccounts are shared
(``runtime``). ``find`` reports every such object that exists and is not the state's
(``ownership.is_mine``; a run of a resource the state records may claim the objects substratus
made for it before objects carried identities) as an error naming it, whose it is and what to
do — the same refusal apply would make (``guard``), but before anything runs.

Requests: one metadata-only LIST (names and labels, no selector: objects not made by substratus
count too) per kind per namespace the runs write to, whatever the number of runs; and one
metadata-only GET per Secret (a server's params, a notebook's params and token) — Secrets are
never listed, so the Role
needs no ``list`` on Secrets and no Secret's data is ever read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus.engine import kinds
from substratus.engine.diagnostic import Diagnostic
from substratus.engine.runtime import Owner, PlannedRun
from substratus.runtimes.kubernetes import names, ownership
from substratus.runtimes.kubernetes.cluster import Cluster

Planned = tuple[str, str, str, PlannedRun]  # kind, namespace, name, the run that writes it


def objects(run: PlannedRun, workspace: str) -> list[tuple[str, str]]:
    """``(kind, name)`` of the fixed-name objects ``run`` writes."""
    if run.kind == "modelserver":
        server = names.server_name(run.name, workspace)
        return [("Deployment", server), ("Service", server), ("Secret", names.params_name(server))]
    if run.kind == "notebook" and not kinds.suspended(run.kind, run.spec):
        nb = names.notebook_name(run.name, workspace)
        return [
            ("Pod", nb),
            ("Service", nb),
            ("Secret", names.params_name(nb)),
            ("Secret", names.token_name(run.name, workspace)),
        ]
    return []


def _live(cluster: Cluster, planned: Sequence[Planned]) -> dict[tuple[str, str, str], Any]:
    """What exists under the planned names: one LIST per kind and namespace, a GET per Secret."""
    found: dict[tuple[str, str, str], Any] = {}
    listed = sorted({(ns, kind) for kind, ns, _, _ in planned if kind != "Secret"})
    for ns, kind in listed:
        for obj in cluster.list(kind, ns, "", metadata_only=True):
            found[(kind, ns, obj["metadata"]["name"])] = obj
    for kind, ns, name, _ in planned:
        if kind == "Secret":
            found[(kind, ns, name)] = cluster.get(kind, ns, name, metadata_only=True)
    return found


def find(cluster: Cluster, runs: Sequence[PlannedRun], owner: Owner) -> list[Diagnostic]:
    planned: list[Planned] = [
        (kind, run.namespace, name, run)
        for run in runs
        for kind, name in objects(run, owner.workspace)
    ]
    if not planned:
        return []
    live = _live(cluster, planned)
    out: list[Diagnostic] = []
    for kind, ns, name, run in planned:
        obj: Mapping[str, Any] | None = live.get((kind, ns, name))
        claim = run.address if run.recorded else None
        if obj is None or ownership.is_mine(obj, owner, claim):
            continue
        summary, detail = ownership.refusal(kind, ns, name, obj, owner, run.address)
        out.append(Diagnostic.error(summary, detail, address=run.address))
    return out
