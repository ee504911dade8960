"""The Runtime protocol: how resources run. Implemented in ``substratus.runtimes``.

The engine hands a runtime fully resolved, typed requests and never branches on kinds or
runtimes itself; a runtime never touches the state or the graph. Contracts:

- ``check(resources)`` returns diagnostics (with ``address`` and field ``path``; the engine adds
  file:line) for resources this runtime cannot run, for example an image-only container on the
  local runtime. Pure; no side effects.
- ``refresh(records, owner)`` observes every recorded resource in one batch (a runtime lists what it
  manages once per kind, never one call per resource) and returns an ``Observation`` per address
  it was given: whether the recorded object still exists and is healthy, and — for a record with
  a ``pending`` operation — whether the work an interrupted apply started is still running, has
  completed (and can be adopted) or is gone. It is called by every refreshing plan, also with
  no records, so a runtime can fail early when it cannot reach where it runs.
- ``read_external(kind, namespace, name)`` finds a Dataset/Model that the configuration
  references but does not declare (an external dependency, the ``read`` action): its newest
  complete version in the artifact store (or cluster), or ``None`` when there is none.
- ``intent(request)`` returns the names of what ``apply`` will create (run directory, job name,
  port…), derived from ``request.version``. The engine records it in the state *before* calling
  ``apply``.
- ``apply(request, ctx)`` makes the resource exist at ``request.digest`` as the new version
  ``request.version`` and returns its outputs (JSON-serialisable: artifact URL, endpoint, pid…).
  Every call runs the workload into that version, except when the work of that very version was
  started by an interrupted apply (``request.intent`` is then given): a run still going is waited
  for, a completed one adopted — and only then may it say "adopted". It never reuses a version of
  another run, of another state, or of the same digest. It reports phases through ``ctx.phase``
  and raises ``Failure`` on failure (with the tail of the workload's log) or ``Detached`` when
  ``ctx.cancelled`` is set and it stopped waiting for work that continues on its own.
  Its messages (``Failure``, ``Detached``, phases, notices) never name ``request.address``:
  whoever shows them names the resource already (``model.x: detached after 1s: the job goes
  on as pid …``); the walker drops a leading ``ADDRESS: `` that slips through
  (``engine.apply.said_once``).
- ``delete(request, ctx)`` removes what ``apply`` created — the versions in
  ``request.versions``, never another state's, and none another state holds — (keeping artifacts
  when asked) and waits until it is gone. Deleting something already gone is not an error.
- ``hold(owner, held)`` records ``held`` — the versions of other states' resources that this
  state's resources use (external dependencies) — as this state's holds in the artifact store,
  replacing the ones it recorded before, so that their owners keep them. Called before an apply
  runs anything (with what it will use) and after it.
- ``collect_garbage(owner, garbage)`` removes the versions in ``garbage`` (which this state
  created and no longer needs, see ``StateFile``) except those another state holds or that are
  still running, and returns the ``(address, version)`` pairs it removed (or found gone). Called
  after a successful apply. Best effort: what it cannot remove now is tried again next time.
- Ownership: whatever a runtime creates carries ``owner`` (the state's lineage and workspace);
  it deletes and garbage-collects only what this state created (``DeleteRequest.versions``,
  ``garbage``) and never what another state still holds.
- ``conflicts(runs, owner)`` (optional: runtimes may lack it) returns an error diagnostic (with
  the run's ``address``) for every object a planned run (``PlannedRun``: a create, update or
  replace the plan will run) would have to create or change that exists and does not carry
  ``owner`` — another state's, or not made by substratus: ``apply`` would refuse to take it
  over. The engine calls it after planning (refreshing plans only) and before a saved plan is
  applied, so such a plan fails before anything runs. A bounded number of requests, not one per
  run (the Kubernetes runtime lists each kind once per namespace).
- ``capacity()`` (optional: runtimes may lack it) returns the ``Capacity`` observed by the last
  ``refresh`` (no extra call of its own), or ``None`` when it is not known (no refresh yet); a
  ``Capacity`` with ``unknown_reason`` when the refresh could not observe it and can say why.
- ``logs(request, cancelled)`` (``LogSource``, optional: runtimes may lack it) yields the lines
  (without their newline) of the output of the run ``request`` names (``LogRequest.of``
  chooses it from a record read without the state lock): the last ``tail`` lines, or all;
  with ``follow``, then the lines written later, until the workload ends (or ``cancelled``
  is set). Output of more than one process or pod comes with each line prefixed by its
  name. It raises ``NoLog`` (one sentence: what and what to do) when there is nothing to
  read — yet, or at all — and ``Failure`` when it cannot read what is there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from substratus.engine.action import Action
from substratus.engine.attempts import FailedAttempt
from substratus.engine.diagnostic import Diagnostic

if TYPE_CHECKING:  # the state's models (pydantic): validating a configuration needs none
    from substratus.engine.statefile import ResourceRecord


@dataclass(frozen=True)
class Owner:
    """The state a runtime acts for: its lineage (None before the state's first write) and
    workspace. What a runtime creates carries it; it removes only what carries it."""

    lineage: str | None = None
    workspace: str = "default"


@dataclass(frozen=True)
class RunRequest:
    """Everything a runtime needs to make one resource exist at one digest."""

    address: str
    kind: str  # build | dataset | model | modelserver | notebook
    namespace: str
    name: str
    digest: str
    spec: Mapping[str, Any]  # canonical spec, defaults filled (see engine.spec)
    # Outputs of the resources this one depends on, by role: "build", "data", "model".
    inputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    action: Action = Action.CREATE  # create | update | replace
    prior_outputs: Mapping[str, Any] | None = None  # what the last apply recorded (update/replace)
    intent: Mapping[str, Any] | None = None  # left by an interrupted apply at the same digest
    config_dir: str = "."  # directory the configuration was loaded from
    version: str = ""  # the version this run makes (StateFile); "" = the digest's first 16
    owner: Owner = field(default_factory=Owner)
    # The params marked sensitive, as their ``sensitive:`` paths (``spec.loader.params.token``):
    # their values in ``spec`` are real (revealed); a runtime must not write them where anyone
    # who may read its ordinary objects can read them (Kubernetes: a Secret, not a ConfigMap).
    sensitive: frozenset[str] = frozenset()

    @property
    def run_version(self) -> str:
        return self.version or self.digest.split(":", 1)[-1][:16]


@dataclass(frozen=True)
class ResourceView:
    """A configured resource as ``Runtime.check`` sees it (canonical spec, defaults filled)."""

    address: str
    kind: str
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class PlannedRun:
    """A resource a plan will run (create, update or replace), as ``conflicts`` sees it."""

    address: str
    kind: str
    namespace: str
    name: str
    action: Action  # create | update | replace
    spec: Mapping[str, Any]  # canonical spec, defaults filled
    recorded: bool = False  # the state records it: what it made before is this state's


@dataclass(frozen=True)
class DeleteRequest:
    address: str
    kind: str
    namespace: str
    name: str
    digest: str
    spec: Mapping[str, Any]
    outputs: Mapping[str, Any]
    retain_artifacts: bool = False
    intent: Mapping[str, Any] | None = None
    versions: tuple[str, ...] = ()  # every version of it this state created (remove only those)
    owner: Owner = field(default_factory=Owner)


@dataclass(frozen=True)
class Garbage:
    """A version a state created and no longer needs (``ResourceRecord.garbage``)."""

    address: str
    kind: str
    namespace: str
    name: str
    version: str


@dataclass(frozen=True)
class Held:
    """A version of a resource outside this state (an external dependency) that a resource of
    this state uses: its owner must not remove it."""

    kind: str
    namespace: str
    name: str
    version: str


@dataclass(frozen=True)
class Observation:
    """What a refresh found for one recorded resource."""

    # present: exists and healthy; missing: deleted outside substratus; degraded: exists,
    # unhealthy; changed: its artifacts were changed outside substratus
    status: Literal["present", "missing", "degraded", "changed"] = "present"
    message: str = ""  # human text for drift, e.g. "process 1234 is not running"
    # For a record with a pending operation: what became of the interrupted work.
    pending: Literal["none", "running", "completed", "gone"] = "none"
    pending_message: str = ""
    outputs: Mapping[str, Any] | None = None  # outputs as observed now, when they differ


@dataclass(frozen=True)
class ExternalResource:
    """A resource that exists outside the configuration (found by ``read_external``)."""

    digest: str  # identifies the version read (e.g. its artifact version)
    outputs: Mapping[str, Any]


@dataclass
class RunContext:
    """Passed to ``apply``/``delete``: progress reporting and cancellation. ``phase`` is the
    current step (shown while it lasts, may be throttled); ``notice`` is something the user must
    see even when progress is throttled (e.g. a changed endpoint); ``restart`` a failed attempt
    of a run (``spec.retries``), also the last one."""

    phase: Callable[[str], None] = lambda _msg: None
    notice: Callable[[str], None] = lambda _msg: None
    # A failed attempt of a run that retries (``engine.attempts``); each may be reported more
    # than once (the walker keeps one per number).
    restart: Callable[[FailedAttempt], None] = lambda _attempt: None
    cancelled: threading.Event = field(default_factory=threading.Event)
    timeout: float | None = None


class Detached(Exception):
    """The apply was cancelled; the workload goes on and a later run can adopt it."""


@dataclass(frozen=True)
class NodeOffer:
    """What one node (or one autoscaler node template) can run."""

    name: str
    gpu_type: str | None  # a GPU type of ``engine.spec.GPU_TYPES`` (nvidia-l4…), or None
    gpus: int  # allocatable GPUs per node
    cpu: float = 0.0
    memory_gb: float = 0.0
    source: Literal["node", "template"] = "node"  # "template": an autoscaler could add it
    spot: bool = False  # a spot (preemptible) node: labelled cloud.google.com/gke-spot=true


@dataclass(frozen=True)
class Capacity:
    """What the place a runtime runs on offers, as seen by the last ``refresh``.

    ``offers`` lists the nodes (and autoscaler templates); ``unknown_types`` is True when some
    nodes have GPUs whose type cannot be told (no type label): a request for any type might
    fit there. ``autoprovisioning`` is True when the cluster can create node pools of any type
    (e.g. GKE node auto-provisioning), so nothing can be ruled out. ``unknown_reason``, when not
    empty, says in one sentence why the runtime could not observe what it offers (e.g. it may
    not list the nodes): the other fields are then meaningless and nothing is checked.
    """

    offers: tuple[NodeOffer, ...] = ()
    unknown_types: bool = False
    autoprovisioning: bool = False
    unknown_reason: str = ""


class Runtime(Protocol):
    name: str

    def check(self, resources: Sequence[ResourceView]) -> list[Diagnostic]: ...

    def refresh(
        self, records: Mapping[str, ResourceRecord], owner: Owner
    ) -> dict[str, Observation]: ...

    def read_external(self, kind: str, namespace: str, name: str) -> ExternalResource | None: ...

    def intent(self, request: RunRequest) -> dict[str, Any]: ...

    def apply(self, request: RunRequest, ctx: RunContext) -> dict[str, Any]: ...

    def delete(self, request: DeleteRequest, ctx: RunContext) -> None: ...

    def hold(self, owner: Owner, held: Sequence[Held]) -> None: ...

    def collect_garbage(self, owner: Owner, garbage: Sequence[Garbage]) -> set[tuple[str, str]]: ...


@dataclass(frozen=True)
class LogRequest:
    """The run whose output ``LogSource.logs`` reads: a version of a resource, with what the
    state recorded for it (``outputs``: a completed run's outputs, or the intent of the run an
    apply started) and whether the state names it as the run of an apply under way
    (``running``: it may not have started writing yet)."""

    address: str
    kind: str
    namespace: str
    name: str
    spec: Mapping[str, Any]
    version: str
    outputs: Mapping[str, Any]
    running: bool = False
    follow: bool = False
    tail: int | None = None  # the last N lines (None: all)
    owner: Owner = field(default_factory=Owner)

    @classmethod
    def of(
        cls, address: str, record: ResourceRecord, owner: Owner, follow: bool, tail: int | None
    ) -> LogRequest | None:
        """The last run of ``record``: the one an apply started (its pending operation), else
        the newest version the state made (a failed run after the current one included), else
        the current one. None when it never ran."""
        pending = record.pending
        if pending is not None:
            spec, version, outputs = pending.spec, pending.run_version, pending.intent
        else:
            current = record.current_version
            newest = record.versions[-1] if record.versions else current
            if newest is None:
                return None
            spec, version = record.spec, newest
            outputs = record.outputs if version == current else {}
        return cls(
            address=address,
            kind=record.kind,
            namespace=record.namespace,
            name=record.name,
            spec=spec,
            version=version,
            outputs=outputs,
            running=pending is not None and record.status != "tainted",  # tainted: it failed
            follow=follow,
            tail=tail,
            owner=owner,
        )


class NoLog(Exception):
    """There is no log to read for a ``LogRequest`` (yet, or at all); the message says what
    and what to do."""


class LogSource(Protocol):
    """A runtime that can read its workloads' output (``logs``, see the module docstring)."""

    def logs(self, request: LogRequest, cancelled: threading.Event) -> Iterator[str]: ...
