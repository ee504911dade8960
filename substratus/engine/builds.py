"""Implicit build resources for git and local container sources (DESIGN §4).

Every resource whose container comes from ``git:`` or ``local:`` depends on a ``build`` resource
that makes that source runnable (a checkout or a copy for the local runtime, an image for
Kubernetes). Identical sources share one build. A build's name is derived from its source (the
directory name, or the repository and sub-path), made unique with a short hash when two different
sources would get the same name. Local paths are resolved relative to the declaring file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from substratus.engine.address import Address
from substratus.engine.diagnostic import Diagnostics
from substratus.engine.resource import Dependency, Resource

_SLUG = re.compile(r"[^a-z0-9-]+")


def _slug(text: str) -> str:
    s = _SLUG.sub("-", text.lower()).strip("-")
    return s[:40].strip("-") or "context"


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("git@")


def attach_builds(resources: dict[Address, Resource], diags: Diagnostics) -> None:
    """Add build resources (and ``build`` dependencies) for git/local containers."""
    wanted: dict[tuple[str, ...], tuple[str, dict[str, str], list[Resource]]] = {}
    for res in list(resources.values()):
        container = res.spec.get("container") or {}
        base = Path(res.file).parent if res.file else Path.cwd()
        if "local" in container:
            raw = container["local"]["path"]
            path = (base / raw).resolve()
            if not path.is_dir():
                diags.error(
                    "Build context not found",
                    f"{raw} (resolved to {path}) is not a directory. Point local.path at the "
                    "directory with your code, relative to this file.",
                    source=res.source_of("spec.container.local.path"),
                    address=str(res.address),
                    path="spec.container.local.path",
                )
                continue
            key: tuple[str, ...] = ("local", str(path))
            spec = {"source": "local", "path": str(path)}
            label = path.name
        elif "git" in container:
            git = container["git"]
            url = git["url"] if _is_remote(git["url"]) else str((base / git["url"]).resolve())
            key = ("git", url, git["ref"], git["path"])
            spec = {"source": "git", "url": url, "ref": git["ref"], "path": git["path"]}
            repo = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
            label = f"{repo}-{Path(git['path']).name}" if git["path"] else repo
        else:
            continue
        entry = wanted.setdefault(key, (label, spec, []))
        entry[2].append(res)

    names: dict[str, list[tuple[str, ...]]] = {}
    for key, (label, _spec, _users) in wanted.items():
        names.setdefault(_slug(label), []).append(key)
    for slug, keys in names.items():
        for key in keys:
            label, spec, users = wanted[key]
            name = slug
            if len(keys) > 1:
                suffix = hashlib.sha256("\0".join(key).encode()).hexdigest()[:6]
                name = f"{slug[:43]}-{suffix}"
            address = Address("build", name)
            first = users[0]
            resources[address] = Resource(
                address=address,
                kind="build",
                namespace=first.namespace,
                name=name,
                spec=spec,
                source=first.source_of("spec.container"),
            )
            for user in users:
                user.dependencies.insert(0, Dependency("build", address, "spec.container"))
