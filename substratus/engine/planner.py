"""The planner: desired configuration + prior state + observations → ``Plan`` (DESIGN §4–§5).

Pure: it does no I/O. Its caller (``engine.operation``) loads the configuration, resolves build
sources, reads the state, refreshes through the runtime and reads external dependencies, then
hands everything here. Rules:

- not in state → ``create``; digest unchanged and observed present → ``no-op`` (no diff is run);
- digest changed → ``replace`` for builds, Datasets and Models (run again into a new version),
  ``update`` in place for ModelServers and Notebooks; reasons name the changed fields (deepdiff on
  this resource only) and the changed dependencies ("dataset.x changed");
- in state but not in configuration → ``delete`` (an error if ``lifecycle.preventDestroy``) with
  reason ``not_in_config``; an implicit build no configured resource uses any more is deleted with
  reason ``unused_build`` (its users' source changed, or its users are gone);
- drift: recorded but missing → ``create`` again; unhealthy, or artifacts changed outside
  substratus → ``update``/``replace``;
- ``tainted`` or ``--replace`` → ``replace`` (``create`` for a tainted record whose first apply
  failed), run again into a new version; a pending operation left by an interrupted apply at
  the same digest is adopted (reason ``adopt``);
- digest unchanged but the record differs — ``lifecycle``, ``spec.retries``
  (``kinds.RECORD_ONLY_FIELDS``), ``sensitive:`` marking, renamed inputs, a digest of an older
  format that still matches (``digest.legacy_digests``, ``digest.plain_digests``) — →
  ``update`` with ``record_only``: the record is rewritten, nothing runs;
- references to resources not in the configuration → ``read`` of what the runtime found, or a
  "dangling reference" error; a reference to a resource removed from the configuration that the
  state still records is an error that says so (it would be destroyed while in use);
- ``--target``/``--replace`` name configured or recorded resources; ``--replace`` of a resource
  removed from the configuration is an error (the plan destroys it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from substratus.engine.address import Address, did_you_mean
from substratus.engine.config import Config, dangling_reference, removed_reference
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.engine.digest import (
    compute_digests,
    field_changes,
    legacy_digests,
    plain_digests,
    remarked_digests,
)
from substratus.engine.graph import Graph, build_graph, topological, with_dependencies
from substratus.engine.kinds import RECORD_ONLY_FIELDS, replaces_on_change
from substratus.engine.plan import (
    Action,
    Drift,
    DriftStatus,
    Input,
    Mode,
    Plan,
    PlanSettings,
    Reason,
    ResourceChange,
)
from substratus.engine.plan import ReasonCode as Why
from substratus.engine.resource import Resource
from substratus.engine.runtime import ExternalResource, Observation
from substratus.engine.sensitive import align, marking, split_path
from substratus.engine.statefile import DIGEST_FORMAT, ResourceRecord, StateFile, now_iso

IN_PLACE_VERB = {"modelserver": "rolled out", "notebook": "updated"}


@dataclass(frozen=True)
class Digests:
    """What the configuration resolves to: digests and effective specs (``engine.digest``),
    and, by format, the digests of older formats where records of that format may need them
    (``legacy``: format → address → digest; empty when none do)."""

    new: Mapping[Address, str]
    specs: Mapping[Address, dict[str, object]]
    legacy: Mapping[int, Mapping[Address, str]]
    salt: str | None = None  # the state's, for its records' sensitive markers
    remarked: Mapping[Address, str] = field(default_factory=dict)  # digest.remarked_digests

    def same(self, addr: Address, rec: ResourceRecord) -> bool:
        """Whether ``rec``'s digest stands for what the configuration gives: the current digest,
        an older format's, or the current one under the record's ``sensitive:`` marking."""
        if rec.digest in (self.new[addr], self.remarked.get(addr)):
            return True
        older = self.legacy.get(rec.digest_format) if rec.digest_format < DIGEST_FORMAT else None
        return older is not None and older.get(addr) == rec.digest


@dataclass
class PlanRequest:
    config: Config
    state: StateFile | None
    observations: Mapping[str, Observation] | None = None  # None: --no-refresh
    externals: Mapping[Address, ExternalResource] = field(default_factory=dict)
    mode: Mode = Mode.NORMAL
    targets: list[Address] = field(default_factory=list)
    replace: list[Address] = field(default_factory=list)
    workspace: str = "default"
    settings: PlanSettings = field(default_factory=PlanSettings)
    graph: Graph[Address] | None = None  # the configuration's graph, if already built


def make_plan(req: PlanRequest) -> Plan:
    cfg = req.config
    state = req.state or StateFile()
    records = state.resources
    obs = req.observations or {}
    graph = req.graph if req.graph is not None else build_graph(cfg.resources)
    order = topological(graph)
    warnings = list(cfg.warnings)
    errors = _unknown_addresses(req, records)
    if errors:
        raise DiagnosticError(errors)

    selected = set(order)
    if req.targets:
        selected = with_dependencies(graph, req.targets)
        warnings.append(
            Diagnostic.warning(
                "Resource targeting is in effect",
                "The plan covers only the targeted resources and their dependencies; it may be "
                "incomplete. Do not use --target for routine operations.",
            )
        )

    changes: dict[str, ResourceChange] = {}
    if req.mode is Mode.DESTROY:
        _plan_destroy(req, graph, records, changes, errors)
    else:
        _plan_configured(req, order, selected, changes, errors)
    if errors:
        raise DiagnosticError(errors)

    drift = _drift(records, obs, req.mode)
    if req.targets:  # a targeted plan shows (and a refresh-only apply records) only its drift
        drift = [d for d in drift if d.address in changes]
    result = list(changes.values())
    if req.mode is Mode.REFRESH_ONLY:
        result = [
            c if c.action is Action.READ else replace(c, action=Action.NOOP, reasons=())
            for c in result
        ]
    return Plan(
        mode=req.mode,
        resource_changes=result,
        drift=drift,
        prior_lineage=req.state.lineage if req.state else None,
        prior_serial=req.state.serial if req.state else None,
        config_digest=cfg.digest,
        config_files=cfg.files,
        workspace=req.workspace,
        targets=[str(t) for t in req.targets],
        replace=[str(a) for a in req.replace],
        refresh=req.observations is not None,
        settings=req.settings,
        warnings=warnings,
        created_at=now_iso(),
    )


def _plan_configured(
    req: PlanRequest,
    order: Sequence[Address],
    selected: set[Address],
    changes: dict[str, ResourceChange],
    errors: list[Diagnostic],
) -> None:
    """The changes of a normal or refresh-only plan: reads, the ``selected`` configured
    resources in ``order``, then deletes of recorded resources no longer configured."""
    cfg, obs = req.config, req.observations or {}
    records = req.state.resources if req.state else {}
    configured = {str(x) for x in cfg.resources}
    removed = {a for a in records if a not in configured}
    external_digests = _reads(req, removed, changes, errors)
    salt = req.state.salt if req.state else None
    digests, specs = compute_digests(order, cfg.resources, external_digests, records, salt)
    formats = {r.digest_format for r in records.values() if r.digest}
    legacy: dict[int, Mapping[Address, str]] = {}
    if 1 in formats:
        legacy[1] = legacy_digests(order, cfg.resources, external_digests, records)
    if 2 in formats and any(r.secrets for r in cfg.resources.values()):
        legacy[2] = plain_digests(order, cfg.resources, external_digests, records, salt)
    remarked: Mapping[Address, str] = {}
    if any(_remarked(res, records.get(str(a))) for a, res in cfg.resources.items()):
        remarked = remarked_digests(order, cfg.resources, external_digests, records, salt)
    current = Digests(digests, specs, legacy, salt, remarked)
    for addr in order:
        if addr in selected:
            change = _plan_resource(req, addr, current, changes, obs)
            changes[change.address] = change
    if not req.targets or any(str(t) in removed for t in req.targets):
        wanted = {str(t) for t in req.targets}
        for a in _reverse_state_order(records, removed):
            if not wanted or a in wanted:
                code, why = _removed_reason(a, records, configured)
                changes[a] = _delete(records[a], a, code, why, errors)


def _removed_reason(
    address: str, records: Mapping[str, ResourceRecord], configured: set[str]
) -> tuple[Why, str]:
    """Why a recorded resource no longer configured goes away. An implicit build (``build.*``,
    made from a ``container.local``/``git`` source, never written in the configuration) goes
    because what used it no longer does: its users' source changed (they now use another
    build) or its users are gone."""
    if records[address].kind != "build":
        return Why.NOT_IN_CONFIG, f"{address} is not in the configuration"
    users = sorted(k for k, r in records.items() if address in r.dependencies)
    staying = [u for u in users if u in configured]
    if staying:
        verb = "builds" if len(staying) == 1 else "build"
        return (
            Why.UNUSED_BUILD,
            f"its source changed: {', '.join(staying)} no longer {verb} from it",
        )
    return Why.UNUSED_BUILD, "no resource in the configuration uses its source any more"


def _remarked(res: Resource, rec: ResourceRecord | None) -> bool:
    """Whether ``res`` marks other params sensitive than its record does."""
    if rec is None or not rec.digest or res.kind == "build":
        return False
    return marking(rec.spec) != frozenset(split_path(p) for p in res.secrets)


def _unknown_addresses(req: PlanRequest, records: Mapping[str, ResourceRecord]) -> list[Diagnostic]:
    """Errors for ``--target``/``--replace`` addresses the plan cannot act on as asked."""
    errors: list[Diagnostic] = []
    for addr in req.targets + req.replace:
        if addr not in req.config.resources and str(addr) not in records:
            errors.append(
                Diagnostic.error(
                    f"No resource {addr}",
                    f"{addr} is neither in the configuration nor in the state. Check the address "
                    "(see `substratus state list`)."
                    + did_you_mean(str(addr), [*map(str, req.config.resources), *records]),
                )
            )
    for addr in req.replace:
        if addr not in req.config.resources and str(addr) in records:
            errors.append(
                Diagnostic.error(
                    f"Cannot replace {addr}: it was removed from the configuration",
                    f"{addr} is still recorded in the state but no longer configured, so this "
                    f"plan destroys it. Declare it again to replace it, or drop --replace {addr}.",
                    address=str(addr),
                )
            )
    return errors


def _reads(
    req: PlanRequest,
    removed: set[str],
    changes: dict[str, ResourceChange],
    errors: list[Diagnostic],
) -> dict[Address, str]:
    digests: dict[Address, str] = {}
    for addr, users in sorted(req.config.external.items(), key=lambda kv: str(kv[0])):
        found = req.externals.get(addr)
        if str(addr) in removed:  # still recorded in the state
            errors.extend(removed_reference(r, d) for r, d in users)
            continue
        if found is None:
            errors.extend(dangling_reference(r, d, req.config.resources) for r, d in users)
            continue
        digests[addr] = found.digest
        ns = addr.effective_namespace(req.config.default_namespace)
        changes[str(addr)] = ResourceChange(
            address=str(addr),
            kind=addr.kind,
            namespace=ns,
            name=addr.name,
            action=Action.READ,
            reasons=[
                Reason(
                    Why.EXTERNAL,
                    f"{addr} is not in the configuration; its newest "
                    "version is read from the runtime",
                )
            ],
            digest_after=found.digest,
            outputs=dict(found.outputs),
        )
    return digests


@dataclass
class _Draft:
    """A change while the planner decides it; ``freeze`` makes the ``ResourceChange``."""

    address: str
    kind: str
    namespace: str
    name: str
    after: dict[str, Any]
    digest_after: str
    dependencies: list[Input]
    lifecycle: dict[str, Any]
    action: Action = Action.NOOP
    reasons: list[Reason] = field(default_factory=list)
    before: dict[str, Any] | None = None
    digest_before: str | None = None
    replace_paths: list[str] = field(default_factory=list)
    record_only: bool = False

    @property
    def depends_on(self) -> list[str]:
        return [d.address for d in self.dependencies]

    def freeze(self) -> ResourceChange:
        return ResourceChange(
            address=self.address,
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            action=self.action,
            reasons=self.reasons,
            before=self.before,
            after=self.after,
            digest_before=self.digest_before,
            digest_after=self.digest_after,
            replace_paths=self.replace_paths,
            dependencies=self.dependencies,
            lifecycle=self.lifecycle,
            record_only=self.record_only,
        )


def _plan_resource(
    req: PlanRequest,
    addr: Address,
    current: Digests,
    changes: Mapping[str, ResourceChange],
    obs: Mapping[str, Observation],
) -> ResourceChange:
    res = req.config.resources[addr]
    key = str(addr)
    rec = req.state.resources.get(key) if req.state else None
    new = current.new[addr]
    change = _Draft(
        address=key,
        kind=res.kind,
        namespace=res.namespace,
        name=res.name,
        after=dict(current.specs[addr]),
        digest_after=new,
        dependencies=[Input(str(d.address), d.role) for d in res.dependencies],
        lifecycle=res.lifecycle.model_dump(exclude_defaults=True),
    )
    seen = obs.get(key)
    if rec is None or not rec.digest:
        change.action = Action.CREATE
        if rec is not None and rec.status == "tainted":
            why = f"{key} is tainted: its first apply failed; what it left behind is replaced"
            change.reasons.append(Reason(Why.TAINTED, why))
        else:
            change.reasons.append(Reason(Why.NEW, f"{key} is not in the state yet"))
    else:
        _plan_recorded(res, rec, change, current, changes, seen)
    if addr in req.replace and change.action in (Action.NOOP, Action.UPDATE):
        change.action, change.record_only = Action.REPLACE, False
        change.reasons = [r for r in change.reasons if r.code is not Why.RECORD]
        change.reasons.append(Reason(Why.REQUESTED, "replacement requested with --replace"))
    pending = rec.pending if rec is not None else None
    adoptable = seen is not None and seen.pending in ("running", "completed")
    if pending is not None and pending.digest == new and seen is not None and adoptable:
        message = seen.pending_message or "work left by an interrupted apply will be adopted"
        change.reasons.append(Reason(Why.ADOPT, message))
        if change.action is Action.NOOP or change.record_only:
            change.action = Action.CREATE if rec is None or not rec.digest else Action.UPDATE
            change.record_only = False
    return change.freeze()


def _plan_recorded(
    res: Resource,
    rec: ResourceRecord,
    change: _Draft,
    current: Digests,
    changes: Mapping[str, ResourceChange],
    seen: Observation | None,
) -> None:
    """The action for a resource the state records as completed (see the module docstring)."""
    change.before, change.digest_before = rec.spec, rec.digest
    addr = res.address
    same = current.same(addr, rec)
    if not same:
        in_place = not replaces_on_change(res.kind)
        change.action = Action.UPDATE if in_place else Action.REPLACE
        # a secret recorded in another form of fingerprint is not a changed secret
        before = align(rec.spec, change.after, res.secrets, current.salt)
        change.reasons.extend(
            _why(res, rec, before, change, current.new, changes),
        )
        if not in_place:
            change.replace_paths = [r.path for r in change.reasons if r.path]
    elif rec.status == "tainted":
        change.action = Action.REPLACE
        why = f"{change.address} is tainted: its last apply failed"
        change.reasons.append(Reason(Why.TAINTED, why))
    elif seen is not None and seen.status == "missing":
        change.action = Action.CREATE
        change.reasons.append(Reason(Why.DRIFT, seen.message or "deleted outside substratus"))
    elif seen is not None and seen.status in ("degraded", "changed"):
        change.action = Action.REPLACE if replaces_on_change(res.kind) else Action.UPDATE
        change.reasons.append(Reason(Why.DRIFT, seen.message or "unhealthy"))
    else:
        record = _record_changes(rec, change)
        if record:
            change.action, change.record_only = Action.UPDATE, True
            change.reasons.extend(record)


def _record_changes(rec: ResourceRecord, change: _Draft) -> list[Reason]:
    """Why the record of an unchanged resource must be rewritten (nothing runs for it)."""
    out: list[Reason] = []
    keys = sorted(
        k
        for k in set(rec.lifecycle) | set(change.lifecycle)
        if rec.lifecycle.get(k) != change.lifecycle.get(k)
    )
    if keys:
        out.append(Reason(Why.RECORD, f"lifecycle changed ({', '.join(keys)}); nothing runs"))
    if rec.spec != change.after:
        paths = field_changes(rec.spec, change.after or {})
        settings = [p for p in paths if _record_only_path(p)]
        if settings:
            out.append(Reason(Why.RECORD, f"{', '.join(settings)} {_SETTING}; nothing runs"))
        rest = [p for p in paths if not _record_only_path(p)]
        if rest or not settings:
            shown = ", ".join(rest) or "the spec"
            out.append(Reason(Why.RECORD, f"{shown} recorded anew (same content); nothing runs"))
    if rec.dependencies != change.depends_on:
        renamed = f"{', '.join(rec.dependencies) or '(none)'} → {', '.join(change.depends_on)}"
        out.append(Reason(Why.RECORD, f"its inputs were renamed ({renamed}); nothing runs"))
    if not out and rec.digest != change.digest_after:
        why = (
            "its digest is recorded in the current format; nothing runs"
            if rec.digest_format < DIGEST_FORMAT
            else "an input's sensitive: marking changed, so its digest is recorded anew; "
            "nothing runs"
        )
        out.append(Reason(Why.RECORD, why))
    return out


_SETTING = "changed: how often a failed run starts again, not what it makes"


def _record_only_path(path: str) -> bool:
    """A field of ``kinds.RECORD_ONLY_FIELDS``: a change of it runs nothing by itself."""
    return any(path == f"spec.{f}" for f in RECORD_ONLY_FIELDS)


def _why(
    res: Resource,
    rec: ResourceRecord,
    before: Mapping[str, Any],
    change: _Draft,
    digests: Mapping[Address, str],
    changes: Mapping[str, ResourceChange],
) -> list[Reason]:
    """Why a recorded resource changed: the fields that differ from ``before`` (its recorded
    spec, as ``sensitive.align`` writes it), and the inputs whose digests changed."""
    reasons: list[Reason] = []
    ignored, deps = res.lifecycle.ignoreChanges, res.dependencies
    for path in field_changes(before, change.after or {}):
        if any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in ignored):
            continue
        if _record_only_path(path):  # changed too, but it forces nothing
            reasons.append(Reason(Why.RECORD, f"{path} {_SETTING}"))
            continue
        if change.kind == "build":
            reasons.append(Reason(Why.SOURCE_CHANGED, f"{path} changed (new source content)", path))
        else:
            reasons.append(Reason(Why.FIELD_CHANGED, f"{path} changed", path))
    for dep in deps:
        dep_addr = dep.address
        old = rec.dependency_digests.get(str(dep_addr))
        if old is not None and old != digests.get(dep_addr):
            upstream = changes.get(str(dep_addr))
            paths = [r.path for r in upstream.reasons if r.path] if upstream else []
            detail = f" ({', '.join(paths)})" if paths else ""
            verb = IN_PLACE_VERB.get(change.kind)
            msg = (
                f"{dep_addr} changed{detail}; the new version will be {verb}"
                if verb
                else f"{dep_addr} changed{detail}"
            )
            reasons.append(Reason(Why.DEPENDENCY_CHANGED, msg, address=str(dep_addr)))
    if all(r.code is Why.RECORD for r in reasons):
        reasons.append(Reason(Why.FIELD_CHANGED, "the resource's definition changed"))
    return reasons


def _delete(
    rec: ResourceRecord,
    key: str,
    code: Why,
    message: str,
    errors: list[Diagnostic],
    lifecycle: dict[str, object] | None = None,
) -> ResourceChange:
    """A delete; ``lifecycle``: the configured one, which wins over the recorded one (a
    resource still in the configuration is destroyed as it is configured now)."""
    lifecycle = dict(rec.lifecycle) if lifecycle is None else lifecycle
    if lifecycle.get("preventDestroy"):
        errors.append(
            Diagnostic.error(
                "Resource cannot be destroyed",
                f"{key} has lifecycle.preventDestroy set, but the plan would destroy it "
                f"({message}). Set preventDestroy: false and apply first, or remove it from the "
                f"state with `substratus state rm {key}` to keep it running unmanaged.",
                address=key,
            )
        )
    return ResourceChange(
        address=key,
        kind=rec.kind,
        namespace=rec.namespace,
        name=rec.name,
        action=Action.DELETE,
        reasons=[Reason(code, message)],
        before=rec.spec,
        digest_before=rec.digest,
        dependencies=[Input(d) for d in rec.dependencies],
        lifecycle=lifecycle,
    )


def _reverse_state_order(records: Mapping[str, ResourceRecord], subset: set[str]) -> list[str]:
    g: Graph[str] = Graph(subset)
    for a in subset:
        for d in records[a].dependencies:
            if d in subset:
                g.add_edge(d, a)
    return list(reversed(topological(g)))


def _plan_destroy(
    req: PlanRequest,
    graph: Graph[Address],
    records: Mapping[str, ResourceRecord],
    changes: dict[str, ResourceChange],
    errors: list[Diagnostic],
) -> None:
    import networkx as nx  # destroy plans only: a plan of the configuration does without it

    subset = set(records)
    if req.targets:
        dependents = nx.DiGraph()
        for a, rec in records.items():
            dependents.add_node(a)
            for d in rec.dependencies:
                dependents.add_edge(d, a)
        subset = set()
        for t in req.targets:
            if str(t) in dependents:
                subset |= {str(t)} | set(nx.descendants(dependents, str(t)))
        subset &= set(records)
    configured = {str(a): r.lifecycle for a, r in req.config.resources.items()}
    for a in _reverse_state_order(records, subset):
        lifecycle = configured[a].model_dump(exclude_defaults=True) if a in configured else None
        changes[a] = _delete(records[a], a, Why.DESTROY, "destroy requested", errors, lifecycle)


def _drift(
    records: Mapping[str, ResourceRecord], obs: Mapping[str, Observation], mode: Mode
) -> list[Drift]:
    out: list[Drift] = []
    for key in sorted(obs):
        o = obs[key]
        if key not in records:
            continue
        if o.status != "present":
            out.append(Drift(key, DriftStatus(o.status), o.message))
        if o.pending != "none" and records[key].pending is not None:
            out.append(Drift(key, DriftStatus(f"pending-{o.pending}"), o.pending_message))
    return out
