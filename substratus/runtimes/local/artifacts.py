"""The artifact store: where dataset and model versions (and notebook work) live.

Layout (DESIGN §4; ``engine.kinds.artifact_prefix``):
``{root}/{namespace}/{kind}s/{name}/{version}/`` is a completed version (a version is named
``{digest[:16]}-{token}`` by the engine, one per run; ``{digest[:16]}`` in stores written
before); ``{version}.partial/`` beside it is a job's output while it runs, renamed
to the version directory only when the job exits 0 — so "the version directory exists" means
"the job completed". Notebooks keep one persistent ``{root}/{namespace}/notebooks/{name}/``
directory. ``{root}/.substratus/holds/`` holds each state's holds (``runtimes.holds``).

``ArtifactStore`` is the seam for other stores. ``FileArtifactStore`` is ``file://``; a remote
store (``gs://``: ``substratus.runtimes.artifacts_gcs``, imported lazily) stages versions in its
local ``Mirror`` and ``publish``es them; there ``complete`` asks the remote store. ``open_store``
picks a store by URL; ``input_dir`` and ``inspect_remote`` resolve recorded outputs by their own
URL scheme, so inputs come from whichever store produced them. This module creates nothing
until asked to remove, mirror or publish something.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from substratus.engine import kinds
from substratus.engine.diagnostic import Diagnostic
from substratus.engine.runtime import Held, Owner
from substratus.runtimes.holds import read_file_holds, write_file_holds
from substratus.runtimes.local.files import remove_tree
from substratus.runtimes.mirror import PARTIAL_SUFFIX


class ArtifactStore(Protocol):
    url: str

    def resource_dir(self, namespace: str, kind: str, name: str) -> Path: ...

    def path_for(self, namespace: str, kind: str, name: str, version: str) -> Path: ...

    def partial_path_for(self, namespace: str, kind: str, name: str, version: str) -> Path: ...

    def notebook_dir(self, namespace: str, name: str) -> Path: ...

    def url_for(self, path: Path) -> str: ...

    def entries(self, namespace: str, kind: str, name: str) -> list[Path]: ...

    def remove(self, path: Path) -> None: ...

    def complete(self, version: Path) -> bool:
        """Whether the version is complete in the store (adopt it instead of running again)."""
        ...

    def publish(self, version: Path, phase: Callable[[str], None]) -> None:
        """Make a version a job completed locally complete in the store."""
        ...

    def newest(self, namespace: str, kind: str, name: str) -> Path | None:
        """The most recently completed version of a resource."""
        ...

    def fingerprint(self, version: Path) -> str | None:
        """A remote store's identity of a complete version's content (None: the store keeps
        none; a ``file://`` version is checked against its manifest file instead)."""
        ...

    def check(self) -> list[Diagnostic]:
        """Problems with the store a plan can report (no network calls)."""
        ...

    def others_holds(self, owner: Owner) -> set[str]:
        """Versions (``kinds.version_key``) that states other than ``owner`` hold in this store."""
        ...

    def set_holds(self, owner: Owner, held: Iterable[Held]) -> None:
        """Record ``owner``'s holds in this store."""
        ...


class FileArtifactStore:
    """Artifacts in a local directory (``file:///abs/dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()

    def resource_dir(self, namespace: str, kind: str, name: str) -> Path:
        return self.root / kinds.artifact_prefix(namespace, kind, name)

    def path_for(self, namespace: str, kind: str, name: str, version: str) -> Path:
        return self.resource_dir(namespace, kind, name) / version

    def partial_path_for(self, namespace: str, kind: str, name: str, version: str) -> Path:
        return self.resource_dir(namespace, kind, name) / (version + PARTIAL_SUFFIX)

    def notebook_dir(self, namespace: str, name: str) -> Path:
        return self.resource_dir(namespace, kinds.Kind.NOTEBOOK, name)

    def others_holds(self, owner: Owner) -> set[str]:
        return read_file_holds(self.root, owner)

    def set_holds(self, owner: Owner, held: Iterable[Held]) -> None:
        write_file_holds(self.root, owner, held)

    def url_for(self, path: Path) -> str:
        """The ``file://`` URL of ``path``, resolved; a path this store made (below its root,
        which is resolved, with no ``..``: its own directories, never links) is as it is, so
        no ``lstat`` of every component per call."""
        if path.is_absolute() and path.is_relative_to(self.root) and ".." not in path.parts:
            return path.as_uri()
        return path.resolve().as_uri()

    def entries(self, namespace: str, kind: str, name: str) -> list[Path]:
        """Version and partial directories of one resource."""
        base = self.resource_dir(namespace, kind, name)
        try:
            return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return []

    def remove(self, path: Path) -> None:
        remove_tree(path)

    def complete(self, version: Path) -> bool:
        return version.is_dir()

    def publish(self, version: Path, phase: Callable[[str], None]) -> None:
        """Nothing to do: the supervisor's rename completed the version."""

    def newest(self, namespace: str, kind: str, name: str) -> Path | None:
        versions = [
            p for p in self.entries(namespace, kind, name) if not p.name.endswith(PARTIAL_SUFFIX)
        ]
        return max(versions, key=lambda p: p.stat().st_ctime, default=None)

    def fingerprint(self, version: Path) -> str | None:
        return None

    def check(self) -> list[Diagnostic]:
        return []


def local_path(url: str, base: Path | None = None) -> Path | None:
    """The local path of a ``file://`` URL or a plain path (relative to ``base``), else None."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return None
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" and url:
        path = Path(url).expanduser()
        return path if path.is_absolute() or base is None else base / path
    return None


def is_remote(url: object) -> bool:
    return isinstance(url, str) and url.startswith("gs://")


def open_store(url: str, workdir: Path | None = None) -> ArtifactStore:
    """The store for ``url``: ``file://`` (or a plain absolute path), or ``gs://bucket/prefix``
    mirrored under ``workdir``."""
    if is_remote(url) and workdir is not None:
        from substratus.runtimes.artifacts_gcs import GcsArtifactStore

        return GcsArtifactStore(url, workdir)
    path = local_path(url)
    if path is None or not path.is_absolute():
        raise ValueError(
            f"the local runtime keeps artifacts in a file:// directory or gs://bucket/prefix, "
            f"not {url!r}; set artifacts to file:///absolute/dir or gs://bucket/prefix"
        )
    return FileArtifactStore(path)


def input_dir(inputs: Mapping[str, Mapping[str, Any]], role: str, workdir: Path) -> Path | None:
    """The local directory of the input with ``role`` ("data", "model"), if given; a version in
    gs:// is fetched into the mirror under ``workdir`` first (``Failure`` when it cannot be)."""
    given = inputs.get(role) or {}
    if is_remote(given.get("artifacts")):
        from substratus.runtimes.artifacts_gcs import fetch

        return fetch(str(given["artifacts"]), workdir)
    value = given.get("artifacts_path")
    return Path(value) if value else None


def inspect_remote(wanted: Mapping[str, str | None]) -> dict[str, list[str] | None]:
    """Remote version URLs (with their recorded content fingerprints) → None when incomplete,
    else what changed in them (one list call per store prefix,
    ``artifacts_gcs.inspect_versions``)."""
    remote = {u: fp for u, fp in wanted.items() if is_remote(u)}
    if not remote:
        return {}
    from substratus.runtimes.artifacts_gcs import inspect_versions

    return inspect_versions(remote)
