"""A Notebook on a cluster: its Pod + Service, params Secret and token Secret (DESIGN §8).

``start`` checks the token Secret, the params Secret, the Pod and the Service first — one that
exists and is not the state's is refused before anything is written (``guard``), so a Secret
someone else made is never the notebook's token or params. Then:

- the token Secret is created once (a random token, never printed; a plain create, refused if
  the name was taken meanwhile) and kept across runs;
- the pod runs at its digest: a pod's spec is immutable, so a pod of another digest — or, for
  a requested replacement (``recreate``), of another run — or one that ended is deleted first
  (only that pod: uid precondition);
- the Service is applied and ``start`` waits until the pod is Ready (``servers.Clock``; the
  answer to the pod's write is the first observation). A pod that is gone before it is Ready —
  its node went away (a spot node reclaimed, a node deleted) or it was evicted: nothing else
  makes a bare pod again — is created again, up to ``RECREATE`` times; one replaced by
  another pod of that name fails the start.

``suspend`` deletes the pod when it is the state's and keeps everything else. ``token`` reads
the notebook's token for ``substratus notebook``: only from the Secret apply made — the uid it
recorded (``token_uid``), or, for a record made before uids were recorded, a Secret substratus
made for that notebook before objects carried identities.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

from substratus.engine.failure import Failure
from substratus.engine.runtime import Owner, RunContext
from substratus.runtimes.kubernetes import guard, names, ownership
from substratus.runtimes.kubernetes import pods as podinfo
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.servers import Clock
from substratus.runtimes.kubernetes.waits import Ref, Timing, delete_and_wait

RECREATE = 3  # times a notebook pod deleted while it started is created again


def _ready(pod: Mapping[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def _ref(obj: Mapping[str, Any]) -> Ref:
    meta = obj["metadata"]
    return Ref(str(obj.get("kind") or "Pod"), meta["namespace"], meta["name"], meta["uid"])


def _stale(live: Mapping[str, Any], pod: Mapping[str, Any], recreate: bool) -> bool:
    """Whether the live pod must make way for ``pod``."""
    meta = live.get("metadata") or {}
    want = pod["metadata"]
    digest = (meta.get("annotations") or {}).get(names.DIGEST)
    version = (meta.get("labels") or {}).get(names.VERSION)
    ended = (live.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    return (
        digest != want["annotations"][names.DIGEST]
        or ended
        or (recreate and version != want["labels"].get(names.VERSION))
    )


def _secret(
    cluster: Cluster,
    secret: dict[str, Any],
    live: dict[str, Any] | None,
    owner: Owner,
    address: str,
    recorded: bool,
) -> dict[str, Any]:
    """The token Secret: the live one (checked), else a new one with a random token."""
    if live is not None:
        return live
    secret["stringData"] = {"token": secrets.token_urlsafe(24)}
    made = cluster.create(secret)
    if made is None:  # someone created it meanwhile: only the state's would do
        found = guard.check(cluster, [secret], owner, address, recorded)[0]
        if found is None:
            raise Failure(f"Secret {secret['metadata']['name']} keeps changing; apply again")
        made = found
    return made


def start(
    cluster: Cluster,
    objs: tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]],
    ctx: RunContext,
    timing: Timing,
    owner: Owner,
    recorded: bool = False,
    recreate: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``objs``: the token Secret, params Secret, Pod and Service. Returns the ready pod, the
    Service and the Secret."""
    secret, params, pod, service = objs
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    address = str(pod["metadata"]["annotations"][names.ADDRESS])
    live = guard.check(cluster, objs, owner, address, recorded)
    token = _secret(cluster, secret, live[0], owner, address, recorded)
    guard.put(cluster, params, live[1], owner, address, recorded)
    existing = live[2]
    if existing is not None and _stale(existing, pod, recreate):
        ctx.phase(f"replacing pod {name}")
        delete_and_wait(cluster, [_ref(existing)], ctx, timing)
        existing = None
    ctx.phase(f"applying pod {name}")
    try:
        applied = guard.put(cluster, pod, existing, owner, address, recorded)
    except Failure as exc:
        if exc.status != 422 or existing is None:
            raise
        delete_and_wait(cluster, [_ref(existing)], ctx, timing)  # an immutable field changed
        applied = guard.put(cluster, pod, None, owner, address, recorded)
    svc = guard.put(cluster, service, live[3], owner, address, recorded)
    clock = Clock(
        ctx, timing, f"notebook pod {ns}/{name}", "The notebook's pod was replaced by this one."
    )
    current: dict[str, Any] | None = applied  # the write's answer is the first observation
    recreated = 0
    while True:
        if current is None and recreated < RECREATE:  # its node went away, or it was evicted
            recreated += 1
            ctx.phase(f"pod {name} was deleted while it started; creating it again")
            applied = current = guard.put(cluster, pod, None, owner, address, recorded)
        if current is None or current["metadata"].get("uid") != applied["metadata"]["uid"]:
            raise Failure(
                f"pod {ns}/{name} was deleted while it started"
                + (f" ({recreated + 1} times)" if current is None else ", and replaced"),
                "Something deletes the notebook's pods (a node that goes away, an eviction, "
                "another controller): look at the namespace's events, then apply again.",
            )
        if _ready(current):
            return current, svc, token
        if (current.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            raise Failure(f"notebook pod {ns}/{name} exited", podinfo.failure([current]))
        clock.tick(podinfo.progress([current]), podinfo.problem([current]))
        current = cluster.get("Pod", ns, name)


def suspend(
    cluster: Cluster,
    namespace: str,
    name: str,
    ctx: RunContext,
    timing: Timing,
    owner: Owner,
    claim: str | None,
) -> None:
    """Delete the notebook's pod (only the state's; ``claim`` as in ``guard.mine``)."""
    ctx.phase(f"suspending: deleting pod {name}")
    mine = guard.mine(cluster, [("Pod", namespace, name)], owner, claim, ctx)
    delete_and_wait(cluster, mine, ctx, timing)


def token(cluster: Cluster, namespace: str, address: str, outputs: Mapping[str, Any]) -> str:
    """The token of the Secret apply made for the notebook (see the module docstring); a
    Secret that is not that one is not even read (its metadata alone is)."""
    name = str(outputs.get("token_secret") or "")
    found = cluster.get("Secret", namespace, name, metadata_only=True) if name else None
    if found is None:
        raise Failure(
            f"the notebook token Secret {namespace}/{name} is missing",
            "Apply the notebook again: substratus notebook NAME",
        )
    uid = found["metadata"].get("uid")
    recorded = str(outputs.get("token_uid") or "")
    labels = found["metadata"].get("labels") or {}
    legacy = (  # recorded before uids were: only a Secret made then, for this notebook
        ownership.whose(found, Owner()) == "unclaimed"
        and labels.get(names.ADDRESS) == names.label_address(address)
    )
    ours = uid == recorded if recorded else legacy
    if not ours:
        raise Failure(
            f"the Secret {namespace}/{name} is not the token Secret substratus made for the "
            "notebook, so it is not used",
            "Someone replaced it. Delete it (kubectl delete -n NAMESPACE secret NAME) and apply "
            "the notebook again (substratus notebook NAME), which makes a new token.",
        )
    secret = cluster.get("Secret", namespace, name) or {}
    encoded = str((secret.get("data") or {}).get("token") or "")
    if (secret.get("metadata") or {}).get("uid") != uid or not encoded:
        raise Failure(
            f"the notebook token Secret {namespace}/{name} changed while it was read",
            "Apply the notebook again: substratus notebook NAME",
        )
    return base64.b64decode(encoded).decode()
