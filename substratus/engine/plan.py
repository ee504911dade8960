"""The plan: a value (DESIGN §5). Rendering, saving and applying all take the same ``Plan``.

``ResourceChange`` field semantics per action: ``before`` is ``None`` for create/read, ``after``
is ``None`` for delete, both are the canonical specs otherwise. ``digest_before``/``digest_after``
likewise. ``reasons`` are for humans (apply never branches on them). ``dependencies`` is the one
list of what the resource depends on, in order: each an address and, for a configured
resource, the runtime role (``build``, ``data``, ``model``) it feeds; ``depends_on`` (the
addresses) and ``inputs`` (role → address) are views of it. ``record_only`` marks an ``update``
that only rewrites the resource's record (lifecycle, ``sensitive:`` marking, the digest's
format, renamed inputs): nothing runs, nothing restarts.

A ``Plan`` and its ``ResourceChange``s are frozen: the plan is built complete (warnings,
settings, estimate) and never changed afterwards; derive another with ``dataclasses.replace``.
``Plan.to_json`` writes the stable, versioned plan document (``engine.plan_document``, through
pydantic); ``Plan.from_json`` reads it back and refuses other format versions. ``staleness`` is
the staleness rule of ``apply PLANFILE``.

``Action``, ``ReasonCode`` and ``DriftStatus`` are str-valued enums (their values are the plan
document's strings). How each action is shown — symbol, colour, headline, legend, progress verbs,
graph class and colours — is defined once, in ``ACTION_LOOK`` (``Action.look``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from substratus import __version__
from substratus.engine.action import ACTION_LOOK, SHOWN_ACTIONS, Action, ActionLook
from substratus.engine.diagnostic import Diagnostic

__all__ = [
    "ACTION_LOOK",
    "PLAN_FORMAT_VERSION",
    "SHOWN_ACTIONS",
    "Action",
    "ActionLook",
    "Drift",
    "DriftStatus",
    "Input",
    "Mode",
    "Plan",
    "PlanSettings",
    "Reason",
    "ReasonCode",
    "ResourceChange",
    "staleness",
]

if TYPE_CHECKING:
    from substratus.engine.plan_estimate import Estimate

PLAN_FORMAT_VERSION = "1.1"  # 1.1: digests keyed by the state's salt (engine.digest)


class Mode(enum.StrEnum):
    NORMAL = "normal"
    DESTROY = "destroy"
    REFRESH_ONLY = "refresh-only"


class ReasonCode(enum.StrEnum):
    NEW = "new"
    FIELD_CHANGED = "field_changed"
    DEPENDENCY_CHANGED = "dependency_changed"
    SOURCE_CHANGED = "source_changed"
    DRIFT = "drift"
    TAINTED = "tainted"
    REQUESTED = "requested"
    NOT_IN_CONFIG = "not_in_config"
    UNUSED_BUILD = "unused_build"  # an implicit build no configured resource uses any more
    DESTROY = "destroy"
    ADOPT = "adopt"
    EXTERNAL = "external"
    RECORD = "record"

    @property
    def is_field(self) -> bool:
        """A changed field (of the spec or of a build's source): its ``path`` is the field."""
        return self in (ReasonCode.FIELD_CHANGED, ReasonCode.SOURCE_CHANGED)


class DriftStatus(enum.StrEnum):
    MISSING = "missing"
    DEGRADED = "degraded"
    CHANGED = "changed"
    PENDING_RUNNING = "pending-running"
    PENDING_COMPLETED = "pending-completed"
    PENDING_GONE = "pending-gone"

    @property
    def verb(self) -> str:
        """What happened, after the address: "has been deleted", "has an interrupted … "."""
        if self is DriftStatus.MISSING:
            return "has been deleted"
        if self is DriftStatus.DEGRADED:
            return "is unhealthy"
        if self is DriftStatus.CHANGED:
            return "has changed"
        return f"has an interrupted operation ({self.value.removeprefix('pending-')})"


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    message: str
    path: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class Input:
    """One dependency of a change: the ``address`` it depends on and, for a configured
    resource, the runtime ``role`` (``build``, ``data``, ``model``) whose outputs it feeds."""

    address: str
    role: str | None = None


def _frozen(obj: object, name: str, value: object) -> None:
    # Normalises a sequence field to a tuple while a frozen value is being constructed.
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class ResourceChange:
    address: str
    kind: str
    namespace: str
    name: str
    action: Action
    reasons: Sequence[Reason] = ()
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    digest_before: str | None = None
    digest_after: str | None = None
    replace_paths: Sequence[str] = ()
    dependencies: Sequence[Input] = ()
    lifecycle: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None  # read: what was read; otherwise prior outputs
    record_only: bool = False  # an update of the record alone: nothing runs

    def __post_init__(self) -> None:
        for name in ("reasons", "replace_paths", "dependencies"):
            _frozen(self, name, tuple(getattr(self, name)))

    @property
    def depends_on(self) -> list[str]:
        """The addresses this change depends on, in order."""
        return [d.address for d in self.dependencies]

    @property
    def inputs(self) -> dict[str, str]:
        """Role → address of the dependencies that feed a runtime role."""
        return {d.role: d.address for d in self.dependencies if d.role is not None}


@dataclass(frozen=True)
class Drift:
    address: str
    status: DriftStatus
    message: str


class PlanSettings(BaseModel):
    """What a saved plan fixes about where it applies (``wiring.Resolved.as_plan_settings``):
    the state and artifact locations, the runtime and its options; ``None``: not set. The
    document writes the keys that were given (``PlanSettings()``: ``{}``, a plan made without
    settings, as the engine's tests make); unknown keys are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: str | None = None
    artifacts: str | None = None
    runtime: str | None = None
    workdir: str | None = None
    namespace: str | None = None
    base: str | None = None
    context: str | None = None
    cloud: str | None = None
    registry: str | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> PlanSettings:
        return cls.model_validate(dict(values))

    def to_json(self) -> dict[str, Any]:
        """The document's ``settings``: the keys given, in field order."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass(frozen=True)
class Plan:
    mode: Mode
    resource_changes: Sequence[ResourceChange]
    drift: Sequence[Drift] = ()
    prior_lineage: str | None = None
    prior_serial: int | None = None
    config_digest: str = ""
    config_files: Sequence[str] = ()
    workspace: str = "default"
    targets: Sequence[str] = ()
    replace: Sequence[str] = ()  # --replace addresses
    refresh: bool = True  # made with a refresh (--no-refresh: False)
    settings: PlanSettings = field(default_factory=PlanSettings)
    warnings: Sequence[Diagnostic] = ()
    created_at: str = ""
    substratus_version: str = __version__
    estimate: Estimate | None = None  # None: not estimated (the document's ``{}``)

    def __post_init__(self) -> None:
        for name in ("resource_changes", "drift", "config_files", "targets", "replace", "warnings"):
            _frozen(self, name, tuple(getattr(self, name)))

    # -- views --------------------------------------------------------------------------------
    def changes(self) -> list[ResourceChange]:
        """Changes that do something (no no-ops, no reads)."""
        return [c for c in self.resource_changes if c.action not in (Action.NOOP, Action.READ)]

    def runs(self) -> list[ResourceChange]:
        """Changes that run or restart a workload (no deletes, no record-only updates)."""
        return [c for c in self.changes() if c.action is not Action.DELETE and not c.record_only]

    def summary(self) -> dict[str, int]:
        """Counts as Terraform's: a replacement is one ``add`` and one ``destroy`` (and one
        ``replace``, so a reader can tell); ``render.summary_line`` says so in words."""
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

    def estimate_json(self) -> dict[str, Any]:
        """The document's ``estimate`` (``{}`` when the plan was not estimated)."""
        return {} if self.estimate is None else self.estimate.to_json()


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
