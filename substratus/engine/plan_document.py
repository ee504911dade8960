"""The plan document: the JSON ``plan --out`` writes and ``apply PLANFILE`` reads (DESIGN §5).

``PlanDocument`` is the pydantic model of the stable, versioned document: its fields, in the
order the file lists them, are ``format_version``, ``substratus_version``, ``created_at``,
``mode``, ``workspace``, ``prior_state`` (``lineage``, ``serial``), ``config_digest``,
``config_files``, ``targets``, ``replace``, ``refresh``, ``settings``, ``resource_changes``,
``drift``, ``summary``, ``warnings`` and ``estimate`` (``{}`` when not estimated). A change
(``ChangeDocument``) writes Terraform's ``actions`` (a replace is ``["delete", "create"]``), its
reasons without unset keys, and its one dependency list as ``depends_on`` (the addresses) and
``inputs`` (role → address). ``plan_text(plan)`` is the file (``plan_sha256`` its hash,
``plan_dict`` its parsed form, ``change_dict`` one change's); ``parse_plan(text)`` parses
one, refusing another ``format_version`` or a malformed document with a ``ValueError``
that says why. Pure; no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from substratus import __version__
from substratus.engine.diagnostic import Diagnostic
from substratus.engine.plan import (
    PLAN_FORMAT_VERSION,
    Action,
    Drift,
    DriftStatus,
    Input,
    Mode,
    Plan,
    PlanSettings,
    Reason,
    ReasonCode,
    ResourceChange,
)
from substratus.engine.plan_estimate import Estimate


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _diagnostic(value: object) -> Diagnostic:
    if isinstance(value, Diagnostic):
        return value
    if not isinstance(value, dict):
        raise ValueError("a warning is not an object")
    return Diagnostic.from_json(value)


DiagnosticField = Annotated[
    Diagnostic, PlainValidator(_diagnostic), PlainSerializer(lambda d: d.to_json())
]
EstimateField = Annotated[
    Estimate | None,
    BeforeValidator(lambda v: v or None),
    PlainSerializer(lambda e: {} if e is None else e.to_json()),
]


class ReasonDocument(_Doc):
    code: ReasonCode
    message: str
    path: str | None = None
    address: str | None = None

    @model_serializer(mode="wrap")
    def _set_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChangeDocument(_Doc):
    address: str
    kind: str
    namespace: str
    name: str
    reasons: list[ReasonDocument] = []
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    digest_before: str | None = None
    digest_after: str | None = None
    replace_paths: list[str] = []
    depends_on: list[str] = []
    inputs: dict[str, str] = {}
    lifecycle: dict[str, Any] = {}
    outputs: dict[str, Any] | None = None
    record_only: bool = False
    actions: list[str]

    @classmethod
    def of(cls, c: ResourceChange) -> ChangeDocument:
        return cls(
            address=c.address,
            kind=c.kind,
            namespace=c.namespace,
            name=c.name,
            reasons=[ReasonDocument(code=r.code, message=r.message, path=r.path, address=r.address)
                     for r in c.reasons],
            before=c.before,
            after=c.after,
            digest_before=c.digest_before,
            digest_after=c.digest_after,
            replace_paths=list(c.replace_paths),
            depends_on=c.depends_on,
            inputs=c.inputs,
            lifecycle=c.lifecycle,
            outputs=c.outputs,
            record_only=c.record_only,
            actions=c.action.json_actions,
        )  # fmt: skip

    def dump(self) -> dict[str, Any]:
        return self.model_dump()

    def change(self) -> ResourceChange:
        return ResourceChange(
            address=self.address,
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            action=Action.from_json_actions(self.actions),
            reasons=[Reason(r.code, r.message, r.path, r.address) for r in self.reasons],
            before=self.before,
            after=self.after,
            digest_before=self.digest_before,
            digest_after=self.digest_after,
            replace_paths=self.replace_paths,
            dependencies=self._dependencies(),
            lifecycle=self.lifecycle,
            outputs=self.outputs,
            record_only=self.record_only,
        )

    def _dependencies(self) -> list[Input]:
        """The one list ``depends_on`` and ``inputs`` were written from."""
        role = {address: r for r, address in self.inputs.items()}
        if len(role) != len(self.inputs) or not role.keys() <= set(self.depends_on):
            raise ValueError(f"{self.address}: its inputs do not match its depends_on")
        deps = [Input(a, role.get(a)) for a in self.depends_on]
        if len({d.address for d in deps}) != len(deps):
            raise ValueError(f"{self.address}: depends_on names an address twice")
        return deps


class DriftDocument(_Doc):
    address: str
    status: DriftStatus
    message: str


class PriorState(_Doc):
    lineage: str | None
    serial: int | None


class PlanDocument(_Doc):
    model_config = ConfigDict(frozen=True, extra="ignore")

    format_version: str = PLAN_FORMAT_VERSION
    substratus_version: str = ""
    created_at: str = ""
    mode: Mode
    workspace: str = "default"
    prior_state: PriorState
    config_digest: str
    config_files: list[str] = []
    targets: list[str] = []
    replace: list[str] = []
    refresh: bool = True
    settings: Annotated[PlanSettings, PlainSerializer(lambda s: s.to_json())] = PlanSettings()
    resource_changes: list[ChangeDocument]
    drift: list[DriftDocument] = []
    summary: dict[str, int] = {}  # written for readers; derived from the changes, never read
    warnings: list[DiagnosticField] = []
    estimate: EstimateField = None

    @classmethod
    def of(cls, plan: Plan) -> PlanDocument:
        return cls(
            substratus_version=plan.substratus_version,
            created_at=plan.created_at,
            mode=plan.mode,
            workspace=plan.workspace,
            prior_state=PriorState(lineage=plan.prior_lineage, serial=plan.prior_serial),
            config_digest=plan.config_digest,
            config_files=list(plan.config_files),
            targets=list(plan.targets),
            replace=list(plan.replace),
            refresh=plan.refresh,
            settings=plan.settings,
            resource_changes=[ChangeDocument.of(c) for c in plan.resource_changes],
            drift=[DriftDocument(address=d.address, status=d.status, message=d.message)
                   for d in plan.drift],
            summary=plan.summary(),
            warnings=list(plan.warnings),
            estimate=plan.estimate,
        )  # fmt: skip

    def dump(self) -> dict[str, Any]:
        return self.model_dump()

    def text(self) -> str:
        return json.dumps(self.dump(), indent=2, sort_keys=False) + "\n"

    def plan(self) -> Plan:
        return Plan(
            mode=self.mode,
            resource_changes=[c.change() for c in self.resource_changes],
            drift=[Drift(d.address, d.status, d.message) for d in self.drift],
            prior_lineage=self.prior_state.lineage,
            prior_serial=self.prior_state.serial,
            config_digest=self.config_digest,
            config_files=self.config_files,
            workspace=self.workspace,
            targets=self.targets,
            replace=self.replace,
            refresh=self.refresh,
            settings=self.settings,
            warnings=self.warnings,
            created_at=self.created_at,
            substratus_version=self.substratus_version,
            estimate=self.estimate,
        )


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The plan document of ``plan`` as a dict (the file's JSON, parsed)."""
    return PlanDocument.of(plan).dump()


def plan_text(plan: Plan) -> str:
    """The plan file's text: the document as indented JSON with a final newline."""
    return PlanDocument.of(plan).text()


def plan_sha256(plan: Plan) -> str:
    """SHA-256 (hex) of ``plan_text(plan)``: what ``--expect-sha256`` and PR comments pin."""
    return hashlib.sha256(plan_text(plan).encode()).hexdigest()


def change_dict(change: ResourceChange) -> dict[str, Any]:
    """One change as the plan document writes it (also the ``planned_change`` event's body)."""
    return ChangeDocument.of(change).dump()


def parse_plan(text: str) -> Plan:
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
        return PlanDocument.model_validate(d).plan()
    except (ValidationError, ValueError) as exc:
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
