"""Each kind's rules, in one place: what a resource runs, with which params and compute, whether
a change replaces it, where its artifacts live and which of its versions are kept.

Everything here is read from a kind (``Kind`` or its address spelling, ``"modelserver"``) and a
canonical spec (``engine.spec``: defaults filled). Specs of older records or of a pending-only
record may lack fields (even be empty); every function tolerates that and falls back to the spec
models' defaults. Pure; no I/O. The engine (planner, estimate, capacity) and every runtime ask
this module; none of them re-derives these rules from the spec.

- ``Kind``: the five kinds. ``role`` is ``job`` (build, dataset, model: each run completes and
  makes a new version; a change runs it again, ``replaces_on_change``) or ``service``
  (modelserver, notebook: they run continuously and are updated in place). ``versioned``: the
  kinds whose versions live in the artifact store (dataset, model); ``stores_artifacts`` adds
  the notebook (its persistent work directory).
- ``workload(kind, spec)``: what a resource of that spec runs — a ``build``, a ``job`` (a
  Dataset's loader, a Model's loader or trainer), a ``location`` (a Model naming only a ``url``:
  nothing runs), a ``server`` or a ``notebook``.
- ``params(kind, spec)`` and ``params_path``: the params its workload is given (a server's or
  notebook's ``params``, a trainer's or else a loader's); ``PARAM_SECTIONS`` are the sections a
  ``sensitive:`` path may name.
- ``retries(kind, spec)``: how many times a failed job run starts again (``spec.retries``, a
  record-only field: ``RECORD_ONLY_FIELDS`` are left out of digests).
- ``resources(kind, spec)`` is the declared ``resources`` section (a trainer's override the
  Model's), ``compute(kind, spec)`` what one instance requests (typed, defaults filled) and how
  many instances run; ``nodes(kind, spec)`` how many nodes one run of a job spans (its ranks)
  and ``misplaced_nodes`` the ``nodes`` a kind may not have (only loaders and trainers span
  nodes: a server scales by ``replicas``, a notebook is one pod).
- ``artifact_prefix`` / ``version_key`` / ``upload_prefix``: the store layout shared by every
  runtime and by holds: ``{namespace}/{kind}s/{name}[/{version}]`` (a notebook's persistent work
  is ``{namespace}/notebooks/{name}``), uploaded build contexts
  ``{namespace}/builds/{build}/{short}``; ``store_root`` takes a version's key back to its
  store's prefix.
- ``kept_versions`` and ``removable``: which versions a state keeps (the current one, the one
  before it, the one an apply is making) and which of those it created may leave the store (not
  with ``lifecycle.retainArtifacts``, not while another state holds them).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeGuard

# The sections of a spec that hold params, as field paths under ``spec``.
PARAM_SECTIONS: tuple[tuple[str, ...], ...] = (
    ("loader", "params"),
    ("trainer", "params"),
    ("params",),
)
# Spec fields that say how a run is carried out, not what it makes: left out of the digest
# (``engine.digest``), so a change of them only rewrites the record and runs nothing.
RECORD_ONLY_FIELDS = ("retries",)
DEFAULT_CPU = 2  # engine.spec.Resources defaults, for specs that do not fill them
DEFAULT_MEMORY_GB = 10
BUILD_CPU = 2  # the build Job's request (no memory request, no GPU)


class Role(StrEnum):
    """How a kind runs: a ``job`` completes and makes a version; a ``service`` runs on."""

    JOB = "job"
    SERVICE = "service"


class Workload(StrEnum):
    """What one resource runs, by kind and spec (``workload``)."""

    BUILD = "build"  # an image build / build context
    JOB = "job"  # a Dataset's loader, a Model's loader or trainer: makes a version
    LOCATION = "location"  # a Model with only a ``url``: nothing runs, the weights are there
    SERVER = "server"  # a ModelServer
    NOTEBOOK = "notebook"


class Kind(StrEnum):
    """The kinds of resources, spelled as in addresses."""

    BUILD = "build"
    DATASET = "dataset"
    MODEL = "model"
    MODELSERVER = "modelserver"
    NOTEBOOK = "notebook"

    @classmethod
    def of(cls, kind: str) -> Kind | None:
        """The kind spelled ``kind`` (``"dataset"``), or None for an unknown one."""
        return _KINDS.get(kind)

    @property
    def plural(self) -> str:
        """The directory name of the kind in artifact stores and run directories."""
        return f"{self.value}s"

    @property
    def role(self) -> Role:
        return Role.SERVICE if self in (Kind.MODELSERVER, Kind.NOTEBOOK) else Role.JOB

    @property
    def is_job(self) -> bool:
        """Build, Dataset, Model: each run completes (a Job on a cluster) and makes a version."""
        return self.role is Role.JOB

    @property
    def replaces_on_change(self) -> bool:
        """Whether a change of the resource runs it again into a new version (``replace``)
        rather than updating it in place (``update``): the jobs do, the services do not."""
        return self.is_job

    @property
    def versioned(self) -> bool:
        """Dataset, Model: their versions live in the artifact store (and can be read as
        external resources, held by other states and garbage-collected there)."""
        return self in (Kind.DATASET, Kind.MODEL)

    @property
    def stores_artifacts(self) -> bool:
        """Dataset, Model (versions) and Notebook (its persistent work directory): the kinds
        that write to the artifact store."""
        return self.versioned or self is Kind.NOTEBOOK


_KINDS: dict[str, Kind] = {k.value: k for k in Kind}  # a dict lookup: no Enum call per question


def _mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, without the ABC machinery for a plain dict (the estimate
    asks it of every spec several times)."""
    return type(value) is dict or isinstance(value, Mapping)


def _kind(kind: str | Kind) -> Kind | None:
    return _KINDS.get(kind)  # a Kind is a str equal to its value


def role(kind: str) -> Role:
    """``job`` or ``service`` (an unknown kind is a service: it makes no version)."""
    k = _kind(kind)
    return k.role if k is not None else Role.SERVICE


def is_job_kind(kind: str) -> bool:
    """Whether runs of ``kind`` complete and make versions (build, dataset, model)."""
    k = _kind(kind)
    return k is not None and k.is_job


def is_service_kind(kind: str) -> bool:
    """Whether ``kind`` runs continuously (modelserver, notebook); False for an unknown kind."""
    k = _kind(kind)
    return k is not None and k.role is Role.SERVICE


def replaces_on_change(kind: str) -> bool:
    """Whether a changed resource of ``kind`` is replaced (run again), not updated in place."""
    k = _kind(kind)
    return k is not None and k.replaces_on_change


def versioned(kind: str) -> bool:
    """Whether ``kind`` keeps versions in the artifact store (dataset, model)."""
    k = _kind(kind)
    return k is not None and k.versioned


def stores_artifacts(kind: str) -> bool:
    """Whether ``kind`` writes to the artifact store (dataset, model, notebook)."""
    k = _kind(kind)
    return k is not None and k.stores_artifacts


def workload(kind: str, spec: Mapping[str, Any]) -> Workload | None:
    """What a resource of ``kind`` with ``spec`` runs; None for an unknown kind."""
    k = _kind(kind)
    if k is Kind.BUILD:
        return Workload.BUILD
    if k is Kind.DATASET:
        return Workload.JOB
    if k is Kind.MODEL:
        return Workload.JOB if spec.get("loader") or spec.get("trainer") else Workload.LOCATION
    if k is Kind.MODELSERVER:
        return Workload.SERVER
    if k is Kind.NOTEBOOK:
        return Workload.NOTEBOOK
    return None


def is_job(kind: str, spec: Mapping[str, Any]) -> bool:
    """Whether the resource runs a loader or trainer job: a Dataset always, a Model only with a
    loader or a trainer (not a build: that is ``Workload.BUILD``)."""
    return workload(kind, spec) is Workload.JOB


def suspended(kind: str, spec: Mapping[str, Any]) -> bool:
    """A notebook with ``suspend: true``: nothing of it runs, its work is kept."""
    return kind == Kind.NOTEBOOK and bool(spec.get("suspend"))


# -- params ---------------------------------------------------------------------------------------


def params_path(kind: str, spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The section of ``spec`` whose params the workload is given: ``("params",)`` for a server
    or notebook, else a trainer's (when there is one) or the loader's."""
    if role(kind) is Role.SERVICE:
        return ("params",)
    return ("trainer", "params") if spec.get("trainer") else ("loader", "params")


def params(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The params the workload is given (a copy; ``{}`` when none are set)."""
    node: Any = spec
    for part in params_path(kind, spec):
        node = node.get(part) if _mapping(node) else None
    return dict(node or {})


# -- compute --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """``count`` GPUs of ``type`` (None: any type) on one node."""

    type: str | None
    count: int


@dataclass(frozen=True)
class Compute:
    """What one instance of a resource requests, and how many instances run.

    ``cpu`` and ``memory`` (GB) are as the spec writes them (an int stays an int), defaults
    filled; ``path`` is the field path of the declared section (``spec.trainer.resources`` when
    the trainer has its own, else ``spec.resources``; ``""`` for a build, which declares none).
    ``replicas`` is 1, or a ModelServer's ``replicas`` (which may be 0). ``nodes`` is how many
    nodes one run spans, each requesting all of the above (a job's ``resources.nodes``; 1 for
    everything else); ``instances`` = ``replicas`` × ``nodes``. ``spot``: the resources ask
    for spot capacity (``resources.spot``)."""

    cpu: int | float
    memory: int | float
    gpu: Gpu | None
    replicas: int
    path: str
    nodes: int = 1
    spot: bool = False  # resources.spot: on spot (preemptible) capacity

    @property
    def instances(self) -> int:
        """How many pods (local: processes) of this shape run: replicas × nodes."""
        return self.replicas * self.nodes

    @property
    def gpus(self) -> int:
        """GPUs per instance (0 without a GPU request)."""
        return self.gpu.count if self.gpu is not None else 0

    @property
    def gpu_type(self) -> str | None:
        return self.gpu.type if self.gpu is not None else None


def retries(kind: str, spec: Mapping[str, Any] | None) -> int:
    """How many times a failed run of a job starts again (``spec.retries``; 0 for what is not
    a Dataset's or Model's loader or trainer run)."""
    if spec is None or not is_job(kind, spec):
        return 0
    value = spec.get("retries", 0)
    return value if isinstance(value, int) and value > 0 else 0


def resources_path(kind: str, spec: Mapping[str, Any]) -> str:
    """Where the resources of ``spec`` are declared: a trainer's override the Model's."""
    trainer = spec.get("trainer") if kind == Kind.MODEL else None
    has_own = _mapping(trainer) and trainer.get("resources")
    return "spec.trainer.resources" if has_own else "spec.resources"


def resources(kind: str, spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The declared ``resources`` section (a trainer's override the Model's), as written in the
    spec; None when the spec declares none."""
    trainer = spec.get("trainer") if kind == Kind.MODEL else None
    own = trainer.get("resources") if _mapping(trainer) else None
    declared = own or spec.get("resources")
    return declared if _mapping(declared) else None


def _gpu(declared: Mapping[str, Any]) -> Gpu | None:
    gpu = declared.get("gpu")
    if not _mapping(gpu) or not gpu:
        return None
    gtype = gpu.get("type")
    return Gpu(str(gtype) if gtype else None, int(gpu.get("count", 1)))


def compute(kind: str, spec: Mapping[str, Any] | None) -> Compute | None:
    """What the resource requests to run (see ``Compute``); None when it runs nothing: no spec,
    a Model that only names a ``url``, a suspended notebook, an unknown kind.

    ``workload``, ``suspended``, ``resources`` and ``resources_path`` in one pass (a plan asks
    this of every resource it runs)."""
    if spec is None:
        return None
    k = _KINDS.get(kind)
    if k is None:
        return None
    if k is Kind.BUILD:
        return _BUILD_COMPUTE
    trainer = None
    if k is Kind.MODEL:
        trainer = spec.get("trainer")
        if not (spec.get("loader") or trainer):
            return None  # Workload.LOCATION
    elif k is Kind.NOTEBOOK and spec.get("suspend"):
        return None
    own = trainer.get("resources") if _mapping(trainer) else None
    declared = own or spec.get("resources")
    if not _mapping(declared):
        declared = _NO_RESOURCES
    return Compute(
        cpu=declared.get("cpu", DEFAULT_CPU),
        memory=declared.get("memory", DEFAULT_MEMORY_GB),
        gpu=_gpu(declared),
        replicas=int(spec.get("replicas", 1)) if k is Kind.MODELSERVER else 1,
        path="spec.trainer.resources" if own else "spec.resources",
        nodes=_declared_nodes(declared) if k in (Kind.DATASET, Kind.MODEL) else 1,
        spot=bool(declared.get("spot")),
    )


_BUILD_COMPUTE = Compute(BUILD_CPU, 0, None, 1, "")
_NO_RESOURCES: Mapping[str, Any] = {}


def _declared_nodes(section: object) -> int:
    value = section.get("nodes", 1) if _mapping(section) else 1
    return value if type(value) is int and value >= 1 else 1


def nodes(kind: str, spec: Mapping[str, Any] | None) -> int:
    """How many nodes one run of the resource spans (its ranks: ``WORLD_SIZE``): a job's
    ``resources.nodes`` (a trainer's own resources override the Model's), 1 for everything
    that is not a loader or trainer job, and when the spec sets none."""
    if spec is None or not is_job(kind, spec):
        return 1
    return _declared_nodes(resources(kind, spec))


def misplaced_nodes(kind: str, spec: Mapping[str, Any]) -> str | None:
    """The field path of a ``nodes`` above 1 that ``kind`` may not have — a ModelServer's or a
    Notebook's ``spec.resources.nodes`` (a server scales by ``replicas``; a notebook is one
    pod); None when there is none. Jobs (Datasets, Models with a loader or trainer) may span
    nodes."""
    if not is_service_kind(kind):
        return None
    return "spec.resources.nodes" if _declared_nodes(spec.get("resources")) > 1 else None


# -- artifacts and versions -----------------------------------------------------------------------


def artifact_prefix(namespace: str, kind: str, name: str) -> str:
    """Where a resource's artifacts live below a store's root: ``{namespace}/{kind}s/{name}``
    (its versions below it; a notebook's work directory is the prefix itself). Run directories
    of the local runtime follow the same layout."""
    return f"{namespace}/{kind}s/{name}"


def version_key(namespace: str, kind: str, name: str, version: str) -> str:
    """The store-relative name of one version: ``{namespace}/{kind}s/{name}/{version}`` (the
    name holds documents list)."""
    return f"{artifact_prefix(namespace, kind, name)}/{version}"


def store_root(key: str) -> str:
    """The store's own prefix of a version's object key ``{prefix…}/{version_key}`` (``""``
    for a store at a bucket's root)."""
    return "/".join(key.split("/")[:-4])


def upload_prefix(namespace: str, build: str, short: str) -> str:
    """Where an uploaded build context lives: ``{namespace}/builds/{build}/{short}``."""
    return f"{artifact_prefix(namespace, Kind.BUILD, build)}/{short}"


def kept_versions(current: str | None, prior: str | None, pending: str | None) -> set[str]:
    """The versions of a resource its state keeps when collecting garbage: the one its outputs
    point at, the one before it (a roll-back) and the one an apply is making."""
    return {v for v in (current, prior, pending) if v}


def removable(
    namespace: str,
    kind: str,
    name: str,
    version: str,
    held: Set[str],
    retain_artifacts: bool = False,
) -> bool:
    """Whether the artifacts of a version a state created may be removed from the store: not
    with ``lifecycle.retainArtifacts``, not while another state holds it (``held``: the
    ``version_key``s of the other states' holds documents)."""
    return not retain_artifacts and version_key(namespace, kind, name, version) not in held
