"""Golden estimates of the two examples (``examples/quickstart``, ``examples/falcon-7b``).

Each case plans an example through the in-memory ``Harness``: first with nothing recorded (every
job of unknown duration), then after an apply whose runs took ``scenarios.DURATIONS`` and a
change that re-runs part of the graph. ``golden/<case>.txt`` is the estimate section of the
plan text and ``golden/<case>.json`` the plan JSON's ``estimate``; run with ``UPDATE_GOLDEN=1``
to rewrite them after reviewing a deliberate change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from substratus.engine.estimate_text import text_section
from substratus.engine.plan import Mode, Plan
from substratus.engine.render import render_plan
from substratus.engine.render_diagnostic import Painter
from tests.estimate import scenarios as sc

GOLDEN = Path(__file__).parent / "golden"
Case = Callable[[Path, pytest.MonkeyPatch], Plan]


def _quickstart_first(tmp: Path, mp: pytest.MonkeyPatch) -> Plan:
    return sc.quickstart(tmp).plan()


def _quickstart_dataset_changed(tmp: Path, mp: pytest.MonkeyPatch) -> Plan:
    h = sc.applied(sc.quickstart(tmp))
    return sc.replan(h, "params: {lowercase: true}", "params: {lowercase: false}")


def _falcon_first(tmp: Path, mp: pytest.MonkeyPatch) -> Plan:
    return sc.falcon(tmp, mp).plan()


def _falcon_dataset_changed(tmp: Path, mp: pytest.MonkeyPatch) -> Plan:
    h = sc.applied(sc.falcon(tmp, mp))
    return sc.replan(h, "k8s-instructions.jsonl", "k8s-instructions-v2.jsonl")


def _falcon_notebook_and_server_scaled(tmp: Path, mp: pytest.MonkeyPatch) -> Plan:
    h = sc.applied(sc.falcon(tmp, mp))
    text = sc.config(h).replace("suspend: true", "suspend: false")
    text = text.replace("quantization: {bits: 4}", "quantization: {bits: 4}\n  replicas: 3")
    return h.plan(text)


def _falcon_retrain_after_failure(tmp: Path, mp: pytest.MonkeyPatch) -> Plan:
    h = sc.applied(sc.falcon(tmp, mp), failed=frozenset({"model.falcon-7b-k8s"}))
    return sc.replan(h, "num_train_epochs: 1", "num_train_epochs: 2")


CASES: dict[str, Case] = {
    "quickstart-first-plan": _quickstart_first,
    "quickstart-dataset-changed": _quickstart_dataset_changed,
    "falcon-7b-first-plan": _falcon_first,
    "falcon-7b-dataset-changed": _falcon_dataset_changed,
    "falcon-7b-notebook-on-server-scaled": _falcon_notebook_and_server_scaled,
    "falcon-7b-retrain-after-failure": _falcon_retrain_after_failure,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = CASES[case](tmp_path, monkeypatch)
    got_text = "\n".join(text_section(plan.estimate_json(), Painter(False))) + "\n"
    got_json = json.dumps(plan.estimate_json(), indent=2, sort_keys=True) + "\n"
    exp_text, exp_json = GOLDEN / f"{case}.txt", GOLDEN / f"{case}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        exp_text.write_text(got_text, encoding="utf-8")
        exp_json.write_text(got_json, encoding="utf-8")
    assert exp_text.exists(), f"no expectation yet: run with UPDATE_GOLDEN=1 and review {case}"
    assert got_text == exp_text.read_text(encoding="utf-8")
    assert got_json == exp_json.read_text(encoding="utf-8")
    # The section ends the plan text, after the Plan: line.
    text = render_plan(plan)
    assert text.index("\nPlan: ") < text.index("Estimate of what this apply will consume")
    assert text.endswith(got_text)


def by_address(plan: Plan) -> dict[str, dict[str, object]]:
    return {e["address"]: e for e in plan.estimate_json()["resources"]}


def test_falcon_first_plan_lists_what_runs_with_trainer_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _falcon_first(tmp_path, monkeypatch)
    rows = by_address(plan)
    # The suspended notebook runs nothing; the Model's trainer.resources replace its resources.
    assert sorted(rows) == [
        "build.images-dataset-loader-http-bcd7da",
        "dataset.k8s-instructions",
        "model.falcon-7b",
        "model.falcon-7b-k8s",
        "modelserver.falcon-7b-k8s",
    ]
    trained = rows["model.falcon-7b-k8s"]
    assert trained["gpu"] == {"type": "nvidia-l4", "count": 4}
    assert (trained["cpu"], trained["memory_gb"]) == (2, 64)
    assert trained["duration_seconds"] is None and trained["duration_source"] == "unknown"
    assert rows["build.images-dataset-loader-http-bcd7da"]["cpu"] == 2
    totals = plan.estimate_json()["totals"]
    assert totals["jobs"] == 4 and totals["jobs_unknown"] == 4 and totals["jobs_cost"] == 0
    assert totals["gpus_added"] == 1 and totals["gpus_added_by_type"] == {"nvidia-l4": 1}
    # 1 L4 + 2 vCPU + 10 GB, at the list prices: 0.56 + 2 * 0.0316 + 10 * 0.00424
    assert totals["hourly"] == pytest.approx(0.6656)
    assert (
        "4 jobs of unknown duration (no successful run recorded) are not counted."
        in (plan.estimate_json()["assumptions"])
    )


def test_falcon_retrain_uses_the_last_successful_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _falcon_dataset_changed(tmp_path, monkeypatch)
    trained = by_address(plan)["model.falcon-7b-k8s"]
    # 1 h 30 min on 4 x L4 + 2 vCPU + 64 GB, all spot (resources.spot):
    # 1.5 * (4 * 0.22 + 2 * 0.0076 + 64 * 0.00102)
    assert trained["duration_seconds"] == 5400 and trained["duration_source"] == "last_run"
    assert trained["spot"] is True
    assert trained["gpu_hours"] == 6 and trained["cost"] == pytest.approx(1.4407, abs=1e-4)
    server = by_address(plan)["modelserver.falcon-7b-k8s"]
    assert server["action"] == "update" and server["hourly"] == 0 and server["gpus_added"] == 0
    assert plan.estimate_json()["totals"]["jobs_unknown"] == 0


def test_a_failed_last_run_leaves_the_duration_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _falcon_retrain_after_failure(tmp_path, monkeypatch)
    trained = by_address(plan)["model.falcon-7b-k8s"]
    assert trained["duration_source"] == "last_run_failed" and trained["cost"] is None
    assert "last run failed" in render_plan(plan)


def test_servers_scaled_and_notebook_resumed_add_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _falcon_notebook_and_server_scaled(tmp_path, monkeypatch)
    rows = by_address(plan)
    assert rows["modelserver.falcon-7b-k8s"]["gpus_added"] == 2  # 1 -> 3 replicas of 1 L4
    assert rows["notebook.falcon-7b-dev"]["gpus_added"] == 1  # suspended -> running
    assert plan.estimate_json()["totals"]["gpus_added_by_type"] == {"nvidia-l4": 3}
    assert plan.estimate_json()["totals"]["jobs"] == 0


def test_a_server_moved_to_another_gpu_type_adds_one_and_frees_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sc.applied(sc.falcon(tmp_path, monkeypatch))
    plan = sc.replan(
        h,
        "  quantization: {bits: 4}\n  resources:\n    gpu: {type: nvidia-l4, count: 1}",
        "  quantization: {bits: 4}\n  resources:\n    gpu: {type: nvidia-a100, count: 1}",
    )
    server = by_address(plan)["modelserver.falcon-7b-k8s"]
    assert server["gpu"] == {"type": "nvidia-a100", "count": 1} and server["gpus_added"] == 0
    assert server["hourly"] == pytest.approx(2.93 - 0.56)
    totals = plan.estimate_json()["totals"]
    assert totals["gpus_added_by_type"] == {"nvidia-a100": 1, "nvidia-l4": -1}
    assert "(+1 × nvidia-a100, -1 × nvidia-l4)" in render_plan(plan)


def test_destroying_the_falcon_example_frees_its_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sc.applied(sc.falcon(tmp_path, monkeypatch))
    plan = h.plan(mode=Mode.DESTROY)
    [server] = plan.estimate_json()[
        "resources"
    ]  # jobs are not run by a destroy; the notebook is off
    assert server["address"] == "modelserver.falcon-7b-k8s" and server["action"] == "delete"
    totals = plan.estimate_json()["totals"]
    assert totals["gpus_added"] == -1 and totals["hourly"] == pytest.approx(-0.6656)
    assert totals["gpus"] == {} and totals["cpu"] == 0
    assert "Total: - $0.67/hour for the servers (-1 × nvidia-l4)." in render_plan(plan)
