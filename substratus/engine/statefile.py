"""The state: what the last apply did, per resource.

``StateFile`` is the value every backend stores and every plan is made against. Its contract
(DESIGN §7): ``version`` is the format version, ``lineage`` is a UUID fixed when the state is first
created, ``serial`` increases by one on every write. Records are keyed by address string.

A ``ResourceRecord`` holds the canonical spec that was applied, its digest, its dependencies
(addresses), the outputs the runtime returned (artifact URL, endpoint, pid, …), a status
(``ready`` or ``tainted``) and, while an apply of it is under way, a ``pending`` operation with the
intent the runtime recorded *before* starting (deterministic names), so a later run can find or
adopt what an interrupted apply left behind.

Versions: every run of a resource makes a new *version* (``{digest[:16]}-{token}``, see
``new_version``), named before it starts and recorded in the pending operation, so a requested
replacement, or a second state sharing the artifact store, never reuses (or collides with) an
existing version. A record lists in ``versions`` every version this state created for the resource
and has not removed yet: garbage collection and destroy remove only those (``garbage``), never what
another state made. ``version`` is the one its outputs point at, ``previous_version`` the one before
it; both are kept (``keep``). Records written before versions existed have ``version == ""``: their
version is the digest's first 16 characters (``legacy_version``). ``digest_format`` says how
``digest`` was computed (``engine.digest``); records without it are format 1. This module does no
I/O.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from substratus import __version__
from substratus.engine.kinds import kept_versions
from substratus.engine.plan import Action
from substratus.engine.sensitive import new_salt

STATE_FORMAT_VERSION = 1
# How new records' digests are computed (engine.digest): 2 since digests stopped depending on
# build addresses, ``ignoreChanges`` and ``sensitive:`` marking; 3 since a sensitive param counts
# by its salted fingerprint, not its value (format 2 records of resources without one are current
# as they are: their digests are the same). Records without it are format 1.
DIGEST_FORMAT = 3


def legacy_version(digest: str) -> str:
    """The version name of a run made before versions existed: the digest's first 16 chars."""
    return digest.split(":", 1)[-1][:16]


def new_version(digest: str) -> str:
    """A fresh version name for a run at ``digest``: unique, and sorted by nothing but chance."""
    return f"{legacy_version(digest)}-{secrets.token_hex(3)}"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PendingOperation(BaseModel):
    """An apply of this resource that started and has not been recorded as finished."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    digest: str
    spec: dict[str, Any]
    dependencies: list[str] = Field(default_factory=list)
    started_at: str
    intent: dict[str, Any] = Field(default_factory=dict)
    version: str = ""  # the version this run makes ("" in states written before versions)

    @property
    def run_version(self) -> str:
        return self.version or legacy_version(self.digest)


class AttemptRecord(BaseModel):
    """A failed attempt of a run (``engine.attempts``): its number, why it failed, and whether
    it counted against ``spec.retries`` (a disruption does not)."""

    model_config = ConfigDict(extra="forbid")

    attempt: int
    reason: str
    counted: bool | None = None  # None: it counted


class RunRecord(BaseModel):
    """The outcome of the last run of a resource (used for duration estimates: a succeeded
    run's ``seconds`` span all its attempts). ``attempts`` and ``failed_attempts`` are set
    when an attempt failed (``spec.retries``); None: one attempt, which is the outcome."""

    model_config = ConfigDict(extra="forbid")

    started_at: str
    finished_at: str
    outcome: Literal["succeeded", "failed"]
    seconds: float
    attempts: int | None = None
    failed_attempts: list[AttemptRecord] | None = None


class ResourceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    namespace: str
    name: str
    spec: dict[str, Any] = Field(default_factory=dict)
    digest: str = ""
    dependencies: list[str] = Field(default_factory=list)
    # Digest of each dependency when this resource was applied (explains "because X changed").
    dependency_digests: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    status: Literal["ready", "tainted", "pending"] = "ready"
    applied_at: str | None = None
    lifecycle: dict[str, Any] = Field(default_factory=dict)
    previous_digest: str | None = None
    pending: PendingOperation | None = None
    last_run: RunRecord | None = None
    last_success: RunRecord | None = (
        None  # the last run that succeeded (durations survive a failure)
    )
    version: str = ""  # the version the outputs point at ("" before versions: legacy_version)
    previous_version: str | None = None
    versions: list[str] = Field(default_factory=list)  # created by this state, not yet removed
    digest_format: int = 1

    @property
    def current_version(self) -> str | None:
        """The version the outputs point at (None when nothing completed)."""
        if self.version:
            return self.version
        return legacy_version(self.digest) if self.digest else None

    @property
    def prior_version(self) -> str | None:
        """The version before the current one (kept for a roll-back)."""
        if self.previous_version or self.version:
            return self.previous_version
        return legacy_version(self.previous_digest) if self.previous_digest else None

    def keep(self) -> set[str]:
        """Versions garbage collection must keep: current, previous and one being made."""
        pending = self.pending.run_version if self.pending is not None else None
        return kept_versions(self.current_version, self.prior_version, pending)

    def owned_versions(self) -> list[str]:
        """Every version this state created for the resource, known versions first."""
        known = [self.current_version, self.prior_version]
        if self.pending is not None:
            known.append(self.pending.run_version)
        return list(dict.fromkeys(v for v in [*self.versions, *known] if v))

    def garbage(self) -> list[str]:
        """Versions this state created and no longer needs."""
        kept = self.keep()
        return [v for v in self.versions if v not in kept]


class StateFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = STATE_FORMAT_VERSION
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    substratus_version: str = __version__
    resources: dict[str, ResourceRecord] = Field(default_factory=dict)
    # Salts the fingerprints of sensitive params (engine.sensitive): random, made by the first
    # write that records one (``ensure_salt``), kept by every write after; never in a plan.
    salt: str | None = None

    @classmethod
    def new(cls) -> StateFile:
        return cls()

    def ensure_salt(self) -> str:
        """The state's salt, made now if it has none yet."""
        if self.salt is None:
            self.salt = new_salt()
        return self.salt

    def to_json(self) -> str:
        """Deterministic UTF-8 JSON (sorted addresses, 2-space indent, trailing newline)."""
        ordered = self.model_copy(update={"resources": dict(sorted(self.resources.items()))})
        return ordered.model_dump_json(indent=2, exclude_none=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> StateFile:
        """Parse a state document; raises ``ValueError`` with a readable reason."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the state is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError("the state is not a JSON object")
        version = data.get("version")
        if version != STATE_FORMAT_VERSION:
            raise ValueError(
                f"state format version {version!r} is not supported by substratus {__version__} "
                f"(it reads version {STATE_FORMAT_VERSION}); upgrade substratus"
            )
        try:
            return cls.model_validate(data)
        except Exception as exc:  # pydantic.ValidationError
            raise ValueError(f"the state document is malformed: {exc}") from exc

    # -- transitions (made by the walker, engine.apply) --------------------------------------------
    # Each replaces the record it changes, never edits one in place: a record in ``resources``
    # never changes, so a shallow copy of the state is a consistent view of it (the walker
    # writes such a copy while other runs go on).
    def begin(
        self, address: str, kind: str, namespace: str, name: str, pending: PendingOperation
    ) -> None:
        """A run of ``address`` starts: its pending operation, and the version it makes, are
        recorded (a resource without a record gets one with status ``pending``)."""
        rec = self.resources.get(address)
        if rec is None:
            rec = ResourceRecord(kind=kind, namespace=namespace, name=name, status="pending")
        versions = list(rec.versions)
        if pending.run_version not in versions:
            versions.append(pending.run_version)
        self.resources[address] = rec.model_copy(update={"pending": pending, "versions": versions})

    def complete(self, address: str, record: ResourceRecord) -> None:
        """A run completed (or a record-only update was made): ``record`` is its record now."""
        self.resources[address] = record

    def fail(self, address: str, run: RunRecord) -> bool:
        """A run failed: it is the record's ``last_run``. A resource that never completed is
        ``tainted`` and keeps its pending intent (what the run left behind is replaced by the
        next apply, removed by destroy); one that did keeps its record, without the pending
        operation. False (nothing changed) when there is no record."""
        rec = self.resources.get(address)
        if rec is None:
            return False
        ended = {"status": "tainted"} if not rec.digest else {"pending": None}
        self.resources[address] = rec.model_copy(update={"last_run": run, **ended})
        return True

    def remove(self, address: str) -> bool:
        """The resource was deleted (or found gone): its record goes. False when there was none."""
        return self.resources.pop(address, None) is not None

    def drop_versions(self, removed: set[tuple[str, str]]) -> list[str]:
        """Garbage collection removed these ``(address, version)``s: they leave ``versions``.
        Returns the addresses whose record changed, sorted."""
        changed: set[str] = set()
        for address, version in sorted(removed):
            rec = self.resources.get(address)
            if rec is not None and version in rec.versions:
                kept = [v for v in rec.versions if v != version]
                self.resources[address] = rec.model_copy(update={"versions": kept})
                changed.add(address)
        return sorted(changed)
