"""What a resource's workload is made of, read from its canonical spec (pure).

``is_job``: Datasets always run a loader Job; a Model runs one only with a loader or a trainer.
``params_of``: a server's or notebook's ``params``, a loader's or trainer's ``params``.
``resources_of``: a trainer's ``resources`` override the Model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JOB_KINDS = ("dataset", "model")


def is_job(kind: str, spec: Mapping[str, Any]) -> bool:
    if kind == "dataset":
        return True
    return kind == "model" and bool(spec.get("loader") or spec.get("trainer"))


def params_of(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    if kind in ("modelserver", "notebook"):
        return dict(spec.get("params") or {})
    section = spec.get("trainer") or spec.get("loader") or {}
    return dict(section.get("params") or {})


def resources_of(kind: str, spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    trainer = spec.get("trainer") or {}
    return trainer.get("resources") or spec.get("resources")
