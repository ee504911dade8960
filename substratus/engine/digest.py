"""Lineage: canonical specs, digests, and why a resource changed (DESIGN §4).

A digest is the SHA-256 of a resource's *digest document*: its kind, its *effective* spec and the
digests of its dependencies by role. Equal digests ⇒ nothing to do, without diffing.

- The effective spec (``effective_spec``) is the configured canonical spec, except that the paths
  in ``lifecycle.ignoreChanges`` keep the values recorded by the last apply (Terraform's
  ``ignore_changes``): a change there is ignored, and adding or removing an ignore path changes
  nothing that runs. It is what the plan shows as ``after`` and what a runtime runs.
- A resource's digest stands for content, never position: the raw container source (``local``,
  ``git``) is left out (the build's digest stands for it), a build's digest is its source content
  (a local directory's content hash; a git commit and sub-path — not where the repository or the
  directory is), dependencies count by role and digest, not by address. So renaming the
  configuration directory, adding an unrelated resource, reordering files, or editing
  ``lifecycle`` never changes a digest (DESIGN §12). Nor does ``spec.retries``
  (``kinds.RECORD_ONLY_FIELDS``): how often a failed run starts again does not change what it makes;
  a change of it is a record-only update (the plan shows it, nothing runs).
- A ``sensitive:`` param counts by its *keyed* fingerprint: the salted scrypt of its value under
  the state's salt (``engine.sensitive``), never the value itself. A digest is published in every
  plan (``digest_after``), so a digest over the value would let anyone holding the plan guess a
  short secret at SHA-256 speed; keyed, a guess needs the state's salt and costs a scrypt. Until
  the state has a salt the fingerprint is ``PENDING`` — the digest then does not depend on the
  value at all — and the apply that makes the salt computes the plan's digests again under it
  (``rekeyed``) before it records anything, so no record ever holds a digest made without it.

Records written by earlier versions hold *format 1* digests (``legacy_digests``: ignored paths
dropped, specs masked, dependencies with their addresses) or *format 2* digests (as now, but over
the plain sensitive values: ``plain_digests``); the planner recognises an unchanged resource by
them and only rewrites its record. ``field_changes`` runs deepdiff only for resources whose
digest changed, to give the changed field paths as reasons.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from substratus.engine.address import Address
from substratus.engine.build_source import SourceError, hash_directory, resolve_git_ref
from substratus.engine.diagnostic import Diagnostic, DiagnosticError
from substratus.engine.kinds import RECORD_ONLY_FIELDS
from substratus.engine.plan import Action, ResourceChange
from substratus.engine.resource import Resource
from substratus.engine.sensitive import MARK as SENSITIVE_KEY
from substratus.engine.sensitive import as_marked, legacy_masked, seal, unmask
from substratus.engine.statefile import ResourceRecord

_ABSENT = object()
SOURCE_UNRESOLVED = "Cannot resolve build source"  # the summary of a source that did not resolve


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def resolve_sources(resources: Iterable[Resource]) -> None:
    """Fill ``commit`` (git) or ``contentHash`` (local) into every build spec, in place."""
    diags: list[Diagnostic] = []
    cache: dict[tuple[str, str], str] = {}
    for res in resources:
        if res.kind != "build":
            continue
        where = res.origin.get("url") or res.origin.get("path") or ""
        try:
            if res.spec["source"] == "git":
                key = (res.origin.get("url") or res.spec["url"], res.spec["ref"])
                if key not in cache:
                    cache[key] = resolve_git_ref(*key)
                res.spec["commit"] = cache[key]
            else:
                res.spec["contentHash"] = hash_directory(where or res.spec["path"])
        except SourceError as exc:
            diags.append(
                Diagnostic.error(
                    SOURCE_UNRESOLVED,
                    f"{exc}.",
                    source=res.source,
                    address=str(res.address),
                    path="spec.container",
                )
            )
    if diags:
        raise DiagnosticError(diags)


def _parts(dotted: str) -> list[str]:
    return dotted.split(".")[1:]  # paths start with "spec."


def _get(spec: Mapping[str, Any], parts: list[str]) -> Any:
    node: Any = spec
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _set(spec: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set (or, with ``_ABSENT``, remove) the value at ``parts``."""
    node: Any = spec
    for part in parts[:-1]:
        if not isinstance(node, dict):
            return
        if part not in node:
            if value is _ABSENT:
                return
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict) or not parts:
        return
    if value is _ABSENT:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = copy.deepcopy(value)


def effective_spec(res: Resource, recorded: Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec that runs: the configured one with ``ignoreChanges`` paths as recorded."""
    if not res.lifecycle.ignoreChanges or recorded is None:
        return res.spec
    spec = copy.deepcopy(res.spec)
    for path in res.lifecycle.ignoreChanges:
        _set(spec, _parts(path), _get(recorded, _parts(path)))
    return spec


def digest_spec(
    res: Resource, spec: Mapping[str, Any], salt: str | None = None, *, plain: bool = False
) -> dict[str, Any]:
    """The part of an effective spec that determines the output (see module docstring): its
    sensitive markers sealed under the state's ``salt`` (``plain``: format 2, the values)."""
    if res.kind == "build":
        keep = ("commit", "path") if res.spec["source"] == "git" else ("contentHash",)
        return {"source": res.spec["source"], **{k: res.spec.get(k) for k in keep}}
    if plain:
        return _runnable(unmask(dict(spec), res.secrets, salt))
    return _runnable(seal(dict(spec), res.secrets, salt))


def _runnable(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` without the raw container source (the build's digest stands for it) and
    without the ``RECORD_ONLY_FIELDS``."""
    if any(k in spec for k in RECORD_ONLY_FIELDS):
        spec = {k: v for k, v in spec.items() if k not in RECORD_ONLY_FIELDS}
    container = spec.get("container") or {}
    if "local" in container or "git" in container:
        return {
            **spec,
            "container": {k: v for k, v in container.items() if k not in ("local", "git")},
        }
    return spec


def document_digest(kind: str, spec: Mapping[str, Any], deps: Iterable[tuple[str, str]]) -> str:
    """The SHA-256 of a digest document: ``kind``, the digest ``spec`` and (role, digest) of
    each dependency."""
    doc = {"kind": kind, "spec": spec, "deps": sorted(deps)}
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def digest(
    res: Resource,
    spec: Mapping[str, Any],
    dependency_digests: Mapping[Address, str],
    salt: str | None = None,
    *,
    plain: bool = False,
) -> str:
    deps = ((d.role, dependency_digests.get(d.address, "")) for d in res.dependencies)
    return document_digest(res.kind, digest_spec(res, spec, salt, plain=plain), deps)


def compute_digests(
    order: Iterable[Address],
    resources: Mapping[Address, Resource],
    external: Mapping[Address, str] | None = None,
    records: Mapping[str, ResourceRecord] | None = None,
    salt: str | None = None,
    *,
    plain: bool = False,
) -> tuple[dict[Address, str], dict[Address, dict[str, Any]]]:
    """Digests and effective specs in topological ``order`` (dependencies first); ``external``
    adds read digests, ``records`` the applied specs ``ignoreChanges`` keeps; the specs'
    sensitive markers are sealed with the state's ``salt`` (``engine.sensitive``). ``plain``:
    format 2 digests, over the sensitive values (to recognise records of that format)."""
    out: dict[Address, str] = dict(external or {})
    specs: dict[Address, dict[str, Any]] = {}
    records = records or {}
    for addr in order:
        res = resources[addr]
        rec = records.get(str(addr))
        spec = effective_spec(res, rec.spec if rec is not None and rec.digest else None)
        specs[addr] = seal(spec, res.secrets, salt)
        out[addr] = digest(res, specs[addr], out, salt, plain=plain)
    return out, specs


def plain_digests(
    order: Iterable[Address],
    resources: Mapping[Address, Resource],
    external: Mapping[Address, str],
    records: Mapping[str, ResourceRecord],
    salt: str | None,
) -> dict[Address, str]:
    """Format 2 digests of the configuration: over the plain values of sensitive params."""
    return compute_digests(order, resources, external, records, salt, plain=True)[0]


def remarked_digests(
    order: Iterable[Address],
    resources: Mapping[Address, Resource],
    external: Mapping[Address, str],
    records: Mapping[str, ResourceRecord],
    salt: str | None,
) -> dict[Address, str]:
    """Digests of the configuration with each resource's params marked sensitive as its record
    marks them (``sensitive.as_marked``): a record whose digest is this one differs from the
    configuration by its ``sensitive:`` marking alone (its own or an input's), which changes no
    content: the planner rewrites the record and runs nothing (DESIGN §12)."""
    out: dict[Address, str] = dict(external)
    for addr in order:
        res = resources[addr]
        rec = records.get(str(addr))
        recorded = rec.spec if rec is not None and rec.digest else None
        spec = seal(effective_spec(res, recorded), res.secrets, salt)
        if res.kind == "build":
            spec = digest_spec(res, spec, salt)
        elif recorded is not None:
            spec = _runnable(as_marked(spec, res.secrets, recorded, salt))
        else:
            spec = _runnable(spec)
        deps = ((d.role, out.get(d.address, "")) for d in res.dependencies)
        out[addr] = document_digest(res.kind, spec, deps)
    return out


def rekeyed(
    changes: Iterable[ResourceChange],
    secrets: Mapping[str, Mapping[str, Any]],
    salt: str,
) -> dict[str, str]:
    """The digests of a plan's ``changes`` (in dependency order) under ``salt``: what a plan made
    before the state had a salt (its sensitive markers ``PENDING``) would have given with it.
    Recomputed from each change's effective spec (``after``) and inputs; a change without a
    digest of its own (a delete) keeps what it has."""
    out: dict[str, str] = {}
    for c in changes:
        if c.action is Action.READ or c.action is Action.DELETE or not c.digest_after:
            out[c.address] = c.digest_after or c.digest_before or ""
            continue
        spec = dict(c.after or {})
        if c.kind == "build":  # no sensitive params: its digest stands
            out[c.address] = c.digest_after
            continue
        sealed = _runnable(seal(spec, secrets.get(c.address), salt))
        deps = ((d.role or "", out.get(d.address, "")) for d in c.dependencies)
        out[c.address] = document_digest(c.kind, sealed, deps)
    return out


# -- format 1 (records written before DIGEST_FORMAT 2) ------------------------------------------


def _legacy_spec(res: Resource) -> dict[str, Any]:
    if res.kind == "build":
        if res.spec["source"] == "git":
            url = res.origin.get("url") or res.spec["url"]
            return {
                "source": "git",
                "url": url,
                "commit": res.spec.get("commit"),
                "path": res.spec.get("path"),
            }
        return {"source": "local", "contentHash": res.spec.get("contentHash")}
    spec = legacy_masked(res.spec, res.secrets)  # format 1 hashed the unsalted markers
    spec = {k: v for k, v in spec.items() if k not in RECORD_ONLY_FIELDS}
    container = spec.get("container") or {}
    if "local" in container or "git" in container:
        spec = {
            **spec,
            "container": {k: v for k, v in container.items() if k not in ("local", "git")},
        }
    if res.lifecycle.ignoreChanges:
        spec = copy.deepcopy(spec)
        for path in res.lifecycle.ignoreChanges:
            _set(spec, _parts(path), _ABSENT)
    return spec


def legacy_digests(
    order: Iterable[Address],
    resources: Mapping[Address, Resource],
    external: Mapping[Address, str],
    records: Mapping[str, ResourceRecord],
) -> dict[Address, str]:
    """Format 1 digests of the configuration: dependencies by (role, address, digest), where a
    build is named as the resource's record names it (build names changed with format 2)."""
    out: dict[Address, str] = dict(external)
    for addr in order:
        res = resources[addr]
        rec = records.get(str(addr))
        recorded_build = next(
            (d for d in (rec.dependencies if rec else []) if d.startswith("build.")), None
        )
        deps = sorted(
            (
                d.role,
                recorded_build if d.role == "build" and recorded_build else str(d.address),
                out.get(d.address, ""),
            )
            for d in res.dependencies
        )
        doc = {"kind": res.kind, "spec": _legacy_spec(res), "deps": deps}
        out[addr] = hashlib.sha256(canonical_json(doc).encode()).hexdigest()
    return out


def field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Changed field paths (``spec.a.b``) between two canonical specs, sorted."""
    from deepdiff import DeepDiff  # numpy and more: imported only when a field diff is needed

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
