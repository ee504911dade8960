"""The attempts of a Job's run as its pods tell them (``pods.failed_attempt``, ``jobs.Attempts``):
why each failed, whether it counted against ``backoffLimit``, and when it is reported."""

from __future__ import annotations

from typing import Any

from substratus.engine.attempts import FailedAttempt
from substratus.engine.runtime import RunContext
from substratus.runtimes.kubernetes import jobs, pods


def pod(name: str, created: str, phase: str, **status: Any) -> dict[str, Any]:
    meta = {"name": name, "uid": f"uid-{name}", "creationTimestamp": created}
    return {"metadata": meta, "status": {"phase": phase, **status}}


def terminated(code: int, reason: str) -> list[dict[str, Any]]:
    return [{"name": "model", "state": {"terminated": {"exitCode": code, "reason": reason}}}]


DISRUPTED = [
    {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": "Preempted in order to admit critical pod",
    }
]


def test_why_a_pod_failed() -> None:
    exited = pod("a", "t1", "Failed", containerStatuses=terminated(3, "Error"))
    assert pods.failed_attempt(exited) == ("exit code 3", True)
    oom = pod("b", "t1", "Failed", containerStatuses=terminated(137, "OOMKilled"))
    assert pods.failed_attempt(oom) == ("OOMKilled (exit code 137)", True)
    # a disruption is said at once, while the pod still stops, and does not count
    preempted = pod("c", "t1", "Running", conditions=DISRUPTED)
    assert pods.failed_attempt(preempted) == (
        "preempted or evicted: PreemptionByScheduler: Preempted in order to admit critical pod",
        False,
    )
    assert pods.failed_attempt(pod("d", "t1", "Running")) is None
    assert pods.failed_attempt(pod("e", "t1", "Succeeded")) is None


def test_a_failed_attempt_is_reported_once_another_pod_replaced_it() -> None:
    seen: list[FailedAttempt] = []
    ctx = RunContext(restart=seen.append)
    attempts = jobs.Attempts()
    first = pod("a", "2026-01-01T00:00:01Z", "Failed", containerStatuses=terminated(3, "Error"))
    assert attempts.report([first], ctx, ended=False) == 1
    assert seen == []  # the Job controller has not replaced it (nor failed the Job) yet
    evicted = pod("b", "2026-01-01T00:00:09Z", "Running", conditions=DISRUPTED)
    assert attempts.report([first, evicted], ctx, ended=False) == 2
    assert seen == [FailedAttempt(1, "exit code 3", True)]
    # the evicted pod is gone (deleted) and a third runs: the eviction is reported
    third = pod("c", "2026-01-01T00:00:20Z", "Running")
    assert attempts.report([first, third], ctx, ended=False) == 3
    assert seen[-1].number == 2 and not seen[-1].counted
    assert seen[-1].reason.startswith("preempted or evicted: PreemptionByScheduler")


def test_a_pod_gone_before_it_ended_was_a_disruption_and_the_last_failure_is_final() -> None:
    seen: list[FailedAttempt] = []
    ctx = RunContext(restart=seen.append)
    attempts = jobs.Attempts()
    attempts.report([pod("a", "t1", "Running")], ctx, ended=False)
    last = pod("b", "t2", "Failed", containerStatuses=terminated(1, "Error"))
    assert attempts.report([last], ctx, ended=True) == 2
    assert seen == [
        FailedAttempt(1, "preempted or evicted: its pod a was deleted before it ended", False),
        FailedAttempt(2, "exit code 1", True, final=True),
    ]
