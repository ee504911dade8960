"""Typed, strict specs of the configurable kinds (DESIGN §3), as pydantic models.

Field names follow the YAML (camelCase). Every model forbids unknown fields. ``canonical()`` of a
validated spec is its JSON form with defaults filled and keys sorted: two YAML documents that mean
the same thing have the same canonical spec, which is what digests and diffs are computed from.
This module knows nothing about files, lines or the graph.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from substratus.engine.address import name_problem

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_REF = re.compile(r"^\$\{\{\s*secrets\.([^.\s]+)\.([^}\s]+)\s*\}\}$")
GPU_TYPES = (
    "nvidia-t4",
    "nvidia-l4",
    "nvidia-a100",
    "nvidia-a100-80gb",
    "nvidia-h100",
)
_GPU_ALIASES = {
    "t4": "nvidia-t4",
    "l4": "nvidia-l4",
    "a100": "nvidia-a100",
    "a100-80gb": "nvidia-a100-80gb",
    "h100": "nvidia-h100",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitSource(Strict):
    url: str
    ref: str = "HEAD"  # branch, tag or commit; resolved to a commit at plan time
    path: str = ""  # sub-directory used as build context


class LocalSource(Strict):
    path: str = "."  # relative to the configuration file's directory


class Container(Strict):
    image: str | None = None
    git: GitSource | None = None
    local: LocalSource | None = None
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # Names of the operator's environment variables the workload is given (runtimes.contract):
    # the list is part of the spec (and its digest), the values are not.
    passEnv: list[str] | None = None

    @field_validator("passEnv")
    @classmethod
    def _pass_env_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not ENV_NAME.match(name):
                raise ValueError(
                    f"passEnv: {name!r} is not an environment variable name "
                    "(letters, digits and _, not starting with a digit)"
                )
            if name.startswith("PARAM_"):
                raise ValueError(f"passEnv: {name!r} is a param's variable; set the param instead")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("passEnv lists a name twice")
        return value

    @field_validator("local", mode="before")
    @classmethod
    def _local_true(cls, value: Any) -> Any:
        if value is True:  # the seed's `local: true` = this file's directory
            return {"path": "."}
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Container:
        given = [k for k in ("image", "git", "local") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a container needs exactly one source: image, git or local"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def source_kind(self) -> str:
        return "image" if self.image else "git" if self.git else "local"


def gpu_type_name(value: str) -> str:
    """The canonical GPU type of ``value`` (aliases such as ``L4`` accepted); ValueError else."""
    v = value.strip().lower()
    v = _GPU_ALIASES.get(v, v)
    if v not in GPU_TYPES:
        raise ValueError(f"unknown GPU type {value!r}; use one of {', '.join(GPU_TYPES)}")
    return v


class Gpu(Strict):
    type: str | None = None
    count: int = Field(1, ge=1)

    @field_validator("type", mode="before")
    @classmethod
    def _gpu_type(cls, value: Any) -> Any:
        return gpu_type_name(value) if isinstance(value, str) else value


class Resources(Strict):
    cpu: float = Field(2, gt=0)
    memory: float = Field(10, gt=0)  # GB
    disk: float = Field(10, gt=0)  # GB
    gpu: Gpu | None = None
    # Nodes a loader's or trainer's run spans, each with all of the above (engine.kinds.nodes:
    # only jobs may ask for more than one). Left out of the canonical spec when it is 1, so
    # specs written before the field existed keep their digests; any other value is part of
    # the spec and its digest (a different world size is a different run).
    nodes: int = Field(1, ge=1, le=1024)
    # Run on spot (preemptible) capacity: GKE's spot node selector and toleration on
    # Kubernetes, spot rates in the estimate; no effect on the local runtime (a plan note).
    # Left out of the canonical spec when false, as ``nodes`` at 1.
    spot: bool = False

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_default(_drop_default(handler(self), "nodes", 1), "spot", False)

    @field_serializer("cpu", "memory", "disk")
    def _whole_numbers(self, value: float) -> float | int:
        return int(value) if float(value).is_integer() else value

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        # The seed's flat form: {gpuCount: 4, type: L4}
        if isinstance(data, dict) and ("gpuCount" in data or "type" in data):
            data = dict(data)
            count, gtype = data.pop("gpuCount", 1), data.pop("type", None)
            data["gpu"] = {"count": count, "type": gtype}
        return data


class Ref(Strict):
    name: str
    namespace: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _string_form(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value


Params = dict[str, Any]


class Loader(Strict):
    params: Params = Field(default_factory=dict)


class Trainer(Strict):
    baseModel: Ref | None = None
    dataset: Ref
    params: Params = Field(default_factory=dict)
    resources: Resources | None = None


# How many times a failed (or preempted) run of a Dataset or Model starts again, into the same
# version directory with its ``artifacts/`` kept (DESIGN §8). Record-only: not in the digest.
RETRIES_LIMIT = 100


def _drop_default(dumped: Any, key: str, default: object) -> dict[str, Any]:
    """``dumped`` without ``key`` when it holds ``default``: a field added after records were
    written is left out of canonical specs at its default, so those records stay equal to the
    configuration (their digests and specs unchanged) until the field is set."""
    out: dict[str, Any] = dumped
    if out.get(key, default) == default:
        out.pop(key, None)
    return out


class DatasetSpec(Strict):
    container: Container
    loader: Loader = Field(default_factory=Loader)
    resources: Resources = Field(default_factory=Resources)
    retries: int = Field(0, ge=0, le=RETRIES_LIMIT)

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_default(handler(self), "retries", 0)


class ModelSpec(Strict):
    container: Container | None = None
    loader: Loader | None = None
    trainer: Trainer | None = None
    url: str | None = None  # neither loader nor trainer: weights already at this location
    resources: Resources = Field(default_factory=Resources)
    retries: int = Field(0, ge=0, le=RETRIES_LIMIT)

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_default(handler(self), "retries", 0)

    @field_validator("retries")
    @classmethod
    def _retries_run_something(cls, value: int, info: ValidationInfo) -> int:
        if value and not (info.data.get("loader") or info.data.get("trainer")):
            raise ValueError(
                "retries restarts a failed loader or trainer run; a Model that only names a "
                "url runs nothing (remove retries)"
            )
        return value

    @model_validator(mode="after")
    def _mode(self) -> ModelSpec:
        if self.loader and self.trainer:
            raise ValueError("a Model has either a loader or a trainer, not both")
        if (self.loader or self.trainer) and self.container is None:
            raise ValueError("a Model with a loader or a trainer needs a container")
        if not (self.loader or self.trainer) and not self.url:
            raise ValueError(
                "a Model needs a loader, a trainer, or a url where its weights already are"
            )
        return self


class Quantization(Strict):
    bits: Literal[4, 8, 16] = 16


class ModelServerSpec(Strict):
    container: Container
    model: Ref
    quantization: Quantization = Field(default_factory=Quantization)
    replicas: int = Field(1, ge=0)
    params: Params = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)


class NotebookSpec(Strict):
    container: Container
    sourceModel: Ref | None = None
    dataset: Ref | None = None
    params: Params = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    suspend: bool = False


class Lifecycle(Strict):
    preventDestroy: bool = False
    ignoreChanges: list[str] = Field(default_factory=list)
    retainArtifacts: bool = False
    # USD cap on this resource's estimated cost: a job's run, or a server's/notebook's cost per
    # hour. A plan over it fails before anything runs (engine.estimate).
    maxCost: float | None = Field(None, ge=0)


class KubernetesSettings(Strict):
    context: str | None = None
    namespace: str | None = None


class Rate(Strict):
    """A price per hour (USD): ``{onDemand, spot}`` (either may be left to the default), or one
    number used for both."""

    onDemand: float | None = Field(None, ge=0)
    spot: float | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _number_form(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"onDemand": data, "spot": data}
        return data


class Prices(Strict):
    """``kind: Project`` ``spec.prices``: a team's rates over the list prices of
    ``engine.prices`` (per GPU-hour by GPU type, per vCPU-hour, per GB-of-memory-hour), whether
    to estimate at spot rates, and a label for where the rates come from."""

    gpu: dict[str, Rate] = Field(default_factory=dict)
    cpuHour: Rate | None = None
    memoryGbHour: Rate | None = None
    spot: bool = False
    source: str | None = Field(None, min_length=1, max_length=120)

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_types(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, rate in value.items():
            name = gpu_type_name(str(key))
            if name in out:
                raise ValueError(f"GPU type {name} is priced twice ({key!r} is an alias)")
            out[name] = rate
        return out


class ProjectSpec(Strict):
    state: str | None = None
    runtime: Literal["local", "kubernetes"] | None = None
    artifacts: str | None = None
    registry: str | None = None
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    cloud: Literal["gcp", "kind", "generic"] | None = None
    prices: Prices = Field(default_factory=Prices)


SPEC_MODELS: dict[str, type[Strict]] = {
    "dataset": DatasetSpec,
    "model": ModelSpec,
    "modelserver": ModelServerSpec,
    "notebook": NotebookSpec,
}

# Which fields reference other resources: (field path, referenced kind, role for the runtime).
REFERENCES: dict[str, tuple[tuple[tuple[str, ...], str, str], ...]] = {
    "dataset": (),
    "model": (
        (("trainer", "baseModel"), "model", "model"),
        (("trainer", "dataset"), "dataset", "data"),
    ),
    "modelserver": ((("model",), "model", "model"),),
    "notebook": ((("sourceModel",), "model", "model"), (("dataset",), "dataset", "data")),
}


def canonical(spec: BaseModel) -> dict[str, Any]:
    """The JSON form with defaults filled (None-valued optional fields dropped)."""
    return spec.model_dump(mode="json", exclude_none=True)


def secret_refs(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Env entries that reference a Kubernetes Secret: NAME -> (secret, key)."""
    out = {}
    for key, value in env.items():
        m = SECRET_REF.match(value)
        if m:
            out[key] = (m.group(1), m.group(2))
    return out


def validate_name(value: str) -> str | None:
    return name_problem(value)
