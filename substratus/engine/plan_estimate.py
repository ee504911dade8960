"""The plan's ``estimate`` as a typed value: the document ``engine.estimate`` builds, validated.

``Estimate.of(document)`` checks a document of the shape ``engine.estimate`` describes (every key
present but an entry's ``nodes``, there only when above 1; see its module docstring) and
``Estimate.to_json()`` gives it back key for key, value for value (an ``int`` stays an ``int``),
so a plan's JSON does not change by going through it. The models are frozen; unknown keys are
refused. Pure; no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from substratus.engine.action import Action

Number = int | float


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EstimatePrices(_Doc):
    source: str
    date: str | None
    spot: bool
    overridden: bool
    gpu_hour: dict[str, Number]
    cpu_hour: Number
    memory_gb_hour: Number


class EstimateGpu(_Doc):
    type: str | None
    count: int


class EstimateEntry(_Doc):
    """One resource that runs: a ``job`` (cost of one run) or a ``service`` (cost per hour)."""

    address: str
    kind: str
    action: Action
    role: str
    gpu: EstimateGpu | None
    cpu: Number
    memory_gb: Number
    replicas: int
    spot: bool = False  # resources.spot (absent from plans saved before it: kept absent)
    duration_seconds: Number | None
    duration_source: str | None
    gpu_hours: Number | None
    cost: Number | None
    hourly: Number | None
    hourly_after: Number | None
    gpus_added: int
    max_cost: Number | None
    # Nodes one run of a job spans (each with the resources above); only in a document when
    # above 1, so plans of single-node jobs read as before.
    nodes: int = Field(1, ge=1, exclude_if=lambda value: value == 1)


class EstimateTotals(_Doc):
    jobs: int
    jobs_unknown: int
    gpu_hours: Number
    jobs_cost: Number
    hourly: Number
    gpus_added: int
    gpus_added_by_type: dict[str, int]
    gpus: dict[str, int]
    cpu: Number
    memory_gb: Number


class Estimate(_Doc):
    currency: str
    prices: EstimatePrices
    resources: tuple[EstimateEntry, ...]
    totals: EstimateTotals
    assumptions: tuple[str, ...]

    @classmethod
    def of(cls, document: dict[str, Any]) -> Estimate:
        """The estimate of ``document``; raises ``pydantic.ValidationError`` (a ``ValueError``)."""
        return cls.model_validate(document)

    def to_json(self) -> dict[str, Any]:
        """The document, as ``engine.estimate`` built it (a key it lacked stays absent)."""
        return self.model_dump(mode="json", exclude_unset=True)
