"""The plan: a value (DESIGN §5). Rendering, saving and applying all take the same ``Plan``.

``ResourceChange`` field semantics per action: ``before`` is ``None`` for create/read, ``after``
is ``None`` for delete, both are the canonical specs otherwise. ``digest_before``/``digest_after``
likewise. ``reasons`` are for humans (apply never branches on them). ``inputs`` maps a runtime role
(``build``, ``data``, ``model``) to the address whose outputs feed it. ``record_only`` marks an
``update`` that only rewrites the resource's record (lifecycle, ``sensitive:`` marking, the digest's
format, renamed inputs): nothing runs, nothing restarts. ``Plan.to_json`` writes the
stable, versioned plan document; ``Plan.from_json`` reads it back and refuses other format versions.
``check_fresh`` is the staleness rule of ``apply PLANFILE``.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from substratus import __version__
from substratus.engine.diagnostic import Diagnostic

PLAN_FORMAT_VERSION = "1.0"


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    READ = "read"
    NOOP = "no-op"

    @property
    def json_actions(self) -> list[str]:
        return {
            Action.CREATE: ["create"],
            Action.UPDATE: ["update"],
            Action.REPLACE: ["delete", "create"],
            Action.DELETE: ["delete"],
            Action.READ: ["read"],
            Action.NOOP: ["no-op"],
        }[self]

    @classmethod
    def from_json_actions(cls, actions: list[str]) -> Action:
        for a in cls:
            if a.json_actions == actions:
                return a
        raise ValueError(f"unknown actions {actions!r}")


class Mode(enum.Enum):
    NORMAL = "normal"
    DESTROY = "destroy"
    REFRESH_ONLY = "refresh-only"


@dataclass(frozen=True)
class Reason:
    code: str  # new | field_changed | dependency_changed | source_changed | drift | tainted |
    #            requested | not_in_config | destroy | adopt | external | record
    message: str
    path: str | None = None
    address: str | None = None


@dataclass
class ResourceChange:
    address: str
    kind: str
    namespace: str
    name: str
    action: Action
    reasons: list[Reason] = field(default_factory=list)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    digest_before: str | None = None
    digest_after: str | None = None
    replace_paths: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    lifecycle: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None  # read: what was read; otherwise prior outputs
    record_only: bool = False  # an update of the record alone: nothing runs

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["actions"] = self.action.json_actions
        del d["action"]
        d["reasons"] = [{k: v for k, v in asdict(r).items() if v is not None} for r in self.reasons]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ResourceChange:
        d = dict(d)
        action = Action.from_json_actions(d.pop("actions"))
        reasons = [Reason(**r) for r in d.pop("reasons", [])]
        return cls(action=action, reasons=reasons, **d)


@dataclass(frozen=True)
class Drift:
    address: str
    status: str  # missing | degraded | changed | pending-running | pending-completed | pending-gone
    message: str


@dataclass
class Plan:
    mode: Mode
    resource_changes: list[ResourceChange]
    drift: list[Drift] = field(default_factory=list)
    prior_lineage: str | None = None
    prior_serial: int | None = None
    config_digest: str = ""
    config_files: list[str] = field(default_factory=list)
    workspace: str = "default"
    targets: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)  # --replace addresses
    refresh: bool = True  # made with a refresh (--no-refresh: False)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    created_at: str = ""
    substratus_version: str = __version__
    estimate: dict[str, Any] = field(default_factory=dict)

    # -- views --------------------------------------------------------------------------------
    def changes(self) -> list[ResourceChange]:
        """Changes that do something (no no-ops, no reads)."""
        return [c for c in self.resource_changes if c.action not in (Action.NOOP, Action.READ)]

    def runs(self) -> list[ResourceChange]:
        """Changes that run or restart a workload (no deletes, no record-only updates)."""
        return [c for c in self.changes() if c.action is not Action.DELETE and not c.record_only]

    def summary(self) -> dict[str, int]:
        add = change = destroy = replace = 0
        for c in self.resource_changes:
            if c.action is Action.CREATE:
                add += 1
            elif c.action is Action.UPDATE:
                change += 1
            elif c.action is Action.DELETE:
                destroy += 1
            elif c.action is Action.REPLACE:
                add += 1
                destroy += 1
                replace += 1
        return {"add": add, "change": change, "destroy": destroy, "replace": replace}

    @property
    def has_changes(self) -> bool:
        """Whether applying this plan would do anything (drift counts in refresh-only mode)."""
        if self.mode is Mode.REFRESH_ONLY:
            return bool(self.drift)
        return bool(self.changes())

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "substratus_version": self.substratus_version,
            "created_at": self.created_at,
            "mode": self.mode.value,
            "workspace": self.workspace,
            "prior_state": {"lineage": self.prior_lineage, "serial": self.prior_serial},
            "config_digest": self.config_digest,
            "config_files": self.config_files,
            "targets": self.targets,
            "replace": self.replace,
            "refresh": self.refresh,
            "settings": self.settings,
            "resource_changes": [c.to_json() for c in self.resource_changes],
            "drift": [asdict(d) for d in self.drift],
            "summary": self.summary(),
            "warnings": [w.to_json() for w in self.warnings],
            "estimate": self.estimate,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Parse a saved plan; raises ``ValueError`` with a readable reason."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a plan file: invalid JSON ({exc})") from exc
        if not isinstance(d, dict) or "format_version" not in d:
            raise ValueError("not a substratus plan file (no format_version)")
        if d["format_version"] != PLAN_FORMAT_VERSION:
            raise ValueError(_other_format(d["format_version"]))
        try:
            return cls(
                mode=Mode(d["mode"]),
                resource_changes=[ResourceChange.from_json(c) for c in d["resource_changes"]],
                drift=[Drift(**x) for x in d.get("drift", [])],
                prior_lineage=d["prior_state"]["lineage"],
                prior_serial=d["prior_state"]["serial"],
                config_digest=d["config_digest"],
                config_files=list(d.get("config_files", [])),
                workspace=d.get("workspace", "default"),
                targets=list(d.get("targets", [])),
                replace=list(d.get("replace", [])),
                refresh=bool(d.get("refresh", True)),
                settings=dict(d.get("settings", {})),
                warnings=[Diagnostic.from_json(w) for w in d.get("warnings", [])],
                created_at=d.get("created_at", ""),
                substratus_version=d.get("substratus_version", ""),
                estimate=dict(d.get("estimate", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the plan file is malformed: {exc}") from exc


def _other_format(found: object) -> str:
    """Why a plan file of another format version is refused: who made it and what to do."""
    reads = f"substratus {__version__} reads {PLAN_FORMAT_VERSION}"
    try:
        older = _format_key(found) < _format_key(PLAN_FORMAT_VERSION)
    except ValueError:
        return f"plan format {found!r} is unknown ({reads}); run `substratus plan` again"
    if older:
        return (
            f"it was made by an older substratus (plan format {found}; {reads}); "
            "run `substratus plan` again"
        )
    return (
        f"it was made by a newer substratus (plan format {found}; {reads}); upgrade "
        "substratus, or run `substratus plan` again with this one"
    )


def _format_key(version: object) -> tuple[int, ...]:
    """``"1.0"`` → ``(1, 0)``; raises ``ValueError`` for anything else."""
    if not isinstance(version, str):
        raise ValueError(version)
    return tuple(int(part) for part in version.split("."))


def staleness(plan: Plan, lineage: str | None, serial: int | None) -> str | None:
    """Why ``plan`` can no longer be applied to a state at (lineage, serial), or None."""
    if plan.prior_lineage is not None and lineage is not None and plan.prior_lineage != lineage:
        return (
            "Saved plan does not match the given state: it was created from a different state "
            f"lineage ({plan.prior_lineage}, the state is {lineage}). Plan again against this "
            "state."
        )
    if plan.prior_serial != serial:
        return (
            "Saved plan is stale: the state was changed by another operation after the plan was "
            f"created (plan made at serial {plan.prior_serial}, the state is at serial {serial}). "
            "Run plan again and apply the new plan."
        )
    return None
