"""A job run on more than one node on a cluster (``resources.nodes`` N above 1): an Indexed Job
and a headless Service, so that rank 0 has a stable DNS name (issue #15).

``spread(job, nodes)`` turns the Job of ``manifests.job`` into the Indexed Job of N ranks and
returns its Service; ``jobs.run`` applies the Service once the Job exists, owned by it:

- the Job: ``completionMode: Indexed``, ``completions`` = ``parallelism`` = N, each pod's
  ``subdomain`` the Service's name and, with the job's own pods label, a required pod
  anti-affinity on ``kubernetes.io/hostname``: one rank per node, each with all of the
  resources (what the estimate and the capacity check count). ``backoffLimit`` 0: the first
  rank that fails fails the Job, and the Job controller stops the other ranks. A run is retried
  as a whole (``spec.retries``): ``jobs.run_ranks`` deletes the failed Job and creates the one
  of the next attempt — ``spread(…, attempt, failed)`` puts the attempt on the Job
  (``ATTEMPT_ANNOTATION``, with the failed attempts before it in ``FAILED_ANNOTATION``, so an
  apply that adopts it knows them) and gives every rank ``SUBSTRATUS_ATTEMPT`` as a value (the
  command is not wrapped to count starts: a rank replaced after a disruption, which the
  ``podFailurePolicy`` of ``manifests.job`` does not count, is still in the same attempt);
- every rank's environment: ``MASTER_ADDR`` = rank 0's name
  ``{job}-0.{service}.{namespace}.svc`` (the pod hostname the Job controller gives index 0,
  in the Service's subdomain), ``MASTER_PORT`` = ``MASTER_PORT`` (29500), ``WORLD_SIZE`` = N,
  and ``RANK`` = ``NODE_RANK`` = the pod's completion index, read through the downward API
  (annotation ``batch.kubernetes.io/job-completion-index``) — torchrun's and PyTorchJob's
  convention, the same as the local runtime's (``runtimes.local.ranks``);
- the Service: headless (``clusterIP: None``), ``publishNotReadyAddresses`` (a rank resolves as
  soon as its pod has an address, not only once it is Ready), selecting the Job's pods by
  ``batch.kubernetes.io/job-name``, labelled and annotated like every other object of the
  resource (``manifests.metadata``: address, digest, owner identity, version), so destroy finds
  it as the state's (``cleanup``) and deletes it with a uid precondition; its owner reference
  to the Job removes it with the Job (garbage collection of old versions).

A pod's hostname is ``{job}-{index}`` and must be a DNS label (≤ 63 characters), so the Jobs of
such runs have shorter names (``names.job_name(…, nodes)``). Pure functions; no I/O.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from substratus.engine.attempts import FailedAttempt
from substratus.runtimes.contract import ATTEMPT_ENV
from substratus.runtimes.kubernetes.manifests import ATTEMPT_SCRIPT

MASTER_PORT = 29500
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
ATTEMPT_ANNOTATION = "substratus.ai/attempt"
FAILED_ANNOTATION = "substratus.ai/failed-attempts"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
HOSTNAME = "kubernetes.io/hostname"


def service_name(job: str) -> str:
    """The headless Service of the Job ``job``: its name (a Service name must start with a
    letter: ``r`` is put before one that does not)."""
    return job if job[:1].isalpha() else f"r{job}"


def master_addr(job: str, namespace: str) -> str:
    """Rank 0's DNS name: ``{job}-0.{service}.{namespace}.svc``."""
    return f"{job}-0.{service_name(job)}.{namespace}.svc"


def rank_env(job: str, namespace: str, nodes: int) -> list[dict[str, Any]]:
    """The rank variables of every pod of the Job (``RANK``/``NODE_RANK`` from its index)."""
    index = {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}
    return [
        {"name": "MASTER_ADDR", "value": master_addr(job, namespace)},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "WORLD_SIZE", "value": str(nodes)},
        {"name": "RANK", "valueFrom": copy.deepcopy(index)},
        {"name": "NODE_RANK", "valueFrom": copy.deepcopy(index)},
    ]


def _one_per_node(job: str) -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": {JOB_NAME_LABEL: job}}, "topologyKey": HOSTNAME}
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def spread(
    job: dict[str, Any], nodes: int, attempt: int = 1, failed: Sequence[FailedAttempt] = ()
) -> dict[str, Any]:
    """Make ``job`` (``manifests.job``) the Indexed Job of ``nodes`` ranks — attempt
    ``attempt`` of the run, after the ``failed`` ones — in place, and return its headless
    Service (see the module docstring)."""
    meta = job["metadata"]
    meta["annotations"][ATTEMPT_ANNOTATION] = str(attempt)
    if failed:
        meta["annotations"][FAILED_ANNOTATION] = json.dumps([a.to_json() for a in failed])
    name, namespace = str(meta["name"]), str(meta["namespace"])
    service = service_name(name)
    spec = job["spec"]
    spec.update(
        {
            "completionMode": "Indexed",
            "completions": nodes,
            "parallelism": nodes,
            "backoffLimit": 0,
        }
    )
    pod = spec["template"]["spec"]
    pod["subdomain"] = service
    pod["affinity"] = _one_per_node(name)
    for container in pod["containers"]:
        given = [*rank_env(name, namespace, nodes), {"name": ATTEMPT_ENV, "value": str(attempt)}]
        ours = {e["name"] for e in given}
        env = [e for e in container.get("env") or [] if e.get("name") not in ours]
        container["env"] = [*env, *given]
        command = container.get("command") or []
        if command[:3] == ["/bin/sh", "-c", ATTEMPT_SCRIPT]:  # no count: the value above
            container["command"] = command[4:]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**copy.deepcopy(meta), "name": service},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: name},
            "ports": [{"name": "master", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
        },
    }


def owned_by(service: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """``service`` with an owner reference to the live ``job`` (removed with it)."""
    meta = job.get("metadata") or {}
    ref = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": str(meta.get("name") or ""),
        "uid": str(meta.get("uid") or ""),
    }
    return {**service, "metadata": {**service["metadata"], "ownerReferences": [ref]}}


def attempt_of(job: Mapping[str, Any]) -> tuple[int, list[FailedAttempt]]:
    """The attempt a Job made by ``spread`` is, and the failed attempts before it."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    try:
        attempt = max(1, int(annotations.get(ATTEMPT_ANNOTATION) or 1))
        items = json.loads(annotations.get(FAILED_ANNOTATION) or "[]")
        failed = [
            FailedAttempt(int(a["attempt"]), str(a["reason"]), bool(a.get("counted", True)))
            for a in items
        ]
    except (ValueError, TypeError, KeyError):  # not ours to trust: the attempt alone
        return 1, []
    return attempt, failed


def rank_of(pod: dict[str, Any]) -> str | None:
    """The completion index of an Indexed Job's pod (None for any other pod)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    index = annotations.get(INDEX_ANNOTATION)
    return str(index) if index is not None else None
