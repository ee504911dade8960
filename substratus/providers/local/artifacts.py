"""The artifact store: where dataset and model versions (and notebook work) live.

Layout (DESIGN §4): ``{root}/{namespace}/{kind}s/{name}/{version}/`` is a completed version (a
version is named ``{digest[:16]}-{token}`` by the engine, one per run; ``{digest[:16]}`` in
stores written before); ``{version}.partial/`` beside it is a job's output while it runs, renamed
to the version directory only when the job exits 0 — so "the version directory exists" means
"the job completed". Notebooks keep one persistent ``{root}/{namespace}/notebooks/{name}/``
directory. ``{root}/.substratus/holds/`` holds each state's holds (``providers.holds``).

``ArtifactStore`` is the seam for other stores. ``FileArtifactStore`` is ``file://``; a remote
store (``gs://``: ``substratus.providers.artifacts_gcs``, imported lazily) stages versions in its
local ``Mirror`` and ``publish``es them; there ``complete`` asks the remote store. ``open_store``
picks a store by URL; ``input_dir`` and ``inspect_remote`` resolve recorded outputs by their own
URL scheme, so inputs come from whichever store produced them. This module creates nothing
until asked to remove, mirror or publish something.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from substratus.engine.diagnostic import Diagnostic
from substratus.engine.runtime import Held, Owner
from substratus.providers.holds import read_file_holds, write_file_holds
from substratus.providers.local.files import make_read_only, remove_tree

PARTIAL_SUFFIX = ".partial"


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
        """Versions (``holds.key``) that states other than ``owner`` hold in this store."""
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
        return self.root / namespace / f"{kind}s" / name

    def path_for(self, namespace: str, kind: str, name: str, version: str) -> Path:
        return self.resource_dir(namespace, kind, name) / version

    def partial_path_for(self, namespace: str, kind: str, name: str, version: str) -> Path:
        return self.resource_dir(namespace, kind, name) / (version + PARTIAL_SUFFIX)

    def notebook_dir(self, namespace: str, name: str) -> Path:
        return self.resource_dir(namespace, "notebook", name)

    def others_holds(self, owner: Owner) -> set[str]:
        return read_file_holds(self.root, owner)

    def set_holds(self, owner: Owner, held: Iterable[Held]) -> None:
        write_file_holds(self.root, owner, held)

    def url_for(self, path: Path) -> str:
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


class Mirror:
    """Local copies of a remote store's objects: ``{workdir}/cache/{name}/{bucket}/{key}``.

    A mirrored version directory is complete and read-only (staged in ``.tmp`` and renamed into
    place); the generation of the remote marker it copies is kept in ``.{name}.generation``
    beside it. ``.locks/`` holds one ``flock`` file per version being downloaded.
    """

    def __init__(self, workdir: Path, name: str) -> None:
        self.root = workdir.resolve() / "cache" / name

    def path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def locate(self, path: Path) -> tuple[str, str] | None:
        """(bucket, key) of a path inside the mirror, else None."""
        try:
            bucket, *key = path.resolve().relative_to(self.root).parts
        except ValueError:
            return None
        return bucket, "/".join(key)

    def _generation_file(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.generation")

    def generation(self, path: Path) -> int | None:
        """The marker generation a mirrored directory copies (None: absent or unknown)."""
        try:
            return int(self._generation_file(path).read_text()) if path.is_dir() else None
        except (OSError, ValueError):
            return None

    def record(self, path: Path, generation: int) -> None:
        self._generation_file(path).write_text(f"{generation}\n")

    def forget(self, path: Path) -> None:
        remove_tree(path)
        self._generation_file(path).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, url: str) -> Iterator[None]:
        """Exclusive per-version lock (between threads and processes)."""
        path = self.root / ".locks" / hashlib.sha256(url.encode()).hexdigest()[:32]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def replace(self, path: Path) -> Iterator[Path]:
        """A fresh staging directory that becomes ``path`` (read-only) if the block succeeds."""
        (self.root / ".tmp").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=self.root / ".tmp"))
        old = tmp.with_name(tmp.name + ".old")
        try:
            yield tmp
            make_read_only(tmp)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                os.rename(path, old)
            os.rename(tmp, path)
        finally:
            remove_tree(tmp)
            remove_tree(old)


class MirroredStore:
    """The paths of a remote store ``{scheme}://{bucket}/{prefix}`` whose versions jobs stage in
    a ``Mirror``: a job's partial and final directories are the mirror of its version, so the
    supervisor's rename works as for ``file://``. Notebook work stays local
    (``{workdir}/notebooks/{namespace}/{name}``, a ``file://`` URL). Subclasses do the I/O."""

    def __init__(self, scheme: str, bucket: str, prefix: str, workdir: Path, cache: str) -> None:
        self.scheme, self.bucket, self.prefix = scheme, bucket, prefix.strip("/")
        self.url = f"{scheme}://{bucket}/{self.prefix}".rstrip("/")
        self.workdir = workdir.resolve()
        self.mirror = Mirror(self.workdir, cache)

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def resource_dir(self, namespace: str, kind: str, name: str) -> Path:
        return self.mirror.path(self.bucket, self.key(namespace, f"{kind}s", name))

    def path_for(self, namespace: str, kind: str, name: str, version: str) -> Path:
        return self.resource_dir(namespace, kind, name) / version

    def partial_path_for(self, namespace: str, kind: str, name: str, version: str) -> Path:
        return self.resource_dir(namespace, kind, name) / (version + PARTIAL_SUFFIX)

    def notebook_dir(self, namespace: str, name: str) -> Path:
        return self.workdir / "notebooks" / namespace / name

    def url_for(self, path: Path) -> str:
        found = self.mirror.locate(path)
        if found is None:
            return path.resolve().as_uri()
        return f"{self.scheme}://{found[0]}/{found[1]}".rstrip("/")

    def local_entries(self, namespace: str, kind: str, name: str) -> set[Path]:
        base = self.resource_dir(namespace, kind, name)
        try:
            return {p for p in base.iterdir() if p.is_dir() and not p.is_symlink()}
        except OSError:
            return set()


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
        from substratus.providers.artifacts_gcs import GcsArtifactStore

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
        from substratus.providers.artifacts_gcs import fetch

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
    from substratus.providers.artifacts_gcs import inspect_versions

    return inspect_versions(remote)
