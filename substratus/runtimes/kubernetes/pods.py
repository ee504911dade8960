"""What a pod is doing, and why it failed, in words a user can act on (DESIGN §8). Pure.

``progress(pods)`` is the phase line shown while waiting ("pulling image", "running"…).
``problem(pods)`` finds a state that will not resolve by waiting — ``fatal`` (the image cannot be
pulled, a Secret/ConfigMap key is missing) or ``unschedulable`` (no node fits: the caller waits a
grace period for an autoscaler first) — and ``failure(pods)`` explains a failed pod
(``OOMKilled``, exit code, evicted). ``failed_attempt(pod)`` says why one pod of a Job — one
attempt of its run (``spec.retries``) — failed, and whether that counts against the Job's
``backoffLimit``: a disruption (the ``DisruptionTarget`` condition: preemption, eviction, node
drain) does not, under the ``podFailurePolicy`` of ``manifests.job``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FATAL_WAITING = {
    "ImagePullBackOff": "the image cannot be pulled",
    "ErrImagePull": "the image cannot be pulled",
    "InvalidImageName": "the image name is invalid",
    "CreateContainerConfigError": "the container's configuration is incomplete",
    "CreateContainerError": "the container cannot be created",
    "CrashLoopBackOff": "the container keeps crashing",
}


@dataclass(frozen=True)
class Problem:
    kind: str  # fatal | unschedulable
    reason: str
    message: str
    pod: str


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def _name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


RANK_ANNOTATION = "batch.kubernetes.io/job-completion-index"  # indexed.INDEX_ANNOTATION


def _rank(pod: Mapping[str, Any]) -> str | None:
    """The rank of a pod of a run on more than one node (an Indexed Job's completion index)."""
    found = ((pod.get("metadata") or {}).get("annotations") or {}).get(RANK_ANNOTATION)
    return None if found is None else str(found)


def _called(pod: Mapping[str, Any]) -> str:
    """``NAME``, or ``NAME (rank I)`` for a rank of a run on more than one node."""
    rank = _rank(pod)
    return _name(pod) if rank is None else f"{_name(pod)} (rank {rank})"


def problem(pods: Sequence[Mapping[str, Any]]) -> Problem | None:
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cs in _statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in FATAL_WAITING:
                text = f"{FATAL_WAITING[reason]} ({reason}): {waiting.get('message', '')}".strip()
                return Problem("fatal", reason, text.rstrip(": "), _name(pod))
        sched = _condition(pod, "PodScheduled")
        if sched and sched.get("status") == "False" and sched.get("reason") == "Unschedulable":
            return Problem(
                "unschedulable", "Unschedulable", str(sched.get("message", "")), _name(pod)
            )
    return None


def progress(pods: Sequence[Mapping[str, Any]]) -> str:
    """A short phase line for the newest pod."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        return "waiting for its pod to be created"
    pod = max(live, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp", "")))
    phase = str((pod.get("status") or {}).get("phase") or "Pending")
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"pod {phase.lower()}: {waiting['reason']}"
    if phase == "Pending":
        sched = _condition(pod, "PodScheduled")
        if sched is None or sched.get("status") != "True":
            return "pod pending: waiting for a node"
        return "pod pending: starting"
    return f"pod {phase.lower()} on {(pod.get('spec') or {}).get('nodeName', '?')}"


def failure(pods: Sequence[Mapping[str, Any]]) -> str:
    """Why the pods failed: terminated reasons and exit codes, evictions."""
    lines: list[str] = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("reason"):
            lines.append(f"pod {_called(pod)}: {status['reason']}: {status.get('message', '')}")
        for cs in _statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                reason = term.get("reason") or "Error"
                hint = (
                    " (the container ran out of memory: raise resources.memory)"
                    if (reason == "OOMKilled")
                    else ""
                )
                lines.append(
                    f"pod {_called(pod)} container {cs.get('name')}: {reason}, exit code "
                    f"{term.get('exitCode')}{hint}"
                )
    return "\n".join(lines)


def _first_failed_pod(
    pods: Sequence[Mapping[str, Any]],
) -> tuple[Mapping[str, Any], str] | None:
    """(pod, container) of the container that failed first: of the pods nobody deleted (the
    Job controller deletes the ranks it stops), then by ``finishedAt``."""
    failed = []
    for pod in pods:
        stopped = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        for cs in _statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                key = (stopped, str(term.get("finishedAt") or "~"), _name(pod))
                failed.append((key, pod, str(cs.get("name"))))
    if not failed:
        return None
    _, pod, container = min(failed, key=lambda item: item[0])
    return pod, container


def _first_failed(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(pod name, container) of ``_first_failed_pod``."""
    found = _first_failed_pod(pods)
    return None if found is None else (_name(found[0]), found[1])


def failed_rank(pods: Sequence[Mapping[str, Any]], nodes: int) -> str:
    """Why an attempt of a run on ``nodes`` nodes failed, as ``FailedAttempt.reason``: its
    first failed rank (``rank 1 of 2: exit code 3; the other ranks were stopped``)."""
    found = _first_failed_pod(pods)
    if found is None:
        return "the job failed"
    pod = found[0]
    why = (failed_attempt(pod) or ("the pod failed", True))[0]
    return f"rank {_rank(pod) or '?'} of {nodes}: {why}; the other ranks were stopped"


def main_container_of(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(pod, container) whose log explains a failure: the last failed container — of the ranks
    of a run on more than one node, the first that failed (the Job controller stops the
    others, which then fail too)."""
    if any(_rank(p) is not None for p in pods):
        first = _first_failed(pods)
        if first is not None:
            return first
    for pod in reversed(list(pods)):
        for cs in _statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                return _name(pod), str(cs.get("name"))
    if pods:
        containers = (pods[-1].get("spec") or {}).get("containers") or [{}]
        return _name(pods[-1]), str(containers[0].get("name", ""))
    return None


def failed_attempt(pod: Mapping[str, Any]) -> tuple[str, bool] | None:
    """(why, counted) when ``pod`` failed — or is being stopped by a disruption, which is
    said as soon as the condition is there — else None."""
    disrupted = _condition(pod, "DisruptionTarget")
    if disrupted is not None and disrupted.get("status") == "True":
        why = str(disrupted.get("reason") or "DisruptionTarget")
        message = str(disrupted.get("message") or "")
        return f"preempted or evicted: {why}{': ' + message if message else ''}", False
    status = pod.get("status") or {}
    if status.get("phase") != "Failed":
        return None
    for cs in _statuses(pod):
        term = (cs.get("state") or {}).get("terminated") or {}
        code = term.get("exitCode", 0)
        if term and code != 0:
            reason = str(term.get("reason") or "")
            return (
                f"{reason} (exit code {code})"
                if reason not in ("", "Error")
                else f"exit code {code}"
            ), True
    if status.get("reason"):
        return f"{status['reason']}: {status.get('message', '')}".rstrip(": "), True
    return "the pod failed", True
