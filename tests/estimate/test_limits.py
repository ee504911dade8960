"""Cost limits: ``lifecycle.maxCost`` (one resource: a job's run, a server's hour) and
``--max-cost`` (``PlanOptions.max_cost``: the plan's jobs together) fail the plan before anything
runs, naming the resources that cost most; a limit that cannot be checked is a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.engine.address import Address
from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.estimate import check_limits
from substratus.engine.plan_document import parse_plan, plan_text
from tests.estimate import scenarios as sc
from tests.support.engine import Harness

NEW_DATA = ("k8s-instructions.jsonl", "k8s-instructions-v2.jsonl")
TRAINED = "      spot: true\n"  # the last line of the trainer's document


def with_lifecycle(text: str, after: str, max_cost: float) -> str:
    """``text`` with ``lifecycle: {maxCost: …}`` after the document that ends with ``after``."""
    assert after in text
    return text.replace(after, f"{after}lifecycle:\n  maxCost: {max_cost}\n", 1)


def falcon(tmp: Path, mp: pytest.MonkeyPatch) -> Harness:
    return sc.applied(sc.falcon(tmp, mp))


def test_a_job_over_its_max_cost_fails_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = falcon(tmp_path, monkeypatch)
    calls, changed = list(h.runtime.calls), sc.config(h).replace(*NEW_DATA)
    with pytest.raises(DiagnosticError) as err:
        h.plan(with_lifecycle(changed, TRAINED, 1))
    [d] = err.value.diagnostics
    assert d.is_error and d.address == "model.falcon-7b-k8s"
    assert d.summary == "model.falcon-7b-k8s would cost more than its lifecycle.maxCost"
    assert "≈ $1.44 (4 × nvidia-l4, 2 vCPU, 64 GB, spot for 1h 30m, its last run)" in d.detail
    assert "over its lifecycle.maxCost of $1.00" in d.detail and "Nothing was run." in d.detail
    assert h.runtime.calls == calls

    plan = h.plan(with_lifecycle(changed, TRAINED, 2))
    assert not [w for w in plan.warnings if "maxCost" in w.summary]
    row = next(
        e for e in plan.estimate_json()["resources"] if e["address"] == "model.falcon-7b-k8s"
    )
    assert row["max_cost"] == 2


def test_a_max_cost_without_a_recorded_run_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sc.falcon(tmp_path, monkeypatch)
    plan = h.plan(with_lifecycle(sc.config(h), TRAINED, 1))
    [w] = [w for w in plan.warnings if "maxCost" in w.summary]
    assert not w.is_error and w.address == "model.falcon-7b-k8s"
    assert "No successful run of model.falcon-7b-k8s is recorded" in w.detail


def test_a_server_max_cost_is_per_hour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = sc.falcon(tmp_path, monkeypatch)
    server_end = "    gpu: {type: nvidia-l4, count: 1}\n---\n# A Jupyter"
    text = sc.config(h).replace(
        server_end,
        "    gpu: {type: nvidia-l4, count: 1}\nlifecycle: {maxCost: 0.5}\n---\n# A Jupyter",
    )
    with pytest.raises(DiagnosticError) as err:
        h.plan(text)
    [d] = err.value.diagnostics
    assert d.address == "modelserver.falcon-7b-k8s"
    assert "≈ $0.67/hour" in d.detail and "lifecycle.maxCost of $0.50/hour" in d.detail


def test_max_cost_names_the_jobs_that_cost_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = falcon(tmp_path, monkeypatch)
    everything = [
        Address.parse(a)
        for a in (
            "build.images-dataset-loader-http-bcd7da",
            "dataset.k8s-instructions",
            "model.falcon-7b",
        )
    ]
    text = sc.config(h).replace("num_train_epochs: 1", "num_train_epochs: 2")
    plan = h.plan(text, replace=everything)
    total = plan.estimate_json()["totals"]["jobs_cost"]
    # the trainer on spot (resources.spot) + the dataset + the base model + the build
    assert total == pytest.approx(1.4837, abs=1e-3)  # 1.4407 + 0.0370 + 0.0032 + 0.0028
    with pytest.raises(DiagnosticError) as err:
        h.plan(text, replace=everything, max_cost=1.0)
    [d] = err.value.diagnostics
    assert d.summary == "The plan would cost more than --max-cost"
    assert "would cost ≈ $1.48, over --max-cost $1.00" in d.detail
    listed = [line.split(":")[0].strip() for line in d.detail.splitlines() if ": ≈" in line]
    assert listed == [
        "model.falcon-7b-k8s",
        "model.falcon-7b",
        "build.images-dataset-loader-http-bcd7da",
    ]
    assert "--target" in d.detail and "raise --max-cost" in d.detail
    # Under the limit: the plan is made.
    assert h.plan(text, replace=everything, max_cost=2.0).estimate_json()["totals"]["jobs"] == 4


def test_max_cost_counts_only_jobs_of_known_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = sc.falcon(tmp_path, monkeypatch).plan(max_cost=0.01)
    [w] = [w for w in plan.warnings if "--max-cost" in w.summary]
    assert "4 jobs of this plan have no successful run recorded" in w.detail


def test_a_saved_plan_is_checked_against_its_recorded_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = falcon(tmp_path, monkeypatch)
    saved = parse_plan(plan_text(h.plan(sc.config(h).replace(*NEW_DATA))))
    errors, _ = check_limits(saved.estimate_json(), 1.0)
    assert [e.summary for e in errors] == ["The plan would cost more than --max-cost"]
    assert check_limits(saved.estimate_json(), 10.0) == ([], [])


def test_a_failed_run_keeps_the_duration_of_the_last_success() -> None:
    from substratus.engine.estimate import _job
    from substratus.engine.plan import Action, ResourceChange
    from substratus.engine.prices import price_table
    from substratus.engine.statefile import ResourceRecord, RunRecord, StateFile

    ok = RunRecord(started_at="a", finished_at="b", outcome="succeeded", seconds=3600.0)
    bad = RunRecord(started_at="c", finished_at="d", outcome="failed", seconds=5.0)
    spec = {"container": {"image": "x"}, "loader": {}, "resources": {"cpu": 2, "memory": 8}}
    change = ResourceChange("dataset.d", "dataset", "default", "d", Action.REPLACE, after=spec)
    rec = ResourceRecord(
        kind="dataset", namespace="default", name="d", digest="x", last_run=bad, last_success=ok
    )
    entry = _job(change, StateFile(resources={"dataset.d": rec}), price_table())
    assert entry["duration_seconds"] == 3600.0 and entry["duration_source"] == "last_success"
    rec.last_success = None
    entry = _job(change, StateFile(resources={"dataset.d": rec}), price_table())
    assert entry["duration_seconds"] is None and entry["duration_source"] == "last_run_failed"
