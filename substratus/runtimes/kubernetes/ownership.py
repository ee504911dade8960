"""Whose an object is: the rules by which the Kubernetes runtime touches only what its state
made (DESIGN §8 "Artifacts are owned … Cluster objects likewise carry the identity of the state
that made them"). Pure; no I/O.

``whose(obj, owner)`` reads an object's labels (``names``):

- ``ours``: ``app.kubernetes.io/managed-by: substratus`` and the lineage and workspace of
  ``owner`` — made by this state;
- ``other``: made by substratus for another state (another lineage, or another workspace);
- ``unclaimed``: made by substratus before objects carried their state's identity (no lineage
  label). Such an object is this state's only when the state records the resource it belongs to
  and its address label is that resource's (``is_mine(…, claim=address)``): the state's record
  is then the proof that it made it. The next apply stamps the identity on it;
- ``foreign``: not made by substratus at all.

Apply writes only objects that are ``is_mine`` (or do not exist), destroy and garbage collection
delete only those; everything else is refused (``refusal``: what it is, whose, what to do) or
left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from substratus.engine.runtime import Owner
from substratus.runtimes.kubernetes import names

Whose = Literal["ours", "other", "unclaimed", "foreign"]


def _meta(obj: Mapping[str, Any]) -> tuple[Mapping[str, str], Mapping[str, str]]:
    meta = obj.get("metadata") or {}
    return meta.get("labels") or {}, meta.get("annotations") or {}


def workspace_of(obj: Mapping[str, Any]) -> str | None:
    """The workspace an object says it belongs to (its annotation, else its label)."""
    labels, annotations = _meta(obj)
    return annotations.get(names.WORKSPACE) or labels.get(names.WORKSPACE)


def whose(obj: Mapping[str, Any], owner: Owner) -> Whose:
    labels, annotations = _meta(obj)
    if labels.get(names.MANAGED_BY) != names.MANAGER:
        return "foreign"
    lineage = labels.get(names.LINEAGE)
    if not lineage:
        return "unclaimed"
    if names.WORKSPACE in annotations:
        same_workspace = annotations[names.WORKSPACE] == owner.workspace
    else:
        same_workspace = labels.get(names.WORKSPACE) == names.label_value(owner.workspace)
    return "ours" if owner.lineage == lineage and same_workspace else "other"


def is_mine(obj: Mapping[str, Any], owner: Owner, claim: str | None = None) -> bool:
    """Whether ``owner``'s state may change or delete ``obj``. ``claim``: the address of a
    resource the state records, which makes an ``unclaimed`` object of that address its own."""
    found = whose(obj, owner)
    if found == "ours":
        return True
    labels, _ = _meta(obj)
    return (
        found == "unclaimed"
        and claim is not None
        and labels.get(names.ADDRESS) == names.label_address(claim)
    )


def made_by(obj: Mapping[str, Any], owner: Owner) -> str:
    """Who made ``obj``, as the end of a sentence ("It was …")."""
    found = whose(obj, owner)
    labels, _ = _meta(obj)
    if found == "foreign":
        return "not made by substratus (it has no app.kubernetes.io/managed-by: substratus label)"
    if found == "unclaimed":
        return (
            f"made by substratus for {labels.get(names.ADDRESS, '?')} before objects carried the "
            "identity of their state, and this state does not record it"
        )
    lineage = labels.get(names.LINEAGE, "?")
    workspace = workspace_of(obj) or "?"
    if lineage == owner.lineage:
        return f"made by workspace {workspace!r} of this configuration's state lineage"
    return f"made by another substratus state (lineage {lineage}, workspace {workspace!r})"


def describe(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace}/{name}"


def refusal(
    kind: str, namespace: str, name: str, obj: Mapping[str, Any], owner: Owner, address: str
) -> tuple[str, str]:
    """(summary, detail) of the refusal to take over ``obj``, which ``address`` would create."""
    what = describe(kind, namespace, name)
    summary = f"{what} already exists and is not this state's"
    detail = (
        f"{address} would create {what}, but it was {made_by(obj, owner)}. substratus never "
        "takes over an object its state did not create. Delete it if nobody needs it "
        f"(kubectl delete -n {namespace} {kind.lower()} {name}), or rename {address} (its "
        "objects are named after it), or apply to another namespace (--namespace). A workspace "
        "other than default names its objects apart (--workspace)."
    )
    return summary, detail
