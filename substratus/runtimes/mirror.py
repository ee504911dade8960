"""The local mirror of a remote artifact store (``gs://``), shared by the local artifact store
(``runtimes.local.artifacts``) and the GCS one (``runtimes.artifacts_gcs``), so that neither
imports the other's module at import time.

``Mirror`` keeps ``{workdir}/cache/{name}/{bucket}/{key}``: each mirrored version with the
generation of the remote marker it was fetched at, a per-URL lock, and ``replace`` (a version
staged in a temporary directory, made read-only and renamed into place). ``MirroredStore`` is the
part of an ``ArtifactStore`` that lays versions out in the mirror (jobs write there; the remote
store publishes from there). ``PARTIAL_SUFFIX`` names a job's output while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from substratus.engine import kinds
from substratus.runtimes.local.files import make_read_only, remove_tree

PARTIAL_SUFFIX = ".partial"


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

    def resource_key(self, namespace: str, kind: str, name: str) -> str:
        """The object-name prefix of a resource's versions (``engine.kinds.artifact_prefix``)."""
        return self.key(kinds.artifact_prefix(namespace, kind, name))

    def resource_dir(self, namespace: str, kind: str, name: str) -> Path:
        return self.mirror.path(self.bucket, self.resource_key(namespace, kind, name))

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
