"""Plan-time capacity checks: can the place a runtime runs on take the GPUs the plan asks for?

Pure. Inputs are the plan's changes that start workloads — create, replace or update of a
Dataset, a Model with a loader or trainer, a ModelServer with replicas and a Notebook that is not
suspended — and the ``Capacity`` the runtime observed during the plan's refresh. Each workload's
GPU request (``engine.kinds.compute``: ``spec.trainer.resources.gpu`` when the trainer has
resources, else ``spec.resources.gpu``; the same rule as the runtimes) is held against the
offers, one pod per node:

- a typed request (``4 × nvidia-h100``) that no offer has the type of is a warning naming the
  types the cluster offers; one whose type exists but that no single offer has that many of is a
  count warning;
- an untyped request needs an offer of any type with that many GPUs;
- nothing is ruled out when the cluster can autoprovision node pools, when an offer is an
  autoscaler template of unknown shape (``gpu_type=None, gpus=0, source="template"``: a node
  group with no node now), nor — for a type — when some node has GPUs of unknown type (and, for a
  count, enough of them). These cases produce no diagnostic: a plan that may well work is not
  flagged;
- a job on ``resources.nodes: N`` needs N nodes that each take the request (one rank's pod
  per node): when fewer nodes fit and no autoscaler template of a fitting shape could add more,
  that is a nodes warning naming how many fit;
- a request with ``resources.spot`` is held against the spot nodes alone (``NodeOffer.spot``:
  labelled ``cloud.google.com/gke-spot=true``): none is a warning of its own; a spot request
  without GPUs needs only a spot node;
- with ``strict`` the findings are errors and ``checked_capacity`` raises
  ``DiagnosticError`` (the plan fails before anything runs);
- a ``Capacity`` with ``unknown_reason`` checks nothing and, when the plan asks for GPUs, adds one
  warning saying why. ``None`` (no refresh, or a runtime without ``capacity()``) adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from substratus.engine import kinds
from substratus.engine.config import Config
from substratus.engine.diagnostic import Diagnostic, DiagnosticError, Severity
from substratus.engine.plan import Action, Plan
from substratus.engine.runtime import Capacity, NodeOffer

RUNS = (Action.CREATE, Action.REPLACE, Action.UPDATE)
SHOWN = 6  # offers named in a message; the rest are counted
SPOT_LABEL = "cloud.google.com/gke-spot"  # what GKE labels its spot nodes with
NOT_SEEN = (
    "Not seen from the cluster: node pools scaled to zero (unless cluster-autoscaler publishes "
    "its status) and node auto-provisioning that has not created a node yet; if one of them "
    "offers it, the pod still runs."
)


@dataclass(frozen=True)
class GpuRequest:
    """One workload's GPUs: ``count`` of ``gpu_type`` (None: any type) on one node."""

    address: str
    path: str  # the field path of the request, e.g. "spec.trainer.resources.gpu"
    gpu_type: str | None
    count: int
    nodes: int = 1  # nodes that each need the GPUs (a job's ranks)
    spot: bool = False  # resources.spot: only spot nodes count (``count`` may then be 0)


def gpu_requests(plan: Plan) -> list[GpuRequest]:
    """The GPU and spot requests of the workloads this plan starts or rolls out, in order."""
    out: list[GpuRequest] = []
    for change in plan.resource_changes:
        if change.action not in RUNS or change.record_only:
            continue
        found = kinds.compute(change.kind, change.after or {})
        if found is not None and found.replicas > 0 and (found.gpus > 0 or found.spot):
            path = f"{found.path}.gpu" if found.gpus else f"{found.path}.spot"
            out.append(
                GpuRequest(
                    change.address, path, found.gpu_type, found.gpus, found.nodes, found.spot
                )
            )
    return out


def describe_offers(capacity: Capacity) -> str:
    """``8 × nvidia-l4 on kwok-gpu-0, 1 × nvidia-t4 on node-a and 2 more nodes, …``."""
    groups: dict[tuple[str, int, str], list[str]] = {}
    for o in capacity.offers:
        if o.gpus > 0:
            groups.setdefault((o.gpu_type or "", o.gpus, o.source), []).append(o.name)
    if not groups:
        n = sum(1 for o in capacity.offers if o.source == "node")
        return f"the cluster has {n} node{'s' * (n != 1)}, none with GPUs"
    parts = []
    for (gtype, gpus, source), names in sorted(groups.items(), key=lambda g: (g[0][0], -g[0][1])):
        what = gtype or "GPU of unknown type"
        where = f"autoscaler template {names[0]}" if source == "template" else names[0]
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        parts.append(f"{gpus} × {what} on {where}{more}")
    if len(parts) > SHOWN:
        parts = [*parts[:SHOWN], f"and {len(parts) - SHOWN} more"]
    return "the cluster offers: " + ", ".join(parts)


def _blind(capacity: Capacity) -> bool:
    """Whether nodes of any shape may appear (autoprovisioning, or a template of unknown shape)."""
    return capacity.autoprovisioning or any(
        o.source == "template" and o.gpu_type is None and o.gpus == 0 for o in capacity.offers
    )


def _most(offers: Iterable[NodeOffer]) -> int:
    return max((o.gpus for o in offers), default=0)


def _fits(offer: NodeOffer, req: GpuRequest, unknown_types: bool) -> bool:
    """Whether one node of ``offer`` takes one pod of ``req``."""
    if offer.gpus < req.count:
        return False
    if req.gpu_type is None or offer.gpu_type == req.gpu_type:
        return True
    return unknown_types and offer.gpu_type is None


def _too_few_nodes(req: GpuRequest, capacity: Capacity) -> tuple[str, str] | None:
    """(summary, detail) when fewer than ``req.nodes`` nodes take a pod of ``req`` each and no
    autoscaler template of a fitting shape could add more."""
    fitting = [o for o in capacity.offers if _fits(o, req, capacity.unknown_types)]
    if any(o.source == "template" for o in fitting):
        return None
    have = len(fitting)
    if have >= req.nodes:
        return None
    what = f"{req.count} × {req.gpu_type or 'GPU'}" if req.count else "spot capacity"
    return (
        f"{req.address} asks for {req.nodes} nodes with {what} each, but only {have} "
        f"node{'s' * (have != 1)} {'has' if have == 1 else 'have'} that "
        f"({describe_offers(capacity)})",
        f"Each rank runs on its own node and the ranks wait for each other: "
        f"lower resources.nodes to at most {have}, or add nodes with {what}. {NOT_SEEN}",
    )


def _problem(req: GpuRequest, capacity: Capacity) -> tuple[str, str] | None:
    """(summary, detail) when no offer can take ``req`` (or not on enough nodes) and nothing
    hides one that could; a spot request is held against the spot nodes alone."""
    if _blind(capacity):
        return None
    if req.spot:
        spot = [o for o in capacity.offers if o.spot]
        if not spot:
            return (
                f"{req.address} asks for spot capacity (resources.spot), but no node is a spot "
                f"node (labelled {SPOT_LABEL}=true; {describe_offers(capacity)})",
                "The pod would wait for a spot node that never comes. Add a spot node pool "
                f"(GKE: --spot), or remove resources.spot. {NOT_SEEN}",
            )
        capacity = replace(capacity, offers=tuple(spot))
    found = _problem_one(req, capacity)
    if found is None and req.nodes > 1:
        return _too_few_nodes(req, capacity)
    return found


def _problem_one(req: GpuRequest, capacity: Capacity) -> tuple[str, str] | None:
    """(summary, detail) when no offer can take one pod of ``req``."""
    offers, n = capacity.offers, req.count
    if n == 0:
        return None
    untyped = [o for o in offers if o.gpu_type is None and o.gpus > 0]
    if req.gpu_type is None:
        best = _most(offers)
        if best >= n:
            return None
        if best == 0:
            return (
                f"{req.address} asks for {n} GPU{'s' * (n != 1)}, but no node offers GPUs "
                f"({describe_offers(capacity)})",
                f"The pod would wait for a node that never comes. Add a node pool with GPUs. "
                f"{NOT_SEEN}",
            )
        return (
            f"{req.address} asks for {n} GPUs on one node, but no node has more than {best} "
            f"({describe_offers(capacity)})",
            f"A pod runs on one node: ask for at most {best} GPUs, or add a node pool whose nodes "
            f"have {n}. {NOT_SEEN}",
        )
    same = [o for o in offers if o.gpu_type == req.gpu_type]
    what = f"{n} × {req.gpu_type}"
    if not same:
        if capacity.unknown_types:
            return None
        return (
            f"{req.address} asks for {what}, but no node offers {req.gpu_type} "
            f"({describe_offers(capacity)})",
            f"The pod would wait for a node that never comes (Unschedulable). Ask for a GPU type "
            f"the cluster offers, or add a node pool with {req.gpu_type} GPUs. {NOT_SEEN}",
        )
    best = _most(same)
    if best >= n or (capacity.unknown_types and _most(untyped) >= n):
        return None
    return (
        f"{req.address} asks for {what} on one node, but no node has more than {best} × "
        f"{req.gpu_type} ({describe_offers(capacity)})",
        f"A pod runs on one node: ask for at most {best} × {req.gpu_type}, or add a node pool "
        f"whose nodes have {n}. {NOT_SEEN}",
    )


def check_capacity(
    requests: Iterable[GpuRequest], capacity: Capacity, strict: bool = False
) -> list[Diagnostic]:
    """A diagnostic per request no offer can take (warnings; errors when ``strict``)."""
    severity = Severity.ERROR if strict else Severity.WARNING
    out = []
    for req in requests:
        found = _problem(req, capacity)
        if found is not None:
            out.append(Diagnostic(severity, found[0], found[1], req.address, None, req.path))
    return out


def capacity_diagnostics(
    plan: Plan, config: Config, capacity: Capacity | None, strict: bool = False
) -> list[Diagnostic]:
    """The capacity findings of ``plan`` with file:line from ``config`` (see the module doc)."""
    requests = gpu_requests(plan)
    if capacity is None or not requests:
        return []
    if capacity.unknown_reason:
        reason = capacity.unknown_reason.rstrip(".")
        return [
            Diagnostic.warning(
                "GPU types and counts were not checked against the cluster",
                f"{reason[:1].upper()}{reason[1:]}.",
            )
        ]
    by_address = {str(a): r for a, r in config.resources.items()}
    out = []
    for d in check_capacity(requests, capacity, strict):
        res = by_address.get(d.address or "")
        source = res.source_of(d.path or "spec") if res is not None else None
        out.append(Diagnostic(d.severity, d.summary, d.detail, d.address, source, d.path))
    return out


def checked_capacity(
    plan: Plan, config: Config, capacity: Capacity | None, strict: bool = False
) -> list[Diagnostic]:
    """The capacity warnings of ``plan`` (for its ``warnings``); raise ``DiagnosticError`` with
    the errors when ``strict`` finds any."""
    found = capacity_diagnostics(plan, config, capacity, strict)
    errors = [d for d in found if d.is_error]
    if errors:
        raise DiagnosticError(errors)
    return found
