"""Planner and walker rules that golden cases do not pin down, on the in-memory runtime."""

from __future__ import annotations

import pytest

from substratus.engine.diagnostic import DiagnosticError
from substratus.engine.plan import Action, Mode, Plan, staleness
from substratus.engine.plan_document import plan_dict
from tests.support.engine import Harness

PIPE = """\
kind: Dataset
name: d
spec: {container: {image: x}, loader: {params: {n: 1}}}
---
kind: Model
name: m
spec:
  container: {image: x}
  trainer: {dataset: d}
LIFECYCLE
"""


def _actions(plan: Plan) -> dict[str, str]:
    return {c.address: c.action.value for c in plan.resource_changes}


def test_prevent_destroy_blocks_delete_but_not_rerun(harness: Harness) -> None:
    text = PIPE.replace("LIFECYCLE", "lifecycle: {preventDestroy: true}")
    assert harness.apply(harness.plan(text)).ok
    rerun = harness.plan(text.replace("n: 1", "n: 2"))
    assert _actions(rerun)["model.m"] == "replace"  # a new version; the previous one is kept
    with pytest.raises(DiagnosticError) as info:
        harness.plan(mode=Mode.DESTROY)
    assert "model.m has lifecycle.preventDestroy set" in info.value.diagnostics[0].detail
    with pytest.raises(DiagnosticError, match="cannot be destroyed"):
        harness.plan(PIPE.split("---")[0])


def test_dependency_digests_explain_retrain_and_state_records_them(harness: Harness) -> None:
    text = PIPE.replace("LIFECYCLE", "")
    harness.apply(harness.plan(text))
    rec = harness.state().resources["model.m"]
    assert rec.dependency_digests["dataset.d"] == harness.state().resources["dataset.d"].digest
    plan = harness.plan(text.replace("n: 1", "n: 2"))
    reasons = [
        r.message for r in next(c for c in plan.resource_changes if c.address == "model.m").reasons
    ]
    assert reasons == ["dataset.d changed (spec.loader.params.n)"]


def test_failed_run_keeps_the_previous_version_and_retries(harness: Harness) -> None:
    text = PIPE.replace("LIFECYCLE", "")
    harness.apply(harness.plan(text))
    old = harness.state().resources["dataset.d"].digest
    harness.runtime.fail.add("dataset.d")
    result = harness.apply(harness.plan(text.replace("n: 1", "n: 2")))
    assert set(result.failed) == {"dataset.d"} and set(result.skipped) == {"model.m"}
    state = harness.state()
    assert state.resources["dataset.d"].digest == old
    assert state.resources["dataset.d"].last_run is not None
    assert state.resources["dataset.d"].last_run.outcome == "failed"
    harness.runtime.fail.clear()
    assert _actions(harness.plan())["dataset.d"] == "replace"


def test_every_completed_resource_is_persisted_before_its_dependents_start(
    harness: Harness,
) -> None:
    plan = harness.plan(PIPE.replace("LIFECYCLE", ""))
    harness.apply(plan)
    # pending intent + completion for each of the two resources
    assert harness.backend.writes == 4
    assert harness.state().serial == 4


def test_staleness_rules() -> None:
    plan = Plan(mode=Mode.NORMAL, resource_changes=[], prior_lineage="a", prior_serial=3)
    assert staleness(plan, "a", 3) is None
    assert "stale" in (staleness(plan, "a", 4) or "")
    assert "different state lineage" in (staleness(plan, "b", 3) or "")
    fresh = Plan(mode=Mode.NORMAL, resource_changes=[], prior_lineage=None, prior_serial=None)
    assert "stale" in (staleness(fresh, "a", 1) or "")


def test_unknown_target_is_an_error(harness: Harness) -> None:
    from substratus.engine.address import Address

    harness.write(PIPE.replace("LIFECYCLE", ""))
    with pytest.raises(DiagnosticError, match=r"No resource model\.nope"):
        harness.plan(targets=[Address.parse("model.nope")])


def test_replace_action_json_is_terraform_shaped(harness: Harness) -> None:
    plan = harness.plan(PIPE.replace("LIFECYCLE", ""))
    assert all(c.action is Action.CREATE for c in plan.resource_changes)
    doc = plan_dict(plan)
    assert doc["summary"] == {"add": 2, "change": 0, "destroy": 0, "replace": 0}
    assert doc["resource_changes"][0]["actions"] == ["create"]


def test_a_resource_is_deleted_only_after_its_users_switched_away(harness: Harness) -> None:
    text = (
        "kind: Model\nname: old\nspec: {container: {image: x}, loader: {}}\n---\n"
        "kind: ModelServer\nname: s\nspec: {container: {image: y}, model: old}\n"
    )
    harness.apply(harness.plan(text))
    harness.runtime.calls.clear()
    renamed = text.replace("name: old", "name: new").replace("model: old", "model: new")
    assert harness.apply(harness.plan(renamed)).ok
    assert harness.runtime.calls == [
        ("create", "model.new"),
        ("update", "modelserver.s"),
        ("delete", "model.old"),
    ]
