"""``Refresher``: what exists on the cluster for every recorded resource (DESIGN §5, §8).

One LIST per kind per namespace, selected by ``app.kubernetes.io/managed-by=substratus``: Jobs
where builds, Datasets or Models are recorded, Deployments and Services for ModelServers, Pods
and Services for Notebooks; and, for ``gs://`` artifacts, one list of completion markers per
store. Never one GET per resource. The selector is every state's (not only this one's), so an
object this state made before objects carried identities is found too; of what it lists, an
object counts for a record only when it is the state's (``ownership.is_mine``, the record
claiming such an older object of its address) — an object of another state or workspace under
a recorded name is not ours: the record's object is gone (and the plan's ``conflicts`` then
refuses to take the name over). Plus, whatever is recorded, what the cluster offers
(``capacity``, see below): one LIST of the nodes (which also makes an unreachable cluster fail
the plan, not the apply) and one GET of cluster-autoscaler's status ConfigMap.
Per record:

- a ``pending`` operation (an apply was interrupted): its Job running → ``running``, succeeded →
  ``completed`` (adopted), failed or absent → ``gone``; a pending server/notebook whose object
  exists at the pending digest → ``running`` (the apply re-applies and waits);
- Dataset/Model: ``missing`` when its gs:// version is not complete in the store any more,
  ``changed`` when its objects differ from the content fingerprint recorded when it was sealed
  ("artifacts changed outside substratus");
- ModelServer: ``missing`` when its Deployment is gone; ``degraded`` when one of the fields we
  manage was changed by hand (``fields``: scaled, image edited…), its Service is gone, or fewer
  replicas are available than configured;
- Notebook: ``missing`` without its pod, ``degraded`` when the pod ended or was edited, or runs
  although the notebook is suspended.

``capacity`` (a ``Capacity``, after ``observe``): one ``NodeOffer`` per node (``gpu.node_offer``:
type from the GKE accelerator or GPU feature discovery labels, allocatable GPUs, cpu, memory);
``unknown_types`` when a node has GPUs of a type that cannot be told; ``autoprovisioning`` when a
node belongs to a GKE node auto-provisioning pool (``cloud.google.com/gke-nodepool: nap-…``, also
Autopilot) or cluster-autoscaler names such a node group. cluster-autoscaler's status
(``kube-system/cluster-autoscaler-status``, YAML since 1.30 or the older text) lists its node
groups: a group that can grow but has no node now (scale from zero) becomes a template offer of
unknown shape (``gpu_type=None, gpus=0, source="template"``) — its GPU type is only known to the
cloud API. Not detected: NAP with no NAP node yet, scale-from-zero pools when the status is not
readable (GKE without it, other autoscalers such as Karpenter), taints, cordons and the GPUs
already in use (capacity is the shape of the nodes, not their free room). Listing the nodes is
forbidden to a user with only the namespaced Role: capacity is then unknown, with the reason
(``unknown_reason``); an unreadable autoscaler status is only not seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from substratus.engine import kinds
from substratus.engine.failure import Failure
from substratus.engine.runtime import Capacity, NodeOffer, Observation, Owner
from substratus.engine.statefile import ResourceRecord
from substratus.runtimes.kubernetes import artifacts, jobs, names, ownership
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.fields import changed, owned
from substratus.runtimes.kubernetes.gpu import node_offer

KINDS_FOR = {
    "build": ("Job",),
    "dataset": ("Job",),
    "model": ("Job",),
    "modelserver": ("Deployment", "Service"),
    "notebook": ("Pod", "Service"),
}

Index = dict[tuple[str, str, str], dict[str, Any]]
GKE_NODEPOOL = "cloud.google.com/gke-nodepool"
AUTOSCALER_STATUS = ("kube-system", "cluster-autoscaler-status")
NODES_FORBIDDEN = (
    "listing the cluster's nodes is not allowed ({message}); grant the optional ClusterRole "
    "in examples/kubernetes/rbac.yaml to check GPU types and counts at plan time"
)


def _edits(rec: ResourceRecord, index: Mine, ns: str) -> list[str]:
    """Human lines for objects whose managed fields changed or that are gone (``index``: the
    state's objects)."""
    out: list[str] = []
    for key, recorded in sorted((rec.outputs.get("fields") or {}).items()):
        kind, _, name = key.partition("/")
        live = index.get((kind, ns, name))
        if live is None:
            out.append(f"{kind} {name} was deleted outside substratus")
            continue
        paths = changed(recorded, owned(live))
        if "spec.replicas" in paths:
            now = (live.get("spec") or {}).get("replicas")
            out.append(
                f"{kind} {name} was scaled to {now} outside substratus "
                f"(configured {rec.outputs.get('replicas')})"
            )
            paths.remove("spec.replicas")
        if paths:
            shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
            out.append(f"{kind} {name} was edited outside substratus: {shown}")
    return out


def autoscaler_groups(configmap: Mapping[str, Any] | None) -> list[tuple[str, int, int]]:
    """(name, registered nodes, max size) of each node group in cluster-autoscaler's status
    ConfigMap: the YAML document of 1.30+ or the older text; [] when there is none."""
    text = str(((configmap or {}).get("data") or {}).get("status") or "")
    try:
        doc = yaml.safe_load(text) if "autoscalerStatus:" in text else None
    except yaml.YAMLError:
        doc = None
    out: list[tuple[str, int, int]] = []
    if isinstance(doc, dict):
        for group in doc.get("nodeGroups") or []:
            health = (group or {}).get("health") or {}
            registered = ((health.get("nodeCounts") or {}).get("registered") or {}).get("total")
            out.append(
                (str(group.get("name")), int(registered or 0), int(health.get("maxSize") or 0))
            )
        return out
    for m in re.finditer(r"Name:\s*(\S+)\s*\n\s*Health:([^\n]*)", text):
        registered = re.search(r"registered=(\d+)", m.group(2))
        biggest = re.search(r"maxSize=(\d+)", m.group(2))
        out.append(
            (
                m.group(1),
                int(registered.group(1) if registered else 0),
                int(biggest.group(1) if biggest else 0),
            )
        )
    return out


def capacity_of(
    nodes: Iterable[Mapping[str, Any]], groups: Iterable[tuple[str, int, int]] = ()
) -> Capacity:
    """What the nodes and the autoscaler's node groups (``autoscaler_groups``) offer."""
    offers: list[NodeOffer] = []
    unknown = autoprovisioning = False
    for node in nodes:
        offer, untyped = node_offer(node)
        offers.append(offer)
        unknown = unknown or untyped
        pool = str(((node.get("metadata") or {}).get("labels") or {}).get(GKE_NODEPOOL) or "")
        autoprovisioning = autoprovisioning or pool.startswith("nap-")
    for name, registered, biggest in groups:
        short = name.rstrip("/").rsplit("/", 1)[-1]  # GKE names groups by instance group URL
        autoprovisioning = autoprovisioning or "-nap-" in short or short.startswith("nap-")
        if registered == 0 and biggest > 0:  # scales from zero: its shape is not visible
            offers.append(NodeOffer(short, None, 0, source="template"))
    return Capacity(tuple(offers), unknown, autoprovisioning)


class Mine:
    """The listed objects as one record sees them: only the state's (``get`` answers None for
    an object of another state, or one not made by substratus)."""

    def __init__(self, index: Index, owner: Owner, address: str) -> None:
        self.index, self.owner, self.address = index, owner, address

    def get(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        obj = self.index.get(key)
        return obj if obj is not None and ownership.is_mine(obj, self.owner, self.address) else None

    def gone(self, kind: str, ns: str, name: str) -> str:
        """Why the state's ``kind`` ``ns/name`` is not found."""
        text = f"{kind.lower()} {ns}/{name} was deleted outside substratus"
        if (kind, ns, name) in self.index:
            text += "; an object that is not this state's has its name now"
        return text


class Refresher:
    def __init__(self, cluster: Cluster, owner: Owner = Owner()) -> None:
        self.cluster, self.owner = cluster, owner
        self.capacity: Capacity | None = None

    def _capacity(self) -> Capacity:
        """One LIST of the nodes and one GET of the autoscaler's status (see the module doc)."""
        try:
            found = self.cluster.request("GET", "/api/v1/nodes", what="the cluster's nodes")
        except Failure as exc:
            if exc.status != 403:
                raise
            return Capacity(unknown_reason=NODES_FORBIDDEN.format(message=exc.summary))
        try:
            status = self.cluster.get("ConfigMap", *AUTOSCALER_STATUS)
        except Failure as exc:
            if exc.status != 403:
                raise
            status = None
        return capacity_of((found or {}).get("items") or [], autoscaler_groups(status))

    def _index(self, records: Mapping[str, ResourceRecord]) -> Index:
        """Every substratus object of the kinds and namespaces the records need."""
        wanted: dict[str, set[str]] = {}
        for rec in records.values():
            ns = str((rec.pending.intent if rec.pending else {}).get("namespace") or rec.namespace)
            wanted.setdefault(ns, set()).update(KINDS_FOR.get(rec.kind, ()))
        index: Index = {}
        for ns in sorted(wanted):
            for kind in sorted(wanted[ns]):
                selector = names.SELECTOR
                if kind == "Pod":  # only notebooks are bare pods; not every job's pod
                    selector += f",{names.ROLE}=notebook"
                for obj in self.cluster.list(kind, ns, selector):
                    index[(kind, ns, obj["metadata"]["name"])] = obj
        return index

    def observe(self, records: Mapping[str, ResourceRecord]) -> dict[str, Observation]:
        # first, whatever is recorded: an unreachable cluster fails the plan, not the apply
        self.capacity = self._capacity()
        index = self._index(records)
        wanted = {
            str(r.outputs["artifacts"]): r.outputs.get("manifest")
            for r in records.values()
            if kinds.versioned(r.kind) and r.outputs.get("job") and r.outputs.get("artifacts")
        }
        complete = artifacts.inspect(wanted)
        out: dict[str, Observation] = {}
        for address, rec in records.items():
            mine = Mine(index, self.owner, address)
            if rec.pending is not None:
                out[address] = self._pending(rec, mine)
            else:
                out[address] = self._observe(rec, mine, complete)
        return out

    def _pending(self, rec: ResourceRecord, index: Mine) -> Observation:
        assert rec.pending is not None
        intent = rec.pending.intent
        ns = str(intent.get("namespace") or rec.namespace)
        present = Observation(status="present" if rec.digest else "missing")
        if "job" in intent:
            job = index.get(("Job", ns, str(intent["job"])))
            if job is None:
                return _with(present, "gone", f"job {intent['job']} is gone")
            state = jobs.state(job)
            if state == "succeeded":
                return _with(present, "completed", f"job {intent['job']} completed; adopting it")
            if state == "failed":
                return _with(present, "gone", f"job {intent['job']} failed")
            return _with(present, "running", f"job {intent['job']} is still running; adopting it")
        kind, name = (
            ("Deployment", intent.get("deployment"))
            if "deployment" in intent
            else ("Pod", intent.get("pod"))
        )
        obj = index.get((kind, ns, str(name)))
        meta = (obj or {}).get("metadata") or {}
        if rec.pending.version:  # the run that applied it
            applied = (meta.get("labels") or {}).get(names.VERSION) == rec.pending.version
        else:
            applied = (meta.get("annotations") or {}).get(names.DIGEST) == rec.pending.digest
        if obj is not None and applied:
            return _with(present, "running", f"{kind.lower()} {name} was applied; adopting it")
        return _with(present, "gone", f"{kind.lower()} {name} was not applied")

    def _observe(
        self, rec: ResourceRecord, index: Mine, complete: Mapping[str, list[str] | None] | None
    ) -> Observation:
        ns, outputs, ws = rec.namespace, rec.outputs, self.owner.workspace
        if kinds.versioned(rec.kind):
            url = str(outputs.get("artifacts") or "")
            if complete is None or not outputs.get("job") or not url:
                return Observation()
            changes = complete.get(url)
            if changes is None:
                return Observation("missing", f"the artifacts {url} are missing from the store")
            if changes:
                shown = ", ".join(changes[:5]) + (
                    f" and {len(changes) - 5} more" if len(changes) > 5 else ""
                )
                return Observation(
                    "changed", f"artifacts changed outside substratus at {url}: {shown}"
                )
            return Observation()
        if rec.kind == "modelserver":
            name = str(outputs.get("deployment") or names.server_name(rec.name, ws))
            dep = index.get(("Deployment", ns, name))
            if dep is None:
                return Observation("missing", index.gone("Deployment", ns, name))
            problems = _edits(rec, index, ns)
            want = int((dep.get("spec") or {}).get("replicas") or 0)
            ready = int((dep.get("status") or {}).get("availableReplicas") or 0)
            if not problems and ready < want:
                problems.append(f"only {ready} of {want} replicas of {name} are available")
            return Observation("degraded", "; ".join(problems)) if problems else Observation()
        if rec.kind == "notebook":
            name = str(outputs.get("pod") or names.notebook_name(rec.name, ws))
            pod = index.get(("Pod", ns, name))
            if outputs.get("suspended"):
                if pod is not None:
                    return Observation(
                        "degraded", f"pod {name} runs although the notebook is suspended"
                    )
                return Observation()
            if pod is None:
                return Observation("missing", index.gone("Pod", ns, name))
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                return Observation("degraded", f"pod {name} has ended ({phase})")
            problems = _edits(rec, index, ns)
            return Observation("degraded", "; ".join(problems)) if problems else Observation()
        return Observation()


def _with(base: Observation, pending: str, message: str) -> Observation:
    return Observation(base.status, base.message, pending, message)  # type: ignore[arg-type]
