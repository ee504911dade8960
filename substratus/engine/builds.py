"""Implicit build resources for git and local container sources (DESIGN §4).

Every resource whose container comes from ``git:`` or ``local:`` depends on a ``build`` resource
that makes that source runnable (a checkout or a copy for the local runtime, an image for
Kubernetes). Identical sources share one build.

A build's name depends on its own source and nothing else — not on other resources, not on the
order of files, not on where the configuration lives — so adding an unrelated resource or moving
the configuration never renames a build:

- a local directory is named after its path relative to the configuration's root
  (``config.config_root``): ``trainer`` for ``./trainer``; a path that is not already a valid name
  (``sub/trainer``, ``.``, upper case, over 40 characters) is slugged and suffixed with a hash of
  the path (``sub-trainer-3fa2c1``);
- a git source is named after its repository and sub-path, suffixed with a hash of the URL, ref and
  sub-path (``hf-llm-trainer-0c1d2e``).

Local paths (a ``local`` directory, a ``git`` URL that is a local path) are stored in the spec
relative to the root (``resolve_location`` turns them back into absolute paths for a runtime)
and absolute in ``Resource.origin``.

A ``local`` directory must be inside the git repository that holds the configuration's root (or
inside the root, when it is in no repository; ``context_boundary``): a plan hashes and an apply
copies everything under it, so ``local: {path: ../../..}`` or ``/proc/self`` is an error naming
the path. Sockets, FIFOs and devices in a context are left out of it, with a warning.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from substratus.engine.address import NAME_MAX, NAME_RE, Address
from substratus.engine.build_source import SourceError, special_files
from substratus.engine.diagnostic import Diagnostics
from substratus.engine.resource import Dependency, Resource

_SLUG = re.compile(r"[^a-z0-9-]+")
_PLAIN_MAX = 40


def _slug(text: str) -> str:
    s = _SLUG.sub("-", text.lower()).strip("-")
    return s[:_PLAIN_MAX].strip("-") or "context"


def _hashed(label: str, key: tuple[str, ...]) -> str:
    suffix = hashlib.sha256("\0".join(key).encode()).hexdigest()[:6]
    return f"{_slug(label)}-{suffix}"


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("git@")


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def resolve_location(value: str, config_dir: str | Path) -> str:
    """The absolute location of a build spec's ``path`` or local git ``url`` (stored relative to
    the configuration's root; absolute in records written before)."""
    if _is_remote(value):
        return value
    return str((Path(config_dir) / value).resolve())


def _local_name(rel: str) -> str:
    if len(rel) <= _PLAIN_MAX and NAME_RE.fullmatch(rel):
        return rel
    return _hashed(rel, ("local", rel))


def context_boundary(root: Path) -> tuple[Path, str]:
    """The directory local build contexts must be inside, and what it is: the git repository
    that holds ``root`` (the nearest directory with a ``.git``), else ``root`` itself."""
    root = root.resolve()
    for directory in (root, *root.parents):
        if (directory / ".git").exists():
            return directory, "the repository"
    return root, "the configuration directory"


@dataclass(frozen=True)
class _Context:
    """What checking one ``local.path`` found: the resolved directory (None when it is not a
    usable context, with the error's summary and detail), and the special files it leaves out."""

    path: Path | None
    error: tuple[str, str] | None = None
    skipped: tuple[str, ...] = ()


def _check_context(raw: str, base: Path, boundary: tuple[Path, str]) -> _Context:
    """Resolve ``raw`` against ``base`` and check it is a readable directory inside
    ``boundary``."""
    path: Path = (base / raw).resolve()
    inside, label = boundary
    if path != inside and inside not in path.parents:
        return _Context(
            None,
            (
                "Build context outside the repository"
                if label == "the repository"
                else "Build context outside the configuration directory",
                f"{raw} resolves to {path}, which is outside {label} ({inside}). A plan hashes "
                f"and an apply copies everything under local.path, so it must be inside {label}: "
                "move the code there, or point local.path at a directory inside it.",
            ),
        )
    if not path.is_dir():
        return _Context(
            None,
            (
                "Build context not found",
                f"{raw} (resolved to {path}) is not a directory. Point local.path at the "
                "directory with your code, relative to this file.",
            ),
        )
    try:
        skipped = special_files(path)
    except SourceError as exc:
        return _Context(None, ("Cannot read the build context", f"{exc}."))
    return _Context(path, skipped=tuple(skipped))


class _Contexts:
    """``_check_context`` once per (configuration file, ``local.path``) of one load: ten
    thousand resources that share a context resolve and scan it once. Diagnostics are still
    reported for every resource, at its own line."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.boundary = context_boundary(root)
        self.checked: dict[tuple[str, str], _Context] = {}
        self.relative: dict[Path, str] = {}

    def local_path(self, res: Resource, diags: Diagnostics) -> Path | None:
        """The resolved ``local.path`` of ``res`` if it is a directory inside the boundary."""
        raw = res.spec["container"]["local"]["path"]
        key = (res.file, raw)
        found = self.checked.get(key)
        if found is None:
            base = Path(res.file).parent if res.file else Path.cwd()
            found = self.checked[key] = _check_context(raw, base, self.boundary)
        if found.error is None and not found.skipped:
            return found.path
        where: dict[str, object] = {
            "source": res.source_of("spec.container.local.path"),
            "address": str(res.address),
            "path": "spec.container.local.path",
        }
        if found.error is not None:
            summary, detail = found.error
            diags.error(summary, detail, **where)
            return None
        skipped = found.skipped
        shown = ", ".join(skipped[:5]) + (
            f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        )
        diags.warning(
            "Special files left out of the build context",
            f"{found.path} holds sockets, FIFOs or device files ({shown}), which a build context "
            "cannot hold; they are not hashed, copied or uploaded. Add them to .dockerignore "
            "to silence this warning.",
            **where,
        )
        return found.path

    def relative_to_root(self, path: Path) -> str:
        rel = self.relative.get(path)
        if rel is None:
            rel = self.relative[path] = _relative(path, self.root)
        return rel


def _source(
    res: Resource, contexts: _Contexts, diags: Diagnostics
) -> tuple[tuple[str, ...], str, dict[str, str], dict[str, str]] | None:
    """(key, name, spec, origin) of a resource's build source, None when it has none."""
    container = res.spec.get("container") or {}
    if "local" in container:
        path = contexts.local_path(res, diags)
        if path is None:
            return None
        rel = contexts.relative_to_root(path)
        spec = {"source": "local", "path": rel}
        return ("local", rel), _local_name(rel), spec, {"path": str(path)}
    if "git" in container:
        base = Path(res.file).parent if res.file else Path.cwd()
        git = container["git"]
        remote = _is_remote(git["url"])
        absolute = git["url"] if remote else str((base / git["url"]).resolve())
        url = git["url"] if remote else _relative(Path(absolute), contexts.root)
        key = ("git", url, git["ref"], git["path"])
        spec = {"source": "git", "url": url, "ref": git["ref"], "path": git["path"]}
        repo = absolute.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        label = f"{repo}-{Path(git['path']).name}" if git["path"] else repo
        return key, _hashed(label, key), spec, {} if remote else {"url": absolute}
    return None


def attach_builds(resources: dict[Address, Resource], diags: Diagnostics, root: Path) -> None:
    """Add build resources (and ``build`` dependencies) for git/local containers."""
    wanted: dict[tuple[str, ...], tuple[str, dict[str, str], dict[str, str], list[Resource]]] = {}
    contexts = _Contexts(root)
    for res in list(resources.values()):
        found = _source(res, contexts, diags)
        if found is not None:
            key, name, spec, origin = found
            wanted.setdefault(key, (name, spec, origin, []))[3].append(res)
    taken: dict[str, tuple[str, ...]] = {}
    for key, (name, spec, origin, users) in sorted(wanted.items()):
        first = min(users, key=lambda r: str(r.address))
        if name in taken or len(name) > NAME_MAX:
            diags.error(
                "Build names collide",
                f"The build sources {taken.get(name, key)} and {key} would both be named "
                f"build.{name}. Rename one of the directories.",
                source=first.source_of("spec.container"),
                address=str(first.address),
                path="spec.container",
            )
            continue
        taken[name] = key
        address = Address("build", name)
        resources[address] = Resource(
            address=address,
            kind="build",
            namespace=first.namespace,
            name=name,
            spec=spec,
            source=first.source_of("spec.container"),
            origin=origin,
        )
        for user in users:
            user.dependencies.insert(0, Dependency("build", address, "spec.container"))
