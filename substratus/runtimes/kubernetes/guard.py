"""Guarded writes and deletes: the only way the Kubernetes runtime changes the objects of a
resource, so that it touches nothing its state did not make (``ownership``).

- ``check(cluster, objs, owner, address, recorded)`` reads every object a step will write (one
  GET each; a Secret's metadata only) and refuses — a ``Failure`` naming each object, whose
  it is and what to do, before anything is written — when one exists and is not the state's;
- ``put(cluster, obj, live, owner, address, recorded)`` writes one checked object: creates it
  when it did not exist (``Cluster.apply_new``: refused by the API server if someone created it
  meanwhile, and then checked again), else applies onto that very object (``Cluster.apply``
  with its uid); ``ensure`` is ``check`` then ``put`` of each;
- ``mine(cluster, refs, owner, claim, ctx)`` reads objects to delete (metadata only) and keeps
  those that are the state's (with their uids); the others are reported on the phase line and
  left alone;
- ``remove(cluster, refs, ctx, timing)`` deletes them with uid preconditions and waits until
  they are gone (``waits.delete_and_wait``).

``address`` is the resource's; ``recorded`` says whether the state records it (which makes an
object it made before objects carried identities its own: ``ownership.is_mine``); ``claim`` is
the address when it does, else None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus.engine.failure import Failure
from substratus.engine.runtime import Owner, RunContext
from substratus.runtimes.kubernetes import ownership
from substratus.runtimes.kubernetes.cluster import Cluster
from substratus.runtimes.kubernetes.waits import Ref, Timing, delete_and_wait


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return str(obj["kind"]), str(meta["namespace"]), str(meta["name"])


def taken(
    found: Sequence[tuple[tuple[str, str, str], Mapping[str, Any]]], owner: Owner, address: str
) -> Failure:
    """The refusal to take over the objects ``found`` (``(kind, ns, name), live object``)."""
    parts = [ownership.refusal(*key, live, owner, address) for key, live in found]
    summary = (
        parts[0][0]
        if len(parts) == 1
        else "; ".join(s.removesuffix(" already exists and is not this state's") for s, _ in parts)
        + " already exist and are not this state's"
    )
    return Failure(summary, "\n".join(d for _, d in parts), status=409)


def check(
    cluster: Cluster,
    objs: Sequence[Mapping[str, Any]],
    owner: Owner,
    address: str,
    recorded: bool,
) -> list[dict[str, Any] | None]:
    """The live object of each of ``objs`` (None: absent; a Secret's metadata alone: its data
    is never read); refuses if one is not ours."""
    live = [cluster.get(*_key(o), metadata_only=o["kind"] == "Secret") for o in objs]
    claim = address if recorded else None
    foreign = [
        (_key(o), found)
        for o, found in zip(objs, live, strict=True)
        if found is not None and not ownership.is_mine(found, owner, claim)
    ]
    if foreign:
        raise taken(foreign, owner, address)
    return live


def put(
    cluster: Cluster,
    obj: dict[str, Any],
    live: Mapping[str, Any] | None,
    owner: Owner,
    address: str,
    recorded: bool,
) -> dict[str, Any]:
    """Write ``obj`` (checked by ``check``: ``live`` is what it found)."""
    if live is None:
        made = cluster.apply_new(obj)
        if made is not None:
            return made
        live = check(cluster, [obj], owner, address, recorded)[0]  # created meanwhile
        if live is None:
            kind, ns, name = _key(obj)
            raise Failure(
                f"{ownership.describe(kind, ns, name)} keeps being created and deleted",
                "Someone else changes it at the same time; plan and apply again.",
            )
    return cluster.apply(obj, str(live["metadata"]["uid"]))


def ensure(
    cluster: Cluster, objs: Sequence[dict[str, Any]], owner: Owner, address: str, recorded: bool
) -> list[dict[str, Any]]:
    """``check`` all, then ``put`` each in order; the objects as applied."""
    live = check(cluster, objs, owner, address, recorded)
    return [
        put(cluster, o, found, owner, address, recorded)
        for o, found in zip(objs, live, strict=True)
    ]


def mine(
    cluster: Cluster,
    refs: Sequence[tuple[str, str, str]],
    owner: Owner,
    claim: str | None,
    ctx: RunContext,
) -> list[Ref]:
    """Of ``(kind, ns, name)`` objects, those that exist and are ours, with their uids
    (``claim``: the address of the resource when the state records it)."""
    out: list[Ref] = []
    for kind, ns, name in refs:
        live = cluster.get(kind, ns, name, metadata_only=True)
        if live is None:
            continue
        if not ownership.is_mine(live, owner, claim):
            what = ownership.describe(kind, ns, name)
            ctx.phase(f"left {what} alone: it was {ownership.made_by(live, owner)}")
            continue
        out.append(Ref(kind, ns, name, str(live["metadata"]["uid"])))
    return out


def remove(cluster: Cluster, refs: Sequence[Ref], ctx: RunContext, timing: Timing) -> None:
    """Delete ``refs`` (only the objects with those uids) and wait until they are gone."""
    delete_and_wait(cluster, refs, ctx, timing)
