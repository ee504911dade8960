"""Lineage: canonical specs, digests, and why a resource changed (DESIGN §4).

A digest is the SHA-256 of a resource's *digest document*: its kind, its canonical spec (with
``lifecycle.ignoreChanges`` paths and the raw container source removed — the build's digest
stands for the source), the resolved source identity for builds (git commit, or the content hash
of a local directory), and the digests of its dependencies by role. Equal digests ⇒ nothing to do,
without diffing. ``field_changes`` runs deepdiff only for resources whose digest changed, to give
the changed field paths as reasons.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from deepdiff import DeepDiff

from substratus.engine.address import Address
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.engine.resource import Resource
from substratus.engine.sensitive import MARK as SENSITIVE_KEY
from substratus.engine.source import SourceError, hash_directory, resolve_git_ref


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def resolve_sources(resources: Iterable[Resource]) -> None:
    """Fill ``commit`` (git) or ``contentHash`` (local) into every build spec, in place."""
    diags: list[Diagnostic] = []
    cache: dict[tuple[str, str], str] = {}
    for res in resources:
        if res.kind != "build":
            continue
        try:
            if res.spec["source"] == "git":
                key = (res.spec["url"], res.spec["ref"])
                if key not in cache:
                    cache[key] = resolve_git_ref(*key)
                res.spec["commit"] = cache[key]
            else:
                res.spec["contentHash"] = hash_directory(res.spec["path"])
        except SourceError as exc:
            diags.append(
                Diagnostic.error(
                    "Cannot resolve build source",
                    f"{exc}.",
                    source=res.source,
                    address=str(res.address),
                    path="spec.container",
                )
            )
    if diags:
        raise DiagnosticError(diags)


def _drop(spec: dict[str, Any], dotted: str) -> None:
    parts = dotted.split(".")[1:]  # paths start with "spec."
    node: Any = spec
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and parts:
        node.pop(parts[-1], None)


def digest_spec(res: Resource) -> dict[str, Any]:
    """The part of the spec that determines the output (see module docstring)."""
    if res.kind == "build":
        keep = ("url", "commit", "path") if res.spec["source"] == "git" else ("contentHash",)
        return {"source": res.spec["source"], **{k: res.spec.get(k) for k in keep}}
    spec = res.spec
    container = spec.get("container") or {}
    if "local" in container or "git" in container:
        spec = {
            **spec,
            "container": {k: v for k, v in container.items() if k not in ("local", "git")},
        }
    if res.lifecycle.ignoreChanges:
        spec = copy.deepcopy(spec)
        for path in res.lifecycle.ignoreChanges:
            _drop(spec, path)
    return spec


def digest(res: Resource, dependency_digests: Mapping[Address, str]) -> str:
    deps = sorted(
        (d.role, str(d.address), dependency_digests.get(d.address, "")) for d in res.dependencies
    )
    doc = {"kind": res.kind, "spec": digest_spec(res), "deps": deps}
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def compute_digests(
    order: Iterable[Address],
    resources: Mapping[Address, Resource],
    external: Mapping[Address, str] | None = None,
) -> dict[Address, str]:
    """Digests in topological ``order`` (dependencies first); ``external`` adds read digests."""
    out: dict[Address, str] = dict(external or {})
    for addr in order:
        out[addr] = digest(resources[addr], out)
    return out


def field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Changed field paths (``spec.a.b``) between two canonical specs, sorted."""
    diff = DeepDiff(
        dict(before),
        dict(after),
        ignore_order=False,
        verbose_level=1,
        ignore_private_variables=False,
    )
    paths: set[str] = set()
    for key in (
        "values_changed",
        "type_changes",
        "dictionary_item_added",
        "dictionary_item_removed",
        "iterable_item_added",
        "iterable_item_removed",
    ):
        for item in diff.get(key, []):
            # a sensitive value is {"$sensitive": fingerprint}: the change is the field's own
            paths.add(_dotted(item).removesuffix(f".{SENSITIVE_KEY}"))
    return sorted(paths)


def _dotted(deepdiff_path: str) -> str:
    """root['a']['b'][0] -> spec.a.b[0]"""
    out = "spec"
    rest = deepdiff_path.removeprefix("root")
    while rest:
        if rest.startswith("['"):
            end = rest.index("']")
            out += "." + rest[2:end]
            rest = rest[end + 2 :]
        elif rest.startswith("["):
            end = rest.index("]")
            out += rest[: end + 1]
            rest = rest[end + 1 :]
        else:
            break
    return out
