"""engine.kinds: each kind's rules, read from the kind and the canonical spec."""

from __future__ import annotations

from typing import Any

import pytest

from substratus.engine import kinds
from substratus.engine.kinds import Compute, Gpu, Kind, Role, Workload

LOADER: dict[str, Any] = {"container": {"image": "x"}, "loader": {"params": {"a": 1}}}
TRAINER: dict[str, Any] = {
    "container": {"image": "x"},
    "trainer": {
        "dataset": {"name": "d"},
        "params": {"epochs": 3},
        "resources": {"cpu": 4, "memory": 32, "gpu": {"type": "nvidia-l4", "count": 2}},
    },
    "resources": {"cpu": 2, "memory": 10, "disk": 10},
}


@pytest.mark.parametrize(
    ("kind", "role", "replaces", "versioned", "stores"),
    [
        ("build", Role.JOB, True, False, False),
        ("dataset", Role.JOB, True, True, True),
        ("model", Role.JOB, True, True, True),
        ("modelserver", Role.SERVICE, False, False, False),
        ("notebook", Role.SERVICE, False, False, True),
    ],
)
def test_kind_rules(kind: str, role: Role, replaces: bool, versioned: bool, stores: bool) -> None:
    k = Kind(kind)
    assert (k.role, k.replaces_on_change, k.versioned, k.stores_artifacts) == (
        role,
        replaces,
        versioned,
        stores,
    )
    assert kinds.is_service_kind(kind) == (role is Role.SERVICE)
    assert kinds.is_job_kind(kind) == (role is Role.JOB)
    assert k.plural == f"{kind}s"


def test_unknown_kinds_have_no_rules() -> None:
    assert Kind.of("project") is None
    assert kinds.workload("project", {}) is None
    assert kinds.compute("project", {}) is None
    assert not (kinds.is_job_kind("project") or kinds.is_service_kind("project"))
    assert not (kinds.versioned("project") or kinds.replaces_on_change("project"))


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        ("build", {"source": "git"}, Workload.BUILD),
        ("dataset", LOADER, Workload.JOB),
        ("dataset", {}, Workload.JOB),  # a pending-only record
        ("model", LOADER, Workload.JOB),
        ("model", TRAINER, Workload.JOB),
        ("model", {"url": "gs://b/w"}, Workload.LOCATION),
        ("modelserver", {"replicas": 0}, Workload.SERVER),
        ("notebook", {"suspend": True}, Workload.NOTEBOOK),
    ],
)
def test_workload(kind: str, spec: dict[str, Any], expected: Workload) -> None:
    assert kinds.workload(kind, spec) is expected
    assert kinds.is_job(kind, spec) == (expected is Workload.JOB)


def test_params_come_from_the_trainer_the_loader_or_the_spec() -> None:
    assert kinds.params("dataset", LOADER) == {"a": 1}
    assert kinds.params("model", TRAINER) == {"epochs": 3}
    assert kinds.params("notebook", {"params": {"b": 2}}) == {"b": 2}
    assert kinds.params("model", {"url": "x"}) == {}
    assert kinds.params_path("model", TRAINER) == ("trainer", "params")
    assert all(kinds.params_path(k, s) in kinds.PARAM_SECTIONS for k, s in [("dataset", LOADER)])


def test_compute_reads_the_trainer_resources_over_the_model_ones() -> None:
    found = kinds.compute("model", TRAINER)
    assert found == Compute(4, 32, Gpu("nvidia-l4", 2), 1, "spec.trainer.resources")
    assert kinds.resources("model", TRAINER) == TRAINER["trainer"]["resources"]


def test_compute_defaults_and_what_runs_nothing() -> None:
    assert kinds.compute("dataset", {}) == Compute(2, 10, None, 1, "spec.resources")
    assert kinds.compute("build", {}) == Compute(2, 0, None, 1, "")
    assert kinds.compute("modelserver", {"replicas": 3}) == Compute(
        2, 10, None, 3, "spec.resources"
    )
    assert kinds.compute("model", {"url": "x"}) is None
    assert kinds.compute("notebook", {"suspend": True}) is None
    assert kinds.compute("dataset", None) is None
    gpu = kinds.compute("dataset", {"resources": {"gpu": {"type": "nvidia-t4"}}})
    assert gpu is not None and (gpu.gpu_type, gpu.gpus) == ("nvidia-t4", 1)


def test_artifact_layout() -> None:
    assert kinds.artifact_prefix("ns", "dataset", "d") == "ns/datasets/d"
    assert kinds.version_key("ns", "model", "m", "v1") == "ns/models/m/v1"
    assert kinds.artifact_prefix("ns", Kind.NOTEBOOK, "n") == "ns/notebooks/n"
    assert kinds.upload_prefix("ns", "b", "abc") == "ns/builds/b/abc"
    assert kinds.store_root("pre/fix/ns/models/m/v1") == "pre/fix"
    assert kinds.store_root(kinds.version_key("ns", "model", "m", "v1")) == ""


def test_which_versions_are_kept_and_which_may_go() -> None:
    assert kinds.kept_versions("v2", "v1", None) == {"v2", "v1"}
    assert kinds.kept_versions(None, None, "v3") == {"v3"}
    held = {"ns/models/m/v1"}
    assert not kinds.removable("ns", "model", "m", "v1", held)
    assert kinds.removable("ns", "model", "m", "v2", held)
    assert not kinds.removable("ns", "model", "m", "v2", held, retain_artifacts=True)
