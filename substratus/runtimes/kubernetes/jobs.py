"""Jobs: a build, a Dataset/Model load or a training run, one Job per resource and run (version).

``run(cluster, job, params, ctx, timing, owner, recorded)`` makes the Job exist and waits:

- a Job of that (deterministic, per-version) name exists only when an interrupted apply started
  this very run: one that succeeded is adopted without running again, a running one is adopted
  and waited for, a failed one (an earlier attempt of the run) is deleted and created anew — and
  one that is not the state's (``ownership``) is refused, never taken over (``guard``);
- the Job is created with one request that only creates (``Cluster.apply_new``): no read
  first, the name is new unless an interrupted apply made it (then the refused create reads it
  and the rules above apply);
- a Job whose pods read its params Secret (``manifests.params_secret``: sensitive params, or
  params too large for the pod template, ``manifests.params_inline``) gets that Secret applied
  with an owner reference to the Job, so deleting the Job deletes it; as it needs the Job's
  uid, the Job is created suspended and released once its Secret exists, so no pod ever starts
  without it (a Job left suspended by an interrupted apply is released when it is adopted, its
  Secret applied first if its pods read one — also one an earlier version of substratus made,
  which put every Job's params in a Secret). Any other Job is one create request: its pods
  may start at once;
- while waiting, the phase line shows what the pod does; a pod that cannot pull its image or
  misses a Secret fails the run at once, one that stays unschedulable longer than
  ``timing.unschedulable`` fails it with the scheduler's reason (the Job is deleted then, so it
  cannot start later by surprise); a Job that fails reports the pods' reasons (``OOMKilled``,
  exit codes) and the tail of the main container's log; a Job the controller cannot create pods
  for (quota) reports the event;
- a run on more than one node (``indexed``) is an Indexed Job whose headless Service is applied
  like the params Secret (owned by the Job, before it is released); it succeeds when every rank
  has (``completions``), and fails with its first failed rank;
- each failed pod is a failed attempt of the run (``spec.retries``: the Job's
  ``backoffLimit``), reported through ``ctx.restart`` (``Attempts``) with its reason (exit
  code, ``OOMKilled``, preempted or evicted); a Job that fails names how many attempts it made;
- a run on more than one node is retried as one (``run_ranks``): its Job is one attempt
  (``backoffLimit`` 0: the first failed rank fails it, the Job controller stops the others);
  while retries last, the failed Job is deleted — with the params Secret and the Service it
  owns, so nothing of the old attempt is adopted — and the Job of the next attempt created;
  each failed attempt is reported with the rank that failed first;
- cancellation raises ``Detached``: the Job goes on and the next apply adopts it;
- Jobs are observed through their namespace's ``board``: one LIST of the Jobs and one of their
  pods per poll serve every Job being waited for at once.

Returns the finished Job. ``state(job)`` is ``succeeded`` / ``failed`` / ``running``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from substratus.engine.attempts import FailedAttempt
from substratus.engine.failure import Failure
from substratus.engine.runtime import Detached, Owner, RunContext
from substratus.runtimes.kubernetes import guard, indexed, manifests, names
from substratus.runtimes.kubernetes import pods as podinfo
from substratus.runtimes.kubernetes.board import board
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.waits import Ref, Timing, delete_and_wait

LOG_TAIL = 30


class Attempts:
    """The pods of one Job seen while waiting for it, as the attempts of its run: numbered by
    creation, each failed one reported through ``RunContext.restart`` once another pod replaced
    it (or, ``ended``, the Job finished: the last failed one is then final). A pod that is gone
    before it ended was deleted — preempted or evicted (its ``DisruptionTarget`` may not have
    been seen: the Job controller lets such a pod go at once) — and did not count."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, str]] = {}  # uid -> (creationTimestamp, name)
        self.last: dict[str, dict[str, Any]] = {}  # uid -> the pod as last seen

    def report(self, pods: list[dict[str, Any]], ctx: RunContext, ended: bool) -> int:
        """Report the failed attempts among ``pods`` (and those gone since); how many attempts
        were seen."""
        current = set()
        for pod in pods:
            meta = pod.get("metadata") or {}
            uid = str(meta.get("uid") or meta.get("name") or "")
            current.add(uid)
            self.last[uid] = pod
            self.seen.setdefault(uid, (str(meta.get("creationTimestamp") or ""), uid))
        order = sorted(self.seen, key=lambda uid: self.seen[uid])
        for n, uid in enumerate(order, start=1):
            found = _why_failed(self.last[uid], gone=uid not in current)
            if found is not None and (n < len(order) or ended):
                why, counted = found
                ctx.restart(FailedAttempt(n, why, counted, final=ended and n == len(order)))
        return len(order)


def _why_failed(pod: Mapping[str, Any], gone: bool) -> tuple[str, bool] | None:
    """Why the pod of an attempt failed (``pods.failed_attempt``); a pod ``gone`` before it
    succeeded or failed was deleted: a disruption."""
    found = podinfo.failed_attempt(pod)
    if found is not None or not gone:
        return found
    if (pod.get("status") or {}).get("phase") == "Succeeded":
        return None
    name = (pod.get("metadata") or {}).get("name", "?")
    return f"preempted or evicted: its pod {name} was deleted before it ended", False


def state(job: Mapping[str, Any]) -> str:
    status = job.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
        if c.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    completions = int((job.get("spec") or {}).get("completions") or 1)
    if int(status.get("succeeded") or 0) >= completions:  # every rank of an Indexed Job
        return "succeeded"
    return "running"


def _failed_condition(job: Mapping[str, Any]) -> str:
    """The reason of ``Failed``, else of ``FailureTarget`` (set first, while pods terminate)."""
    found = {
        c.get("type"): c
        for c in (job.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }
    c = found.get("Failed") or found.get("FailureTarget") or {}
    return f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ")


def _explain(cluster: Cluster, namespace: str, pods: list[dict[str, Any]]) -> str:
    parts = [podinfo.failure(pods)]
    main = podinfo.main_container_of(pods)
    if main is not None:
        tail = cluster.log(namespace, *main, tail=LOG_TAIL).rstrip()
        if tail:
            parts.append(f"last {LOG_TAIL} lines of the log of {main[0]}/{main[1]}:\n{tail}")
        else:
            parts.append(f"kubectl logs -n {namespace} {main[0]} -c {main[1]}")
    return "\n".join(p for p in parts if p)


def _create_failure(cluster: Cluster, namespace: str, name: str) -> str:
    """The reason the Job controller gives for not creating pods (quota, admission), if any."""
    events = cluster.list("Event", namespace, "", f"involvedObject.name={name}")
    for ev in sorted(events, key=lambda e: str(e.get("lastTimestamp") or "")):
        if ev.get("reason") == "FailedCreate":
            return str(ev.get("message", ""))
    return ""


class RanksFailed(Failure):
    """The Job of one attempt of a run on more than one node failed (``wait``): ``job`` as
    last seen, ``attempt`` its attempt, ``failed`` the failed attempts before it, ``reason``
    why this one failed (``FailedAttempt.reason``)."""

    def __init__(self, failure: Failure, job: Mapping[str, Any], reason: str, attempt: int) -> None:
        super().__init__(failure.summary, failure.detail)
        self.job, self.reason, self.attempt = job, reason, attempt
        self.failed = indexed.attempt_of(job)[1]


# The objects of one attempt of a run on more than one node: the Job, its params Secret (or
# None) and its headless Service; ``MakeAttempt`` makes those of attempt N after the failed ones.
Attempt = tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]
MakeAttempt = Callable[[int, Sequence[FailedAttempt]], Attempt]


def run_ranks(
    cluster: Cluster,
    make: MakeAttempt,
    retries: int,
    ctx: RunContext,
    timing: Timing,
    owner: Owner,
    recorded: bool = False,
) -> dict[str, Any]:
    """Run a job on more than one node, retried as one up to ``retries`` times (module
    docstring): the Job of the attempt that succeeded. An attempt adopted from an interrupted
    apply goes on with its own number."""
    attempt: int = 1
    failed: list[FailedAttempt] = []
    while True:
        job, params, service = make(attempt, failed)
        try:
            return run(cluster, job, params, ctx, timing, owner, recorded, service)
        except RanksFailed as exc:
            this = FailedAttempt(exc.attempt, exc.reason, final=exc.attempt > retries)
            if retries or exc.attempt > 1:
                ctx.restart(this)
            if this.final:
                raise Failure(exc.summary, exc.detail) from None
            ctx.phase(f"attempt {exc.attempt} failed: every rank starts again")
            _delete_attempt(cluster, exc.job, ctx, timing)
            attempt, failed = exc.attempt + 1, [*exc.failed, this]


def _delete_attempt(
    cluster: Cluster, job: Mapping[str, Any], ctx: RunContext, timing: Timing
) -> None:
    """Delete the failed Job of an attempt and wait until it, its pods and the objects it owns
    (params Secret, rank Service) are gone: the next attempt makes its own."""
    meta = job["metadata"]
    ns, uid = str(meta["namespace"]), str(meta.get("uid") or "")
    refs = [_ref(job)]
    for kind, name in (
        ("Secret", names.params_name(str(meta["name"]))),
        ("Service", indexed.service_name(str(meta["name"]))),
    ):
        found = cluster.get(kind, ns, name)
        owners = ((found or {}).get("metadata") or {}).get("ownerReferences") or []
        if found is not None and any(o.get("uid") == uid for o in owners):
            refs.append(Ref(kind, ns, name, str(found["metadata"].get("uid") or "")))
    delete_and_wait(cluster, refs, ctx, timing)


def run(
    cluster: Cluster,
    job: dict[str, Any],
    params: dict[str, Any] | None,
    ctx: RunContext,
    timing: Timing,
    owner: Owner,
    recorded: bool = False,
    service: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``job`` (with the params Secret ``params``, applied if the Job's pods read it, and
    the headless Service of a run on more than one node, ``indexed``) and wait (module
    docstring)."""
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    address = str(job["metadata"]["annotations"][names.ADDRESS])
    secret = None if params is None else str(params["metadata"]["name"])
    if secret in manifests.mounted_secrets(job) or service is not None:
        job["spec"]["suspend"] = True  # its pods wait for what they read
    live = _start(cluster, job, ctx, timing, owner, address, recorded)
    uid = str((live.get("metadata") or {}).get("uid") or "")
    if params is not None and secret in manifests.mounted_secrets(live):
        params["metadata"]["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}
        ]
        guard.put(cluster, params, None, owner, address, recorded)
    if service is not None:  # rank 0's DNS name exists before any rank starts
        guard.put(cluster, indexed.owned_by(service, live), None, owner, address, recorded)
    if (live.get("spec") or {}).get("suspend"):
        cluster.merge("Job", ns, name, uid, {"spec": {"suspend": False}})
    return wait(cluster, ns, name, ctx, timing, job["metadata"]["labels"].get(names.VERSION, ""))


def _start(
    cluster: Cluster,
    job: dict[str, Any],
    ctx: RunContext,
    timing: Timing,
    owner: Owner,
    address: str,
    recorded: bool,
) -> dict[str, Any]:
    """The Job, created — or, when an interrupted apply made it (the create is refused), that
    one checked (``guard``) and adopted, or deleted and created anew if it failed."""
    name = job["metadata"]["name"]
    ctx.phase(f"creating job {name}")
    made = cluster.apply_new(job)
    if made is not None:
        return made
    existing = guard.check(cluster, [job], owner, address, recorded)[0]
    if existing is not None and state(existing) == "failed":
        ctx.phase(f"deleting the failed job {name} of an earlier attempt")
        delete_and_wait(cluster, [_ref(existing)], ctx, timing)
        existing = None
    if existing is not None:
        ctx.phase(f"adopting job {name}")
        return existing
    return guard.put(cluster, job, None, owner, address, recorded)


def _ref(job: Mapping[str, Any]) -> Ref:
    meta = job["metadata"]
    return Ref("Job", str(meta["namespace"]), str(meta["name"]), str(meta.get("uid") or ""))


def wait(
    cluster: Cluster, ns: str, name: str, ctx: RunContext, timing: Timing, version: str = ""
) -> dict[str, Any]:
    """Wait until the Job ``name`` (labelled with ``version``) succeeds; see the module
    docstring. Observed through the namespace's ``board``, with every other Job waited for."""
    jobs_board = board(cluster, ns)
    with jobs_board.waiting(name, version):
        asked = time.monotonic()
        since: float | None = None  # unschedulable since
        no_pods = 0
        last = ""
        attempts: Attempts | None = Attempts()
        while True:
            if ctx.cancelled.is_set():
                raise Detached(f"job {ns}/{name} keeps running; the next apply adopts it")
            snap = jobs_board.read(name, asked)
            job = snap.jobs.get(name) or cluster.get("Job", ns, name)
            if job is None:
                raise Failure(
                    f"job {ns}/{name} was deleted while substratus waited for it",
                    "apply again to run it anew",
                )
            current = state(job)
            pods = snap.pods.get(name) or []
            if attempts is not None and _ranks(job) > 1:  # one attempt: reported by run_ranks
                for before in indexed.attempt_of(job)[1]:
                    ctx.restart(before)  # an adopted attempt's, once per number
                attempts = None
            made = 1 if attempts is None else attempts.report(pods, ctx, current != "running")
            if current == "succeeded":
                return job
            if current == "failed":
                raise _failed(cluster, job, pods, made)
            found = podinfo.problem(pods)
            since = _check_pods(cluster, job, pods, found, timing, since)
            no_pods = no_pods + 1 if not pods else 0
            if no_pods >= 3:
                _check_creation(cluster, job, timing)
            text = podinfo.progress(pods)
            if found is not None:
                text = f"Unschedulable: {found.message}"
            line = f"job {name}: {text}"
            if line != last:
                ctx.phase(line)
                last = line
            asked = time.monotonic()
            ctx.cancelled.wait(timing.poll)


def _ranks(job: Mapping[str, Any]) -> int:
    """How many nodes the Job's run spans (an Indexed Job's ``completions``; else 1)."""
    spec = job.get("spec") or {}
    return int(spec.get("completions") or 1) if spec.get("completionMode") == "Indexed" else 1


def _failed(
    cluster: Cluster, job: Mapping[str, Any], pods: list[dict[str, Any]], made: int
) -> Failure:
    """The failure of the Job ``job`` (``made`` attempts; a run on more than one node counts
    its attempts by Job: ``RanksFailed``)."""
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    nodes = _ranks(job)
    if nodes > 1:
        made = indexed.attempt_of(job)[0]
    after = f" after {made} attempts" if made > 1 else ""
    failure = Failure(
        f"job {ns}/{name} failed{after}: {_failed_condition(job)}", _explain(cluster, ns, pods)
    )
    if nodes == 1:
        return failure
    return RanksFailed(failure, job, podinfo.failed_rank(pods, nodes), made)


def _check_pods(
    cluster: Cluster,
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    found: podinfo.Problem | None,
    timing: Timing,
    unschedulable_since: float | None,
) -> float | None:
    """Fail (deleting the Job) on a fatal pod problem, or one unschedulable for too long;
    returns since when the pods are unschedulable (None: they are not)."""
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    if found is not None and found.kind == "fatal":
        detail = _explain(cluster, ns, pods)
        delete_and_wait(cluster, [_ref(job)], RunContext(), timing)
        raise Failure(f"job {ns}/{name}: pod {found.pod}: {found.message}", detail)
    if found is None:
        return None
    since = unschedulable_since or time.monotonic()
    waited = time.monotonic() - since
    if waited >= timing.unschedulable:
        delete_and_wait(cluster, [_ref(job)], RunContext(), timing)
        raise Failure(
            f"job {ns}/{name}: Unschedulable for {waited:.0f} s: {found.message}",
            "No node offers what the pod asks for (GPU type and count, CPU, memory) "
            "and none was added. Check the GPU type against the cluster's node pools, "
            "lower resources, or enable node auto-provisioning. The Job was deleted.",
        )
    return since


def _check_creation(cluster: Cluster, job: dict[str, Any], timing: Timing) -> None:
    """Fail (deleting the Job) when the Job controller says why it cannot create pods."""
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    why = _create_failure(cluster, ns, name)
    if why:
        delete_and_wait(cluster, [_ref(job)], RunContext(), timing)
        quota = "exceeded quota" in why
        raise Failure(
            f"job {ns}/{name} cannot create its pod: {why}",
            "Raise the namespace's ResourceQuota or ask for fewer resources."
            if quota
            else "Fix what the message names and apply again.",
        )
